"""Old import paths of modules that moved into folders (0.2): `import blackbox_zo.trainer` still works.

A meta-path finder answers each old name with the module at its new home, so both names are one object.
Only the paths that earlier READMEs and examples used are kept; the README lists every move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {  # old path -> new path
    "blackbox_zo.trainer": "blackbox_zo.running.trainer",
    "blackbox_zo.run": "blackbox_zo.running.run",
    "blackbox_zo.cli": "blackbox_zo.running.cli",
    "blackbox_zo.config": "blackbox_zo.setup.config",
    "blackbox_zo.spaces": "blackbox_zo.weights.spaces",
    "blackbox_zo.steering": "blackbox_zo.weights.steering",
    "blackbox_zo.precision": "blackbox_zo.weights.precision",
    "blackbox_zo.noise": "blackbox_zo.weights.noise",
    "blackbox_zo.backends": "blackbox_zo.weights",
    "blackbox_zo.backends.vllm_backend": "blackbox_zo.vllm.backend",
    "blackbox_zo.backends.vllm_worker": "blackbox_zo.vllm.worker",
    # 0.3: the setup layer sits below the runners, vLLM has its own folder
    "blackbox_zo.running.config": "blackbox_zo.setup.config",
    "blackbox_zo.running.assembly": "blackbox_zo.setup.assembly",
    "blackbox_zo.running.calls": "blackbox_zo.setup.calls",
    "blackbox_zo.running.batches": "blackbox_zo.setup.batches",
    "blackbox_zo.running.parser": "blackbox_zo.setup.parser",
    "blackbox_zo.weights.vllm_backend": "blackbox_zo.vllm.backend",
    "blackbox_zo.weights.vllm_worker": "blackbox_zo.vllm.worker",
}

MOVED_NAMES = {  # package -> {name it used to export: module that holds it now}
    "blackbox_zo.weights": {"VLLMBackend": "blackbox_zo.vllm.backend", "CoverageError": "blackbox_zo.vllm.backend"},
}


def moved_name(package: str, name: str):
    """A package's `__getattr__` for names that moved out of it: `blackbox_zo.weights.VLLMBackend` still resolves."""
    home = MOVED_NAMES.get(package, {}).get(name)
    if home is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)  # the module at its new home, under the old name too

    def exec_module(self, module) -> None:
        pass  # already executed under its new name


class MovedModules(importlib.abc.MetaPathFinder):
    """Resolves the old dotted names in MOVED to their new modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


def install() -> None:
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
