"""The protocol-conformance suite: every back end (twin, BEPS playback, npz cube playback, fake
vendor, remote twin over real HTTP) behaves the same way under the same requests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activescope.instruments.protocol import (BudgetExhausted, Instrument, InstrumentError, InvalidSettings,
                                              OutOfField, Settings)


def _centre(instrument: Instrument) -> tuple[float, float]:
    g = instrument.describe().geometry
    x, y = g.to_nm((g.shape[1] - 1) / 2.0, (g.shape[0] - 1) / 2.0)
    return float(x), float(y)


def test_implements_the_protocol(make_instrument):
    instrument = make_instrument()
    assert isinstance(instrument, Instrument)
    info = instrument.describe()
    low, high = info.dwell_range_s
    assert 0 < low <= info.default_dwell_s <= high
    assert info.channels > 0 and info.geometry.pixel_nm > 0
    assert info.axis_name and isinstance(info.axis_unit, str)


def test_overview_matches_the_geometry(make_instrument):
    instrument = make_instrument()
    first = instrument.overview()
    second = instrument.overview()
    info = instrument.describe()
    assert first.image.ndim == 2 and first.image.shape == info.geometry.shape
    assert first.geometry == info.geometry
    assert np.isfinite(first.image).all() and first.image.std() > 0
    assert second.elapsed_s >= first.elapsed_s


def test_acquire_returns_a_spectrum_with_its_axis_and_accounts_for_it(make_instrument):
    instrument = make_instrument()
    info = instrument.describe()
    before = instrument.state()
    x, y = _centre(instrument)
    spectrum = instrument.acquire(x, y)
    after = instrument.state()
    assert spectrum.values.shape == spectrum.axis.shape == (info.channels,)
    assert np.isfinite(spectrum.values).all() and np.isfinite(spectrum.axis).all()
    assert spectrum.as_raw().shape == (2, info.channels)
    np.testing.assert_array_equal(spectrum.as_raw()[0], spectrum.axis)
    assert (spectrum.axis_name, spectrum.axis_unit, spectrum.unit) == (info.axis_name, info.axis_unit, info.unit)
    assert (spectrum.x_nm, spectrum.y_nm) == pytest.approx((x, y))
    assert spectrum.dwell_s == pytest.approx(info.default_dwell_s)
    assert after.acquisitions == before.acquisitions + 1
    assert after.position_nm == pytest.approx((x, y))
    assert after.elapsed_s >= before.elapsed_s + info.default_dwell_s - 1e-12
    assert spectrum.elapsed_s == pytest.approx(after.elapsed_s)
    assert after.dose_e >= before.dose_e


def test_every_corner_of_the_field_of_view_is_reachable(make_instrument):
    instrument = make_instrument()
    x_min, x_max, y_min, y_max = instrument.describe().geometry.extent_nm
    for x, y in [(x_min, y_min), (x_max, y_min), (x_min, y_max), (x_max, y_max)]:
        assert instrument.acquire(x, y).values.size > 0
    assert instrument.state().acquisitions == 4


@pytest.mark.parametrize("where", ["left", "right", "above", "below", "nan", "inf"])
def test_positions_outside_the_field_of_view_are_refused_without_measuring(make_instrument, where):
    instrument = make_instrument()
    x_min, x_max, y_min, y_max = instrument.describe().geometry.extent_nm
    x, y = _centre(instrument)
    pixel = instrument.describe().geometry.pixel_nm
    x, y = {"left": (x_min - pixel, y), "right": (x_max + pixel, y), "above": (x, y_min - pixel),
            "below": (x, y_max + pixel), "nan": (math.nan, y), "inf": (x, math.inf)}[where]
    with pytest.raises(OutOfField) as err:
        instrument.acquire(x, y)
    assert "\n" not in str(err.value)
    assert instrument.state().acquisitions == 0


@pytest.mark.parametrize("dwell", ["zero", "negative", "too_long", "nan"])
def test_bad_dwell_times_are_refused_without_measuring(make_instrument, dwell):
    instrument = make_instrument()
    high = instrument.describe().dwell_range_s[1]
    value = {"zero": 0.0, "negative": -1.0, "too_long": high * 2 + 1.0, "nan": math.nan}[dwell]
    with pytest.raises(InvalidSettings):
        instrument.acquire(*_centre(instrument), Settings(dwell_s=value))
    assert instrument.state().acquisitions == 0


def test_the_acquisition_budget_is_enforced_before_measuring(make_instrument):
    instrument = make_instrument(max_acquisitions=2)
    x, y = _centre(instrument)
    instrument.acquire(x, y)
    instrument.acquire(x, y)
    with pytest.raises(BudgetExhausted, match="acquisition budget"):
        instrument.acquire(x, y)
    assert isinstance(BudgetExhausted("x"), InstrumentError)
    state = instrument.state()
    assert state.acquisitions == 2 and state.budget.acquisitions == 2


def test_the_same_requests_give_the_same_answers(make_instrument):
    first, second = make_instrument(), make_instrument()
    g = first.describe().geometry
    xs, ys = g.to_nm([0, 3, g.shape[1] - 1], [1, g.shape[0] - 1, 2])
    for instrument in (first, second):
        instrument.overview()
    a = [first.acquire(x, y).values for x, y in zip(xs, ys)]
    b = [second.acquire(x, y).values for x, y in zip(xs, ys)]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(first.overview().image, second.overview().image)
