"""Public names that load on first use (PEP 562), so that importing a package for one light
submodule (the CLI's help imports `activescope.engine.errors`) does not pay for pandas, SciPy or
torch."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose public names are the keys of `exports`
    (name -> the module that defines it). A name is imported the first time it is used, then
    kept in the package's namespace.

    Use in the package's `__init__.py`: `__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)`.
    """
    namespace = vars(sys.modules[package])

    def load(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name]), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted([*namespace, *exports])

    return load, names
