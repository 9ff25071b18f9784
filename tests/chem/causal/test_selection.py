"""Active subset selection: every round is recorded in the run store with its graph loss, the
kept batch is the candidate with the lowest loss, a killed run resumes to exactly the selection
of an uninterrupted one, and a run directory of another spec is refused."""

from __future__ import annotations

import numpy as np
import pytest
from causal_helpers import synthetic_data

from activescope.chem.causal.discovery import CausalGraph
from activescope.chem.causal.selection import (
    SubsetScorer,
    discover,
    feature_columns,
    random_growth,
    region_labels,
    select_subset,
    smallest_size_reaching,
)
from activescope.chem.causal.spec import parse_causal_spec
from activescope.engine.errors import RunStateError
from activescope.engine.store import Store

SELECTION = {"initial": 15, "batch": 10, "regions": 3, "random_batches": 1, "max_rounds": 4, "budget": 200,
             "loss_threshold": 0.0, "compare_seeds": 2}


@pytest.fixture(scope="module")
def data():
    return synthetic_data()


def _spec(**selection):
    return parse_causal_spec({"name": "synthetic", "seed": 3, "discovery": {"top_k": 3},
                              "selection": {**SELECTION, **selection}})


def test_rounds_are_recorded_with_their_loss_and_the_best_candidate_is_kept(tmp_path, data):
    spec = _spec()
    result = select_subset(tmp_path / "run", spec, data, progress=False)
    assert result.stop_reason == "max rounds"
    assert result.rounds["size"].tolist() == [15, 25, 35, 45, 55]
    with Store.open(tmp_path / "run") as store:
        ids, values = store.training_data()
        hyper = store.rounds()["hyperparameters"].tolist()
    assert ids == data.pool.ids[result.rows].tolist() and len(set(ids)) == 55
    assert np.allclose(values, data.pool.y[result.rows])
    scorer = SubsetScorer(feature_columns(data, result.discovery.features), [*result.discovery.features, "y"],
                          result.discovery.full)
    for round_, h in enumerate(hyper):
        size = int(h["subset_size"])
        assert scorer.score(result.rows[:size])[0] == pytest.approx(h["graph_loss"])
        candidates = [v for k, v in h.items() if k.startswith("loss_")]
        assert h["graph_loss"] == min(candidates)
        assert len(candidates) == (1 if round_ == 0 else 4)
        saved = CausalGraph.load(tmp_path / "run" / "artifacts" / "graphs" / f"round_{round_}")
        assert saved.n_samples == size


def test_a_killed_run_resumes_to_the_same_selection(tmp_path, data, monkeypatch):
    spec = _spec()
    reference = select_subset(tmp_path / "a", spec, data, progress=False)

    real_record = Store.record

    def crash_in_round_2(self, round_, *args, **kwargs):
        if round_ == 2:
            raise KeyboardInterrupt  # killed after the batch was recorded as pending, before its values
        return real_record(self, round_, *args, **kwargs)

    monkeypatch.setattr(Store, "record", crash_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        select_subset(tmp_path / "b", spec, data, progress=False)
    monkeypatch.setattr(Store, "record", real_record)
    with Store.open(tmp_path / "b") as store:
        assert store.open_round()[0] == 2 and len(store.open_round()[1]) == 10
    resumed = select_subset(tmp_path / "b", spec, data, progress=False)
    assert resumed.rows.tolist() == reference.rows.tolist()
    assert np.allclose(resumed.rounds["graph_loss"], reference.rounds["graph_loss"])
    with Store.open(tmp_path / "b") as store:
        measured = store.measurements()
    assert len(measured) == 55 and measured["id"].is_unique


def test_another_spec_on_the_same_run_directory_is_refused(tmp_path, data):
    select_subset(tmp_path / "run", _spec(max_rounds=1), data, progress=False)
    with pytest.raises(RunStateError, match="another spec"):
        select_subset(tmp_path / "run", _spec(max_rounds=1, batch=5), data, progress=False)


def test_selection_stops_at_the_loss_threshold(tmp_path, data):
    result = select_subset(tmp_path / "run", _spec(loss_threshold=0.5, max_rounds=10), data, progress=False)
    assert result.stop_reason == "loss threshold"
    assert result.rounds["graph_loss"].iloc[-1] <= 0.5 and (result.rounds["graph_loss"].iloc[:-1] > 0.5).all()


def test_random_growth_and_the_threshold_size(data):
    spec = _spec()
    found = discover(data, spec)
    scorer = SubsetScorer(feature_columns(data, found.features), [*found.features, "y"], found.full)
    curve = random_growth(scorer, spec, seed=0)
    assert curve["size"].tolist() == [15, 25, 35, 45, 55]
    assert curve["graph_loss"].iloc[-1] < curve["graph_loss"].iloc[0]
    assert smallest_size_reaching(curve, curve["graph_loss"].min()) == curve.loc[curve["graph_loss"].idxmin(), "size"]
    assert np.isnan(smallest_size_reaching(curve, -1.0))


def test_discovery_keeps_the_strongest_causes(data):
    found = discover(data, _spec())  # true standardised total effects: c 0.73, b -0.49, a -0.31, d 0.30
    assert found.features[:2] == ["c", "b"] and len(found.features) == 3
    assert found.full.names == [*found.features, "y"]


def test_regions_split_chemical_space():
    rng = np.random.default_rng(0)
    space = np.concatenate([rng.normal(0, 0.1, (50, 3)), rng.normal(5, 0.1, (50, 3))])
    labels = region_labels(space, 2, seed=0)
    assert len(set(labels[:50])) == 1 and len(set(labels[50:])) == 1 and labels[0] != labels[-1]
