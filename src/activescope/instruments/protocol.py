"""The instrument protocol: what an automated experiment needs from a microscope.

An instrument shows an **overview** image of its field of view, **acquires** a spectrum (or a
curve such as a hysteresis loop) at a position, and reports its **state**. Every back end (the
digital twin, recorded-data playback, a vendor SDK, a remote server) implements the same five
methods (`Instrument`), so campaign code is identical in-process and over the network.

Units: positions in nm in the sample frame of the stage, times in seconds, dose in electrons.
Pixel (row r, col c) of an overview is centred at ``x = origin_x + c * pixel_nm``,
``y = origin_y + r * pixel_nm``; `Geometry` converts between the two.

`base.InstrumentBase` implements the shared part of local back ends (validation, accounting,
latency).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from activescope.engine.errors import ActivescopeError

ELECTRON_C = 1.602176634e-19  # elementary charge, coulomb (converts beam current to electrons/s)


class InstrumentError(ActivescopeError):
    """The instrument refused or could not carry out a request."""


class OutOfField(InstrumentError, ValueError):
    """A requested position lies outside the field of view."""


class InvalidSettings(InstrumentError, ValueError):
    """Acquisition settings (dwell time, ...) are outside what the instrument accepts."""


class BudgetExhausted(InstrumentError):
    """Carrying out the request would spend more time, dose or acquisitions than budgeted."""


class InstrumentUnavailable(InstrumentError, ConnectionError):
    """The instrument did not answer (connection refused or dropped, timeouts) after retries.

    An OSError, so the campaign counts it as a failed measurement and retries later."""


@dataclass(frozen=True)
class Geometry:
    """The field of view on a pixel grid.

    shape: (H, W) pixels of the overview image.
    pixel_nm: pixel size, nm (square pixels).
    origin_nm: (x, y) position, nm, of the centre of pixel (row 0, col 0).
    reach_nm: how far beyond the edges of the field of view the probe can still be placed (beam
    or image shift), nm; the overview shows the field of view only. Drift correction can then
    follow a feature that has drifted out of the overview.
    """

    shape: tuple[int, int]
    pixel_nm: float
    origin_nm: tuple[float, float] = (0.0, 0.0)
    reach_nm: float = 0.0

    @property
    def extent_nm(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max), nm: the outer edges of the border pixels."""
        h, w = self.shape
        x0, y0 = self.origin_nm
        half = self.pixel_nm / 2.0
        return (x0 - half, x0 + (w - 0.5) * self.pixel_nm, y0 - half, y0 + (h - 0.5) * self.pixel_nm)

    @property
    def field_of_view_nm(self) -> tuple[float, float]:
        """(width, height) of the field of view, nm."""
        h, w = self.shape
        return (w * self.pixel_nm, h * self.pixel_nm)

    def to_pixel(self, x_nm: Any, y_nm: Any) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (col, row) pixel coordinates of positions (x_nm, y_nm) in nm."""
        x0, y0 = self.origin_nm
        return (np.asarray(x_nm, dtype=float) - x0) / self.pixel_nm, (np.asarray(y_nm, dtype=float) - y0) / self.pixel_nm

    def to_nm(self, col: Any, row: Any) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) in nm of (possibly fractional) pixel coordinates (col, row)."""
        x0, y0 = self.origin_nm
        return x0 + np.asarray(col, dtype=float) * self.pixel_nm, y0 + np.asarray(row, dtype=float) * self.pixel_nm

    def nearest_pixel(self, x_nm: Any, y_nm: Any) -> tuple[np.ndarray, np.ndarray]:
        """Integer (col, row) of the pixel containing each position (clipped to the grid)."""
        col, row = self.to_pixel(x_nm, y_nm)
        h, w = self.shape
        return np.clip(np.rint(col), 0, w - 1).astype(np.int64), np.clip(np.rint(row), 0, h - 1).astype(np.int64)

    def contains(self, x_nm: Any, y_nm: Any) -> np.ndarray:
        """Whether each position (nm) lies inside the field of view (edges included)."""
        x_min, x_max, y_min, y_max = self.extent_nm
        x, y = np.asarray(x_nm, dtype=float), np.asarray(y_nm, dtype=float)
        return (x >= x_min) & (x <= x_max) & (y >= y_min) & (y <= y_max)

    def reachable(self, x_nm: Any, y_nm: Any) -> np.ndarray:
        """Whether the probe can be placed at each position (nm): inside the field of view
        widened by `reach_nm` on every side."""
        x_min, x_max, y_min, y_max = self.extent_nm
        r = self.reach_nm
        x, y = np.asarray(x_nm, dtype=float), np.asarray(y_nm, dtype=float)
        return (x >= x_min - r) & (x <= x_max + r) & (y >= y_min - r) & (y <= y_max + r)


@dataclass(frozen=True)
class Budget:
    """Limits of an experiment; None means unlimited.

    time_s: instrument time (dwell, overhead, latency and overview scans), seconds.
    dose_e: electrons delivered to the sample.
    acquisitions: number of spectra.
    """

    time_s: float | None = None
    dose_e: float | None = None
    acquisitions: int | None = None


@dataclass(frozen=True)
class InstrumentInfo:
    """What an instrument is and accepts, known without measuring.

    kind: back end name ("twin", "playback", a vendor's name).
    geometry: the overview's field of view.
    axis_name, axis_unit: the spectral axis (e.g. "energy_loss", "eV"; "voltage", "V").
    unit: unit of the spectrum values (e.g. "counts").
    channels: number of points per spectrum.
    dwell_range_s: (min, max) accepted dwell time per spectrum, seconds.
    default_dwell_s: dwell used when a request gives none, seconds.
    budget: the limits this instrument enforces.
    """

    kind: str
    geometry: Geometry
    axis_name: str
    axis_unit: str
    unit: str
    channels: int
    dwell_range_s: tuple[float, float]
    default_dwell_s: float
    budget: Budget = field(default_factory=Budget)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready mapping (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InstrumentInfo":
        """The inverse of `to_dict`."""
        g = data["geometry"]
        return cls(
            kind=data["kind"],
            geometry=Geometry(tuple(g["shape"]), float(g["pixel_nm"]), tuple(g["origin_nm"]), float(g.get("reach_nm", 0.0))),
            axis_name=data["axis_name"],
            axis_unit=data["axis_unit"],
            unit=data["unit"],
            channels=int(data["channels"]),
            dwell_range_s=tuple(data["dwell_range_s"]),
            default_dwell_s=float(data["default_dwell_s"]),
            budget=Budget(**data["budget"]),
        )


@dataclass(frozen=True)
class Settings:
    """Acquisition settings of one spectrum. dwell_s: exposure, seconds (None: the default)."""

    dwell_s: float | None = None


@dataclass(frozen=True)
class Overview:
    """An overview image of the field of view.

    image: (H, W) float32 intensities (unit in `unit`).
    geometry: pixel size and origin of `image` (nm).
    channel: what the image shows ("haadf", "loop_area", ...).
    elapsed_s: instrument clock when the scan finished, seconds.
    scan_s: how long the scan took, seconds (it shows the sample at about elapsed_s - scan_s / 2).
    """

    image: np.ndarray
    geometry: Geometry
    channel: str = "intensity"
    unit: str = "a.u."
    elapsed_s: float = 0.0
    scan_s: float = 0.0


@dataclass(frozen=True)
class Spectrum:
    """One acquired spectrum or curve.

    values: (n,) float64 signal in `unit`; axis: (n,) float64 spectral axis in `axis_unit`.
    x_nm, y_nm: requested probe position, nm. dwell_s: exposure, seconds.
    elapsed_s: instrument clock when the acquisition finished, seconds.
    metadata: back-end specific scalars (JSON-serialisable).
    """

    values: np.ndarray
    axis: np.ndarray
    axis_name: str
    axis_unit: str
    unit: str
    x_nm: float
    y_nm: float
    dwell_s: float
    elapsed_s: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_raw(self) -> np.ndarray:
        """(2, n) float64 [axis; values], the raw signal scalarizers take."""
        return np.vstack([self.axis, self.values]).astype(np.float64)


@dataclass(frozen=True)
class InstrumentState:
    """Where the instrument stands.

    position_nm: last requested probe position (x, y), nm.
    drift_nm: the back end's own drift estimate (x, y), nm: the offset between requested and
        probed sample positions (the twin reports the drift it simulates; playback reports 0).
    dose_e: electrons delivered so far. elapsed_s: instrument clock, seconds.
    latency_s: part of elapsed_s spent on latency, seconds. acquisitions: spectra taken.
    budget: the limits in force.
    """

    position_nm: tuple[float, float]
    drift_nm: tuple[float, float]
    dose_e: float
    elapsed_s: float
    latency_s: float
    acquisitions: int
    budget: Budget = field(default_factory=Budget)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InstrumentState":
        """The inverse of `to_dict`."""
        return cls(**{**data, "position_nm": tuple(data["position_nm"]), "drift_nm": tuple(data["drift_nm"]),
                      "budget": Budget(**data["budget"])})


@runtime_checkable
class Instrument(Protocol):
    """The protocol every back end implements (see the module docstring for units)."""

    def describe(self) -> InstrumentInfo:
        """What the instrument is and accepts (free: measures nothing)."""
        ...

    def overview(self) -> Overview:
        """Scan the field of view; costs instrument time (and dose on a beam instrument)."""
        ...

    def acquire(
        self, x_nm: float, y_nm: float, settings: Settings | None = None, request_id: str | None = None
    ) -> Spectrum:
        """Measure one spectrum at (x_nm, y_nm). Raises OutOfField, InvalidSettings or
        BudgetExhausted (nothing measured) or InstrumentUnavailable. `request_id`, when given,
        names this measurement: a remote instrument asked again with the same id (a retry, or a
        client restarted after a crash) returns the first answer instead of measuring twice."""
        ...

    def state(self) -> InstrumentState:
        """Position, drift estimate, dose, clock and acquisitions so far (free)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
