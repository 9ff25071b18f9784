"""The `instrument` oracle: measures pool candidates by acquiring spectra at their positions.

The pool must carry the positions (info columns ``x_nm``, ``y_nm``, as `probe_grid` makes). Each
id becomes one acquisition; the measurement's raw signal is the (2, n) array [axis; values]
that the spec's `oracle.scalarizer` reduces to y. `measure_each` yields every measurement the
moment it arrives, so the campaign records it at once (a batch can take minutes).

Drift correction (`drift_every: N`): every N acquisitions the oracle re-acquires the overview,
estimates the drift since the reference overview (the one `probe_grid` defined the candidates
on; without it, the first overview the oracle takes) by cross-correlation and shifts the
requested positions so that they stay on the same sample features (see `drift.DriftTracker`).

A position that drift correction pushes out of the instrument's reach (the field of view, widened
by the beam shift `Geometry.reach_nm` where the instrument has one) cannot be measured any more:
`reachable()` tells which candidates are still in reach (the campaign does not offer the others
to the acquisition unless `skip_unreachable: false`), and one requested anyway becomes a final failed
measurement (retrying cannot bring it back). A spent budget (`BudgetExhausted`) ends the
campaign with its message; a lost connection (`InstrumentUnavailable`, an OSError) fails the
rest of the batch, which the campaign retries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from activescope.engine.errors import SpecError
from activescope.engine.oracle import Measurement
from activescope.engine.pool import Pool
from activescope.engine.registry import register_oracle

from .drift import DriftTracker
from .protocol import Instrument, OutOfField, Settings
from .sources import positions


class InstrumentOracleOptions(BaseModel):
    """Options of the `instrument` oracle (the spec's `oracle:` section)."""

    model_config = ConfigDict(extra="forbid")

    dwell_s: float | None = Field(None, gt=0, description="dwell per spectrum, s (none: the instrument's default)")
    drift_every: int = Field(0, ge=0, description="re-acquire the overview and correct drift every N acquisitions (0 = off)")
    drift_upsample: int = Field(10, ge=1, le=100, description="precision of the drift estimate: 1/drift_upsample pixel")
    drift_smooth_px: float = Field(3.0, ge=0, description="Gaussian smoothing of the overviews before registration, pixels")
    drift_extrapolate: bool = Field(True, description="extrapolate the drift linearly between estimates")
    skip_unreachable: bool = Field(
        True, description="offer the acquisition only the candidates drift correction keeps inside the field of view (false: they are tried and fail)"
    )


@register_oracle("instrument", InstrumentOracleOptions)
class InstrumentOracle:
    """Acquires a spectrum at each candidate's position on the spec's instrument, with optional
    drift correction; results stream as they arrive."""

    interactive = False

    def __init__(self, pool: Pool, target: Any, instrument: Instrument | None = None, dwell_s: float | None = None,
                 drift_every: int = 0, drift_upsample: int = 10, drift_smooth_px: float = 3.0,
                 drift_extrapolate: bool = True, skip_unreachable: bool = True) -> None:
        if instrument is None:
            raise SpecError("oracle.kind instrument measures through an instrument: add an instrument: section to the spec")
        missing = {"x_nm", "y_nm"} - set(pool.info.columns)
        if missing:
            raise SpecError("oracle.kind instrument needs candidate positions (info columns x_nm, y_nm): use data.source probe_grid")
        self.pool = pool
        self.target = target
        self.instrument = instrument
        self.settings = Settings(dwell_s=dwell_s)
        self.drift_every = drift_every
        self.skip_unreachable = skip_unreachable
        self.tracker = (DriftTracker(instrument, upsample=drift_upsample, smooth_px=drift_smooth_px,
                                     extrapolate=drift_extrapolate) if drift_every else None)
        self._since_update = 0
        self._clock_s = 0.0  # instrument time of the last answer, s
        self._batch_s = 0.0  # instrument time the last batch took, s: how far ahead reachability looks
        self._run_id: str | None = None
        self._attempts: dict[str, int] = {}

    def bind_run(self, run_id: str) -> None:
        """Name the run this oracle measures for (the campaign calls it). Each acquisition then
        carries the request id `<run_id>.<candidate digest>.<attempt>`, stable across a client restart:
        a resumed run asking again for the spectrum a killed client was waiting for gets the
        instrument's first answer instead of a second measurement."""
        self._run_id = run_id

    def measure_each(self, ids: Sequence[str]) -> Iterator[Measurement]:
        """One Measurement(raw=(2, n) [axis; values]) per id, in order, yielded as acquired."""
        xs, ys = positions(self.pool, ids)
        start_s = self._clock_s
        for k, x, y in zip(ids, xs, ys):
            if self.tracker is not None:
                if self.tracker.reference is None or self._since_update >= self.drift_every:
                    self.tracker.update()
                    self._since_update = 0
                    self._clock_s = self.instrument.state().elapsed_s
                x, y = self.tracker.correct(x, y, self._clock_s)
            self._attempts[k] = attempt = self._attempts.get(k, 0) + 1
            request_id = None if self._run_id is None else f"{self._run_id}.{_digest(k)}.{attempt}"
            try:
                spectrum = self.instrument.acquire(float(x), float(y), self.settings, request_id=request_id)
            except OutOfField as err:  # nothing was measured, and retrying cannot bring it back in reach
                moved = "after drift correction: " if self.tracker is not None else ""
                yield Measurement(id=str(k), error=f"{moved}{err}", retry=False)
                continue
            self._since_update += 1  # only spectra taken count towards the next overview
            self._clock_s = spectrum.elapsed_s
            self._batch_s = self._clock_s - start_s
            yield Measurement(id=str(k), raw=spectrum.as_raw())

    def reachable(self) -> np.ndarray:
        """(len(pool),) bool: the candidates whose drift-corrected position lies within the
        instrument's reach (the field of view and its `reach_nm` beam shift) both now (the
        instrument time of the last acquisition) and one batch later (as long as the last batch
        took), so that they stay in reach while the next batch is measured.
        Without drift correction, or with `skip_unreachable: false`, every candidate counts as
        reachable."""
        if self.tracker is None or not self.skip_unreachable:
            return np.ones(len(self.pool), dtype=bool)
        field = self.instrument.describe().geometry
        x_nm, y_nm = self.pool.info["x_nm"].to_numpy(), self.pool.info["y_nm"].to_numpy()
        now = field.reachable(*self.tracker.correct(x_nm, y_nm, self._clock_s))
        return now & field.reachable(*self.tracker.correct(x_nm, y_nm, self._clock_s + self._batch_s))

    def measure(self, ids: Sequence[str]) -> list[Measurement]:
        """All measurements of `ids` at once (see `measure_each`)."""
        return list(self.measure_each(ids))


def _digest(candidate: str) -> str:
    """A short, URL-safe stand-in for a candidate id inside a request id."""
    return hashlib.sha1(str(candidate).encode()).hexdigest()[:16]
