"""`model: {kind: auto}`: block choice on synthetic targets, no label leak from unmeasured
candidates, identical choices after a resume, and the MolPAL-recipe baseline strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from activescope.engine.campaign import Campaign
from activescope.engine.errors import SpecError
from activescope.engine.pool import Pool
from activescope.engine.select import spearman
from activescope.models.auto import AutoSurrogate
from activescope.report.selection import (
    cross_validation_table,
    section,
    selection_records,
)

FAST = {"gp_iters": 8, "cv_every": 2}


def synthetic_pool(target: str, n: int = 160, seed: int = 0) -> Pool:
    """Two blocks: `desc` (6 dense descriptors) and `bits` (48 count columns). target "bits": a
    weighted sum of counts; "desc": a smooth function of two descriptors; "both": their sum."""
    rng = np.random.default_rng(seed)
    desc = rng.normal(size=(n, 6)).astype(np.float32)
    bits = rng.poisson(0.5, size=(n, 48)).astype(np.float32)
    parts = {"bits": bits @ rng.normal(size=48), "desc": np.sin(2 * desc[:, 0]) + desc[:, 1] ** 2}
    y = parts["bits"] + parts["desc"] if target == "both" else parts[target]
    return Pool(ids=[f"m{i}" for i in range(n)], X=np.hstack([desc, bits]), labels=pd.DataFrame({"y": y}),
                feature_kinds={"desc": slice(0, 6), "bits": slice(6, 54)})  # fmt: skip


def spec(steps: int = 3, criterion: str = "cv_spearman", ensemble: int = 1) -> dict:
    return {
        "name": "auto-test", "seed": 1,
        "target": {"column": "y", "goal": "maximize"},
        "model": {"kind": "auto", "families": ["rf", "tanimoto"], "criterion": criterion, "ensemble": ensemble, **FAST},
        "acquisition": {"kind": "ucb", "q": 4, "beta": 2.0},
        "initial": {"n": 24}, "stop": {"budget": 24 + 4 * steps},
    }  # fmt: skip


def run(tmp_path, name: str, pool: Pool, steps: int = 3, criterion: str = "cv_spearman") -> tuple[list[str], list[dict]]:
    with Campaign.create(tmp_path / name, spec(steps, criterion), pool=pool) as campaign:
        campaign.run(progress=False)
        return campaign.store.selected_ids(), campaign.store.rounds()["record"].dropna().tolist()


@pytest.mark.parametrize("target", ["bits", "desc"])
def test_auto_picks_the_block_that_carries_the_signal(target):
    pool = synthetic_pool(target)
    model = AutoSurrogate(**FAST)
    model.use_feature_blocks(pool.feature_kinds)
    rows = np.random.default_rng(0).choice(len(pool), 60, replace=False)
    model.fit(pool.X[rows], pool.labels["y"].to_numpy()[rows])
    record = model.round_record()
    assert set(record["cv_spearman"]) == {"rf:desc", "gp:desc", "rf:bits", "tanimoto:bits"}  # counts found from data
    assert record["choice"].endswith(f":{target}"), record["cv_spearman"]
    mean, variance = model.predict(pool.X)
    assert mean.shape == variance.shape == (len(pool),) and spearman(mean, pool.labels["y"].to_numpy()) > 0.5


@pytest.mark.parametrize("criterion", ["cv_spearman", "cv_top", "cv_blend"])
def test_shuffling_unmeasured_labels_changes_no_choice_and_no_batch(tmp_path, criterion):
    pool = synthetic_pool("bits")
    ids, records = run(tmp_path, "a", pool, criterion=criterion)
    unmeasured = np.flatnonzero(~np.isin(pool.ids, ids))
    shuffled = pool.labels.copy()
    shuffled.loc[unmeasured, "y"] = np.random.default_rng(5).permutation(shuffled.loc[unmeasured, "y"].to_numpy())
    assert not np.allclose(shuffled["y"], pool.labels["y"])
    other = Pool(ids=pool.ids, X=pool.X, labels=shuffled, feature_kinds=pool.feature_kinds)
    ids_b, records_b = run(tmp_path, "b", other, criterion=criterion)
    assert ids_b == ids
    assert [r["choice"] for r in records_b] == [r["choice"] for r in records]
    assert [r.get("rewards") for r in records_b] == [r.get("rewards") for r in records]
    assert [r.get("cv_top") for r in records_b] == [r.get("cv_top") for r in records]
    assert sum(r["phase"] == "cross-validation" for r in records) >= 2  # the criterion was re-evaluated


def test_a_resumed_run_makes_the_same_choices(tmp_path):
    pool = synthetic_pool("desc")
    ids, records = run(tmp_path, "whole", pool)
    with Campaign.create(tmp_path / "split", spec(), pool=pool) as campaign:
        for _ in range(2):  # the initial round and one modelled round, then the process "stops"
            campaign.step()
    with Campaign.open(tmp_path / "split", spec(), pool=pool) as campaign:
        assert campaign._surrogate.names == list(records[0]["average_reward"])  # candidates rebuilt from the state
        campaign.run(progress=False)
        assert campaign.store.selected_ids() == ids
        assert campaign.store.rounds()["record"].dropna().tolist() == records


def test_auto_rejects_an_unknown_block():
    model = AutoSurrogate(blocks=["nope"])
    model.use_feature_blocks({"desc": slice(0, 6)})
    with pytest.raises(SpecError, match="no feature block 'nope'"):
        model.fit(np.zeros((10, 6), np.float32), np.arange(10.0))


def test_rf_ucb_morgan_strategy_runs(tmp_path, spec_dict):
    from activescope.bench import default_strategies, run_bench
    from activescope.engine.spec import parse_spec

    spec_dict["data"]["subset"] = 150
    spec_dict["initial"]["n"] = 10
    spec_dict["stop"]["budget"] = 30
    strategy = default_strategies()["rf-ucb-morgan"]
    assert strategy["model"] == {"kind": "rf", "max_depth": 8} and strategy["acquisition"]["kind"] == "ucb"
    results = run_bench(parse_spec(spec_dict), {"rf-ucb-morgan": strategy}, [0], tmp_path, progress=False)
    assert results["n_measured"].tolist() == [30]
    with Campaign.open(tmp_path / "rf-ucb-morgan" / "seed0") as campaign:
        assert set(campaign.pool.feature_kinds) == {"morgan"} and campaign.spec.model.kind == "rf"


@pytest.mark.parametrize(("criterion", "note"), [("cv_spearman", "cv_spearman: Spearman rank correlation"),
                                               ("cv_blend", "cv_blend: mean of the out-of-fold Spearman")])  # fmt: skip
def test_report_section_tabulates_every_cross_validation(tmp_path, criterion, note):
    pool = synthetic_pool("desc")
    with Campaign.create(tmp_path / "r", spec(criterion=criterion), pool=pool) as campaign:
        campaign.run(progress=False)
        rounds = campaign.store.rounds()
    table = cross_validation_table(selection_records(rounds))
    validated = [r for r in rounds["record"].dropna() if r["phase"] == "cross-validation"]
    assert len(table) == len(validated) >= 2 and {"rf:desc", "tanimoto:bits", "chosen"} <= set(table.columns)
    assert table["rf:desc"].tolist() == [round(r[criterion]["rf:desc"], 3) if criterion != "cv_blend"
                                         else round(r["rewards"]["rf:desc"], 3) for r in validated]  # fmt: skip
    saved: list[str] = []

    def save(name: str, figure: Figure, caption: str) -> str:
        saved.append(caption)
        return f"<figure>{name}</figure>"

    html = section(rounds, save)
    assert note in html and "tanimoto:bits" in html and "Last choice" in saved[0]


def test_cross_target_summary_has_sd_top100_and_blank_cells_for_missing_runs(tmp_path):
    from activescope.report.targets import write_target_summary

    runs = pd.DataFrame({
        "target": ["A", "A", "A", "B"], "strategy": ["auto", "auto", "rf", "auto"], "n_measured": [20] * 4,
        "top1pct_recall": [0.2, 0.4, 0.1, 0.5], "top100_recall": [0.3, 0.5, 0.2, 0.6], "total_s": [1.0] * 4,
        "median_round_s": [0.5, 1.5, 2.0, 1.0],
    })  # fmt: skip
    truths = {"A": np.arange(1000.0), "B": np.arange(1000.0)}
    summary = write_target_summary(runs, {"A": "maximize", "B": "minimize"}, truths, tmp_path)
    auto_a = summary.set_index(["target", "strategy"]).loc[("A", "auto")]
    assert auto_a["top1pct_recall"] == pytest.approx(0.3) and auto_a["top1pct_sd"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert auto_a["median_round_s"] == 1.0 and auto_a["random_top1pct_recall"] == pytest.approx(0.02)  # 20 of 1000
    text = (tmp_path / "summary.md").read_text()
    assert "| rf | 0.100 | – | – |" in text  # rf ran on A only: no B cell, no mean
    assert "| A (max) | auto | 2 | 0.300 ± 0.141 | 0.400 ± 0.141 | 1.00 |" in text
    assert (tmp_path / "summary.png").read_bytes().startswith(b"\x89PNG")


def test_report_shows_the_ensemble_score_and_members_of_each_cross_validation(tmp_path):
    pool = synthetic_pool("both")  # each block explains part of the target
    with Campaign.create(tmp_path / "r", spec(ensemble=2), pool=pool) as campaign:
        campaign.run(progress=False)
        rounds = campaign.store.rounds()
    validated = [r for r in rounds["record"].dropna() if r["phase"] == "cross-validation"]
    table = cross_validation_table(selection_records(rounds))
    assert table["ensemble"].tolist() == [round(r["ensemble"]["score"], 3) for r in validated]
    assert table["predicting"].tolist() == [" + ".join(r["predicting"]) for r in validated]
    for record in validated:  # the mixture predicts exactly when it out-scores the best alone
        assert (len(record["predicting"]) == 2) == (record["ensemble"]["score"] > max(record["rewards"].values()))
    assert any(len(record["predicting"]) == 2 for record in validated)
    assert "ensemble" in section(rounds, lambda name, figure, caption: f"<figure>{name}</figure>")
