"""Scalarizers: reduce a raw signal (a spectrum, a hysteresis loop) to the scalar objective y.

A spec names one in `oracle.scalarizer`, either by name (`scalarizer: loop_area`) or with options
(`scalarizer: {kind: band_integral, low: 10, high: 20}`). Each is a registered factory
`factory(**options) -> Scalarizer`; instrument packages and users register more.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .registry import SCALARIZERS, register_scalarizer

Scalarizer = Callable[[np.ndarray], float]


def build_scalarizer(kind: str, options: dict[str, Any] | None = None) -> Scalarizer:
    """The registered scalarizer `kind` configured with `options`."""
    return SCALARIZERS.build(kind, options or {}, section="oracle.scalarizer")


@register_scalarizer("max")
def max_value() -> Scalarizer:
    """Largest value of the signal."""
    return lambda raw: float(np.max(raw))


@register_scalarizer("mean")
def mean_value() -> Scalarizer:
    """Mean of the signal."""
    return lambda raw: float(np.mean(raw))


@register_scalarizer("peak_to_peak")
def peak_to_peak() -> Scalarizer:
    """Largest minus smallest value of the signal."""
    return lambda raw: float(np.ptp(raw))


@register_scalarizer("loop_area")
def loop_area() -> Scalarizer:
    """Area enclosed by a closed loop sampled as (2, n) [x; y] or a 1-D signal over its index."""

    def area(raw: np.ndarray) -> float:
        raw = np.asarray(raw, dtype=float)
        if raw.ndim == 2 and raw.shape[0] == 2:
            x, y = raw
        else:
            y = raw.ravel()
            x = np.arange(len(y), dtype=float)
        return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    return area
