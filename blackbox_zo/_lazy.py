"""Package exports imported on first use (PEP 562), so a package import costs nothing until a name is used.

`blackbox-zo --help` and a config error then answer without importing torch (3.5 s on a slow 2-core CPU)."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, homes: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable, list[str]]:
    """(__getattr__, __dir__, __all__) for `package`, whose submodule `module` (relative) defines `homes[module]`."""
    where = {name: f"{package}.{module}" for module, names in homes.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value  # kept: later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__, sorted(where)
