"""Old import paths (0.2, 0.3): each old module is a plain stub that re-exports its new home's names, with a
DeprecationWarning naming the new path, so code written against an earlier release runs and is told where to go.

MOVED is the one list of moves (the stubs, the tests and the docs read it); no import hook is involved.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable

MOVED = {  # old path -> new path; each old path is a stub module that calls reexport(__name__)
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


def warn_moved(old: str, new: str, stacklevel: int) -> None:
    """The one DeprecationWarning of a moved path; `stacklevel` counts from the caller of warn_moved."""
    warnings.warn(f"{old} moved to {new}: import it from there (the old path will be removed)", DeprecationWarning,
                  stacklevel=stacklevel + 1)


def reexport(old: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(__getattr__, __dir__) of the stub module `old`: every name of its new module MOVED[old], looked up there.
    Importing the stub warns once, at the importing line (the import machinery's frames are skipped)."""
    new = MOVED[old]
    warn_moved(old, new, 3)  # reexport <- the stub's body <- the import statement
    module = importlib.import_module(new)

    def __getattr__(name: str) -> Any:
        return getattr(module, name)

    def __dir__() -> list[str]:
        return dir(module)

    return __getattr__, __dir__


def moved_name(package: str, name: str) -> Any:
    """A package's `__getattr__` for names that moved out of it: `blackbox_zo.weights.VLLMBackend` still resolves."""
    home = MOVED_NAMES.get(package, {}).get(name)
    if home is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    warn_moved(f"{package}.{name}", f"{home}.{name}", 2)
    return getattr(importlib.import_module(home), name)
