"""Registry of pool sources: domain packages register how to build a Pool from a spec.

The engine resolves `data.source` in a spec through this registry and never imports domain
code by name except through `load_plugins`, which imports the built-in domain packages so that
they can register themselves.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from pydantic import BaseModel

from .pool import Pool

PoolBuilder = Callable[..., Pool]
_SOURCES: dict[str, PoolBuilder] = {}
_OPTIONS: dict[str, type[BaseModel]] = {}
_BUILTIN_PLUGINS = ("activescope.chem",)
_loaded = False


def register_source(name: str, options: type[BaseModel]) -> Callable[[PoolBuilder], PoolBuilder]:
    """Register `builder(**options)` as the pool source `name`; `options` is the pydantic model
    (extra="forbid") that validates the spec's data section for this source."""

    def wrap(builder: PoolBuilder) -> PoolBuilder:
        _SOURCES[name] = builder
        _OPTIONS[name] = options
        return builder

    return wrap


def load_plugins() -> None:
    """Import built-in domain packages once so that their sources and models register."""
    global _loaded
    if not _loaded:
        for module in _BUILTIN_PLUGINS:
            importlib.import_module(module)
        _loaded = True


def source_names() -> list[str]:
    load_plugins()
    return sorted(_SOURCES)


def validate_source_options(source: str, options: dict[str, Any]) -> BaseModel:
    """Validate a data section's options with the source's own model (raises ValidationError)."""
    load_plugins()
    return _OPTIONS[source].model_validate(options)


def build_pool(source: str, **params: Any) -> Pool:
    """Build the pool named by a spec's data section (features included)."""
    load_plugins()
    if source not in _SOURCES:
        raise KeyError(f"unknown data source {source!r}; choose one of {source_names()}")
    opts = validate_source_options(source, params)
    return _SOURCES[source](**opts.model_dump())
