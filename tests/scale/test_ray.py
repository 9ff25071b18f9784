"""Scale-out on a local Ray (2 CPUs, started once for this module): a benchmark grid gives the
serial grid's results and resumes; Ray actors shortlist a sharded pool exactly as the serial
shard loop does, also when one of them is killed mid-round."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pandas as pd
import pytest

from activescope.bench import run_bench
from activescope.engine.acquisition import build_acquisition
from activescope.engine.campaign import Campaign
from activescope.engine.spec import AcquisitionSpec, parse_spec
from activescope.engine.store import Store
from activescope.scale.synthetic import synthetic_pool

GRID = {"rf-ucb": {"model": {"kind": "rf", "n_estimators": 20}, "acquisition": {"kind": "ucb"}},
        "random": {"acquisition": {"kind": "random"}}}  # fmt: skip
TARGETS = [("Dipole_debye", None), ("HOMO_LUMO_gap_au", "minimize")]
SHARDED = {
    "name": "sharded", "seed": 5, "target": {"column": "objective", "goal": "maximize"},
    "model": {"kind": "rf", "n_estimators": 20}, "acquisition": {"kind": "ucb", "q": 5, "prefilter": 200},
    "initial": {"n": 10}, "stop": {"budget": 25},
}  # fmt: skip


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from activescope.scale.grid import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_grid_matches_the_serial_grid_and_a_rerun_resumes(tmp_path, spec_dict, small_pool, local_ray):
    from activescope.scale.grid import ray_runner

    spec_dict["stop"]["budget"] = 30
    spec = parse_spec(spec_dict)
    serial = run_bench(spec, GRID, [0], tmp_path / "serial", progress=False, pool=small_pool, targets=TARGETS)
    on_ray = run_bench(spec, GRID, [0], tmp_path / "ray", progress=False, pool=small_pool, targets=TARGETS,
                       runner=ray_runner())  # fmt: skip
    same = ["target", "strategy", "seed", "n_measured", "top100_recall", "top1pct_recall", "best_value"]
    assert len(on_ray) == 4
    pd.testing.assert_frame_equal(serial[same], on_ray[same])
    for a, b in zip(serial["run_dir"], on_ray["run_dir"]):
        with Store.open(a) as one, Store.open(b) as other:
            pd.testing.assert_frame_equal(one.selections()[["id", "round", "mean"]], other.selections()[["id", "round", "mean"]])
    assert (tmp_path / "ray" / "summary.md").exists() and (tmp_path / "ray" / "HOMO_LUMO_gap_au" / "results.md").exists()
    rounds_before = {d: Store.open(d).n_rounds() for d in on_ray["run_dir"]}
    again = run_bench(spec, GRID, [0], tmp_path / "ray", progress=False, pool=small_pool, targets=TARGETS,
                      runner=ray_runner())  # fmt: skip
    pd.testing.assert_frame_equal(again[same], on_ray[same])
    assert {d: Store.open(d).n_rounds() for d in again["run_dir"]} == rounds_before  # nothing was re-run


def test_featurization_on_ray_tasks_equals_the_process_pool(tmp_path, small_pool, local_ray):
    # before the module-scoped actors exist: they hold both of the local Ray's CPUs
    from activescope.chem.sharded import featurize_file
    from activescope.engine.shards import process_mapper
    from activescope.scale.grid import ray_mapper

    smiles = tmp_path / "mols.csv"
    pd.DataFrame({"id": small_pool.ids[:120], "smiles": small_pool.info["smiles"][:120]}).to_csv(smiles, index=False)
    on_ray = featurize_file(smiles, tmp_path / "ray", ["morgan"], shard_rows=30, id_column="id", mapper=ray_mapper(), progress=False)
    local = featurize_file(smiles, tmp_path / "local", ["morgan"], shard_rows=30, id_column="id", mapper=process_mapper(1), progress=False)
    assert on_ray.ids[:].tolist() == local.ids[:].tolist() == small_pool.ids[:120].tolist()
    np.testing.assert_array_equal(on_ray.X[:], local.X[:])
    assert on_ray.X[:].sum() > 0  # real fingerprints, not an empty block


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return synthetic_pool(tmp_path_factory.mktemp("pool"), 8000, 1000, n_features=6)


@pytest.fixture(scope="module")
def actors(sharded, local_ray):
    """Two Ray actors holding the sharded pool's shards (killed at the end of the module)."""
    from activescope.scale.actors import RayShards

    executor = RayShards(sharded.X, workers=2)
    yield executor
    for actor in executor.actors:
        local_ray.kill(actor)


def test_ray_actors_shortlist_like_the_serial_loop_even_when_one_is_killed_mid_round(sharded, actors, local_ray):
    from activescope.engine.shards import SerialShards
    from activescope.models.ensemble import RandomForestSurrogate

    train = np.arange(0, 8000, 200)
    model = RandomForestSurrogate(n_estimators=20).fit(sharded.X[train], sharded.labels["objective"].to_numpy()[train])
    available = np.ones(len(sharded), bool)
    available[train] = False
    acquisition = build_acquisition(AcquisitionSpec(kind="ucb"))
    rngs = np.random.default_rng(0).spawn(sharded.X.n_shards)
    expected = SerialShards().shortlist(sharded.X, model, available, acquisition, 1.0, 50, rngs)
    first = actors.shortlist(sharded.X, model, available, acquisition, 1.0, 50, rngs)
    pid = local_ray.get(actors.actors[0].pid.remote())
    killer = threading.Timer(0.01, os.kill, (pid, signal.SIGKILL))
    killer.start()  # kills the worker while the round's calls run
    retried = actors.shortlist(sharded.X, model, available, acquisition, 1.0, 50, rngs)
    killer.join()
    assert local_ray.get(actors.actors[0].pid.remote()) != pid  # the actor was restarted
    for got in (first, retried):
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_a_campaign_on_ray_actors_records_what_the_serial_campaign_records(sharded, actors, local_ray):
    from activescope.engine.shards import SerialShards

    with Campaign.create(None, parse_spec(SHARDED), sharded) as serial:
        serial.run(progress=False)
        expected = serial.store.selections()
    sharded.X.executor = actors
    try:
        with Campaign.create(None, parse_spec(SHARDED), sharded) as campaign:
            campaign.step()  # initial design
            campaign.step()  # first modelled round on the actors
            os.kill(local_ray.get(actors.actors[1].pid.remote()), signal.SIGKILL)  # the next round's call is retried
            campaign.run(progress=False)
            pd.testing.assert_frame_equal(campaign.store.selections(), expected)
    finally:
        sharded.X.executor = SerialShards()

