"""examples/qm9_dipole_hypothesis.yaml (a physical dipole law as the GP's mean) runs through the
CLI on a small QM9 pool and learns a DFT/MMFF dipole ratio near the one of the whole data set."""

from __future__ import annotations

from pathlib import Path

import yaml
from cli_helpers import invoke

from activescope.engine.store import Store

EXAMPLE = Path(__file__).parents[2] / "examples" / "qm9_dipole_hypothesis.yaml"


def test_dipole_law_example_runs_and_fits_the_mmff_ratio(tmp_path, write_spec):
    spec = yaml.safe_load(EXAMPLE.read_text())
    assert spec["model"]["kind"] == "hypothesis" and "mmff_dipole" in spec["model"]["law"]
    spec["data"]["subset"] = 600  # the tests' cached QM9 subset (conftest.SMALL_QM9)
    spec["initial"]["n"] = 20
    spec["stop"]["budget"] = 40
    result = invoke("run", write_spec(spec), "--run-dir", tmp_path / "run", "--no-report", "--no-progress")
    assert result.exit_code == 0, result.output
    with Store.open(tmp_path / "run") as store:
        assert len(store.measurements()) == 40
        fitted = [h["law.a"] for h in store.rounds()["hyperparameters"] if h]
    assert len(fitted) == 2  # one fit per modelled round, each recording the law's parameter
    # least squares of the DFT dipole on the MMFF94 dipole over all of QM9 gives 0.78 (prior: 1 +- 0.5)
    assert all(0.5 < a < 1.0 for a in fitted), fitted
