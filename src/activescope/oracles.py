"""Engine-level oracles and the oracle registry.

A spec's `oracle:` section names a registered kind; its extra keys are validated by the kind's
own pydantic options model. Instrument back ends register more kinds with `register_oracle`
without touching the campaign loop. `measure_with_retries` applies the spec's retry limit and
scalarizer to any oracle.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RunStateError, SpecError
from .oracle import Measurement, Oracle, Scalarizer
from .pool import Pool
from .spec import OracleSpec, TargetSpec, format_validation_error

OracleFactory = Callable[..., Oracle]
_ORACLES: dict[str, OracleFactory] = {}
_OPTIONS: dict[str, type[BaseModel]] = {}


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def register_oracle(name: str, options: type[BaseModel] = NoOptions) -> Callable[[OracleFactory], OracleFactory]:
    """Register `factory(pool, target, **options) -> Oracle` as the oracle kind `name`; `options`
    (extra="forbid") validates the spec's extra oracle keys."""

    def wrap(factory: OracleFactory) -> OracleFactory:
        _ORACLES[name] = factory
        _OPTIONS[name] = options
        return factory

    return wrap


def oracle_names() -> list[str]:
    return sorted(_ORACLES)


def validate_oracle_options(kind: str, options: dict[str, Any]) -> BaseModel:
    """Validate an oracle section's extra keys (raises ValueError naming kind or field)."""
    if kind not in _ORACLES:
        raise ValueError(f"unknown oracle kind {kind!r}; allowed: {', '.join(oracle_names())}")
    try:
        return _OPTIONS[kind].model_validate(options)
    except ValidationError as err:
        raise ValueError(format_validation_error(err)) from None


def build_oracle(spec: OracleSpec, pool: Pool, target: TargetSpec) -> Oracle:
    """The oracle described by a spec's oracle section, measuring `target` on `pool`."""
    try:
        options = validate_oracle_options(spec.kind, spec.options())
    except ValueError as err:
        raise SpecError(f"oracle: {err}") from None
    return _ORACLES[spec.kind](pool, target, **options.model_dump())


class DatasetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delay_s: float = Field(0.0, ge=0, description="seconds per measurement, to emulate a slow instrument")


@register_oracle("dataset", DatasetOptions)
class DatasetOracle:
    """Looks the target up in the pool's known labels (retrospective campaigns, benchmarks).

    A missing (NaN) label is a failed measurement. `delay_s` sleeps per measured id.
    """

    interactive = False

    def __init__(self, pool: Pool, target: TargetSpec, delay_s: float = 0.0) -> None:
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

    def __init__(self, pool: Pool, target: TargetSpec) -> None:
        self.target = target

    def measure(self, ids: Sequence[str]) -> list[Measurement]:
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
    oracle: Oracle, ids: Sequence[str], max_retries: int, scalarize: Scalarizer | None = None
) -> tuple[list[Measurement], list[int]]:
    """Measure ids, retrying failures up to `max_retries` times; returns the final measurements
    (in the order of ids) and the number of attempts per id. An OSError raised by the oracle
    (instrument I/O, timeouts) fails the whole call's ids; other exceptions are bugs and propagate."""
    results: dict[str, Measurement] = {}
    attempts = dict.fromkeys(map(str, ids), 0)
    todo = list(attempts)
    for _ in range(max_retries + 1):
        if not todo:
            break
        try:
            batch = [_complete(m, scalarize) for m in oracle.measure(todo)]
        except OSError as err:
            batch = [Measurement(id=k, error=f"{type(err).__name__}: {err}") for k in todo]
        for m in batch:
            attempts[m.id] += 1
            results[m.id] = m
        todo = [k for k in todo if not results[k].ok]
    return [results[k] for k in attempts], list(attempts.values())
