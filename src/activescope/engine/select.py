"""Choosing among competing surrogates on the fly (`model: {kind: select}`).

A selecting surrogate holds named candidate surrogates (any registered model kinds: competing
physical hypotheses, feature blocks, model families), a bandit policy and a reward. It is itself
a surrogate, so the campaign, the acquisition and the run store need nothing special:

- warm-up (the first `warmup` fits): every candidate is fitted and scored; the best one is
  rewarded and chosen;
- afterwards each fit picks one candidate by the policy from the candidates' average rewards
  (`epsilon_greedy`: the best, or with probability epsilon a uniformly random one; `softmax`:
  with probability proportional to exp(reward / temperature)); only it is fitted and scored;
- predictions (hence the acquisition) are the chosen candidate's.

Rewards (average reward per candidate is the running mean of its rewards):

- ``uncertainty`` (the published hypothesis-learning choice, Ziatdinov et al. 2022): the median
  posterior standard deviation over the not yet measured candidates after the fit; +1 when it is
  below every median recorded before, -1 otherwise. In warm-up the candidate with the lowest
  median gets +1. Scored on the first prediction after a fit (the campaign's pool-wide one).
- ``log_likelihood``: mean predictive log density (noise included) of the points measured since
  the previous fit, under the candidate fitted before they were measured; in warm-up every
  candidate is scored, afterwards the one that chose them.
- ``cv_spearman``: k-fold cross-validation on the measured points only (`cv_folds` folds, each
  held out once from fresh copies of the candidate): the Spearman rank correlation between the
  out-of-fold predicted means and the measured values. Every candidate is cross-validated in each
  warm-up fit and then every `cv_every` fits; a candidate's score (``average``) is its latest
  correlation, not a running mean, since later folds hold more data. Between cross-validations
  only the chosen candidate is fitted.
- ``cv_top``: the same cross-validation, scored on the top of the measured distribution: the
  fraction of the k best measured values (k = `top_fraction` of the measured points, at least
  `MIN_TOP`) that are among the k best out-of-fold predictions (recall = precision of the measured
  top). The surrogate always sees a target to maximise (the campaign flips minimised ones), so
  "best" is the largest.
- ``cv_blend``: the mean of the ``cv_spearman`` and ``cv_top`` scores (global ranking and the top).

Every cross-validation records both scores per candidate (``cv_spearman`` and ``cv_top``) and the
criterion that chose (``criterion``).

Ensembles (``ensemble: k``, cv_* rewards): each cross-validation also scores the equal-weight mixture
of the k best candidates, from the mean of their out-of-fold means, by the same criterion; when
it scores higher than the best candidate alone, the k are fitted every fit until the next
cross-validation, and predictions are their mixture: the mean of their means, and the mean of
their variances plus the variance of their means (disagreement between the members counts as
uncertainty). Candidates that score alike but err differently make a better surrogate together.

Each round's choice, rewards, averages and the candidates' posterior summaries are exposed by
`round_record()`, which the campaign stores with the round; the bandit's state and the
candidates' states travel in `get_state()`, so a resumed run continues where it stopped.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import SpecError
from .registry import MODELS, format_validation_error, register_model


class SelectOptions(BaseModel):
    """Options of `model: {kind: select}`."""

    model_config = ConfigDict(extra="forbid")
    candidates: dict[str, dict[str, Any]] = Field(
        description="name -> model section (with its kind), e.g. {H1: {kind: hypothesis, law: ..., priors: ...}}"
    )
    policy: Literal["epsilon_greedy", "softmax"] = Field("epsilon_greedy", description="how a candidate is chosen after warm-up")
    epsilon: float = Field(0.4, ge=0, le=1, description="epsilon_greedy: probability of a uniformly random choice")
    temperature: float = Field(1.0, gt=0, description="softmax: temperature on the average rewards")
    reward: Literal["uncertainty", "log_likelihood", "cv_spearman", "cv_top", "cv_blend"] = Field(
        "uncertainty",
        description="uncertainty: drop in median posterior std (published); log_likelihood: of new points; "
        "cv_spearman: k-fold rank correlation on the measured points; cv_top: k-fold recall of the measured "
        "top `top_fraction`; cv_blend: the mean of the two",
    )
    warmup: int = Field(10, ge=1, description="fits in which every candidate is fitted (or cross-validated) and scored")
    cv_folds: int = Field(3, ge=2, description="cv_*: folds of the cross-validation")
    cv_every: int = Field(5, ge=1, description="cv_*: after warm-up, cross-validate every this many fits")
    top_fraction: float = Field(0.1, gt=0, le=0.5, description="cv_top, cv_blend: the measured top fraction to recall")
    ensemble: int = Field(1, ge=1, description="cv_*: predict with the mixture of this many best candidates when it "
                       "cross-validates better than the best alone (1: the best alone)")
    seed: int = Field(0, description="seeds the policy's random choices")

    @model_validator(mode="after")
    def _candidates_are_models(self) -> "SelectOptions":
        if len(self.candidates) < 2:
            raise ValueError("candidates: give at least two candidate models to choose from")
        for name, section in self.candidates.items():
            if not isinstance(section, dict) or "kind" not in section:
                raise ValueError(f"candidates.{name}.kind: required field is missing")
            options = {k: v for k, v in section.items() if k != "kind"}
            MODELS.validate(section["kind"], options, f"candidates.{name}")
        return self


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (n,) arrays (average ranks for ties); 0 when either is
    constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
    denominator = np.sqrt((ra @ ra) * (rb @ rb))
    return float(ra @ rb / denominator) if denominator > 0 else 0.0


MIN_TOP = 5
"""The measured top that `cv_top` recalls holds at least this many points."""


def top_recall(predicted: np.ndarray, y: np.ndarray, fraction: float) -> float:
    """Fraction of the k largest values of y found among the k largest `predicted` values, k =
    max(MIN_TOP, round(fraction * n)) (at most n); ties go to the earlier row."""
    k = min(len(y), max(MIN_TOP, round(fraction * len(y))))
    best = np.argsort(-y, kind="stable")[:k]
    picked = np.argsort(-predicted, kind="stable")[:k]
    return float(np.isin(best, picked).mean())


CV_REWARDS = ("cv_spearman", "cv_top", "cv_blend")
"""Rewards computed by cross-validation on the measured points."""


def _normal_log_density(y: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> float:
    """Mean log density of y under independent normals (nats per point)."""
    variance = np.maximum(variance, 1e-12)
    return float(np.mean(-0.5 * (np.log(2 * np.pi * variance) + (y - mean) ** 2 / variance)))


@register_model("select", SelectOptions)
class SelectSurrogate:
    """A surrogate that chooses among named candidate surrogates by a bandit on rewards."""

    def __init__(
        self,
        candidates: dict[str, dict[str, Any]],
        policy: str = "epsilon_greedy",
        epsilon: float = 0.4,
        temperature: float = 1.0,
        reward: str = "uncertainty",
        warmup: int = 10,
        cv_folds: int = 3,
        cv_every: int = 5,
        top_fraction: float = 0.1,
        ensemble: int = 1,
        seed: int = 0,
    ) -> None:
        try:
            options = SelectOptions(candidates=candidates, policy=policy, epsilon=epsilon, temperature=temperature,
                                    reward=reward, warmup=warmup, cv_folds=cv_folds, cv_every=cv_every,
                                    top_fraction=top_fraction, ensemble=ensemble, seed=seed)  # fmt: skip
        except ValidationError as err:
            raise SpecError(f"model.{format_validation_error(err)}") from None
        vars(self).update(options.model_dump(exclude={"candidates"}))
        self._set_candidates(options.candidates)

    def _set_candidates(self, candidates: dict[str, dict[str, Any]]) -> None:
        """Build the named candidate models and reset the bandit (a subclass may call it late)."""
        self.sections = {name: dict(section) for name, section in candidates.items()}
        self.names = list(candidates)
        self.models = {name: self._build(name) for name in self.names}
        k = len(self.names)
        self.counts = np.zeros(k)
        self.average = np.zeros(k)
        self.history: list[float] = []  # median posterior std of every scored fit (uncertainty reward)
        self.n_fits = 0
        self.chosen = 0
        self.members: list[int] = []  # the ensemble's candidates, best first, while one is in use
        self._n_train = 0
        self._train_rows: set[bytes] = set()
        self._pending: list[int] = []  # candidates fitted and awaiting their uncertainty score
        self._record: dict[str, Any] = {}

    def _build(self, name: str) -> Any:
        """A fresh, unfitted candidate `name` (seeded with the selector's seed unless it has its
        own), told the pool's feature blocks and names when they are known."""
        section = dict(self.sections[name])
        kind = section.pop("kind")
        if "seed" in MODELS.get(kind).options.model_fields:
            section.setdefault("seed", self.seed)
        model = MODELS.build(kind, section, section=f"model.candidates.{name}")
        if getattr(self, "_feature_kinds", None) is not None and hasattr(model, "use_feature_blocks"):
            model.use_feature_blocks(self._feature_kinds)
        if getattr(self, "_feature_names", None) is not None and hasattr(model, "use_feature_names"):
            model.use_feature_names(self._feature_names)
        return model

    # -- pool information, forwarded ---------------------------------------------------------------

    def use_feature_blocks(self, feature_kinds: dict[str, slice]) -> None:
        """Forward the pool's feature blocks to candidates that take them (and to later copies)."""
        self._feature_kinds = dict(feature_kinds)
        for model in self.models.values():
            if hasattr(model, "use_feature_blocks"):
                model.use_feature_blocks(feature_kinds)

    def use_feature_names(self, names: list[str]) -> None:
        """Forward the pool's feature names to candidates that take them (and to later copies)."""
        self._feature_names = list(names)
        for model in self.models.values():
            if hasattr(model, "use_feature_names"):
                model.use_feature_names(names)

    # -- the bandit ------------------------------------------------------------------------------

    @property
    def in_warmup(self) -> bool:
        """Whether the current fit is a warm-up fit (every candidate fitted)."""
        return self.n_fits <= self.warmup

    @property
    def cross_validating(self) -> bool:
        """Whether the current fit cross-validates every candidate (cv_* rewards)."""
        return self.reward in CV_REWARDS and (self.in_warmup or (self.n_fits - self.warmup) % self.cv_every == 0)

    def _out_of_fold(self, index: int, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Candidate `index`'s out-of-fold means (n,), from fresh copies fitted on the other folds
        (measured rows only; folds drawn from seed and fit)."""
        folds = np.random.default_rng([self.seed, self.n_fits]).permutation(len(y)) % self.cv_folds
        held_out = np.empty(len(y))
        for fold in range(self.cv_folds):
            test = folds == fold
            held_out[test] = self._build(self.names[index]).fit(X[~test], y[~test]).predict(X[test])[0]
        return held_out

    def _scores(self, held_out: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Every cv_* score of out-of-fold means against the measured values y."""
        scores = {"cv_spearman": spearman(held_out, y), "cv_top": top_recall(held_out, y, self.top_fraction)}
        return scores | {"cv_blend": (scores["cv_spearman"] + scores["cv_top"]) / 2}

    def _ensemble_members(self, held_out: list[np.ndarray], y: np.ndarray) -> list[int]:
        """The `ensemble` best candidates when the mean of their out-of-fold means scores higher
        than the best candidate alone (recorded as ``ensemble``), else none."""
        if self.ensemble < 2:
            return []
        best = [int(i) for i in np.argsort(-self.average, kind="stable")[: self.ensemble]]
        score = self._scores(np.mean([held_out[i] for i in best], axis=0), y)[self.reward]
        self._record["ensemble"] = {"members": [self.names[i] for i in best], "score": score}
        return best if score > self.average[best[0]] else []

    def _active(self) -> list[int]:
        """The candidates that predict: the ensemble when one is in use and led by the chosen
        candidate, else the chosen candidate alone."""
        return self.members if self.members and self.members[0] == self.chosen else [self.chosen]

    def _reward(self, index: int, value: float) -> None:
        self.average[index] = (self.average[index] * self.counts[index] + value) / (self.counts[index] + 1)
        self.counts[index] += 1
        self._record["rewards"][self.names[index]] = value

    def _choose(self, rng: np.random.Generator) -> int:
        if self.policy == "softmax":
            logits = self.average / self.temperature
            p = np.exp(logits - logits.max())
            return int(rng.choice(len(p), p=p / p.sum()))
        if rng.random() < self.epsilon:
            return int(rng.integers(len(self.names)))
        return int(np.argmax(self.average))

    def _log_likelihood(self, index: int, X: np.ndarray, y: np.ndarray) -> float:
        """Predictive log density of the new rows under candidate `index` as fitted before them
        (refitted on the earlier rows when it was restored from a saved state, unfitted)."""
        model = self.models[self.names[index]]
        old, new = slice(0, self._n_train), slice(self._n_train, len(y))
        try:
            mean, variance = model.predict(X[new])
        except RuntimeError:
            mean, variance = model.fit(X[old], y[old]).predict(X[new])
        noise = float(model.hyperparameters().get("noise", 0.0))
        return _normal_log_density(y[new], np.asarray(mean), np.asarray(variance) + noise)

    # -- Surrogate protocol ----------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SelectSurrogate":
        """Score the previous choice (log_likelihood), choose, and fit the chosen candidate (all
        of them during warm-up)."""
        self.n_fits += 1
        rng = np.random.default_rng([self.seed, self.n_fits])
        self._record = {"fit": self.n_fits, "phase": "warmup" if self.in_warmup else "select", "rewards": {}}
        y = np.asarray(y, dtype=np.float64)
        scored_before = self.reward == "log_likelihood" and 0 < self._n_train < len(y)
        fitting = range(len(self.names)) if self.in_warmup and self.reward not in CV_REWARDS else None
        if self.cross_validating and len(y) >= 2 * self.cv_folds:
            held_out = [self._out_of_fold(i, X, y) for i in range(len(self.names))]
            scores = [self._scores(h, y) for h in held_out]
            self.average[:] = [score[self.reward] for score in scores]
            self.counts += 1
            self._record |= {"phase": "cross-validation", "criterion": self.reward,
                             "rewards": {name: score[self.reward] for name, score in zip(self.names, scores)}}  # fmt: skip
            for key in ("cv_spearman", "cv_top"):
                self._record[key] = {name: score[key] for name, score in zip(self.names, scores)}
            self.members = self._ensemble_members(held_out, y)
        if scored_before:
            previous = list(range(len(self.names))) if self.n_fits - 1 <= self.warmup else [self.chosen]
            scores = {i: self._log_likelihood(i, X, y) for i in previous}
            for i, score in scores.items():
                self._reward(i, score)
            self._record["log_likelihood"] = {self.names[i]: s for i, s in scores.items()}
        if fitting is None:
            self.chosen = self._choose(rng)
            fitting = self._active()
        elif self.reward == "log_likelihood":
            self.chosen = int(np.argmax(self.average))
        for i in fitting:
            self.models[self.names[i]].fit(X, y)
        self._pending = list(fitting) if self.reward == "uncertainty" else []
        self._n_train = len(y)
        self._train_rows = {row.tobytes() for row in np.ascontiguousarray(X)}
        return self

    def _score_uncertainty(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncertainty reward for the pending fits; returns the chosen candidate's prediction."""
        X = np.ascontiguousarray(X)
        unmeasured = np.fromiter((row.tobytes() not in self._train_rows for row in X), bool, len(X))
        medians, predictions = {}, {}
        for i in self._pending:
            mean, variance = self.models[self.names[i]].predict(X)
            predictions[i] = (mean, variance)
            std = np.sqrt(np.maximum(variance[unmeasured] if unmeasured.any() else variance, 0))
            medians[i] = float(np.median(std))
        if len(self._pending) > 1:  # warm-up: the lowest median is rewarded and chosen
            self.chosen = min(medians, key=medians.get)
            self._reward(self.chosen, 1.0)
        else:
            best_before = min(self.history, default=np.inf)
            self._reward(self.chosen, 1.0 if medians[self.chosen] < best_before else -1.0)
        self.history.append(medians[self.chosen])
        self._record["median_std"] = {self.names[i]: m for i, m in medians.items()}
        self._pending = []
        return predictions[self.chosen]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The chosen candidate's posterior mean and latent variance (target units), or the
        ensemble's mixture of them."""
        if self._pending:
            return self._score_uncertainty(X)
        predictions = [self.models[self.names[i]].predict(X) for i in self._active()]
        if len(predictions) == 1:
            return predictions[0]
        means, variances = np.stack([p[0] for p in predictions]), np.stack([p[1] for p in predictions])
        return means.mean(axis=0), variances.mean(axis=0) + means.var(axis=0)

    def predict_joint(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The chosen candidate's joint posterior (independent variances if it has none), or the
        ensemble's mixture: mean of the means, mean of the covariances plus that of the means."""
        joints = []
        for i in self._active():
            model = self.models[self.names[i]]
            if hasattr(model, "predict_joint"):
                joints.append(model.predict_joint(X))
            else:
                mean, variance = model.predict(X)
                joints.append((mean, np.diag(variance)))
        means = np.stack([mean for mean, _ in joints])
        spread = means - means.mean(axis=0)
        return means.mean(axis=0), np.mean([cov for _, cov in joints], axis=0) + spread.T @ spread / len(joints)

    def hyperparameters(self) -> dict[str, float]:
        """The chosen candidate's index (`choice`), how many candidates predict (`ensemble_size`: 1, or
        the ensemble's size) and the chosen one's hyperparameters (prefixed `chosen.`)."""
        chosen = self.models[self.names[self.chosen]].hyperparameters()
        return {"choice": float(self.chosen), "ensemble_size": float(len(self._active()))} | {f"chosen.{k}": float(v) for k, v in chosen.items()}

    def round_record(self) -> dict[str, Any]:
        """JSON-ready record of the latest fit: phase, choice, the candidates that predict
        (`predicting`: the choice, or the ensemble), this fit's rewards, average rewards and counts
        per candidate, median std / log likelihood scores, and the posterior summaries of
        candidates that expose one (`posterior_summary()`)."""
        posteriors = {}
        for name, model in self.models.items():
            if hasattr(model, "posterior_summary"):
                try:
                    posteriors[name] = model.posterior_summary()
                except RuntimeError:  # not fitted yet
                    continue
        return self._record | {
            "choice": self.names[self.chosen],
            "predicting": [self.names[i] for i in self._active()],
            "average_reward": dict(zip(self.names, map(float, self.average))),
            "counts": dict(zip(self.names, map(int, self.counts))),
            "posteriors": posteriors,
        }

    def get_state(self) -> bytes:
        """The bandit's state and each candidate's own state (JSON bytes)."""
        states = {}
        for name, model in self.models.items():
            if hasattr(model, "get_state"):
                try:
                    states[name] = base64.b64encode(model.get_state()).decode()
                except RuntimeError:  # a candidate never fitted has no state
                    continue
        bandit = {"counts": self.counts.tolist(), "average": self.average.tolist(), "history": self.history,
                  "n_fits": self.n_fits, "chosen": self.chosen, "members": self.members, "n_train": self._n_train}  # fmt: skip
        return json.dumps({"bandit": bandit, "models": states, "candidates": self.sections}).encode()

    def set_state(self, state: bytes) -> None:
        """Restore `get_state()`'s output (used when a run resumes)."""
        data = json.loads(state)
        bandit = data["bandit"]
        self.counts, self.average = np.asarray(bandit["counts"]), np.asarray(bandit["average"])
        self.history, self.n_fits, self.chosen, self._n_train = bandit["history"], bandit["n_fits"], bandit["chosen"], bandit["n_train"]
        self.members = bandit.get("members", [])
        for name, blob in data["models"].items():
            if name in self.models and hasattr(self.models[name], "set_state"):
                self.models[name].set_state(base64.b64decode(blob))
