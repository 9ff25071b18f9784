"""The layout is the architecture: the engine imports no domain package and no torch; domain
packages depend on the engine, never the other way round; nothing imports in a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "activescope"

ALLOWED = {
    "__init__": {"engine"},
    "engine": set(),
    "models": {"engine"},
    "hypotheses": {"engine", "models"},
    "chem": {"engine", "models", "report"},
    "microscopy": {"engine"},
    "instruments": {"engine", "microscopy"},
    "report": {"engine", "models"},
    "bench": {"engine", "report"},
    "scale": {"engine", "bench"},
    "cli": {"engine", "report", "bench", "microscopy", "instruments", "models", "chem", "scale"},
}
"""Which top-level parts of activescope each part may import (besides itself)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool, modules: set[str]) -> set[str]:
    """activescope modules imported by a file (absolute names, relative imports resolved;
    `from package import module` counts as importing the module)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("activescope")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("activescope"):
                submodules = {f"{name}.{alias.name}" for alias in node.names} & modules
                found |= submodules if len(submodules) == len(node.names) else submodules | {name}
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def test_each_part_imports_only_what_the_layers_allow():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        part = _part(name)
        for imported in _imports(path, top_level_only=False, modules=set(modules)):
            target = _part(imported)
            if target != part and target not in ALLOWED[part]:
                wrong.append(f"{name} imports {imported}")
    assert not wrong, wrong


def test_no_module_imports_in_a_cycle():
    modules = _modules()
    graph = {
        name: {m for m in _imports(path, top_level_only=True, modules=set(modules)) if m in modules and m != name}
        for name, path in modules.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*trail, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*trail, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [])
            assert cycle is None, " -> ".join(cycle)


def test_importing_the_engine_and_public_api_loads_no_torch_and_no_domain_code():
    code = (
        "import sys, activescope\n"
        "from activescope.engine import acquisition, cache, campaign, metrics, oracle, pool, registry, scalarizers, spec, store\n"
        "from activescope import Campaign, MODELS\n"
        "MODELS.names()\n"
        "heavy = ('torch', 'rdkit', 'gpytorch', 'activescope.models', 'activescope.chem', 'activescope.microscopy',"
        " 'activescope.instruments', 'activescope.report')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
