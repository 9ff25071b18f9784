"""Oracles: dataset lookup, ask/tell, the registry, retries and scalarizers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activescope.engine.errors import RunStateError, SpecError
from activescope.engine.oracle import Measurement, build_oracle, measure_with_retries
from activescope.engine.pool import Pool
from activescope.engine.registry import ORACLES, register_oracle
from activescope.engine.scalarizers import build_scalarizer
from activescope.engine.spec import TargetSpec


@pytest.fixture
def pool() -> Pool:
    return Pool(
        ids=np.array(["m1", "m2", "m3"]),
        X=np.zeros((3, 2), dtype=np.float32),
        labels=pd.DataFrame({"dipole": [1.5, np.nan, 3.0], "gap": [0.2, 0.3, 0.4]}),
    )


class FlakyInstrument:
    """Fails each id `failures` times (as a real flaky instrument would), then returns a spectrum."""

    interactive = False

    def __init__(self, failures: int, raises: bool = False) -> None:
        self.failures, self.raises, self.calls = failures, raises, []

    def measure(self, ids):
        self.calls.append(list(ids))
        if len(self.calls) <= self.failures:
            if self.raises:
                raise TimeoutError("instrument did not answer")
            return [Measurement(k, error="tip crash") for k in ids]
        return [Measurement(k, raw=np.array([0.0, 2.0, 1.0])) for k in ids]


def test_dataset_oracle_looks_values_up(pool):
    oracle = build_oracle("dataset", {}, pool, TargetSpec(column="dipole"))
    got = oracle.measure(["m3", "m1", "m2"])
    assert [m.value for m in got[:2]] == [3.0, 1.5]
    assert not got[2].ok and "missing" in got[2].error


def test_unknown_target_column_lists_the_available_ones(pool):
    with pytest.raises(SpecError, match=r"target\.column: 'mu' is not a label of this pool; available: dipole, gap"):
        build_oracle("dataset", {}, pool, TargetSpec(column="mu"))


def test_bad_oracle_options_are_spec_errors(pool):
    with pytest.raises(SpecError, match=r"oracle\.delay_s: Input should be greater than or equal to 0"):
        build_oracle("dataset", {"delay_s": -2}, pool, TargetSpec(column="dipole"))
    with pytest.raises(SpecError, match="unknown oracle kind 'twin'"):
        build_oracle("twin", {}, pool, TargetSpec(column="dipole"))


def test_asktell_never_measures_synchronously(pool):
    oracle = build_oracle("asktell", {}, pool, TargetSpec(column="yield"))
    assert oracle.interactive
    with pytest.raises(RunStateError, match="activescope tell"):
        oracle.measure(["m1"])


def test_retries_then_scalarizes(pool):
    instrument = FlakyInstrument(failures=2)
    results, attempts = measure_with_retries(instrument, ["m1", "m2"], max_retries=2, scalarize=build_scalarizer("max"))
    assert [m.value for m in results] == [2.0, 2.0] and attempts == [3, 3]
    np.testing.assert_array_equal(results[0].raw, [0.0, 2.0, 1.0])


def test_gives_up_after_max_retries(pool):
    instrument = FlakyInstrument(failures=10, raises=True)
    results, attempts = measure_with_retries(instrument, ["m1"], max_retries=1)
    assert attempts == [2] and len(instrument.calls) == 2
    assert not results[0].ok and "TimeoutError" in results[0].error


def test_raw_signal_without_scalarizer_fails_clearly():
    results, _ = measure_with_retries(FlakyInstrument(failures=0), ["m1"], max_retries=0)
    assert "no oracle.scalarizer" in results[0].error


def test_only_failed_ids_are_retried(pool):
    oracle = build_oracle("dataset", {}, pool, TargetSpec(column="dipole"))
    results, attempts = measure_with_retries(oracle, ["m1", "m2", "m3"], max_retries=2)
    assert attempts == [1, 3, 1] and [m.ok for m in results] == [True, False, True]


def test_registry_accepts_new_kinds(pool):
    @register_oracle("constant_test")
    class Constant:
        interactive = False

        def __init__(self, pool, target):
            self.value = 7.0

        def measure(self, ids):
            return [Measurement(k, self.value) for k in ids]

    assert "constant_test" in ORACLES.names()
    oracle = build_oracle("constant_test", {}, pool, TargetSpec(column="anything"))
    assert [m.value for m in oracle.measure(["m1"])] == [7.0]


def test_a_failure_marked_final_is_not_retried(pool):
    class OutOfReach:
        interactive = False

        def __init__(self) -> None:
            self.calls = []

        def measure(self, ids):
            self.calls.append(list(ids))
            return [Measurement(k, error="outside the field of view", retry=k != "m1") for k in ids]

    oracle = OutOfReach()
    results, attempts = measure_with_retries(oracle, ["m1", "m2"], max_retries=3)
    assert attempts == [1, 4] and not any(m.ok for m in results)
    assert oracle.calls == [["m1", "m2"], ["m2"], ["m2"], ["m2"]]
