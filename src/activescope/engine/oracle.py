"""How the engine measures: the Oracle protocol, measurement records, retries, and the two
domain-free oracles (`dataset` and `asktell`).

An oracle is the only component that knows how to measure. It may be a dataset lookup, a lab
answering through ask/tell files, a digital twin or a real instrument. Measuring may be slow, may
fail (the campaign retries up to a limit, then records the failure) and may return a raw signal
(a spectrum) that a scalarizer (see `scalarizers`) reduces to the scalar objective y. A spec's
`oracle:` section names a registered kind (see `registry.ORACLES`); its other keys are validated
by the kind's own options model. Instrument back ends register more kinds without touching the
campaign loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import RunStateError, SpecError
from .pool import Pool
from .registry import ORACLES, register_oracle
from .scalarizers import Scalarizer


@dataclass
class Measurement:
    """One measurement of one candidate.

    value: the scalar objective, or None when the oracle returned only a raw signal (the
        campaign's scalarizer fills it in) or when the measurement failed.
    raw: optional raw signal (e.g. a spectrum), stored as float64 bytes in the run record.
    error: a message when the measurement failed; value is then None.
    retry: False when trying again cannot help (a position outside the instrument's reach):
        the failure is final at once instead of spending `max_retries` more attempts.
    """

    id: str
    value: float | None = None
    raw: np.ndarray | None = None
    error: str | None = None
    retry: bool = True

    @property
    def ok(self) -> bool:
        """True for a successful measurement: no error and a finite value."""
        return self.error is None and self.value is not None and bool(np.isfinite(self.value))


class Oracle(Protocol):
    """Measures candidates by id.

    measure(ids) returns one Measurement per id, in order. `interactive` oracles (ask/tell) do
    not measure synchronously: the campaign writes the batch out and waits for `tell`.

    Optional: measure_each(ids) -> Iterator[Measurement] yields each measurement as soon as it is
    taken (in any order). The campaign then records every result the moment it arrives, so a
    crash in the middle of a slow batch (a microscope) loses none of the spectra already taken.
    bind_run(run_id) is called with the run's id before measuring, so an instrument can give
    its requests ids that stay the same when a killed run resumes. reachable() -> (len(pool),)
    bool marks the candidates the oracle can still measure (a drifting instrument loses those
    pushed out of its field of view): the campaign offers only those to the acquisition, and
    stops with "no reachable candidate" when none is left.
    """

    interactive: bool

    def measure(self, ids: Sequence[str]) -> list[Measurement]:
        """One Measurement per id, in the order of ids."""
        ...


def build_oracle(kind: str, options: dict[str, Any], pool: Pool, target: Any, instrument: Any = None) -> Oracle:
    """The registered oracle `kind` with its spec options, measuring `target` (a TargetSpec:
    column and goal) on `pool`, through `instrument` when the oracle takes one."""
    return ORACLES.build(kind, options, pool, target, section="oracle", instrument=instrument)


class DatasetOptions(BaseModel):
    """Options of `oracle: {kind: dataset}`."""

    model_config = ConfigDict(extra="forbid")
    delay_s: float = Field(0.0, ge=0, description="seconds per measurement, to emulate a slow instrument")


@register_oracle("dataset", DatasetOptions)
class DatasetOracle:
    """Looks the target up in the pool's known labels (retrospective campaigns, benchmarks).

    A missing (NaN) label is a failed measurement. `delay_s` sleeps per measured id.
    """

    interactive = False

    def __init__(self, pool: Pool, target: Any, delay_s: float = 0.0) -> None:
        columns = list(pool.labels.columns)
        if target.column not in columns:
            raise SpecError(
                f"target.column: {target.column!r} is not a label of this pool; available: "
                f"{', '.join(map(str, columns)) or 'none'}"
            )
        self._pool = pool
        self._values = pool.labels[target.column].to_numpy(dtype=float)
        self._delay_s = delay_s

    def measure(self, ids: Sequence[str]) -> list[Measurement]:
        """The known label of each id (a failed measurement where it is missing)."""
        if self._delay_s:
            time.sleep(self._delay_s * len(ids))
        values = self._values[self._pool.index_of(ids)]
        return [
            Measurement(id=str(k), value=float(v))
            if np.isfinite(v)
            else Measurement(id=str(k), error="label is missing")
            for k, v in zip(ids, values)
        ]


@register_oracle("asktell")
class AskTellOracle:
    """A lab answering through files: `activescope suggest` writes the batch, `activescope tell`
    records the results. It never measures synchronously."""

    interactive = True

    def __init__(self, pool: Pool, target: Any) -> None:
        self.target = target

    def measure(self, ids: Sequence[str]) -> list[Measurement]:
        """Never measures: raises RunStateError pointing to `suggest` and `tell`."""
        raise RunStateError("the asktell oracle measures through `activescope suggest` and `activescope tell`")


def _complete(m: Measurement, scalarize: Scalarizer | None) -> Measurement:
    """Fill in value from a raw signal with the scalarizer; a measurement with neither fails."""
    if m.error is not None:
        return m
    if m.value is not None:
        return m if np.isfinite(m.value) else Measurement(id=m.id, raw=m.raw, error=f"non-finite value {m.value}")
    if m.raw is None:
        return Measurement(id=m.id, error="oracle returned neither a value nor a raw signal")
    if scalarize is None:
        return Measurement(id=m.id, raw=m.raw, error="raw signal but no oracle.scalarizer in the spec")
    return Measurement(id=m.id, value=scalarize(m.raw), raw=m.raw)


def measure_with_retries(
    oracle: Oracle,
    ids: Sequence[str],
    max_retries: int,
    scalarize: Scalarizer | None = None,
    on_final: Callable[[Measurement, int], None] | None = None,
) -> tuple[list[Measurement], list[int]]:
    """Measure ids, retrying failures up to `max_retries` times; returns the final measurements
    (in the order of ids) and the number of attempts per id.

    An OSError raised by the oracle (instrument I/O, timeouts) fails the ids it had not answered
    yet in that attempt; other exceptions are bugs and propagate. `on_final(measurement,
    attempts)` is called for each id as soon as its result is final (a success, or a failure with
    no retry left): with a streaming oracle (`measure_each`) that is the moment it arrives.
    """
    results: dict[str, Measurement] = {}
    attempts = dict.fromkeys(map(str, ids), 0)
    todo = list(attempts)
    for attempt in range(max_retries + 1):
        if not todo:
            break
        last = attempt == max_retries
        answered: set[str] = set()

        def take(m: Measurement) -> None:
            attempts[m.id] += 1
            results[m.id] = m
            answered.add(m.id)
            if on_final is not None and (m.ok or last or not m.retry):
                on_final(m, attempts[m.id])

        stream = getattr(oracle, "measure_each", oracle.measure)
        try:
            for m in stream(todo):
                take(_complete(m, scalarize))
        except OSError as err:
            for k in todo:
                if k not in answered:
                    take(Measurement(id=k, error=f"{type(err).__name__}: {err}"))
        todo = [k for k in todo if not results[k].ok and results[k].retry]
    return [results[k] for k in attempts], list(attempts.values())
