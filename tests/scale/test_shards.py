"""Sharded on-disk pools: selection equals the in-memory pool's, memory stays within a bound
much smaller than the features, and a killed featurization resumes with its finished shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from activescope.engine.campaign import Campaign
from activescope.engine.errors import DataError
from activescope.engine.pool import Pool
from activescope.engine.spec import parse_spec
from activescope.scale.synthetic import objective, synthetic_pool

SPEC = {
    "name": "sharded", "seed": 3, "target": {"column": "objective", "goal": "maximize"},
    "model": {"kind": "rf", "n_estimators": 20}, "acquisition": {"kind": "ucb", "q": 5, "prefilter": 200},
    "initial": {"n": 10}, "stop": {"budget": 25},
}  # fmt: skip


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return synthetic_pool(tmp_path_factory.mktemp("pool"), 4000, 1000, n_features=6)


def in_memory(pool) -> Pool:
    return Pool(ids=pool.ids[:], X=pool.X[:], labels=pool.labels.copy(), feature_names=pool.feature_names,
                feature_kinds=pool.feature_kinds)  # fmt: skip


def test_the_pool_reads_rows_ids_and_labels_from_its_shards(sharded):
    assert len(sharded) == 4000 and sharded.X.shape == (4000, 6) and sharded.X.n_shards == 4
    rows = np.array([3999, 0, 1500, 1000])
    assert sharded.ids[rows].tolist() == ["c3999", "c0", "c1500", "c1000"]
    np.testing.assert_array_equal(sharded.index_of(["c1500", "c0"]), [1500, 0])
    np.testing.assert_allclose(sharded.labels["objective"].to_numpy()[rows], objective(sharded.X[rows]), rtol=1e-6)
    assert sharded.known(["c5", "nope"]) == {"c5"}
    with pytest.raises(KeyError, match="nope"):
        sharded.index_of(["c1", "nope"])


def test_sharded_selection_equals_in_memory_selection(sharded):
    records = []
    for pool in (sharded, in_memory(sharded)):
        with Campaign.create(None, parse_spec(SPEC), pool) as campaign:
            campaign.run(progress=False)
            records.append(campaign.store.selections()[["id", "round", "mean", "variance", "acquisition"]])
    pd.testing.assert_frame_equal(*records)


def test_ask_tell_works_on_a_sharded_pool(sharded):
    with Campaign.create(None, parse_spec(SPEC | {"oracle": {"kind": "asktell"}}), sharded) as campaign:
        for _ in range(3):
            batch = campaign.ask()
            with pytest.raises(DataError, match="unknown id"):
                campaign.tell(["nope"], [1.0])
            campaign.tell(batch["id"], objective(sharded.X[sharded.index_of(batch["id"])]))
        assert len(campaign.store.measurements()) == 20


def test_a_campaign_runs_within_a_memory_bound_far_below_the_pool_features(tmp_path):
    pool = synthetic_pool(tmp_path / "big", 200_000, 5_000, n_features=32)
    features_bytes = pool.X.shape[0] * pool.X.shape[1] * 4  # 25.6 MB
    limit = features_bytes // 4
    tracemalloc.start()
    try:
        with Campaign.create(None, parse_spec(SPEC | {"stop": {"budget": 20}}), pool) as campaign:
            campaign.run(progress=False)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        whole = pool.X[:]  # control: tracemalloc sees NumPy buffers, and the whole X is over the limit
        control = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(whole) == 200_000 and control > limit
    assert peak < limit, f"peak {peak / 1e6:.1f} MB with features of {features_bytes / 1e6:.1f} MB"


FEATURIZE = """
import sys
from activescope.chem.sharded import featurize_file
from activescope.engine.shards import process_mapper
featurize_file(sys.argv[1], sys.argv[2], ["rdkit2d"], shard_rows=25, id_column="id",
               mapper=process_mapper(int(sys.argv[3])), progress=False)
"""


def test_a_killed_featurization_resumes_keeping_finished_shards(tmp_path, small_pool):
    from activescope.chem.sharded import featurize_file
    from activescope.engine.shards import finished_shards, process_mapper, shard_dir

    smiles = tmp_path / "mols.csv"
    frame = pd.DataFrame({"id": small_pool.ids[:250], "smiles": small_pool.info["smiles"][:250],
                          "mu": small_pool.labels["Dipole_debye"][:250]})  # fmt: skip
    frame.to_csv(smiles, index=False)
    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", FEATURIZE, str(smiles), str(killed), "1"])
    deadline = time.monotonic() + 60
    while len(finished_shards(killed)) < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = {i: shard_dir(killed, i).stat().st_mtime_ns for i in finished_shards(killed)}
    assert 2 <= len(kept) < 10 and not (killed / "manifest.json").exists()
    resumed = featurize_file(smiles, killed, ["rdkit2d"], shard_rows=25, id_column="id", mapper=process_mapper(1), progress=False)
    assert {i: shard_dir(killed, i).stat().st_mtime_ns for i in kept} == kept  # finished shards were not redone
    whole = featurize_file(smiles, tmp_path / "whole", ["rdkit2d"], shard_rows=25, id_column="id", progress=False)
    assert resumed.ids[:].tolist() == whole.ids[:].tolist() == frame["id"].tolist()
    np.testing.assert_array_equal(resumed.X[:], whole.X[:])
    np.testing.assert_array_equal(resumed.labels["mu"].to_numpy(), frame["mu"].to_numpy())
    with pytest.raises(DataError, match="other settings"):
        featurize_file(smiles, killed, ["rdkit2d"], shard_rows=50, id_column="id", progress=False)
