"""Scalarizers for spectra and hysteresis loops (spec: `oracle.scalarizer: {kind: ..., ...}`).

Each takes the raw signal an instrument oracle records, a (2, n) array [axis; values] (a 1-D
signal is taken over its channel index), and returns a float; a window that holds too few points
gives NaN (a failed measurement) rather than a guess. Windows are in axis units (eV for an EELS
spectrum, V for a loop's voltage axis).

- ``band_integral``: integral of the signal over an energy window;
- ``peak_position``: axis value of the highest point in a window (parabolic sub-channel fit);
- ``peak_prominence``: prominence of the most prominent peak in a window;
- ``peak_ratio``: ratio of two windows' integrals (or maxima);
- ``coercive_width``: distance between the up- and down-sweep coercive voltages of a loop.

The loop area over the voltage axis is the engine's ``loop_area`` scalarizer.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage, signal

from activescope.engine.registry import register_scalarizer
from activescope.engine.scalarizers import Scalarizer


def split(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(axis, values) float64 of a (2, n) [axis; values] signal or a 1-D signal over its index."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim == 2 and raw.shape[0] == 2:
        return raw[0], raw[1]
    values = raw.ravel()
    return np.arange(len(values), dtype=np.float64), values


def window(raw: np.ndarray, low: float | None, high: float | None, smooth: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(axis, values) of the points with low <= axis <= high (None: unbounded), sorted by axis,
    values smoothed first by a moving average over `smooth` channels."""
    axis, values = split(raw)
    if smooth > 1:
        values = ndimage.uniform_filter1d(values, smooth, mode="nearest")
    keep = np.ones(len(axis), dtype=bool)
    if low is not None:
        keep &= axis >= low
    if high is not None:
        keep &= axis <= high
    order = np.argsort(axis[keep], kind="stable")
    return axis[keep][order], values[keep][order]


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    low: float | None = Field(None, description="window start, axis units (none: the first point)")
    high: float | None = Field(None, description="window end, axis units (none: the last point)")

    @model_validator(mode="after")
    def _ordered(self) -> "_Window":
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be smaller than high ({self.high})")
        return self


class BandIntegralOptions(_Window):
    """Options of `band_integral`."""


class PeakOptions(_Window):
    """Options of `peak_position` and `peak_prominence`."""

    smooth: int = Field(1, ge=1, le=1001, description="moving-average width before finding the peak, channels (1 = none)")


class PeakRatioOptions(BaseModel):
    """Options of `peak_ratio`: numerator window [low1, high1], denominator window [low2, high2]."""

    model_config = ConfigDict(extra="forbid")

    low1: float = Field(description="numerator window start, axis units")
    high1: float = Field(description="numerator window end, axis units")
    low2: float = Field(description="denominator window start, axis units")
    high2: float = Field(description="denominator window end, axis units")
    measure: Literal["integral", "max"] = Field("integral", description="compare the windows' integrals or maxima")

    @model_validator(mode="after")
    def _ordered(self) -> "PeakRatioOptions":
        for low, high, name in ((self.low1, self.high1, "1"), (self.low2, self.high2, "2")):
            if low >= high:
                raise ValueError(f"low{name} ({low}) must be smaller than high{name} ({high})")
        return self


class CoerciveWidthOptions(BaseModel):
    """Options of `coercive_width`."""

    model_config = ConfigDict(extra="forbid")

    smooth: int = Field(1, ge=1, le=101, description="running-median width along the sweep before finding crossings, points (1 = none)")


def _integral(axis: np.ndarray, values: np.ndarray) -> float:
    return float(np.trapezoid(values, axis)) if len(axis) >= 2 else float("nan")


@register_scalarizer("band_integral", BandIntegralOptions)
def band_integral(low: float | None = None, high: float | None = None) -> Scalarizer:
    """Integral of the signal over the window [low, high] (trapezoid rule; units: value x axis)."""
    return lambda raw: _integral(*window(raw, low, high))


@register_scalarizer("peak_position", PeakOptions)
def peak_position(low: float | None = None, high: float | None = None, smooth: int = 1) -> Scalarizer:
    """Axis position of the highest point in [low, high], refined by a parabola through it and
    its neighbours (axis units)."""

    def position(raw: np.ndarray) -> float:
        axis, values = window(raw, low, high, smooth)
        if len(axis) == 0:
            return float("nan")
        i = int(np.argmax(values))
        if 0 < i < len(axis) - 1:
            left, mid, right = values[i - 1: i + 2]
            curvature = left - 2.0 * mid + right
            if curvature < 0:
                offset = 0.5 * (left - right) / curvature
                return float(axis[i] + offset * (axis[i + 1] - axis[i - 1]) / 2.0)
        return float(axis[i])

    return position


@register_scalarizer("peak_prominence", PeakOptions)
def peak_prominence(low: float | None = None, high: float | None = None, smooth: int = 1) -> Scalarizer:
    """Prominence of the most prominent peak in [low, high] (value units; 0 when the window holds
    no local maximum)."""

    def prominence(raw: np.ndarray) -> float:
        _, values = window(raw, low, high, smooth)
        if len(values) < 3:
            return float("nan")
        _, props = signal.find_peaks(values, prominence=0.0)
        return float(props["prominences"].max()) if len(props["prominences"]) else 0.0

    return prominence


@register_scalarizer("peak_ratio", PeakRatioOptions)
def peak_ratio(low1: float, high1: float, low2: float, high2: float, measure: str = "integral") -> Scalarizer:
    """Ratio of the signal in window 1 to window 2, by integral or by maximum (NaN when the
    denominator is 0)."""

    def amount(raw: np.ndarray, low: float, high: float) -> float:
        axis, values = window(raw, low, high)
        if measure == "max":
            return float(values.max()) if len(values) else float("nan")
        return _integral(axis, values)

    def ratio(raw: np.ndarray) -> float:
        denominator = amount(raw, low2, high2)
        return amount(raw, low1, high1) / denominator if denominator != 0 else float("nan")

    return ratio


@register_scalarizer("coercive_width", CoerciveWidthOptions)
def coercive_width(smooth: int = 1) -> Scalarizer:
    """Width of a hysteresis loop along its voltage axis (axis units, V).

    The loop (2, n) [voltage; response] is a closed sweep, despiked by a running median over
    `smooth` points. The coercive voltages are where the response crosses the midpoint between
    its 10th and 90th percentiles (robust to the odd outlier): on the up-sweep (voltage
    increasing) and on the down-sweep (decreasing), each linearly interpolated and averaged over
    that sweep's crossings. Returns |V_up - V_down|, or NaN when a sweep never crosses.
    """

    def width(raw: np.ndarray) -> float:
        voltage, response = split(raw)
        if smooth > 1:
            response = ndimage.median_filter(response, smooth, mode="wrap")
        low, high = np.percentile(response, [10.0, 90.0])
        level = response - 0.5 * (low + high)
        nxt_v, nxt_r = np.roll(voltage, -1), np.roll(level, -1)
        crossing = np.signbit(level) != np.signbit(nxt_r)
        frac = np.divide(level, level - nxt_r, out=np.zeros_like(level), where=crossing)
        at = voltage + frac * (nxt_v - voltage)
        up, down = at[crossing & (nxt_v > voltage)], at[crossing & (nxt_v < voltage)]
        if len(up) == 0 or len(down) == 0:
            return float("nan")
        return float(abs(up.mean() - down.mean()))

    return width
