"""A short automated experiment on BEPS playback: a GP-driven campaign finds more of the top 1 %
loop-area positions than random on the same seed, measures no position twice and stores every
raw loop; the benchmark ground-truth helpers agree with the instruments they describe."""

from __future__ import annotations

import numpy as np
import pytest

from activescope.engine.campaign import Campaign
from activescope.engine.metrics import top_fraction_k
from activescope.engine.pool import build_pool
from activescope.engine.scalarizers import build_scalarizer
from activescope.instruments.playback import beps_playback
from activescope.instruments.protocol import Settings
from activescope.instruments.sources import positions
from activescope.instruments.truth import candidate_truth, playback_truth, twin_truth
from activescope.instruments.twin import DigitalTwin, TwinOptions

BUDGET = 60


def _spec(data_dir, acquisition: dict) -> dict:
    """examples/beps_playback.yaml with a GP, 20 random initial loops and 60 measurements."""
    return {
        "name": "beps-vs-random", "seed": 0,
        "instrument": {"kind": "playback", "path": str(data_dir / "beps_pto_50x50.h5"),
                       "cube": "Channel_000/generic/generic", "dims": "xyn", "axis": "Channel_000/generic/Voltage",
                       "axis_name": "voltage", "axis_unit": "V", "x": "Channel_000/generic/X", "overview": "mean"},
        "data": {"source": "probe_grid", "step": 1, "window": 5},
        "target": {"column": "loop_area", "goal": "maximize"},
        "model": {"kind": "gp"},
        "acquisition": acquisition,
        "initial": {"n": 20, "method": "random"},
        "oracle": {"kind": "instrument", "scalarizer": "loop_area"},
        "stop": {"budget": BUDGET},
    }


def _run(spec: dict) -> tuple[Campaign, np.ndarray, np.ndarray]:
    """Run a campaign to its budget; returns it (open) with the ground truth and the measured rows."""
    campaign = Campaign.create(None, spec)
    campaign.run(progress=False)
    truth = playback_truth(campaign.instrument, campaign.pool)
    rows = campaign.pool.index_of(campaign.store.measurements()["id"])
    return campaign, truth, rows


def test_a_gp_campaign_on_beps_beats_random_on_the_same_seed(data_dir):
    model, truth, rows = _run(_spec(data_dir, {"kind": "ei", "q": 5}))
    random, random_truth, random_rows = _run(_spec(data_dir, {"kind": "random", "q": 5}))
    try:
        np.testing.assert_array_equal(truth, random_truth)
        threshold = np.sort(truth)[-top_fraction_k(len(truth))]  # 25th largest of 2,500 loop areas
        hits, random_hits = int((truth[rows] >= threshold).sum()), int((truth[random_rows] >= threshold).sum())
        # both start from the same 20 random loops; the model then finds top-1 % loops, random hardly any
        assert set(rows[:20]) == set(random_rows[:20])
        assert hits >= random_hits + 3, (hits, random_hits)  # 7 against 1 when written
        assert truth[rows].max() > truth[random_rows].max()

        for campaign, measured_rows in ((model, rows), (random, random_rows)):
            measured = campaign.store.measurements()
            instrument = campaign.instrument
            # every position measured once, and only once on the instrument too
            assert len(measured) == BUDGET and measured["id"].is_unique and (measured["status"] == "measured").all()
            assert instrument.state().acquisitions == BUDGET
            cells = set(zip(campaign.pool.info["row"].to_numpy()[measured_rows], campaign.pool.info["col"].to_numpy()[measured_rows], strict=False))
            assert len(cells) == BUDGET
            # every measurement's raw loop is stored: the recorded loop at that grid point, on its voltage axis
            area = build_scalarizer("loop_area")
            for row in measured.itertuples():
                raw = campaign.store.raw(row.id)
                col, grid_row = (int(part[1:]) for part in row.id.split("_"))
                np.testing.assert_array_equal(raw, np.vstack([instrument.axis, instrument.cube[grid_row, col]]))
                assert row.value == pytest.approx(area(raw))
    finally:
        model.close()
        random.close()


def test_playback_truth_is_the_scalarized_recorded_loop_of_every_candidate(data_dir):
    instrument = beps_playback(data_dir / "beps_pto_50x50.h5", overview="mean")
    pool = build_pool("probe_grid", instrument=instrument, step=3, window=3)
    truth = playback_truth(instrument, pool)
    assert truth.shape == (len(pool),)
    area, width = build_scalarizer("loop_area"), build_scalarizer("coercive_width")
    rows, cols = pool.info["row"].to_numpy(), pool.info["col"].to_numpy()
    loops = [np.vstack([instrument.axis, instrument.cube[r, c]]) for r, c in zip(rows, cols, strict=False)]
    np.testing.assert_allclose(truth, [area(loop) for loop in loops], rtol=1e-12)
    np.testing.assert_allclose(playback_truth(instrument, pool, width), [width(loop) for loop in loops])
    np.testing.assert_array_equal(candidate_truth(instrument, pool), truth)


def test_twin_truth_is_what_a_long_dwell_measures_without_drift():
    twin = DigitalTwin(TwinOptions(seed=1, size=48, channels=256, latency_s=0.0, drift_velocity_nm_s=(0.0, 0.0),
                                   drift_walk_nm=0.0))
    pool = build_pool("probe_grid", instrument=twin, step=6, window=5)
    peak = build_scalarizer("peak_position", {"low": 12.0, "high": 32.0, "smooth": 9})
    truth = twin_truth(twin, pool, peak)
    assert truth.shape == (len(pool),) and np.isfinite(truth).all() and truth.std() > 0.5
    xs, ys = positions(pool, pool.ids[:12])
    long_dwell = [peak(twin.acquire(float(x), float(y), Settings(dwell_s=10.0)).as_raw()) for x, y in zip(xs, ys, strict=False)]
    np.testing.assert_allclose(long_dwell, truth[:12], atol=0.3)  # shot noise at 1e6 counts, 0.16 eV channels
    with pytest.raises(TypeError, match="scalarizer"):
        candidate_truth(twin, pool)
