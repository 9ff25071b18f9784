"""In-memory ask/tell: the Python loop a notebook user writes chooses exactly what the CLI's
suggest/tell files choose, and the notebook example runs as it is."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke

from activescope import Campaign, DataError, Pool, RunStateError, parse_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def asktell_spec(spec_dict) -> dict:
    spec_dict.update(
        oracle={"kind": "asktell"},
        model={"kind": "gp", "fit_iters": 30, "warm_iters": 5},
        initial={"n": 10},
        acquisition={"kind": "ei", "q": 5},
        stop={"budget": 30},
    )
    return spec_dict


def test_in_memory_ask_tell_chooses_what_the_cli_chooses(tmp_path, asktell_spec, write_spec, small_pool):
    truth = dict(zip(small_pool.ids, small_pool.labels["Dipole_debye"]))
    run_dir = tmp_path / "lab"
    result = invoke("run", write_spec(asktell_spec), "--run-dir", run_dir, "--no-report", "--no-progress")
    assert result.exit_code == 0, result.output
    cli_batches = []
    suggestion = run_dir / "artifacts" / "suggest_round_0.csv"
    while suggestion.exists():
        batch = pd.read_csv(suggestion, dtype={"id": str})
        cli_batches.append(batch)
        batch["value"] = batch["id"].map(truth)
        batch.to_csv(suggestion, index=False)
        assert invoke("tell", run_dir, suggestion).exit_code == 0
        suggestion = run_dir / "artifacts" / f"suggest_round_{len(cli_batches)}.csv"

    memory_batches = []
    with Campaign.create(None, parse_spec(asktell_spec), pool=small_pool) as campaign:
        while not campaign.done:
            batch = campaign.ask()
            pd.testing.assert_frame_equal(campaign.ask(), batch)  # asking again changes nothing
            memory_batches.append(batch)
            awaited = campaign.tell(pd.DataFrame({"id": batch["id"], "value": batch["id"].map(truth)}))
            assert awaited == 0
        assert campaign.ask().empty and campaign.summary().stop_reason == "budget"

    assert len(cli_batches) == len(memory_batches) == 5
    for from_files, in_memory in zip(cli_batches, memory_batches):
        assert from_files["id"].tolist() == in_memory["id"].tolist()
        np.testing.assert_allclose(from_files[["mean", "std", "acquisition"]], in_memory[["mean", "std", "acquisition"]], rtol=1e-9)


def test_tell_checks_results_like_the_cli(asktell_spec, small_pool):
    campaign = Campaign.create(None, parse_spec(asktell_spec), pool=small_pool)
    batch = campaign.ask()
    ids = batch["id"].tolist()
    with pytest.raises(DataError, match="unknown id"):
        campaign.tell(["nope"], [1.0])
    with pytest.raises(DataError, match="NaN or infinite"):
        campaign.tell(ids[:2], [1.0, float("nan")])
    with pytest.raises(DataError, match="duplicate"):
        campaign.tell([ids[0], ids[0]], [1.0, 2.0])
    with pytest.raises(DataError, match="2 id"):
        campaign.tell(ids[:2], [1.0])
    with pytest.raises(DataError, match="no results"):
        campaign.tell([], [])
    assert campaign.store.measurements().empty
    assert campaign.tell(ids[:4], [1.0, 2.0, 3.0, 4.0]) == 6
    assert campaign.ask()["id"].tolist() == ids[4:]
    with pytest.raises(RunStateError, match="no model has been fitted"):
        campaign.predict()


def test_pool_from_a_frame_checks_its_columns():
    frame = pd.DataFrame({"name": ["a", "b", "b"], "x": [0.1, 0.2, 0.3], "y": [1.0, 2.0, np.nan]})
    pool = Pool.from_frame(frame.iloc[:2], features=["x"], labels=["y"], id_column="name")
    assert pool.ids.tolist() == ["a", "b"] and pool.X.dtype == np.float32 and pool.labels["y"].tolist() == [1.0, 2.0]
    with pytest.raises(DataError, match="column"):
        Pool.from_frame(frame, features=["z"])
    with pytest.raises(DataError, match="duplicate id 'b'"):
        Pool.from_frame(frame, features=["x"], id_column="name")
    with pytest.raises(DataError, match="NaN or infinite"):
        Pool.from_frame(frame, features=["y"])


def test_the_notebook_example_runs_and_draws_its_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(EXAMPLES / "notebook_asktell.py"), run_name="__main__")
    assert (tmp_path / "notebook_asktell.png").stat().st_size > 10_000
    campaign, truth = namespace["campaign"], namespace["truth"]
    assert campaign.done and len(campaign.store.measurements()) == 60
    # the smallest gap found beats what random picks reach on average with the same budget
    assert namespace["best_so_far"][-1] < namespace["random_best"][-1]
    assert truth.min() <= namespace["best_so_far"][-1]
