"""Spectrum and loop scalarizers on synthetic signals with known answers, and on real loops."""

from __future__ import annotations

import numpy as np
import pytest

from activescope.engine.errors import SpecError
from activescope.engine.registry import SCALARIZERS
from activescope.engine.scalarizers import build_scalarizer

E = np.linspace(0.0, 40.0, 801)  # eV, 0.05 eV channels


def gaussian(centre: float, sigma: float, height: float) -> np.ndarray:
    return height * np.exp(-0.5 * ((E - centre) / sigma) ** 2)


def spectrum(*peaks: tuple[float, float, float], baseline: float = 0.0) -> np.ndarray:
    return np.vstack([E, baseline + sum(gaussian(*p) for p in peaks)])


def test_band_integral_integrates_over_the_energy_window():
    raw = spectrum((12.0, 1.0, 3.0), (30.0, 0.5, 10.0))
    whole_first = 3.0 * 1.0 * np.sqrt(2 * np.pi)
    assert build_scalarizer("band_integral", {"low": 5.0, "high": 20.0})(raw) == pytest.approx(whole_first, rel=1e-6)
    assert build_scalarizer("band_integral", {"low": 12.0, "high": 40.0})(raw) == pytest.approx(
        whole_first / 2 + 10.0 * 0.5 * np.sqrt(2 * np.pi), rel=1e-4)
    assert np.isnan(build_scalarizer("band_integral", {"low": 100.0, "high": 200.0})(raw))  # an empty window


def test_peak_position_finds_the_sub_channel_maximum():
    raw = spectrum((17.3123, 2.0, 5.0), (33.0, 0.5, 9.0))
    assert build_scalarizer("peak_position", {"low": 10.0, "high": 25.0})(raw) == pytest.approx(17.3123, abs=2e-3)
    assert build_scalarizer("peak_position", {})(raw) == pytest.approx(33.0, abs=2e-3)
    noisy = raw.copy()
    noisy[1] += np.random.default_rng(0).normal(0.0, 0.05, E.size)
    assert build_scalarizer("peak_position", {"low": 10.0, "high": 25.0, "smooth": 21})(noisy) == pytest.approx(17.31, abs=0.1)


def test_peak_prominence_is_the_height_above_the_surroundings():
    raw = spectrum((15.0, 1.0, 4.0), (28.0, 1.0, 1.5), baseline=2.0)
    assert build_scalarizer("peak_prominence", {"low": 5.0, "high": 35.0})(raw) == pytest.approx(4.0, rel=1e-3)
    assert build_scalarizer("peak_prominence", {"low": 22.0, "high": 35.0})(raw) == pytest.approx(1.5, rel=1e-3)
    assert build_scalarizer("peak_prominence", {"low": 35.0, "high": 40.0})(raw) == 0.0  # monotonic: no peak


def test_peak_ratio_compares_two_windows():
    raw = spectrum((10.0, 1.0, 6.0), (30.0, 2.0, 2.0))
    windows = {"low1": 5.0, "high1": 15.0, "low2": 22.0, "high2": 38.0}
    assert build_scalarizer("peak_ratio", windows)(raw) == pytest.approx((6.0 * 1.0) / (2.0 * 2.0), rel=1e-4)
    assert build_scalarizer("peak_ratio", {**windows, "measure": "max"})(raw) == pytest.approx(3.0, rel=1e-6)


def _loop(coercive: float) -> np.ndarray:
    """A BEPS-like voltage sweep 0 -> 8.5 -> -8.5 -> 0 V with switching at +coercive going up and
    -coercive going down."""
    up = np.linspace(0.0, 8.5, 17)
    voltage = np.concatenate([up, up[::-1][1:], -up[1:], -up[::-1][1:-1]])
    rising = np.gradient(voltage) > 0
    response = np.where(rising, np.tanh((voltage - coercive) / 0.7), np.tanh((voltage + coercive) / 0.7))
    return np.vstack([voltage, response])


@pytest.mark.parametrize("coercive", [1.3, 2.9, 4.4])
def test_coercive_width_is_the_distance_between_the_switching_voltages(coercive):
    assert build_scalarizer("coercive_width", {})(_loop(coercive)) == pytest.approx(2 * coercive, abs=0.05)


def test_coercive_width_of_a_flat_signal_is_nan_and_real_loops_have_widths(beps):
    flat = np.vstack([_loop(1.0)[0], np.zeros(64)])
    assert np.isnan(build_scalarizer("coercive_width", {})(flat))
    width = build_scalarizer("coercive_width", {})
    values = np.array([width(np.vstack([beps.axis, loop])) for loop in beps.cube.reshape(-1, 64)])
    assert np.isfinite(values).mean() > 0.95
    assert (values[np.isfinite(values)] > 0).all() and (values[np.isfinite(values)] <= 17.0).all()


def test_loop_area_over_the_voltage_axis_of_a_square_loop():
    voltage = np.array([-1.0, 1.0, 1.0, -1.0])
    response = np.array([-1.0, -1.0, 1.0, 1.0])
    assert build_scalarizer("loop_area", {})(np.vstack([voltage, response])) == pytest.approx(4.0)


@pytest.mark.parametrize("kind, options, words", [
    ("band_integral", {"low": 5.0, "high": 1.0}, "must be smaller"),
    ("peak_ratio", {"low1": 1.0, "high1": 2.0, "low2": 4.0, "high2": 3.0}, "low2"),
    ("peak_position", {"smooth": 0}, "smooth"),
    ("peak_ratio", {"low1": 1.0}, "required"),
    ("coercive_width", {"level": 0.5}, "unknown field"),
])
def test_bad_scalarizer_options_are_one_line_spec_errors(kind, options, words):
    assert kind in SCALARIZERS
    with pytest.raises(SpecError, match=words) as err:
        build_scalarizer(kind, options)
    assert str(err.value).startswith("oracle.scalarizer.") and "\n" not in str(err.value)
