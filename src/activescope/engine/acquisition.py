"""Acquisition: single-point scores from a posterior, and batch selection on a discrete pool.

Every score assumes MAXIMISATION (the campaign negates y for minimisation). Batch selection
(`select_batch`) predicts the pool once (or reuses the caller's prediction), keeps the top
`prefilter` available rows by the single-point score, and then builds the batch on that subset from the model's joint posterior:

- ei, logei, ucb, max_variance, greedy: Kriging believer. Each pick is "observed" at its
  posterior mean, so the mean is unchanged, the incumbent becomes max(best, picked mean) and
  the covariance gets a rank-1 update (no refit); the next pick maximises the score under the
  updated variance. Nearby candidates lose variance, so the batch spreads out (greedy ignores
  variance and stays the top-q by mean).
- thompson: q joint posterior samples over the subset; sample i picks its argmax among the
  rows not already picked. The prefilter ranks by UCB.

Acquisition functions are registered entries (`registry.ACQUISITIONS`, entry-point group
``activescope.acquisitions``): a factory takes the kind's options and returns an `Acquisition`.
A user's function `score(mean, variance, best, rng) -> scores` plugs into the same batch logic.

Models without `predict_joint` get local penalisation instead: scores are turned into ranks in
(0, 1] and, after each pick, multiplied by 1 - exp(-d^2 / l^2), d being the distance in
standardised features to the picked row and l the median distance of the subset to the first
pick; Thompson sampling then uses independent marginal samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import erfcx, ndtr

from .errors import DataError
from .registry import ACQUISITIONS, register_acquisition
from .spec import AcquisitionSpec
from .surrogate import Surrogate

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)
_MIN_VARIANCE = 1e-20


@dataclass(frozen=True)
class Selection:
    """A chosen batch: row positions into X, their acquisition scores (at the time each was
    picked), and their marginal posterior mean and variance (target units)."""

    indices: np.ndarray
    acquisition: np.ndarray
    mean: np.ndarray
    variance: np.ndarray


def _standardised_improvement(mean: np.ndarray, variance: np.ndarray, best: float, xi: float) -> tuple[np.ndarray, np.ndarray]:
    std = np.sqrt(np.maximum(variance, _MIN_VARIANCE))
    return (mean - best - xi) / std, std


def expected_improvement(mean: np.ndarray, variance: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """E[max(f - best - xi, 0)] under f ~ N(mean, variance); underflows to 0 far below best."""
    u, std = _standardised_improvement(mean, variance, best, xi)
    return std * (np.exp(-0.5 * u**2 - _LOG_SQRT_2PI) + u * ndtr(u))


def _log_h(u: np.ndarray) -> np.ndarray:
    """log(phi(u) + u Phi(u)), accurate for every finite u.

    u > -1: directly. -1e3 < u <= -1: phi(u) (1 + u sqrt(pi/2) erfcx(-u / sqrt 2)), which avoids
    the underflow of phi and Phi. u <= -1e3: the asymptotic series phi(u) / u^2 (1 - 3/u^2 + 15/u^4),
    which avoids the cancellation in 1 + u * (...).
    """
    out = np.empty_like(u)
    direct = u > -1
    far = u <= -1e3
    middle = ~direct & ~far
    ud = u[direct]
    out[direct] = np.log(np.exp(-0.5 * ud**2 - _LOG_SQRT_2PI) + ud * ndtr(ud))
    um = u[middle]
    out[middle] = -0.5 * um**2 - _LOG_SQRT_2PI + np.log1p(um * np.sqrt(np.pi / 2) * erfcx(-um / np.sqrt(2)))
    inv_sq = 1.0 / u[far] ** 2
    out[far] = -0.5 * u[far] ** 2 - _LOG_SQRT_2PI + np.log(inv_sq) + np.log1p(-3 * inv_sq + 15 * inv_sq**2)
    return out


def log_expected_improvement(mean: np.ndarray, variance: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """log EI, finite where EI itself underflows to 0 (so far-below-best candidates stay ranked)."""
    u, std = _standardised_improvement(np.asarray(mean, dtype=np.float64), variance, best, xi)
    return np.log(std) + _log_h(u)


def upper_confidence_bound(mean: np.ndarray, variance: np.ndarray, beta: float) -> np.ndarray:
    """mean + sqrt(beta) * std."""
    return mean + np.sqrt(beta * np.maximum(variance, 0.0))


def thompson_marginal(mean: np.ndarray, variance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from each candidate's marginal posterior (independent across candidates)."""
    return mean + np.sqrt(np.maximum(variance, 0.0)) * rng.standard_normal(len(mean))


ScoreFunction = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]
"""score(mean, variance, best, rng) -> (m,) scores, higher is better (maximisation)."""

PickFunction = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
"""pick(available_rows, q, rng) -> q row positions chosen without a model (in pool order)."""


@dataclass(frozen=True)
class Acquisition:
    """A configured acquisition function.

    score: single-point scores from marginal posteriors (mean, variance in target units, best =
        incumbent). prefilter: the score used to shortlist candidates (default: `score`).
    sampling: scores are posterior samples (Thompson): batches come from joint samples.
    pick: model-free selection (`random`, `raster`): the campaign fits no model and lets
        `pick(available_rows, q, rng)` choose.
    """

    score: ScoreFunction
    prefilter: ScoreFunction | None = None
    sampling: bool = False
    pick: PickFunction | None = None

    @property
    def needs_model(self) -> bool:
        """Whether choosing needs a fitted surrogate (False for model-free picks)."""
        return self.pick is None

    def shortlist_score(self, mean: np.ndarray, variance: np.ndarray, best: float, rng: np.random.Generator) -> np.ndarray:
        """Scores (higher is better) that rank the pool for the shortlist batch selection works on."""
        return (self.prefilter or self.score)(mean, variance, best, rng)


def build_acquisition(spec: AcquisitionSpec) -> Acquisition:
    """The acquisition function a spec's `acquisition:` section names, with its options."""
    made = ACQUISITIONS.build(spec.kind, spec.options(), section="acquisition")
    return made if isinstance(made, Acquisition) else Acquisition(score=made)


class _Exploration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beta: float = Field(2.0, ge=0, description="exploration weight: mean + sqrt(beta) * std")


class _Improvement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    xi: float = Field(0.0, ge=0, description="improvement margin, in target units")


@register_acquisition("ei", _Improvement)
def ei(xi: float = 0.0) -> Acquisition:
    """Expected improvement over the best measured value."""
    return Acquisition(lambda mean, variance, best, rng: expected_improvement(mean, variance, best, xi))


@register_acquisition("logei", _Improvement)
def logei(xi: float = 0.0) -> Acquisition:
    """log expected improvement: EI that stays ranked far below the incumbent."""
    return Acquisition(lambda mean, variance, best, rng: log_expected_improvement(mean, variance, best, xi))


@register_acquisition("ucb", _Exploration)
def ucb(beta: float = 2.0) -> Acquisition:
    """Upper confidence bound mean + sqrt(beta) * std."""
    return Acquisition(lambda mean, variance, best, rng: upper_confidence_bound(mean, variance, beta))


@register_acquisition("max_variance")
def max_variance() -> Acquisition:
    """Pure exploration: the largest posterior variance (mapping a property everywhere)."""
    return Acquisition(lambda mean, variance, best, rng: np.asarray(variance, dtype=np.float64).copy())


@register_acquisition("greedy")
def greedy() -> Acquisition:
    """Pure exploitation: the largest posterior mean."""
    return Acquisition(lambda mean, variance, best, rng: np.asarray(mean, dtype=np.float64).copy())


@register_acquisition("thompson", _Exploration)
def thompson(beta: float = 2.0) -> Acquisition:
    """Thompson sampling from the joint posterior; `beta` sets the UCB shortlist."""
    return Acquisition(
        score=lambda mean, variance, best, rng: thompson_marginal(mean, variance, rng),
        prefilter=lambda mean, variance, best, rng: upper_confidence_bound(mean, variance, beta),
        sampling=True,
    )


def _no_score(mean: np.ndarray, variance: np.ndarray, best: float, rng: np.random.Generator) -> np.ndarray:
    raise TypeError("a model-free acquisition has no score; the campaign uses its pick")


def random_pick(available: np.ndarray, q: int, rng: np.random.Generator) -> np.ndarray:
    """q of the available rows drawn uniformly without replacement."""
    return rng.choice(available, size=min(q, len(available)), replace=False)


@register_acquisition("random")
def random_choice() -> Acquisition:
    """Uniform random selection without a model (the baseline every strategy must beat)."""
    return Acquisition(score=_no_score, pick=random_pick)


@register_acquisition("raster")
def raster() -> Acquisition:
    """The next rows in pool order, without a model: a raster scan over a grid of probe
    positions (the microscopist's baseline)."""
    return Acquisition(score=_no_score, pick=lambda available, q, rng: np.sort(available)[:q])


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first; equal scores in position order (NaN
    counts as worst). Deterministic, so a shard-by-shard top-k merge picks the same rows."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    part = np.arange(len(scores))
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        above = np.flatnonzero(scores > kth)
        part = np.concatenate([above, np.flatnonzero(scores == kth)[: k - above.size]])
    return part[np.lexsort((part, -scores[part]))]


def _masked_argmax(scores: np.ndarray, blocked: np.ndarray) -> int:
    """Position of the best score among unblocked entries (NaN counts as worst); always unblocked."""
    open_positions = np.flatnonzero(~blocked)
    open_scores = scores[open_positions]
    return int(open_positions[np.argmax(np.where(np.isnan(open_scores), -np.inf, open_scores))])


def _believer_batch(acquisition: Acquisition, mean: np.ndarray, cov: np.ndarray, best: float, q: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sequential greedy picks with Kriging-believer fantasies; returns (positions, scores).

    The covariance after t picks is cov - V_t^T V_t, with one row of V per pick; only the
    diagonal and the next picked column are ever formed, so each step costs O(k t).
    """
    k = len(mean)
    jitter = 1e-10 * max(float(np.mean(np.diag(cov))), 1e-12)
    updates = np.zeros((q, k))
    variance = np.diag(cov).copy()
    picked = np.zeros(k, dtype=bool)
    positions, scores = np.empty(q, dtype=np.int64), np.empty(q)
    incumbent = best
    for step in range(q):
        step_scores = acquisition.score(mean, variance, incumbent, rng)
        j = _masked_argmax(step_scores, picked)
        positions[step], scores[step], picked[j] = j, step_scores[j], True
        column = cov[:, j] - updates[:step].T @ updates[:step, j]
        updates[step] = column / np.sqrt(max(column[j], 0.0) + jitter)
        variance = np.maximum(variance - updates[step] ** 2, 0.0)
        incumbent = max(incumbent, float(mean[j]))
    return positions, scores


def _joint_samples(mean: np.ndarray, cov: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_samples, k) draws from N(mean, cov); jitter grows until the Cholesky succeeds.

    The factorisation runs in torch (several times faster than numpy's OpenBLAS here).
    """
    import torch
    cov_t = torch.as_tensor(cov, dtype=torch.float64)
    scale = max(float(cov_t.diagonal().mean()), 1e-12)
    eye = torch.eye(len(mean), dtype=torch.float64)
    for relative_jitter in (1e-10, 1e-8, 1e-6, 1e-4, 1e-2):
        factor, info = torch.linalg.cholesky_ex(cov_t + relative_jitter * scale * eye)
        if int(info) == 0:
            break
    else:
        raise DataError("the model's joint posterior covariance is not positive semi-definite")
    noise = torch.as_tensor(rng.standard_normal((n_samples, len(mean))))
    return mean + (noise @ factor.T).numpy()


def _distinct_argmaxes(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row i of samples picks its argmax among columns not picked by rows < i."""
    picked = np.zeros(samples.shape[1], dtype=bool)
    positions = np.empty(len(samples), dtype=np.int64)
    for i, sample in enumerate(samples):
        positions[i] = _masked_argmax(sample, picked)
        picked[positions[i]] = True
    return positions, samples[np.arange(len(samples)), positions]


def _penalised_batch(scores: np.ndarray, features: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Local penalisation for models without a joint posterior (see the module docstring)."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(np.where(np.isnan(scores), -np.inf, scores), kind="stable")] = np.arange(1, len(scores) + 1) / len(scores)
    spread = features.std(axis=0)
    features = (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    picked = np.zeros(len(scores), dtype=bool)
    positions = np.empty(q, dtype=np.int64)
    positions[0] = int(np.argmax(ranks))
    picked[positions[0]] = True
    length_sq = max(float(np.median(((features - features[positions[0]]) ** 2).sum(axis=1))), 1e-12)
    weighted = ranks.copy()
    for step in range(1, q):
        weighted *= 1 - np.exp(-((features - features[positions[step - 1]]) ** 2).sum(axis=1) / length_sq)
        positions[step] = _masked_argmax(weighted, picked)
        picked[positions[step]] = True
    return positions, scores[positions]


def select_batch(
    model: Surrogate,
    X: np.ndarray,
    available: np.ndarray,
    y_train: np.ndarray,
    spec: AcquisitionSpec,
    rng: np.random.Generator,
    prediction: tuple[np.ndarray, np.ndarray] | None = None,
) -> Selection:
    """Choose up to spec.q distinct rows of X among those with available[i] True.

    y_train: measured targets (maximisation), whose max is the EI incumbent. prediction:
    optional (mean, variance) of the model for every row of X, to reuse a pool prediction the
    caller already made. Never returns an unavailable row or a duplicate; with fewer than q
    available rows, returns all of them. X may be on disk (`engine.shards.ShardedArray`): it then
    predicts and shortlists shard by shard (a streaming top-k) and only the shortlist is loaded.
    """
    available = np.asarray(available, dtype=bool)
    if available.shape != (len(X),):
        raise DataError(f"availability mask has shape {available.shape}, expected ({len(X)},)")
    n_available = int(available.sum())
    if n_available == 0:
        empty = np.empty(0)
        return Selection(np.empty(0, dtype=np.int64), empty, empty, empty)
    y_train = np.asarray(y_train, dtype=np.float64)
    acquisition = build_acquisition(spec)
    q = min(spec.q, n_available)
    if hasattr(X, "shortlist"):  # features on disk (engine.shards): predicted and ranked shard by shard
        if not y_train.size:
            raise DataError("selecting from a sharded pool needs measured values (the incumbent)")
        best = float(y_train.max())
        rows, mean, variance = X.shortlist(model, available, acquisition, best, max(spec.prefilter, q), rng)
    else:
        candidates = np.flatnonzero(available)
        if prediction is None:  # predicting all of X avoids copying the available rows of a wide pool
            prediction = model.predict(X)
        mean, variance = np.asarray(prediction[0])[candidates], np.asarray(prediction[1])[candidates]
        best = float(y_train.max()) if y_train.size else float(mean.max())
        subset = top_k(acquisition.shortlist_score(mean, variance, best, rng), max(spec.prefilter, q))
        rows, mean, variance = candidates[subset], mean[subset], variance[subset]
    if hasattr(model, "predict_joint") and q > 1:
        joint_mean, joint_cov = model.predict_joint(X[rows])
        if acquisition.sampling:
            positions, scores = _distinct_argmaxes(_joint_samples(joint_mean, joint_cov, q, rng))
        else:
            positions, scores = _believer_batch(acquisition, joint_mean, joint_cov, best, q, rng)
    else:
        subset_scores = acquisition.score(mean, variance, best, rng)
        if acquisition.sampling:
            positions = top_k(subset_scores, q)
            scores = subset_scores[positions]
        else:
            positions, scores = _penalised_batch(subset_scores, np.asarray(X[rows], dtype=np.float64), q)
    return Selection(indices=rows[positions], acquisition=scores, mean=mean[positions], variance=variance[positions])
