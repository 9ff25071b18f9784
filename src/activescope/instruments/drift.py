"""Drift correction: follow the sample by registering fresh overview images on a reference.

Stage drift moves the sample under the beam: a position that probed feature F when the
reference overview was taken probes something else a minute later. `estimate_drift` measures
the displacement between two overviews by phase cross-correlation (scikit-image, sub-pixel);
`DriftTracker` keeps the reference, re-estimates the drift when asked and maps a requested
position (in the reference frame, where the candidates were defined) to the position to send to
the instrument now, extrapolating linearly between estimates (drift is mostly linear).

Convention: drift (dx, dy) in nm is how far the sample has moved relative to the beam since the
reference, i.e. requesting ``(x - dx, y - dy)`` now probes what ``(x, y)`` probed then.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from scipy import ndimage

from .protocol import Instrument, Overview

_REFERENCES: "weakref.WeakKeyDictionary[Any, Overview]" = weakref.WeakKeyDictionary()


def set_reference(instrument: Instrument, overview: Overview) -> None:
    """Record `overview` as the image on which candidate positions for `instrument` were defined
    (the `probe_grid` source does), so drift is measured from the moment the candidates were made."""
    _REFERENCES[instrument] = overview


def reference_of(instrument: Instrument) -> Overview | None:
    """The overview recorded by `set_reference` for `instrument`, if any."""
    return _REFERENCES.get(instrument)


def scan_time(overview: Overview) -> float:
    """Instrument time (s) the overview shows the sample at: the middle of its scan."""
    return overview.elapsed_s - overview.scan_s / 2.0


def estimate_drift(reference: Overview, moving: Overview, upsample: int = 10, smooth_px: float = 3.0,
                   refinements: int = 2) -> np.ndarray:
    """Drift (dx, dy), nm, of the sample between overviews `reference` and `moving` (same
    geometry), to about 1/`upsample` pixel.

    Both images are smoothed with a Gaussian of `smooth_px` pixels (shot noise, and the atomic
    lattice whose periodicity makes shifts by a lattice vector ambiguous, so that aperiodic
    features such as holes, dopants and boundaries decide), tapered with a Hann window (the
    image borders would pin the estimate to zero) and cross-correlated (scikit-image
    `phase_cross_correlation` without phase normalisation, which would undo the smoothing). The
    taper pulls large shifts towards zero, so the estimate is refined `refinements` times by
    shifting `moving` back by it and registering the remainder.
    """
    from skimage.filters import window
    from skimage.registration import phase_cross_correlation

    taper = window("hann", reference.image.shape)
    fixed = ndimage.gaussian_filter(np.asarray(reference.image, dtype=np.float64), smooth_px)
    fixed = (fixed - fixed.mean()) * taper
    smooth = ndimage.gaussian_filter(np.asarray(moving.image, dtype=np.float64), smooth_px)
    total = np.zeros(2)  # (rows, cols) shift that registers `moving` on `reference`, pixels
    for _ in range(refinements + 1):
        shifted = ndimage.shift(smooth, total, order=1, mode="nearest") if total.any() else smooth
        step, _, _ = phase_cross_correlation(fixed, (shifted - shifted.mean()) * taper, upsample_factor=upsample,
                                             normalization=None)
        total += step
    return np.array([total[1], total[0]]) * reference.geometry.pixel_nm


class DriftTracker:
    """Keeps requested positions on the same sample features while the stage drifts.

    instrument: where overviews come from. upsample, smooth_px: as in `estimate_drift`.
    extrapolate: predict the drift at the current instrument time from the last two estimates
    (linear drift); otherwise use the last estimate as it is.
    reference: the overview the candidate positions were defined on (default: the one recorded
    by `set_reference`, else the first `update` takes it). History times are mid-scan times.
    """

    def __init__(self, instrument: Instrument, upsample: int = 10, smooth_px: float = 3.0, extrapolate: bool = True,
                 reference: Overview | None = None) -> None:
        reference = reference if reference is not None else reference_of(instrument)
        self.instrument = instrument
        self.upsample = upsample
        self.smooth_px = smooth_px
        self.extrapolate = extrapolate
        self.reference = reference
        self.history: list[tuple[float, np.ndarray]] = [] if reference is None else [(scan_time(reference), np.zeros(2))]

    def update(self) -> np.ndarray:
        """Acquire an overview and estimate the drift since the reference; (dx, dy) nm."""
        current = self.instrument.overview()
        if self.reference is None:
            self.reference = current
            drift = np.zeros(2)
        else:
            drift = estimate_drift(self.reference, current, self.upsample, self.smooth_px)
        self.history.append((scan_time(current), drift))
        return drift

    def drift_at(self, t_s: float) -> np.ndarray:
        """Predicted drift (dx, dy), nm, at instrument time t_s (zero before any estimate)."""
        if not self.history:
            return np.zeros(2)
        t1, d1 = self.history[-1]
        if not self.extrapolate or len(self.history) < 2:
            return d1
        t0, d0 = self.history[-2]
        return d1 + (d1 - d0) / (t1 - t0) * (t_s - t1) if t1 > t0 else d1

    def correct(self, x_nm: Any, y_nm: Any, t_s: float) -> tuple[Any, Any]:
        """Position(s) to request at instrument time t_s to probe what (x_nm, y_nm) probed when
        the reference was taken (floats for floats, arrays for arrays), nm."""
        dx, dy = self.drift_at(t_s)
        x, y = np.asarray(x_nm, dtype=float) - dx, np.asarray(y_nm, dtype=float) - dy
        return (float(x), float(y)) if x.ndim == 0 else (x, y)
