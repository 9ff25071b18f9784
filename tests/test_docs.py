"""Every public function, class and method of the documented API has a docstring.

The API reference (docs/, built with mkdocstrings) shows each object's own docstring, so an
object without one is an empty entry there. Checked: the names in `activescope.__all__`, and
every public (non-underscore) function, class, method and property defined in the modules of
`activescope.engine` and `activescope.models` (private modules such as `models._torch` excluded).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import activescope

PACKAGES = ("activescope.engine", "activescope.models", "activescope.instruments")


def _modules(package: str) -> Iterator[Any]:
    root = importlib.import_module(package)
    yield root
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def _methods(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties defined in the class body itself (not inherited)."""
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (classmethod, staticmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if inspect.isfunction(member):
            yield name, member


def _public_objects() -> dict[str, Any]:
    """Qualified name -> object whose own docstring must not be empty."""
    found: dict[str, Any] = {}
    for name in activescope.__all__:
        obj = getattr(activescope, name)
        # a registry instance or a bound register method is documented by its class / function
        found[f"activescope.{name}"] = obj if inspect.isclass(obj) or inspect.isroutine(obj) else type(obj)
    for package in PACKAGES:
        for module in _modules(package):
            found[module.__name__] = module
            for name, obj in vars(module).items():
                if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                    continue
                if inspect.isfunction(obj) or inspect.isclass(obj):
                    found[f"{module.__name__}.{name}"] = obj
                if inspect.isclass(obj):
                    for method_name, method in _methods(obj):
                        found[f"{module.__name__}.{name}.{method_name}"] = method
    return found


PUBLIC = _public_objects()


@pytest.mark.parametrize("qualified_name", sorted(PUBLIC))
def test_public_object_has_docstring(qualified_name: str) -> None:
    obj = PUBLIC[qualified_name]
    assert (obj.__doc__ or "").strip(), f"{qualified_name} has no docstring"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_options_model_forbids_unknown_keys_and_describes_every_field(package):
    for module in _modules(package):
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__:
                if obj.__name__.endswith("Options"):
                    assert obj.model_config.get("extra") == "forbid", obj
                    assert all(f.description for f in obj.model_fields.values()), obj
