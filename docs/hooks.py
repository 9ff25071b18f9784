"""MkDocs hook (`hooks:` in mkdocs.yml): generates the reference pages at build time.

- `reference/campaign-language.md`: written by `campaign_language.render()` from the spec's
  pydantic models and the plugin registries.
- `reference/api/<module>.md`: one page per module, each just a mkdocstrings `::: <module>`
  directive. The module lists come from the source tree, so a new, moved or renamed module (the
  microscopy subpackages, say) is documented without editing the docs.

on_config adds the API pages to the navigation; on_files adds the generated pages to the build.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

import campaign_language

# (navigation title, package, document its submodules too)
API_SECTIONS = [
    ("Public API", "activescope", False),
    ("Engine", "activescope.engine", True),
    ("Models", "activescope.models", True),
    ("Chemistry", "activescope.chem", True),
    ("Hypotheses", "activescope.hypotheses", True),
    ("Report", "activescope.report", True),
    ("Microscopy", "activescope.microscopy", True),
    ("Instruments", "activescope.instruments", True),
]
CAMPAIGN_LANGUAGE = "reference/campaign-language.md"


def modules(package: str) -> list[str]:
    """The package and, recursively, its public modules and subpackages, from the source tree."""
    root = Path(importlib.util.find_spec("activescope").submodule_search_locations[0])
    directory = root.joinpath(*package.split(".")[1:])
    found = [package]
    for path in sorted(directory.iterdir()):
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py":
            found.append(f"{package}.{path.stem}")
        elif (path / "__init__.py").is_file():
            found += modules(f"{package}.{path.name}")
    return found


def api_pages() -> dict[str, list[str]]:
    """Navigation title -> module names to document."""
    return {title: modules(package) if recurse else [package] for title, package, recurse in API_SECTIONS}


def api_uri(module: str) -> str:
    return f"reference/api/{module}.md"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    api_nav = [{title: [{name: api_uri(name)} for name in names]} for title, names in api_pages().items()]
    config.nav = [*(config.nav or []), {"API reference": api_nav}]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, CAMPAIGN_LANGUAGE, content=campaign_language.render()))
    for names in api_pages().values():
        for name in names:
            files.append(File.generated(config, api_uri(name), content=f"# `{name}`\n\n::: {name}\n"))
    return files
