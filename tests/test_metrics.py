import itertools

import numpy as np
import pytest

from activescope.engine.errors import DataError
from activescope.engine.metrics import (
    best_so_far,
    random_best_expectation,
    random_recall_expectation,
    recall_curve,
    regression_summary,
    top_fraction_k,
    top_fraction_recall,
    top_k_recall,
)

POOL = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.0])


def test_top_k_recall_hand_computed():
    # top-3 of the pool is {9, 8, 7}; measuring 9 and 7 (and two others) finds 2 of 3
    assert top_k_recall([1.0, 9.0, 3.0, 7.0], POOL, k=3) == pytest.approx(2 / 3)
    # minimisation: top-3 is {0, 1, 2}
    assert top_k_recall([0.0, 9.0, 2.0], POOL, k=3, goal="minimize") == pytest.approx(2 / 3)
    assert top_k_recall([], POOL, k=3) == 0.0


def test_recall_curve_counts_in_order_and_caps_ties():
    curve = recall_curve([9.0, 1.0, 8.0, 7.0], POOL, k=2)
    np.testing.assert_allclose(curve, [0.5, 0.5, 1.0, 1.0])
    tied = np.array([5.0, 5.0, 5.0, 1.0])
    np.testing.assert_allclose(recall_curve(tied[:3], tied, k=2), [0.5, 1.0, 1.0])


def test_failed_measurements_never_count():
    assert top_k_recall([np.nan, 9.0], POOL, k=1) == 1.0
    np.testing.assert_allclose(best_so_far([np.nan, 2.0, 1.0, 5.0]), [np.nan, 2.0, 2.0, 5.0])


def test_top_fraction_recall_uses_ceil_of_fraction():
    assert top_fraction_k(130_831, 0.01) == 1309
    assert top_fraction_k(100, 0.01) == 1
    assert top_fraction_recall([9.0], POOL, fraction=0.2) == pytest.approx(0.5)


def test_best_so_far_both_goals():
    np.testing.assert_allclose(best_so_far([3.0, 1.0, 4.0, 2.0]), [3.0, 3.0, 4.0, 4.0])
    np.testing.assert_allclose(best_so_far([3.0, 1.0, 4.0, 0.5], "minimize"), [3.0, 1.0, 1.0, 0.5])


def test_random_best_expectation_equals_enumeration():
    values = np.array([3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0])
    for goal, pick in (("maximize", max), ("minimize", min)):
        expected = random_best_expectation(values, n_max=7, goal=goal)
        exact = [np.mean([pick(c) for c in itertools.combinations(values, n)]) for n in range(1, 8)]
        np.testing.assert_allclose(expected, exact, rtol=1e-10)


def test_random_baselines_match_monte_carlo():
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=60), 1)  # rounding creates ties at the top-k threshold
    draws = 20
    order = np.argsort(rng.random((40_000, values.size)), axis=1)[:, :draws]
    sampled = values[order]
    mc_best = np.maximum.accumulate(sampled, axis=1).mean(axis=0)
    np.testing.assert_allclose(random_best_expectation(values, draws), mc_best, atol=0.01)
    k = 4
    threshold = np.sort(values)[-k]
    mc_recall = (np.minimum(np.cumsum(sampled >= threshold, axis=1), k) / k).mean(axis=0)
    np.testing.assert_allclose(random_recall_expectation(values, k, draws), mc_recall, atol=0.01)


def test_random_recall_without_ties_is_n_over_N():
    np.testing.assert_allclose(random_recall_expectation(POOL, 3, 10), np.arange(1, 11) / 10)


def test_regression_summary_hand_computed():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    stats = regression_summary(y, y + np.array([0.5, -0.5, 0.5, -3.0]), np.ones(4))
    assert stats["mae"] == pytest.approx(1.125)
    assert stats["r2"] == pytest.approx(1 - (3 * 0.25 + 9) / 5)
    assert stats["coverage_1sd"] == pytest.approx(0.75)
    assert stats["coverage_2sd"] == pytest.approx(0.75)


def test_bad_inputs_raise_data_error():
    with pytest.raises(DataError, match="k=11"):
        top_k_recall([1.0], POOL, k=11)
    with pytest.raises(DataError, match="goal"):
        best_so_far([1.0], goal="up")
    with pytest.raises(DataError, match="no finite values"):
        top_k_recall([1.0], np.full(3, np.nan), k=1)
