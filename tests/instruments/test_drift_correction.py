"""Drift estimation recovers known shifts, and the instrument oracle's drift correction keeps the
probe on the same sample feature while the twin's stage drifts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from activescope.instruments.drift import DriftTracker, estimate_drift
from activescope.instruments.oracle import InstrumentOracle
from activescope.instruments.protocol import Geometry, Overview
from activescope.instruments.sources import probe_grid


def _view(base: np.ndarray, dx_px: float, dy_px: float) -> Overview:
    """A 96 x 96 overview of `base` after the sample drifted by (dx_px, dy_px) pixels."""
    rows, cols = np.mgrid[32:128, 32:128].astype(float)
    image = ndimage.map_coordinates(base, [rows + dy_px, cols + dx_px], order=3)
    return Overview(image=image.astype(np.float32), geometry=Geometry((96, 96), 0.5))


@pytest.mark.parametrize("dx_px, dy_px", [(3.4, -2.2), (-11.7, 6.3), (0.0, 0.0)])
def test_a_known_sub_pixel_shift_is_recovered(dx_px, dy_px):
    base = ndimage.gaussian_filter(np.random.default_rng(2).normal(size=(160, 160)), 3.0)
    drift = estimate_drift(_view(base, 0.0, 0.0), _view(base, dx_px, dy_px))
    np.testing.assert_allclose(drift, np.array([dx_px, dy_px]) * 0.5, atol=0.05 * 0.5)


def test_the_drift_of_the_twin_is_recovered_from_its_overviews(small_twin):
    twin = small_twin(size=96, drift_velocity_nm_s=(0.02, -0.012))
    reference = twin.overview()
    for _ in range(150):
        twin.acquire(1.0, 1.0)
    moving = twin.overview()
    half = twin.options.overview_s / 2.0
    truth = twin.drift(moving.elapsed_s - half) - twin.drift(reference.elapsed_s - half)
    assert np.abs(truth).max() > 5 * twin.options.pixel_nm
    np.testing.assert_allclose(estimate_drift(reference, moving), truth, atol=0.5 * twin.options.pixel_nm)


def test_the_tracker_extrapolates_linearly_between_estimates(small_twin):
    tracker = DriftTracker(small_twin(), extrapolate=True)
    tracker.history = [(10.0, np.array([0.0, 0.0])), (20.0, np.array([0.1, -0.2]))]
    np.testing.assert_allclose(tracker.drift_at(25.0), [0.15, -0.3])
    assert tracker.correct(1.0, 1.0, 25.0) == pytest.approx((0.85, 1.3))
    tracker.extrapolate = False
    np.testing.assert_allclose(tracker.drift_at(25.0), [0.1, -0.2])


def _landing_errors(twin, drift_every: int) -> np.ndarray:
    """Distance (pixels) between where the beam landed and the feature the candidate showed when
    the reference was taken, over 60 acquisitions of one candidate."""
    pool = probe_grid(step=8, window=5, instrument=twin)  # its overview is the drift reference
    reference_t = twin.state().elapsed_s - twin.options.overview_s / 2.0
    oracle = InstrumentOracle(pool, None, twin, drift_every=drift_every)
    target = pool.info.iloc[pool.index_of(["x48_y48"])[0]]
    intended = np.array([target.x_nm, target.y_nm]) + twin.drift(reference_t)
    errors = []
    for m in oracle.measure_each(["x48_y48"] * 60):
        assert m.error is None
        state = twin.state()
        landed = np.array(state.position_nm) + twin.drift(state.elapsed_s - twin.options.dwell_s / 2.0)
        errors.append(np.hypot(*(landed - intended)) / twin.options.pixel_nm)
    return np.array(errors)


def test_drift_correction_keeps_the_probe_on_the_same_feature(small_twin):
    options = dict(size=96, drift_velocity_nm_s=(0.03, -0.02), drift_walk_nm=0.002)
    uncorrected = _landing_errors(small_twin(**options), drift_every=0)
    corrected = _landing_errors(small_twin(**options), drift_every=10)
    assert uncorrected[-1] > 5.0  # pixels: the feature moved away
    # until the first correction (after 10 acquisitions) nothing is known about the drift; from
    # then on the probe stays within a pixel of the feature
    assert corrected[10:].max() < 1.0 and corrected[-1] < 0.5


def test_a_position_drifted_out_of_reach_fails_once_and_triggers_no_overview(small_twin):
    from activescope.engine.oracle import measure_with_retries

    twin = small_twin(size=96, drift_velocity_nm_s=(0.0, 0.0), drift_walk_nm=0.0)
    pool = probe_grid(step=8, window=5, instrument=twin)
    oracle = InstrumentOracle(pool, None, twin, drift_every=3)
    oracle.tracker.update()
    oracle.tracker.correct = lambda x, y, t: (x + 1e3, y)  # everything now lies outside the field of view
    scans_before = twin.state().elapsed_s
    results, attempts = measure_with_retries(oracle, list(pool.ids[:6]), max_retries=2)
    assert attempts == [1] * 6 and all("field of view" in m.error for m in results)
    assert twin.state().acquisitions == 0 and twin.state().elapsed_s == scans_before  # no spectrum, no extra overview


def test_reachable_offers_exactly_the_candidates_still_in_the_field_of_view(small_twin):
    twin = small_twin(size=96, drift_velocity_nm_s=(0.2, 0.1), drift_walk_nm=0.0)
    pool = probe_grid(step=4, window=5, instrument=twin)
    oracle = InstrumentOracle(pool, None, twin, drift_every=5)
    assert oracle.reachable().all()  # nothing is known about the drift yet
    list(oracle.measure_each(["x48_y48"] * 6))  # the sixth acquisition follows a drift estimate
    reachable = oracle.reachable()
    assert 0 < reachable.sum() < len(pool)
    far, near = pool.ids[~reachable][:3], pool.ids[reachable][:3]
    results = oracle.measure(list(far) + list(near))
    assert [m.error is None for m in results] == [False] * 3 + [True] * 3
    assert InstrumentOracle(pool, None, twin).reachable().all()  # no drift correction: all in reach



def _failed_out_of_reach(skip_unreachable: bool) -> tuple[int, int, str | None]:
    """(measurements, failures out of the field of view, stop reason) of a random-scan campaign on
    a twin drifting 0.6 nm in 20 s across its 1.2 nm field, corrected every 4 spectra."""
    from activescope.engine.campaign import Campaign
    from activescope.engine.spec import parse_spec

    spec = {"name": "drifting", "seed": 0,
            "instrument": {"kind": "twin", "seed": 3, "size": 48, "channels": 64, "latency_s": 0.0, "dwell_s": 0.2,
                           "drift_velocity_nm_s": [0.03, 0.015], "drift_walk_nm": 0.0},
            "data": {"source": "probe_grid", "step": 3, "window": 5},
            "target": {"column": "plasmon_peak_ev", "goal": "maximize"}, "model": {"kind": "rf"},
            "acquisition": {"kind": "random", "q": 8}, "initial": {"n": 8},
            "oracle": {"kind": "instrument", "scalarizer": "peak_position", "drift_every": 4, "max_retries": 0,
                       "skip_unreachable": skip_unreachable},
            "stop": {"budget": 120}}
    with Campaign.create(None, parse_spec(spec, origin="test")) as campaign:
        campaign.run(progress=False)
        errors = campaign.store.measurements()["error"].fillna("")
        return len(errors), int(errors.str.contains("field of view").sum()), campaign.stop_reason()


def test_a_drifting_campaign_offers_only_candidates_in_reach_and_stops_when_none_is_left():
    n_skip, failed_skip, reason_skip = _failed_out_of_reach(skip_unreachable=True)
    n_all, failed_all, reason_all = _failed_out_of_reach(skip_unreachable=False)
    assert reason_all == "budget" and failed_all > 20  # tried and failed: budget wasted
    assert reason_skip == "no reachable candidate" and n_skip < n_all
    assert failed_skip * 4 < failed_all


def test_the_beam_shift_reaches_beyond_the_overview_and_no_further(small_twin, serve, token):
    from activescope.instruments.client import RemoteInstrument
    from activescope.instruments.protocol import OutOfField

    twin = small_twin(beam_shift_nm=0.2)
    x_min, x_max, y_min, y_max = twin.describe().geometry.extent_nm
    assert twin.acquire(x_min - 0.19, y_max + 0.19).values.sum() > 0  # beyond the overview, within reach
    with pytest.raises(OutOfField, match="0.2 nm the beam reaches"):
        twin.acquire(x_max + 0.21, y_min)
    assert twin.state().acquisitions == 1
    server = serve(small_twin(beam_shift_nm=0.2))
    remote = RemoteInstrument(server.url, token)  # the reach travels with the geometry
    assert remote.describe().geometry.reach_nm == pytest.approx(0.2)
    assert remote.overview().geometry.reach_nm == pytest.approx(0.2)
    remote.close()
    with pytest.raises(ValueError, match="margin"):
        small_twin(beam_shift_nm=1.0)  # the simulated sample ends 12 pixels (0.3 nm) beyond the field of view


def test_with_a_beam_shift_drift_correction_follows_features_out_of_the_overview(small_twin):
    def in_reach(beam_shift_nm: float) -> int:
        twin = small_twin(size=96, drift_velocity_nm_s=(0.2, 0.1), drift_walk_nm=0.0, beam_shift_nm=beam_shift_nm)
        pool = probe_grid(step=4, window=5, instrument=twin)
        oracle = InstrumentOracle(pool, None, twin, drift_every=5)
        list(oracle.measure_each(["x48_y48"] * 6))
        reachable = oracle.reachable()
        results = oracle.measure(list(pool.ids[reachable][-4:]))  # the edge the drift pushes out first
        assert all(m.error is None for m in results)
        return int(reachable.sum())

    assert in_reach(0.0) < in_reach(0.5) <= 24 * 24
