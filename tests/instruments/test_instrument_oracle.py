"""The instrument oracle and whole campaigns on instruments: streaming measurements, errors, and
short automated experiments on BEPS playback, in process and over HTTP with faults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activescope.engine.campaign import Campaign
from activescope.engine.errors import SpecError
from activescope.engine.oracle import build_oracle
from activescope.engine.pool import Pool, build_pool
from activescope.engine.scalarizers import build_scalarizer
from activescope.engine.spec import load_spec
from activescope.instruments.faults import Faults
from activescope.instruments.oracle import InstrumentOracle
from activescope.instruments.playback import beps_playback
from activescope.instruments.protocol import BudgetExhausted

BEPS_SECTION = {"kind": "playback", "path": "data/beps_pto_50x50.h5", "cube": "Channel_000/generic/generic",
                "dims": "xyn", "axis": "Channel_000/generic/Voltage", "axis_name": "voltage", "axis_unit": "V",
                "x": "Channel_000/generic/X", "overview": "mean"}


def _spec(instrument: dict) -> dict:
    return {"name": "beps-tiny", "seed": 0, "instrument": instrument,
            "data": {"source": "probe_grid", "step": 5, "window": 3},
            "target": {"column": "loop_area", "goal": "maximize"}, "model": {"kind": "rf"},
            "acquisition": {"kind": "ucb", "q": 5}, "initial": {"n": 10},
            "oracle": {"kind": "instrument", "scalarizer": "loop_area"}, "stop": {"budget": 25}}


def test_measurements_stream_one_acquisition_at_a_time(data_dir):
    instrument = beps_playback(data_dir / "beps_pto_50x50.h5")
    pool = build_pool("probe_grid", instrument=instrument, step=10, window=3)
    oracle = build_oracle("instrument", {}, pool, None, instrument)
    assert isinstance(oracle, InstrumentOracle) and not oracle.interactive
    ids = ["x10_y20", "x0_y40", "x30_y0"]
    stream = oracle.measure_each(ids)
    first = next(stream)
    assert instrument.state().acquisitions == 1  # nothing else measured before the first is handed over
    rest = list(stream)
    assert [m.id for m in [first, *rest]] == ids
    for m in [first, *rest]:
        col, row = (int(part[1:]) for part in m.id.split("_"))
        np.testing.assert_array_equal(m.raw, np.vstack([instrument.axis, instrument.cube[row, col]]))
        assert m.error is None and m.value is None
    assert [m.id for m in oracle.measure(ids)] == ids


def test_the_oracle_needs_an_instrument_and_positions(beps):
    pool = build_pool("probe_grid", instrument=beps, step=25, window=3)
    with pytest.raises(SpecError, match="instrument: section"):
        build_oracle("instrument", {}, pool, None, None)
    plain = Pool.from_frame(pd.DataFrame({"f": [1.0, 2.0]}), features=["f"])
    with pytest.raises(SpecError, match="x_nm, y_nm"):
        build_oracle("instrument", {}, plain, None, beps)
    with pytest.raises(SpecError, match="oracle.drift_every"):
        build_oracle("instrument", {"drift_every": -1}, pool, None, beps)


def test_a_position_outside_the_field_fails_that_measurement_only(beps):
    pool = build_pool("probe_grid", instrument=beps, step=25, window=3)
    pool.info.loc[0, "x_nm"] = -500.0
    results = InstrumentOracle(pool, None, beps).measure(list(pool.ids[:2]))
    assert "outside the field of view" in results[0].error and results[1].error is None


def test_a_spent_budget_stops_the_batch(data_dir):
    instrument = beps_playback(data_dir / "beps_pto_50x50.h5", max_acquisitions=2)
    pool = build_pool("probe_grid", instrument=instrument, step=10, window=3)
    stream = InstrumentOracle(pool, None, instrument).measure_each(list(pool.ids[:3]))
    assert len([next(stream), next(stream)]) == 2
    with pytest.raises(BudgetExhausted):
        next(stream)


def test_a_short_experiment_on_beps_playback_records_every_spectrum(monkeypatch, data_dir):
    monkeypatch.chdir(data_dir.parent)
    with Campaign.create(None, _spec(BEPS_SECTION)) as campaign:
        campaign.run(progress=False)
        measured = campaign.store.measurements()
        assert len(measured) == 25 and measured.id.is_unique and (measured.status == "measured").all()
        area = build_scalarizer("loop_area")
        for row in measured.itertuples():
            raw = campaign.store.raw(row.id)
            assert raw.shape == (2, 64) and row.value == pytest.approx(area(raw))
        assert campaign.instrument.state().acquisitions == 25


def test_the_same_experiment_runs_over_http_with_faults_and_measures_nothing_twice(monkeypatch, data_dir, serve, token):
    monkeypatch.chdir(data_dir.parent)
    served = beps_playback(data_dir / "beps_pto_50x50.h5", overview="mean")
    server = serve(served, faults=Faults(drop_every=4, corrupt_every=7))
    monkeypatch.setenv("ACTIVESCOPE_TWIN_TOKEN", token)
    remote_spec = _spec({"kind": "remote", "url": server.url, "backoff_s": 0.01})
    with Campaign.create(None, remote_spec) as remote, Campaign.create(None, _spec(BEPS_SECTION)) as local:
        remote.run(progress=False)
        local.run(progress=False)
        assert remote.store.measurements().id.tolist() == local.store.measurements().id.tolist()
        np.testing.assert_allclose(remote.store.training_data()[1], local.store.training_data()[1])
    assert served.state().acquisitions == 25


def test_the_examples_are_valid_specs(data_dir):
    for name in ("twin_eels.yaml", "beps_playback.yaml"):
        spec = load_spec(data_dir.parent / "examples" / name)
        assert spec.data.source == "probe_grid" and spec.oracle.kind == "instrument"
        assert spec.instrument is not None and spec.model.kind == "dkl"
