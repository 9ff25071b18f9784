"""Ground truth for benchmarks: the noiseless property at every candidate probe position.

A benchmark scores an automated experiment against the value the scalarized measurement would
have at each candidate of a `probe_grid` pool if it were measured without noise, drift or
damage, in the frame of the overview the candidates were defined on. Real instruments have no
such thing; recorded data and the digital twin do:

- `playback_truth`: the recorded curve at each candidate's grid point, scalarized (the loop
  area of every BEPS loop at once, vectorised, for the `loop_area` scalarizer);
- `twin_truth`: the twin's noise-free expected spectrum (`DigitalTwin.expected_counts`) at each
  candidate's position with zero drift and no beam damage, scalarized;
- `candidate_truth`: either of them, by the instrument's type.

Values are in the scalarizer's units, one per pool row, in pool order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from activescope.engine.pool import Pool
from activescope.engine.scalarizers import Scalarizer, build_scalarizer

from .playback import CubePlayback, loop_area_map
from .sources import positions
from .twin import DigitalTwin

CHUNK_ROWS = 2048  # candidates whose noiseless spectra are synthesised at once (memory: CHUNK_ROWS x channels)


def _scalarize_rows(scalarizer: Scalarizer, axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """scalarizer((2, n) [axis; row]) for every row of `values` (m, n)."""
    raw = np.empty((2, values.shape[1]))
    raw[0] = axis
    out = np.empty(len(values))
    for i, row in enumerate(values):
        raw[1] = row
        out[i] = scalarizer(raw)
    return out


def _as_scalarizer(scalarizer: Scalarizer | str | None, default: str) -> Scalarizer:
    if scalarizer is None or isinstance(scalarizer, str):
        return build_scalarizer(scalarizer or default)
    return scalarizer


def playback_truth(instrument: CubePlayback, pool: Pool, scalarizer: Scalarizer | str | None = "loop_area") -> np.ndarray:
    """(len(pool),) scalarized recorded curves at each candidate's nearest grid point.

    scalarizer: a registered name, a callable on (2, n) [axis; values], or None for `loop_area`.
    The loop area (by name or None) is computed for all candidates at once (`loop_area_map`);
    any other scalarizer is applied curve by curve.
    """
    xs, ys = positions(pool, pool.ids)
    cols, rows = instrument.describe().geometry.nearest_pixel(xs, ys)
    if scalarizer is None or scalarizer == "loop_area":
        return loop_area_map(instrument.cube, instrument.axis)[rows, cols]
    return _scalarize_rows(_as_scalarizer(scalarizer, "loop_area"), instrument.axis, instrument.cube[rows, cols])


def twin_truth(twin: DigitalTwin, pool: Pool, scalarizer: Scalarizer | str, dwell_s: float | None = None,
               t_s: float | None = None) -> np.ndarray:
    """(len(pool),) scalarized noise-free spectra of the twin at each candidate's position.

    The spectra are the twin's expected counts (`DigitalTwin.expected_counts`) from the sample's
    local structure at the candidate's position, without beam damage, for a dwell of `dwell_s`
    (default: the twin's). A position maps to the sample canvas as `DigitalTwin` maps a request:
    its overview pixel plus the canvas margin, shifted by the stage drift at instrument time
    `t_s` (None: zero drift). Pass the mid-scan time of the overview the candidates were defined
    on (`drift.scan_time(reference)`) to score against what each candidate showed on that
    overview. scalarizer: a callable on (2, n) [axis; values] or a registered name without
    options.
    """
    o = twin.options
    scalarize = _as_scalarizer(scalarizer, "max")
    dwell = o.dwell_s if dwell_s is None else float(dwell_s)
    xs, ys = positions(pool, pool.ids)
    dx, dy = (0.0, 0.0) if t_s is None else twin.drift(float(t_s))
    cols, rows = twin.describe().geometry.to_pixel(xs + dx, ys + dy)
    rows, cols = rows + twin.sample.margin, cols + twin.sample.margin
    out = np.empty(len(pool))
    for start in range(0, len(pool), CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        local = twin.sample.sample_maps(rows[part], cols[part])
        out[part] = _scalarize_rows(scalarize, twin.axis, twin.expected_counts(local, dwell))
    return out


def candidate_truth(instrument: Any, pool: Pool, scalarizer: Scalarizer | str | None = None, **options: Any) -> np.ndarray:
    """`twin_truth` or `playback_truth` by the instrument's type (TypeError for any other)."""
    if isinstance(instrument, DigitalTwin):
        if scalarizer is None:
            raise TypeError("twin_truth needs the campaign's scalarizer")
        return twin_truth(instrument, pool, scalarizer, **options)
    if isinstance(instrument, CubePlayback):
        return playback_truth(instrument, pool, scalarizer, **options)
    raise TypeError(f"no ground truth for a {type(instrument).__name__}: only the twin and playback have one")
