"""Campaign metrics and the exact random-sampling baseline.

Everything here is domain-agnostic and vectorised over measurements. `goal` is "maximize" or
"minimize"; minimisation is handled by negating values, so every function reads the same way.

The random baseline is an exact expectation for drawing n candidates uniformly without
replacement from a pool of N, so reports and benchmarks can draw "random" without simulating:

- Recall: a pool member is in the sample with probability n/N, so the expected number of the
  pool's top-M members found is the hypergeometric mean n·M/N. With no ties at the k-th value
  (M = k) the expected top-k recall is exactly n/N. With ties, the recall caps the count at k and
  the expectation is E[min(X, k)]/k with X ~ Hypergeometric(N, M, n), evaluated exactly.
- Best so far: sort the pool best first, v_1 ≥ … ≥ v_N. The best of n draws is v_j exactly when
  v_j is drawn and the other n−1 draws come from the N−j worse members:
  P(best = v_j) = C(N−j, n−1) / C(N, n). Its expectation is Σ_j v_j·P(best = v_j), computed in
  log space with gammaln so it stays exact for N = 130k.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import gammaln
from scipy.stats import hypergeom

from .errors import DataError

Goal = Literal["maximize", "minimize"]
ROUND_PHASES = ("fit_s", "predict_s", "select_s", "measure_s")


def _oriented(values: np.ndarray, goal: Goal) -> np.ndarray:
    """Values as float64 with larger = better."""
    if goal not in ("maximize", "minimize"):
        raise DataError(f"goal must be 'maximize' or 'minimize', got {goal!r}")
    v = np.asarray(values, dtype=np.float64)
    return v if goal == "maximize" else -v


def _finite_pool(all_values: np.ndarray, goal: Goal) -> np.ndarray:
    pool = _oriented(all_values, goal)
    pool = pool[np.isfinite(pool)]
    if pool.size == 0:
        raise DataError("the pool has no finite values for this target")
    return pool


def _check_k(k: int, pool_size: int) -> int:
    if not 1 <= k <= pool_size:
        raise DataError(f"k={k} must be between 1 and the pool size {pool_size}")
    return int(k)


def top_fraction_k(pool_size: int, fraction: float = 0.01) -> int:
    """The k of a top-`fraction` recall: ceil(fraction·N), at least 1 (1,309 for QM9 at 1 %)."""
    if not 0 < fraction <= 1:
        raise DataError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, math.ceil(fraction * pool_size - 1e-9))


def top_k_threshold(all_values: np.ndarray, k: int, goal: Goal = "maximize") -> float:
    """The k-th best finite value of the pool, in goal orientation (larger = better)."""
    pool = _finite_pool(all_values, goal)
    k = _check_k(k, pool.size)
    return float(np.partition(pool, pool.size - k)[pool.size - k])


def recall_curve(values_in_order: np.ndarray, all_values: np.ndarray, k: int, goal: Goal = "maximize") -> np.ndarray:
    """Top-k recall after each measurement: entry i is the recall after the first i+1 values.

    A measured value counts as a hit when it is at least as good as the pool's k-th best value;
    hits are capped at k, so ties at the threshold never push recall above 1. NaN (failed
    measurements) never count.
    """
    threshold = top_k_threshold(all_values, k, goal)
    measured = _oriented(values_in_order, goal)
    hits = np.cumsum(measured >= threshold)
    return np.minimum(hits, k) / k


def top_k_recall(measured_values: np.ndarray, all_values: np.ndarray, k: int, goal: Goal = "maximize") -> float:
    """Fraction of the pool's top-k values found among the measured values (0 when none measured)."""
    measured = np.asarray(measured_values, dtype=np.float64)
    if measured.size == 0:
        top_k_threshold(all_values, k, goal)
        return 0.0
    return float(recall_curve(measured, all_values, k, goal)[-1])


def top_fraction_recall(
    measured_values: np.ndarray, all_values: np.ndarray, fraction: float = 0.01, goal: Goal = "maximize"
) -> float:
    """Top-k recall with k = ceil(fraction·N) over the pool's finite values."""
    k = top_fraction_k(int(np.isfinite(np.asarray(all_values, dtype=np.float64)).sum()), fraction)
    return top_k_recall(measured_values, all_values, k, goal)


def best_so_far(values_in_order: np.ndarray, goal: Goal = "maximize") -> np.ndarray:
    """Running best of the measured values, in their own units; NaN until the first finite value."""
    oriented = _oriented(values_in_order, goal)
    running = np.fmax.accumulate(oriented) if oriented.size else oriented
    return running if goal == "maximize" else -running


def random_recall_expectation(all_values: np.ndarray, k: int, n_max: int, goal: Goal = "maximize") -> np.ndarray:
    """Expected top-k recall after n = 1..n_max uniform draws without replacement (exact).

    Equals n/N when the k-th best value is not tied; otherwise E[min(X, k)]/k with
    X ~ Hypergeometric(N, M, n), M the number of pool values at least as good as the k-th best.
    """
    pool = _finite_pool(all_values, goal)
    size = pool.size
    k = _check_k(k, size)
    n = np.arange(1, min(n_max, size) + 1)
    tied = int((pool >= top_k_threshold(pool, k)).sum())
    if tied == k:
        return n / size
    x = np.arange(k + 1, min(tied, n[-1]) + 1)
    excess = (x - k)[None, :] * hypergeom.pmf(x[None, :], size, tied, n[:, None])
    return (n * tied / size - excess.sum(axis=1)) / k


def _log_comb(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """log C(a, b), elementwise, for 0 ≤ b ≤ a."""
    return gammaln(np.add(a, 1)) - gammaln(np.add(b, 1)) - gammaln(np.subtract(a, b) + 1)


def random_best_expectation(
    all_values: np.ndarray, n_max: int, goal: Goal = "maximize", chunk: int = 16
) -> np.ndarray:
    """Expected best value after n = 1..n_max uniform draws without replacement (exact).

    Uses P(best = v_j) = C(N−j, n−1)/C(N, n) over the pool sorted best first; `chunk` rows of n
    are evaluated at a time so memory stays at chunk·N floats. Returned in the values' own units.
    """
    pool = np.sort(_finite_pool(all_values, goal))[::-1]
    size = pool.size
    n_all = np.arange(1, min(n_max, size) + 1)
    worse = size - np.arange(1, size + 1)[None, :]
    out = np.empty(n_all.size)
    for start in range(0, n_all.size, chunk):
        n = n_all[start : start + chunk, None]
        feasible = worse >= n - 1
        log_p = _log_comb(np.where(feasible, worse, n - 1), n - 1) - _log_comb(size, n)
        out[start : start + chunk] = np.where(feasible, np.exp(log_p), 0.0) @ pool
    return out if goal == "maximize" else -out


def regression_summary(y_true: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> dict[str, float]:
    """Accuracy and calibration of a probabilistic prediction.

    r2, mae, rmse in target units; coverage_1sd / coverage_2sd: fraction of true values within
    ±1σ / ±2σ of the mean (≈ 0.683 / 0.954 for a calibrated Gaussian); mean_sd: average σ.
    """
    y = np.asarray(y_true, dtype=np.float64)
    mu = np.asarray(mean, dtype=np.float64)
    sd = np.sqrt(np.clip(np.asarray(variance, dtype=np.float64), 0.0, None))
    if not (y.shape == mu.shape == sd.shape) or y.ndim != 1 or y.size < 2:
        raise DataError(f"regression_summary needs equal 1-D arrays of ≥ 2 values, got {y.shape}, {mu.shape}, {sd.shape}")
    err = mu - y
    total = np.sum((y - y.mean()) ** 2)
    z = np.abs(err) / np.where(sd > 0, sd, np.finfo(float).tiny)
    return {
        "r2": float(1.0 - np.sum(err**2) / total) if total > 0 else float("nan"),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "coverage_1sd": float(np.mean(z <= 1.0)),
        "coverage_2sd": float(np.mean(z <= 2.0)),
        "mean_sd": float(np.mean(sd)),
    }


def round_seconds(rounds: pd.DataFrame) -> np.ndarray:
    """Working seconds of each round of a run record: fit + predict + select + measure (phases a
    round did not have count as 0). Unlike wall-clock start→finish, this excludes time spent
    waiting for an ask/tell lab."""
    phases = [rounds[p].to_numpy(dtype=float) for p in ROUND_PHASES if p in rounds]
    return np.nansum(phases, axis=0) if phases else np.zeros(len(rounds))
