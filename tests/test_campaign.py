"""The campaign loop on a real QM9 subset: learning beats random, resume, stop rules, ask/tell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activescope.engine.assemble import build_surrogate
from activescope.engine.campaign import Campaign, initial_design
from activescope.engine.errors import DataError, RunStateError, SpecError
from activescope.engine.metrics import random_best_expectation
from activescope.engine.pool import Pool
from activescope.engine.spec import parse_spec


def _run(tmp_path, spec_dict, pool, name="run"):
    return Campaign.create(tmp_path / name, parse_spec(spec_dict), pool)


def test_active_learning_beats_random_on_best_value(tmp_path, spec_dict, small_pool):
    learned = _run(tmp_path, spec_dict, small_pool, "learned").run(progress=False)
    spec_dict["acquisition"]["kind"] = "random"
    chance = _run(tmp_path, spec_dict, small_pool, "random").run(progress=False)
    truth = small_pool.labels["Dipole_debye"].to_numpy()
    expected_random_best = random_best_expectation(truth, 60)[-1]
    assert learned.n_measured == chance.n_measured == 60
    assert learned.best_value > expected_random_best
    assert learned.best_value > chance.best_value
    assert learned.top1pct_recall > chance.top1pct_recall


def test_records_are_complete_and_true_valued(tmp_path, spec_dict, small_pool):
    campaign = _run(tmp_path, spec_dict, small_pool)
    summary = campaign.run(progress=False)
    m = campaign.store.measurements()
    assert summary.stop_reason == "budget" and summary.rounds == 5
    assert m["id"].is_unique and len(m) == 60
    truth = small_pool.labels["Dipole_debye"].to_numpy()[small_pool.index_of(m["id"])]
    np.testing.assert_array_equal(m["value"].to_numpy(), truth)
    rounds = campaign.store.rounds()
    assert rounds["n_selected"].tolist() == [20, 10, 10, 10, 10]
    assert rounds["fit_s"].iloc[1:].notna().all() and rounds["hyperparameters"].iloc[1]
    assert m.loc[m["round"] > 0, "mean"].notna().all()
    assert campaign.model is not None


def test_same_seed_same_selections(tmp_path, spec_dict, small_pool):
    spec_dict["stop"]["budget"] = 40
    a = _run(tmp_path, spec_dict, small_pool, "a")
    b = _run(tmp_path, spec_dict, small_pool, "b")
    a.run(progress=False), b.run(progress=False)
    assert a.store.selected_ids() == b.store.selected_ids()
    spec_dict["seed"] = 1
    c = _run(tmp_path, spec_dict, small_pool, "c")
    c.run(progress=False)
    assert c.store.selected_ids() != a.store.selected_ids()


def test_reopened_pending_batch_is_measured_not_reselected(tmp_path, spec_dict, small_pool):
    spec = parse_spec(spec_dict)
    first = Campaign.create(tmp_path / "r", spec, small_pool)
    first.step(), first.step()
    first._select(2)  # a batch is pending, as if the process died right after selecting it
    round_, pending = first.store.open_round()
    first.store.close()
    again = Campaign.open(tmp_path / "r", spec, small_pool)
    again.run(progress=False)
    m = again.store.measurements()
    assert m.loc[m["round"] == round_, "id"].tolist() == pending
    assert m["id"].is_unique and len(m) == 60


def test_minimisation_finds_small_values_and_stores_true_ones(tmp_path, spec_dict, small_pool):
    spec_dict["target"] = {"column": "HOMO_LUMO_gap_au", "goal": "minimize"}
    campaign = _run(tmp_path, spec_dict, small_pool)
    summary = campaign.run(progress=False)
    truth = small_pool.labels["HOMO_LUMO_gap_au"].to_numpy()
    m = campaign.store.measurements()
    assert (m["value"] > 0).all() and (m.loc[m["round"] > 0, "mean"] > 0).all()
    assert summary.best_value == m["value"].min() < random_best_expectation(truth, 60, goal="minimize")[-1]
    assert campaign.store.rounds()["best"].iloc[-1] == m["value"].min()


def test_stop_rules(tmp_path, spec_dict, small_pool):
    spec_dict["stop"] = {"budget": 200, "max_rounds": 2}
    assert _run(tmp_path, spec_dict, small_pool, "rounds").run(progress=False).rounds == 3
    truth = small_pool.labels["Dipole_debye"]
    spec_dict["stop"] = {"budget": 200, "target_value": float(truth.quantile(0.5))}
    summary = _run(tmp_path, spec_dict, small_pool, "target").run(progress=False)
    assert summary.stop_reason == "target_value" and summary.n_measured == 20


def test_budget_larger_than_pool_leaves_no_run(tmp_path, spec_dict, small_pool):
    spec_dict["stop"]["budget"] = 601
    with pytest.raises(SpecError, match=r"stop\.budget \(601\) is larger than the pool \(600"):
        _run(tmp_path, spec_dict, small_pool)
    assert not (tmp_path / "run").exists()


def test_resume_with_a_different_spec_is_refused(tmp_path, spec_dict, small_pool):
    _run(tmp_path, spec_dict, small_pool)
    spec_dict["acquisition"]["beta"] = 9.0
    with pytest.raises(RunStateError, match="different spec"):
        Campaign.open(tmp_path / "run", parse_spec(spec_dict), small_pool)


def test_diverse_design_spreads_out(small_pool):
    candidates = np.arange(len(small_pool))
    X = small_pool.X

    def closest_pair(rows):
        d = np.linalg.norm(X[rows, None] - X[None, rows], axis=-1)
        return d[np.triu_indices(len(rows), 1)].min()

    diverse = initial_design(X, candidates, 20, "diverse", np.random.default_rng(0))
    uniform = initial_design(X, candidates, 20, "random", np.random.default_rng(0))
    assert len(set(diverse)) == 20 and closest_pair(diverse) > closest_pair(uniform)


def test_ask_tell_in_the_library(tmp_path, spec_dict, small_pool):
    spec_dict["oracle"] = {"kind": "asktell"}
    spec_dict["stop"]["budget"] = 30
    campaign = _run(tmp_path, spec_dict, small_pool)
    campaign.run(progress=False)
    path = campaign.suggest()
    batch = pd.read_csv(path)
    assert path.name == "suggest_round_0.csv" and len(batch) == 20
    assert list(batch.columns[:2]) == ["id", "smiles"] and batch["value"].isna().all()
    truth = small_pool.labels["Dipole_debye"].to_numpy()

    batch["value"] = np.nan
    batch.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"NaN or infinite value\(s\) for id\(s\) "):
        campaign.tell_csv(path)
    assert campaign.store.measurements().empty

    batch["value"] = truth[small_pool.index_of(batch["id"].astype(str))]
    batch.to_csv(path, index=False)
    awaited, next_path = campaign.tell_csv(path)
    assert awaited == 0
    assert next_path.name == "suggest_round_1.csv"
    follow = pd.read_csv(next_path, dtype={"id": str})
    assert len(follow) == 10 and follow["mean"].notna().all() and (follow["std"] > 0).all()
    follow["value"] = truth[small_pool.index_of(follow["id"])]
    follow.to_csv(next_path, index=False)
    assert campaign.tell_csv(next_path) == (0, None)
    assert campaign.summary().stop_reason == "budget"
    with pytest.raises(RunStateError, match="the campaign is over"):
        campaign.suggest()


def test_model_seed_follows_the_campaign_seed_unless_the_spec_sets_one(spec_dict):
    pool = Pool(ids=np.array(["a", "b"]), X=np.zeros((2, 1), dtype=np.float32))
    seeded = build_surrogate(parse_spec({**spec_dict, "seed": 7}), pool)
    pinned = build_surrogate(parse_spec({**spec_dict, "seed": 7, "model": {"kind": "rf", "seed": 3}}), pool)
    assert seeded._forest.random_state == 7
    assert pinned._forest.random_state == 3
