"""Shared fixtures: a small, fast QM9 campaign spec and its pool (real data, cheap features).

Tests run as 2 xdist workers on 2 cores: one math thread per process (inherited by subprocesses)
avoids oversubscription, which slows small torch fits tenfold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import yaml

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

SMALL_QM9 = {"source": "qm9", "subset": 600, "features": ["physics"]}


@pytest.fixture(scope="session", autouse=True)
def one_math_thread():
    """One torch thread per xdist worker: small GP/DKL fits and tiny networks run 10-50x slower
    when two workers each spread them over both cores."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def spec_dict() -> dict:
    """A tiny dipole-maximisation campaign: 600 QM9 molecules, random forest, 60 measurements."""
    return {
        "name": "tiny",
        "seed": 0,
        "data": dict(SMALL_QM9),
        "target": {"column": "Dipole_debye", "goal": "maximize"},
        "model": {"kind": "rf"},
        "acquisition": {"kind": "ucb", "q": 10},
        "initial": {"n": 20},
        "stop": {"budget": 60},
    }


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a spec mapping as YAML under tmp_path and return the file's path."""

    def write(spec: dict, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def small_pool():
    """The SMALL_QM9 pool, built once per test session."""
    from activescope.engine.pool import build_pool

    return build_pool(**SMALL_QM9)


@pytest.fixture
def finished_run(tmp_path: Path, spec_dict: dict, write_spec: Callable[..., Path]) -> Path:
    """A run directory holding a finished 40-measurement campaign, made through the CLI."""
    from cli_helpers import invoke

    spec_dict["stop"]["budget"] = 40
    result = invoke("run", write_spec(spec_dict), "--run-dir", tmp_path / "run", "--no-report", "--no-progress")
    assert result.exit_code == 0, result.output
    return tmp_path / "run"
