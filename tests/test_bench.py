"""The strategy benchmark on a real QM9 subset: 2 strategies × 2 seeds, outputs and resume."""

from __future__ import annotations

import pandas as pd
import pytest

from activescope.bench import bench_main, default_strategies, run_bench, strategy_spec
from activescope.engine.errors import SpecError
from activescope.engine.metrics import top_k_recall
from activescope.engine.spec import parse_spec
from activescope.engine.store import Store

STRATEGIES = {"rf-ucb": {"model": {"kind": "rf"}, "acquisition": {"kind": "ucb"}}, "random": {"acquisition": {"kind": "random"}}}


@pytest.fixture
def base_spec(spec_dict):
    spec_dict["stop"]["budget"] = 40
    return parse_spec(spec_dict)


def test_run_bench_writes_results_for_every_strategy_and_seed(tmp_path, base_spec, small_pool):
    results = run_bench(base_spec, STRATEGIES, [0, 1], tmp_path, progress=False, pool=small_pool)
    assert list(zip(results["strategy"], results["seed"])) == [("rf-ucb", 0), ("rf-ucb", 1), ("random", 0), ("random", 1)]
    assert (results["n_measured"] == 40).all()
    saved = pd.read_csv(tmp_path / "results.csv")
    pd.testing.assert_frame_equal(saved, results, check_dtype=False)
    truth = small_pool.labels["Dipole_debye"].to_numpy()
    for row in results.itertuples():
        store = Store.open(row.run_dir)
        values = store.measurements()["value"].to_numpy()
        store.close()
        assert row.top100_recall == pytest.approx(top_k_recall(values, truth, 100))
        assert row.best_value == pytest.approx(values.max())
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert len(curves) == 4 * 40
    per_run = curves.groupby(["strategy", "seed"])
    assert per_run["best"].apply(lambda s: s.is_monotonic_increasing).all()
    assert per_run["top1pct_recall"].apply(lambda s: s.is_monotonic_increasing).all()
    table = (tmp_path / "results.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| strategy")]
    assert [r.split("|")[1].strip() for r in rows] == ["rf-ucb", "random", "random (exact expectation)"]
    assert rows[2].split("|")[3].strip() == f"{40 / len(small_pool):.3f}"  # n/N
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")


def test_rerun_resumes_finished_runs_without_new_measurements(tmp_path, base_spec, small_pool):
    strategies = {"random": STRATEGIES["random"]}
    first = run_bench(base_spec, strategies, [0], tmp_path, progress=False, pool=small_pool)
    again = run_bench(base_spec, strategies, [0], tmp_path, progress=False, pool=small_pool)
    pd.testing.assert_frame_equal(first.drop(columns="total_s"), again.drop(columns="total_s"))


def test_strategy_overrides_merge_sections_and_replace_a_different_kind(base_spec):
    base_spec = base_spec.model_copy(update={"acquisition": base_spec.acquisition.model_copy(update={"q": 4})})
    merged = strategy_spec(base_spec, "x", {"model": {"kind": "gp"}, "acquisition": {"kind": "logei"}}, seed=7)
    assert merged["model"] == {"kind": "gp"}
    assert merged["acquisition"] == {"q": 4, "prefilter": 2000, "kind": "logei"}  # ucb's beta is gone
    parse_spec(merged)
    assert merged["seed"] == 7 and merged["name"] == "tiny-x-seed7"
    with pytest.raises(SpecError, match="section 'model'"):
        strategy_spec(base_spec, "bad", {"model": "rf"}, seed=0)


def test_default_matrix_specs_are_valid(base_spec):
    names = list(default_strategies())
    assert names[0] == "default" and {"random", "rf-greedy-morgan", "gp-ucb", "dkl-ucb"} <= set(names)
    for name, overrides in default_strategies().items():
        if "data" not in overrides:
            parse_spec(strategy_spec(base_spec, name, overrides, seed=0))
    default = parse_spec(strategy_spec(base_spec, "default", default_strategies()["default"], seed=0))
    assert (default.model, default.acquisition) == (base_spec.model, base_spec.acquisition)


def test_bench_main_rejects_unknown_strategy(tmp_path, write_spec, spec_dict):
    with pytest.raises(SpecError, match="unknown strategy 'nope'"):
        bench_main(write_spec(spec_dict), ["nope"], 1, tmp_path)


def test_bench_takes_the_target_and_goal_from_the_command_line(tmp_path, write_spec, spec_dict):
    spec_dict["stop"]["budget"] = 30
    text = bench_main(write_spec(spec_dict), ["random"], 1, tmp_path / "out", target="HOMO_LUMO_gap_au", goal="minimize")
    runs = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(runs) == 1 and "HOMO_LUMO_gap_au" in text
    with Store.open(next((tmp_path / "out").rglob("run.sqlite")).parent) as store:
        spec = store.spec()
    assert (spec.target.column, spec.target.goal) == ("HOMO_LUMO_gap_au", "minimize")


def test_multi_target_grid_writes_a_table_per_target_and_a_summary(tmp_path, write_spec, spec_dict):
    spec_dict["stop"]["budget"] = 30
    text = bench_main(write_spec(spec_dict), ["random"], 1, tmp_path / "out",
                      targets=["Dipole_debye", "HOMO_LUMO_gap_au:minimize"])  # fmt: skip
    out = tmp_path / "out"
    for target, goal in (("Dipole_debye", "maximize"), ("HOMO_LUMO_gap_au", "minimize")):
        runs = pd.read_csv(out / target / "results.csv")
        assert runs["strategy"].tolist() == ["random"] and (runs["n_measured"] == 30).all()
        assert (out / target / "results.md").read_text().startswith(f"# Benchmark: {goal} {target}")
        with Store.open(out / target / "random" / "seed0") as store:
            assert (store.spec().target.column, store.spec().target.goal) == (target, goal)
    summary = pd.read_csv(out / "summary.csv")
    assert summary["target"].tolist() == ["Dipole_debye", "HOMO_LUMO_gap_au"]
    assert summary["goal"].tolist() == ["maximize", "minimize"]
    assert "HOMO_LUMO_gap_au (min)" in text and "random (exact expectation)" in text
    assert (out / "summary.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SpecError, match="COLUMN:maximize"):
        bench_main(write_spec(spec_dict), ["random"], 1, tmp_path / "bad", targets=["Dipole_debye:up"])
