"""How the engine measures: the Oracle interface, measurement records and scalarizers.

An oracle is the only component that knows how to measure. It may be a dataset lookup, a lab
answering through ask/tell files, a digital twin or a real instrument. Measuring may be slow, may
fail (the campaign retries up to a limit, then records the failure) and may return a raw signal
(a spectrum) that a scalarizer reduces to the scalar objective y.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np


@dataclass
class Measurement:
    """One measurement of one candidate.

    value: the scalar objective, or None when the oracle returned only a raw signal (the
        campaign's scalarizer fills it in) or when the measurement failed.
    raw: optional raw signal (e.g. a spectrum), stored as float64 bytes in the run record.
    error: a message when the measurement failed; value is then None.
    """

    id: str
    value: float | None = None
    raw: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None and bool(np.isfinite(self.value))


class Oracle(Protocol):
    """Measures candidates by id.

    measure(ids) returns one Measurement per id, in order. `interactive` oracles (ask/tell) do
    not measure synchronously: the campaign writes the batch out and waits for `tell`.
    """

    interactive: bool

    def measure(self, ids: Sequence[str]) -> list[Measurement]: ...


Scalarizer = Callable[[np.ndarray], float]
_SCALARIZERS: dict[str, Callable[..., Scalarizer]] = {}


def register_scalarizer(name: str):
    def wrap(factory):
        _SCALARIZERS[name] = factory
        return factory

    return wrap


def scalarizer_names() -> list[str]:
    return sorted(_SCALARIZERS)


def build_scalarizer(name: str, **params) -> Scalarizer:
    if name not in _SCALARIZERS:
        raise KeyError(f"unknown scalarizer {name!r}; choose one of {scalarizer_names()}")
    return _SCALARIZERS[name](**params)


@register_scalarizer("max")
def _max(**_) -> Scalarizer:
    return lambda raw: float(np.max(raw))


@register_scalarizer("mean")
def _mean(**_) -> Scalarizer:
    return lambda raw: float(np.mean(raw))


@register_scalarizer("peak_to_peak")
def _ptp(**_) -> Scalarizer:
    return lambda raw: float(np.ptp(raw))


@register_scalarizer("loop_area")
def _loop_area(**_) -> Scalarizer:
    """Area enclosed by a closed loop sampled as (2, n) [x; y] or a 1-D signal over its index."""

    def f(raw: np.ndarray) -> float:
        raw = np.asarray(raw, dtype=float)
        if raw.ndim == 2 and raw.shape[0] == 2:
            x, y = raw
        else:
            y = raw.ravel()
            x = np.arange(len(y), dtype=float)
        return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    return f
