"""The adapter point for real instruments: wrap a vendor SDK in a `VendorBackend`.

A vendor back end is a small class that translates four calls into the vendor's API and does
nothing else; `VendorInstrument` adds everything the protocol promises on top of it (request
validation against the field of view and the dwell range, accounting of wall-clock time,
latency, dose and acquisitions against a budget, the instrument state), so every vendor gets the
same behaviour and passes the same conformance tests as the digital twin.

What a wrapper implements (units are fixed; convert the vendor's own):

=====================================  ===============================================================
``info()``                             `InstrumentInfo`: field of view (pixels, nm per pixel, origin),
                                       spectral axis name and unit, values unit, channels, dwell range
``scan()``                             the overview image, (H, W) array matching ``info().geometry``
``spectrum(x_nm, y_nm, dwell_s)``      move the probe to (x_nm, y_nm) nm in the overview's frame and
                                       return (values (n,), axis (n,)) after `dwell_s` seconds
``beam_current_pa()``                  probe current, pA (0 for instruments without a beam)
``close()``                            release the SDK connection (optional)
=====================================  ===============================================================

Positions handed to ``spectrum`` are already validated (inside the field of view) and dwell times
are within the declared range, so the wrapper never re-checks them; SDK exceptions should be
re-raised as `InstrumentUnavailable` (connection problems, retried by the campaign) or
`InstrumentError` (refusals).

Registering a wrapper so that a spec can name it (``instrument: {kind: mymicroscope, ...}``),
in the user's own package::

    from pydantic import BaseModel, ConfigDict, Field
    from activescope.engine.registry import register_instrument
    from activescope.instruments.vendor import VendorInstrument

    class MyOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        host: str = Field("192.168.0.10", description="microscope PC address")

    @register_instrument("mymicroscope", MyOptions)
    def mymicroscope(host: str) -> VendorInstrument:
        \"\"\"My microscope through its vendor SDK.\"\"\"
        return VendorInstrument(MyBackend(host))

and declare it in that package's ``pyproject.toml``::

    [project.entry-points."activescope.instruments"]
    mymicroscope = "mypackage.microscope:mymicroscope"
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from activescope.engine.errors import DataError

from .base import InstrumentBase
from .protocol import ELECTRON_C, InstrumentInfo


class VendorBackend(ABC):
    """The calls a vendor SDK wrapper implements; see the module docstring for units."""

    @abstractmethod
    def info(self) -> InstrumentInfo:
        """Field of view, spectral axis, units, channels, dwell range and budget."""

    @abstractmethod
    def scan(self) -> np.ndarray:
        """Acquire the overview image, (H, W) matching `info().geometry.shape`."""

    @abstractmethod
    def spectrum(self, x_nm: float, y_nm: float, dwell_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Move the probe to (x_nm, y_nm), nm, expose `dwell_s` seconds; (values (n,), axis (n,))."""

    def beam_current_pa(self) -> float:
        """Probe current, pA, for the dose accounting (0: no beam)."""
        return 0.0

    def close(self) -> None:
        """Release the SDK connection."""


class VendorInstrument(InstrumentBase):
    """The instrument protocol over a `VendorBackend`: validation, wall-clock time, latency,
    dose (beam current x dwell) and acquisitions accounted against the back end's budget."""

    def __init__(self, backend: VendorBackend) -> None:
        super().__init__(backend.info(), wall_clock=True)
        self.backend = backend
        self._last_axis = np.zeros(self._info.channels)

    @property
    def axis(self) -> np.ndarray:
        """(n,) spectral axis of the last spectrum (zeros before the first)."""
        return self._last_axis

    def _scan(self, t_s: float) -> np.ndarray:
        image = np.asarray(self.backend.scan())
        if image.shape != self._info.geometry.shape:
            raise DataError(f"vendor back end returned an overview of shape {image.shape}, expected {self._info.geometry.shape}")
        return image

    def _measure(self, x_nm: float, y_nm: float, dwell_s: float, t_s: float) -> tuple[np.ndarray, dict[str, Any]]:
        values, axis = (np.asarray(a, dtype=np.float64) for a in self.backend.spectrum(x_nm, y_nm, dwell_s))
        if values.shape != (self._info.channels,) or axis.shape != values.shape:
            raise DataError(f"vendor back end returned values {values.shape} and axis {axis.shape}, expected ({self._info.channels},) each")
        self._last_axis = axis
        return values, {}

    def _dose_e(self, dwell_s: float) -> float:
        return self.backend.beam_current_pa() * 1e-12 / ELECTRON_C * dwell_s

    def close(self) -> None:
        """Close the vendor connection."""
        self.backend.close()
