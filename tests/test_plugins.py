"""Third-party plugins: a package installed next to activescope (a real distribution with
entry points on the import path, as pip lays it out) is found by the CLI with no import or
registration by the user; its options are validated like the built-ins'."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

PLUGIN = '''
"""A user's package: a source of 2-D points, a nearest-neighbour model, an acquisition function
and an oracle measuring a paraboloid. The model registers with the decorator; the others are
plain objects with an `Options` attribute."""

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from activescope import Pool, register_model
from activescope.engine.oracle import Measurement


class GridOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    side: int = Field(20, ge=2)


def grid(side: int = 20) -> Pool:
    """A side x side grid of points in the unit square."""
    u = np.linspace(0.0, 1.0, side, dtype=np.float32)
    xx, yy = np.meshgrid(u, u)
    X = np.column_stack([xx.ravel(), yy.ravel()])
    return Pool(ids=[f"p{i}" for i in range(len(X))], X=X, info=pd.DataFrame({"x": X[:, 0], "y": X[:, 1]}))


grid.Options = GridOptions


class NeighbourOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(3, ge=1)


@register_model("neighbours", NeighbourOptions)
class Neighbours:
    """Mean of the k nearest measured points; variance grows with the distance to them."""

    def __init__(self, k: int = 3) -> None:
        self.k = k

    def fit(self, X, y):
        self.X, self.y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        return self

    def predict(self, X):
        d = np.sqrt(((np.asarray(X, dtype=float)[:, None, :] - self.X[None]) ** 2).sum(-1))
        nearest = np.argsort(d, axis=1)[:, : self.k]
        mean = self.y[nearest].mean(axis=1)
        return mean, np.take_along_axis(d, nearest, axis=1).mean(axis=1) ** 2 + 1e-9

    def hyperparameters(self):
        return {"k": float(self.k)}


class OptimismOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(1.0, ge=0)


def optimism(weight: float = 1.0):
    """mean + weight * variance (a score function, wrapped by activescope)."""
    return lambda mean, variance, best, rng: mean + weight * variance


optimism.Options = OptimismOptions


class ParaboloidOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    centre: float = Field(0.3, description="optimum in both coordinates")


class Paraboloid:
    """Measures -(x - c)^2 - (y - c)^2 at each point."""

    interactive = False
    Options = ParaboloidOptions

    def __init__(self, pool, target, centre: float = 0.3) -> None:
        self.pool, self.centre = pool, centre

    def measure(self, ids):
        X = self.pool.X[self.pool.index_of(ids)].astype(float)
        values = -((X - self.centre) ** 2).sum(axis=1)
        return [Measurement(id=k, value=float(v)) for k, v in zip(ids, values)]
'''

ENTRY_POINTS = """
[activescope.sources]
unit_grid = demo_plugin:grid

[activescope.models]
neighbours = demo_plugin:Neighbours

[activescope.acquisitions]
optimism = demo_plugin:optimism

[activescope.oracles]
paraboloid = demo_plugin:Paraboloid
broken = demo_plugin_missing:Thing
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A directory laid out as pip installs a package: the module and its .dist-info."""
    root = tmp_path_factory.mktemp("site")
    (root / "demo_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "activescope_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: activescope-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def _cli(site: Path, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    code = "from activescope.cli import app; app()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def _spec(tmp_path: Path, **overrides) -> Path:
    spec = {
        "name": "plugin",
        "seed": 4,
        "data": {"source": "unit_grid", "side": 15},
        "target": {"column": "height"},
        "model": {"kind": "neighbours", "k": 2},
        "acquisition": {"kind": "optimism", "weight": 0.5, "q": 5},
        "initial": {"n": 10},
        "oracle": {"kind": "paraboloid", "centre": 0.25},
        "stop": {"budget": 40},
        **overrides,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_cli_runs_a_campaign_entirely_on_plugins(site, tmp_path):
    result = _cli(site, "run", _spec(tmp_path), "--run-dir", tmp_path / "run", "--no-report", "--no-progress")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "run" / "run.sqlite") as db:
        rows = db.execute(
            "SELECT s.round, s.mean, s.variance, s.acquisition, m.value FROM selections s JOIN measurements m USING (id)"
        ).fetchall()
        hyper = db.execute("SELECT hyperparameters FROM rounds WHERE round = 1").fetchone()[0]
    rounds, mean, variance, acquisition, value = (np.array(column, dtype=float) for column in zip(*rows))
    assert len(rows) == 40 and hyper == '{"k": 2.0}'
    modelled = rounds > 0
    # the plugin's acquisition scored the first pick of each batch: mean + 0.5 * variance
    first = np.flatnonzero(modelled)[::5]
    np.testing.assert_allclose(acquisition[first], mean[first] + 0.5 * variance[first], rtol=1e-6)
    # the plugin's oracle measured the paraboloid, and the model steered towards its top
    u = np.linspace(0.0, 1.0, 15, dtype=np.float32).astype(float)
    grid_values = np.sort(-((u[:, None] - 0.25) ** 2 + (u[None, :] - 0.25) ** 2).ravel())[::-1]
    assert value.max() >= grid_values[9] and value[modelled].mean() > value[~modelled].mean()


def test_plugin_options_are_validated_like_built_ins(site, tmp_path):
    bad = _spec(tmp_path, model={"kind": "neighbours", "k": 0})
    result = _cli(site, "run", bad, "--run-dir", tmp_path / "bad")
    assert result.returncode == 2 and "model.k: Input should be greater than or equal to 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    typo = _spec(tmp_path, oracle={"kind": "paraboloid", "center": 0.2})
    assert "oracle.center: unknown field" in _cli(site, "run", typo, "--run-dir", tmp_path / "bad").stderr


def test_unknown_names_list_installed_plugins_and_a_broken_plugin_is_one_line(site, tmp_path):
    result = _cli(site, "run", _spec(tmp_path, model={"kind": "forest"}), "--run-dir", tmp_path / "r")
    assert result.returncode == 2 and "allowed:" in result.stderr and "neighbours" in result.stderr
    result = _cli(site, "run", _spec(tmp_path, oracle={"kind": "broken"}), "--run-dir", tmp_path / "r")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "plugin demo_plugin_missing:Thing failed to load: ModuleNotFoundError" in result.stderr
