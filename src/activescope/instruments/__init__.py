"""Instruments for automated experiments: one protocol, many back ends, served over HTTP.

Modules (each readable on its own):

- ``protocol``: the `Instrument` protocol and its data (Geometry, Overview, Spectrum,
  InstrumentState, Budget) and errors; ``base``: `InstrumentBase` (validation and accounting
  shared by local back ends);
- ``sample`` and ``twin``: the STEM-EELS digital twin (`kind: twin`);
- ``playback``: recorded hyperspectral cubes, e.g. the BEPS loops (`kind: playback`);
- ``vendor``: the adapter point for vendor SDKs;
- ``wire``, ``server``, ``faults``, ``client``: the HTTP service (`activescope twin serve`) and
  `RemoteInstrument` (`kind: remote`);
- ``sources`` (`probe_grid` pool source), ``oracle`` (`instrument` oracle), ``drift`` (drift
  correction), ``scalarizers`` (band integral, peak position/prominence/ratio, coercive width):
  the engine plug-ins, found through entry points;
- ``cli``: the `activescope twin` commands.

Only the protocol and the base class are imported here; back ends load on use (FastAPI, scikit-image and the
simulator are not needed to read a spec).
"""

from activescope.instruments.base import InstrumentBase
from activescope.instruments.protocol import (Budget, BudgetExhausted, Geometry, Instrument, InstrumentError,
                                              InstrumentInfo, InstrumentState, InstrumentUnavailable, InvalidSettings,
                                              OutOfField, Overview, Settings, Spectrum)

__all__ = ["Budget", "BudgetExhausted", "Geometry", "Instrument", "InstrumentBase", "InstrumentError",
           "InstrumentInfo", "InstrumentState", "InstrumentUnavailable", "InvalidSettings", "OutOfField", "Overview",
           "Settings", "Spectrum"]
