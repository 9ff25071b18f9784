"""The run record: layout, WAL, transactional rounds and the read API used by reports."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from activescope.engine.errors import RunStateError
from activescope.engine.oracle import Measurement
from activescope.engine.spec import parse_spec
from activescope.engine.store import Store


@pytest.fixture
def store(tmp_path, spec_dict) -> Store:
    return Store.create(tmp_path / "run", parse_spec(spec_dict))


def _dump(path) -> list:
    with sqlite3.connect(path) as db:
        return [db.execute(f"SELECT * FROM {t}").fetchall() for t in ("meta", "rounds", "selections", "measurements")]


def test_layout_wal_and_spec(store, spec_dict):
    run = store.run_dir
    assert (run / "run.sqlite").is_file() and (run / "spec.yaml").is_file() and (run / "artifacts").is_dir()
    with sqlite3.connect(run / "run.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.spec() == parse_spec(spec_dict)
    assert store.spec_digest == parse_spec(spec_dict).digest()
    assert store.meta()["activescope_version"]


def test_round_trip_of_a_round(store):
    store.start_round(0, ["a", "b", "c"], mean=[1.0, 2.0, 3.0], variance=[0.1, 0.2, 0.3], acquisition=[5, 6, 7],
                      timings={"fit_s": 0.5, "select_s": 0.25}, hyperparameters={"lengthscale": 1.5})
    assert store.open_round() == (0, ["a", "b", "c"])
    spectrum = np.arange(6.0).reshape(2, 3)
    results = [Measurement("a", 4.0), Measurement("b", error="timeout"), Measurement("c", 9.0, raw=spectrum)]
    finished = store.record(0, results, [1, 3, 1], measure_s=2.0)
    assert finished and store.open_round() is None
    m = store.measurements()
    assert m["id"].tolist() == ["a", "b", "c"]
    assert m["value"].tolist()[0] == 4.0 and np.isnan(m["value"][1]) and m["value"][2] == 9.0
    assert m["status"].tolist() == ["measured", "failed", "measured"]
    assert m["attempts"].tolist() == [1, 3, 1] and m["error"][1] == "timeout"
    assert m["mean"].tolist() == [1.0, 2.0, 3.0] and m["acquisition"].tolist() == [5, 6, 7]
    np.testing.assert_array_equal(store.raw("c"), spectrum)
    assert store.raw("a") is None
    r = store.rounds().iloc[0]
    assert r["best"] == 9.0 and r["n_selected"] == 3 and r["fit_s"] == 0.5 and r["measure_s"] == 2.0
    assert r["hyperparameters"] == {"lengthscale": 1.5} and r["total_s"] >= 0
    assert store.training_data()[0] == ["a", "c"]


def test_partial_results_keep_the_round_open(store):
    store.start_round(0, ["a", "b"])
    assert not store.record(0, [Measurement("b", 1.0)], [1])
    assert store.open_round() == (0, ["a"])
    assert store.rounds()["finished"].isna().all()


def test_minimisation_best_is_the_smallest(tmp_path, spec_dict):
    spec_dict["target"]["goal"] = "minimize"
    store = Store.create(tmp_path / "min", parse_spec(spec_dict))
    store.start_round(0, ["a", "b"])
    store.record(0, [Measurement("a", 3.0), Measurement("b", -2.0)], [1, 1])
    assert store.rounds()["best"].iloc[0] == -2.0


def test_a_failed_transaction_leaves_nothing_behind(store):
    store.start_round(0, ["a", "b"])
    store.record(0, [Measurement("a", 1.0), Measurement("b", 2.0)], [1, 1])
    before = _dump(store.run_dir / "run.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        store.start_round(1, ["c", "a"])  # "a" was already selected: never again
    with pytest.raises(sqlite3.IntegrityError):
        store.record(0, [Measurement("a", 5.0)], [1])  # measured twice
    assert _dump(store.run_dir / "run.sqlite") == before
    assert store.n_rounds() == 1


def test_reopen_and_refuse_bad_directories(store, tmp_path, spec_dict):
    store.start_round(0, ["x"])
    again = Store.open(store.run_dir)
    assert again.open_round() == (0, ["x"]) and again.selected_ids() == ["x"]
    with pytest.raises(RunStateError, match="already holds a run"):
        Store.create(store.run_dir, parse_spec(spec_dict))
    with pytest.raises(RunStateError, match="no run record"):
        Store.open(tmp_path / "elsewhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.sqlite").write_text("not a database at all" * 100)
    with pytest.raises(RunStateError, match="not a valid run record"):
        Store.open(tmp_path / "junk")
