"""The shared implementation of local instrument back ends.

`InstrumentBase` gives the twin, playback and vendor back ends the same behaviour: request
validation (position inside the field of view, dwell time within the instrument's range),
accounting of instrument time, latency, dose and acquisitions in a `Ledger` against a `Budget`
(a request that would overspend raises `BudgetExhausted` before anything is measured), and the
simulated latency per acquisition. Units as in `protocol`: nm, seconds, electrons.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .protocol import (Budget, BudgetExhausted, InstrumentInfo, InstrumentState, InvalidSettings, OutOfField, Overview,
                       Settings, Spectrum)


class Ledger:
    """Instrument time, latency, dose and acquisitions spent, checked against a `Budget`."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.elapsed_s = 0.0
        self.latency_s = 0.0
        self.dose_e = 0.0
        self.acquisitions = 0

    def check(self, seconds: float, dose_e: float, acquisitions: int) -> None:
        """Raise BudgetExhausted, naming the limit, when spending `seconds` of instrument time,
        `dose_e` electrons and `acquisitions` spectra would exceed the budget."""
        b = self.budget
        if b.time_s is not None and self.elapsed_s + seconds > b.time_s:
            raise BudgetExhausted(f"time budget of {b.time_s:g} s spent ({self.elapsed_s:.3f} s used, request needs {seconds:.3f} s)")
        if b.dose_e is not None and self.dose_e + dose_e > b.dose_e:
            raise BudgetExhausted(f"dose budget of {b.dose_e:g} e spent ({self.dose_e:.4g} e used, request needs {dose_e:.4g} e)")
        if b.acquisitions is not None and self.acquisitions + acquisitions > b.acquisitions:
            raise BudgetExhausted(f"acquisition budget of {b.acquisitions} spectra spent")

    def charge(self, seconds: float, dose_e: float, acquisitions: int, latency_s: float = 0.0) -> None:
        """Record spending (`seconds` includes `latency_s`)."""
        self.elapsed_s += seconds
        self.latency_s += latency_s
        self.dose_e += dose_e
        self.acquisitions += acquisitions


class InstrumentBase(ABC):
    """Validation and accounting shared by local back ends.

    Subclasses implement `_scan(t_s)` (the overview image at instrument time t_s), `_measure(x_nm,
    y_nm, dwell_s, t_s)` (spectrum values and metadata) and `axis`; they may override `_dose_e`
    (electrons per acquisition), `_overview_dose_e` (electrons per overview) and `_drift_nm`.

    info: what the instrument accepts. latency_s: real seconds slept per acquisition (simulated
    communication latency; also counted on the instrument clock). overhead_s: instrument seconds
    per acquisition besides dwell (beam move, settling). overview_s: instrument seconds per
    overview scan. wall_clock: charge the measured wall time of each call (at least the planned
    time) instead of the planned time (for real hardware).
    """

    channel = "intensity"
    image_unit = "a.u."

    def __init__(self, info: InstrumentInfo, latency_s: float = 0.0, overhead_s: float = 0.0,
                 overview_s: float = 0.0, wall_clock: bool = False) -> None:
        self._info = info
        self._ledger = Ledger(info.budget)
        self._latency_s = float(latency_s)
        self._overhead_s = float(overhead_s)
        self._overview_s = float(overview_s)
        self._wall_clock = wall_clock
        x0, y0 = info.geometry.origin_nm
        self._position = (float(x0), float(y0))

    # -- hooks -----------------------------------------------------------------------------------

    @property
    @abstractmethod
    def axis(self) -> np.ndarray:
        """(n,) spectral axis in `info.axis_unit`."""

    @abstractmethod
    def _scan(self, t_s: float) -> np.ndarray:
        """(H, W) overview image at instrument time t_s, seconds."""

    @abstractmethod
    def _measure(self, x_nm: float, y_nm: float, dwell_s: float, t_s: float) -> tuple[np.ndarray, dict[str, Any]]:
        """Spectrum values (n,) at requested (x_nm, y_nm) with `dwell_s`, beam on at time t_s
        (seconds), and metadata."""

    def _dose_e(self, dwell_s: float) -> float:
        """Electrons delivered by one acquisition of `dwell_s` seconds (0 without a beam)."""
        return 0.0

    def _overview_dose_e(self) -> float:
        """Electrons delivered by one overview scan (0 without a beam)."""
        return 0.0

    def _drift_nm(self, t_s: float) -> tuple[float, float]:
        """The back end's drift estimate (x, y), nm, at instrument time t_s."""
        return (0.0, 0.0)

    # -- protocol --------------------------------------------------------------------------------

    def describe(self) -> InstrumentInfo:
        """What the instrument is and accepts."""
        return self._info

    def check_request(self, x_nm: float, y_nm: float, settings: Settings | None) -> float:
        """The dwell time (seconds) of a valid request; raises OutOfField or InvalidSettings."""
        for name, v in (("x_nm", x_nm), ("y_nm", y_nm)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise OutOfField(f"{name} must be a finite number, got {v!r}")
        g = self._info.geometry
        if not g.reachable(x_nm, y_nm):
            x_min, x_max, y_min, y_max = g.extent_nm
            reach = f" (and the {g.reach_nm:g} nm the beam reaches beyond it)" if g.reach_nm else ""
            raise OutOfField(f"position ({x_nm:g}, {y_nm:g}) nm is outside the field of view "
                             f"x [{x_min:g}, {x_max:g}] nm, y [{y_min:g}, {y_max:g}] nm{reach}")
        dwell = self._info.default_dwell_s if settings is None or settings.dwell_s is None else settings.dwell_s
        low, high = self._info.dwell_range_s
        if isinstance(dwell, bool) or not isinstance(dwell, (int, float, np.integer, np.floating)) or not math.isfinite(dwell) or not low <= dwell <= high:
            raise InvalidSettings(f"dwell_s must lie in [{low:g}, {high:g}] s, got {dwell!r}")
        return float(dwell)

    def overview(self) -> Overview:
        """Scan the field of view (costs `overview_s` of instrument time and its dose)."""
        dose = self._overview_dose_e()
        self._ledger.check(self._overview_s, dose, 0)
        start = time.perf_counter()
        image = np.asarray(self._scan(self._ledger.elapsed_s + self._overview_s / 2.0), dtype=np.float32)
        spent = max(self._overview_s, time.perf_counter() - start) if self._wall_clock else self._overview_s
        self._ledger.charge(spent, dose, 0)
        return Overview(image=image, geometry=self._info.geometry, channel=self.channel, unit=self.image_unit,
                        elapsed_s=self._ledger.elapsed_s, scan_s=spent)

    def acquire(
        self, x_nm: float, y_nm: float, settings: Settings | None = None, request_id: str | None = None
    ) -> Spectrum:
        """Measure one spectrum at (x_nm, y_nm); see `Instrument.acquire`. A local instrument
        measures once per call, so `request_id` has nothing to deduplicate here."""
        dwell = self.check_request(x_nm, y_nm, settings)
        dose = self._dose_e(dwell)
        planned = self._latency_s + self._overhead_s + dwell
        self._ledger.check(planned, dose, 1)
        start = time.perf_counter()
        if self._latency_s > 0:
            time.sleep(self._latency_s)
        beam_on = self._ledger.elapsed_s + self._latency_s + self._overhead_s
        values, metadata = self._measure(float(x_nm), float(y_nm), dwell, beam_on)
        spent = max(planned, time.perf_counter() - start) if self._wall_clock else planned
        self._ledger.charge(spent, dose, 1, latency_s=self._latency_s)
        self._position = (float(x_nm), float(y_nm))
        info = self._info
        return Spectrum(values=np.asarray(values, dtype=np.float64), axis=self.axis, axis_name=info.axis_name,
                        axis_unit=info.axis_unit, unit=info.unit, x_nm=float(x_nm), y_nm=float(y_nm), dwell_s=dwell,
                        elapsed_s=self._ledger.elapsed_s, metadata=metadata)

    def state(self) -> InstrumentState:
        """Position, drift estimate, dose, clock and acquisitions so far."""
        ledger = self._ledger
        dx, dy = self._drift_nm(ledger.elapsed_s)
        return InstrumentState(position_nm=self._position, drift_nm=(float(dx), float(dy)), dose_e=ledger.dose_e,
                               elapsed_s=ledger.elapsed_s, latency_s=ledger.latency_s,
                               acquisitions=ledger.acquisitions, budget=ledger.budget)

    def close(self) -> None:
        """Nothing to release for an in-memory back end."""
