"""Writes the campaign-language reference (Markdown) from the code itself.

Two sources, both read at build time, so the page cannot drift from what `load_spec` accepts:

- the pydantic models of `activescope.engine.spec`: every section of `CampaignSpec`, and each
  model a section uses, as a table of fields (type, bounds, default, description);
- every `Registry` in `activescope.engine.registry`: each entry's name, docstring summary and
  options model, as the same kind of table (plus the models its options use).

After `render()`, `missing_descriptions` lists the fields that have no `description=`.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from importlib import resources
from typing import Any, Callable

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from activescope.engine import registry as registry_module
from activescope.engine import spec as spec_module

# The scalarizer is named inside `oracle:`; the spec's `_PLUGGABLE` table lists the other keys.
_NESTED_KEYS = {"SCALARIZERS": "oracle.scalarizer.kind"}
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}

missing_descriptions: list[str] = []
_anchors: dict[type[BaseModel], str] = {}  # models already rendered on the page -> heading id
_entry_links: dict[str, str] = {}  # spec section, e.g. "oracle.scalarizer" -> its registry's heading id


# ----- formatting one field -------------------------------------------------------------------
def type_name(annotation: Any) -> str:
    """A short, YAML-minded spelling of a type: `int | null`, `"rbf" | "matern"`, `list[str]`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def bounds(field: FieldInfo) -> str:
    """The field's numeric bounds and length limits, e.g. ">= 1, <= 6"."""
    out = []
    for rule in field.metadata:
        if isinstance(rule, annotated_types.BaseMetadata):
            out += [f"{symbol} {getattr(rule, name)}" for name, symbol in _BOUNDS.items() if hasattr(rule, name)]
            if hasattr(rule, "min_length"):
                out.append(f"at least {rule.min_length} items")
            if hasattr(rule, "max_length"):
                out.append(f"at most {rule.max_length} items")
    return ", ".join(out)


def default(field: FieldInfo) -> str:
    """The default in JSON spelling (valid YAML), or "required"."""
    if field.is_required():
        return "*required*"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return ""
    return f"`{json.dumps(to_jsonable_python(value))}`"


def outside_code(text: str, change: Callable[[str], str]) -> str:
    """`text` with `change` applied to the parts outside `code spans`."""
    parts = text.split("`")
    return "`".join(part if i % 2 else change(part) for i, part in enumerate(parts))


def prose(text: str) -> str:
    """Docstring text as Markdown: a `<name>` placeholder is text, not an HTML tag."""
    return outside_code(text, lambda part: part.replace("<", "&lt;"))


def cell(text: str) -> str:
    """Text made safe for one Markdown table cell: one line, pipes outside code escaped."""
    return outside_code(" ".join(text.split()), lambda part: part.replace("|", "\\|"))


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation refers to (through unions, lists, Annotated...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in models_in(arg)]


def docstring(obj: Any) -> str:
    """The object's docstring, dedented ("" if it has none)."""
    return prose(inspect.cleandoc(obj.__doc__)) if obj.__doc__ else ""


def summary(obj: Any) -> str:
    """The first paragraph of the object's docstring, on one line."""
    return " ".join(docstring(obj).split("\n\n")[0].split())


# ----- tables and sections --------------------------------------------------------------------
def fields_table(model: type[BaseModel]) -> str:
    """A Markdown table of the model's fields (a field without a description gets an empty cell)."""
    if not model.model_fields:
        return "*No options.*\n"
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if not field.description:
            missing_descriptions.append(f"{model.__module__}.{model.__qualname__}.{name}")
        kind = f"`{type_name(field.annotation)}`" + (f" ({bounds(field)})" if bounds(field) else "")
        rows.append(f"| `{name}` | {cell(kind)} | {cell(default(field))} | {cell(prose(field.description or ''))} |")
    return "\n".join(rows) + "\n"


def used_models(model: type[BaseModel], path: str, level: int) -> list[str]:
    """A section for each model that `model`'s fields use, rendered once per page and linked after."""
    parts = []
    for name, field in model.model_fields.items():
        for used in models_in(field.annotation):
            if used in _anchors:
                parts.append(f"`{path}.{name}` accepts [`{used.__name__}`](#{_anchors[used]}).\n")
                continue
            _anchors[used] = f"model-{used.__name__.lower()}"
            parts += [
                f"{'#' * level} `{path}.{name}`: `{used.__name__}` {{#{_anchors[used]}}}\n",
                *model_body(used, f"{path}.{name}"),
                *used_models(used, f"{path}.{name}", min(level + 1, 6)),
            ]
    return parts


def model_body(model: type[BaseModel], path: str) -> list[str]:
    """Docstring and fields of the model at spec `path`, and where its extra keys are listed."""
    parts = [docstring(model) + "\n", fields_table(model)]
    if path in _entry_links:
        parts.append(f"Its other keys are the options of the entry it names: see [{path} entries](#{_entry_links[path]}).\n")
    return parts


def registries() -> list[tuple[str, registry_module.Registry[Any], str]]:
    """(variable name, registry, spec key that names its entries) for every registry, in code order."""
    keys = {id(reg): f"{section}.{key}" for section, key, reg in getattr(spec_module, "_PLUGGABLE", ())}
    found = [(name, reg) for name, reg in vars(registry_module).items() if isinstance(reg, registry_module.Registry)]
    return [(name, reg, keys.get(id(reg)) or _NESTED_KEYS.get(name, "")) for name, reg in found]


def registry_section(name: str, registry: registry_module.Registry[Any], key: str) -> list[str]:
    """Every entry of one registry: name, summary, implementation and options."""
    parts = [
        f"### {registry.kind.capitalize()}s {{#{name.lower()}}}\n",
        (f"Named by `{key}`. " if key else "")
        + f"Registry `activescope.engine.registry.{name}`, entry-point group `{registry.group}`.\n",
    ]
    if not registry.names():
        parts.append("*No entries are registered.*\n")
    for entry_name in registry.names():
        entry = registry.get(entry_name)  # a plugin that fails to import fails the build
        parts += [
            f"#### `{entry_name}` {{#{name.lower()}-{entry_name.replace('_', '-')}}}\n",
            f"{summary(entry.factory)}\n",
            f"Implemented by `{entry.factory.__module__}.{entry.factory.__qualname__}`, "
            f"options validated by `{entry.options.__name__}`:\n",
            fields_table(entry.options),
            *used_models(entry.options, entry_name, 5),
        ]
    return parts


# ----- the page -------------------------------------------------------------------------------
def render() -> str:
    """The whole campaign-language page."""
    missing_descriptions.clear()
    _anchors.clear()
    _entry_links.clear()
    _entry_links.update({key.rsplit(".", 1)[0]: name.lower() for name, _, key in registries() if key})
    spec = spec_module.CampaignSpec
    example = resources.files("activescope").joinpath("presets/qm9-dipole-quick.yaml").read_text()
    parts = [
        "# Campaign language\n",
        "*Generated from the code when the docs are built (`docs/campaign_language.py`): the "
        "pydantic models of `activescope.engine.spec` and the plugins registered in the "
        "environment that built the docs.*\n",
        docstring(spec_module) + "\n",
        "The packaged preset `qm9-dipole-quick` as an example (`activescope presets show "
        "qm9-dipole-quick`):\n",
        f"```yaml\n{example.rstrip()}\n```\n",
        "## Sections\n",
        docstring(spec) + "\n",
        fields_table(spec),
    ]
    for name, field in spec.model_fields.items():
        for model in models_in(field.annotation):
            _anchors[model] = name
            parts += [f"### `{name}` {{#{name}}}\n", *model_body(model, name), *used_models(model, name, 4)]
    parts += [
        "## Plugins\n",
        "Each pluggable section names an entry of a registry; the section's other keys are "
        "validated by that entry's options model, listed below.\n",
    ]
    for found in registries():
        parts += registry_section(*found)
    return "\n".join(parts)
