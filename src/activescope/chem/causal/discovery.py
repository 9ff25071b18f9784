"""Causal discovery: DirectLiNGAM over standardised descriptors plus the target (a sink).

The model is a linear non-Gaussian acyclic SEM, x = B x + e, fitted on z-scored variables, so
every weight is a standardised coefficient (standard deviations of the effect per standard
deviation of the cause) and graphs learned on different molecule sets are comparable. The
target is always the last variable and is constrained to cause nothing (prior knowledge).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...engine.errors import ActivescopeError, DataError

COLLINEAR_R = 0.9999
"""|Pearson r| above which two variables count as perfectly collinear."""
MIN_SAMPLES_PER_VARIABLE = 2
"""DirectLiNGAM needs at least this many molecules per variable (target included)."""


@dataclass
class CausalGraph:
    """A fitted LiNGAM: variable names (target last), adjacency B with B[i, j] the direct effect of
    variable j on variable i in standardised units, the causal order, and the mean and standard
    deviation of each variable over the molecules it was learned from (their own units)."""

    names: list[str]
    adjacency: np.ndarray
    order: list[int]
    mean: np.ndarray
    std: np.ndarray
    n_samples: int

    @property
    def target(self) -> str:
        """Name of the target (the sink, always the last variable)."""
        return self.names[-1]

    def total_effects(self) -> np.ndarray:
        """T = (I - B)^-1: T[i, j] is the total (direct plus mediated) standardised effect of j on i."""
        return np.linalg.inv(np.eye(len(self.names)) - self.adjacency)

    def effects_on_target(self, physical: bool = False) -> pd.Series:
        """Total effect of each descriptor on the target: standardised, or with `physical` in target
        units per descriptor unit (e.g. Debye per Å² of TPSA)."""
        effects = self.total_effects()[-1, :-1]
        if physical:
            effects = effects * self.std[-1] / self.std[:-1]
        return pd.Series(effects, index=self.names[:-1], name="total_effect")

    def edges(self) -> pd.DataFrame:
        """One row per non-zero edge: cause, effect, weight (standardised)."""
        effect, cause = np.nonzero(self.adjacency)
        return pd.DataFrame({
            "cause": [self.names[j] for j in cause],
            "effect": [self.names[i] for i in effect],
            "weight": self.adjacency[effect, cause],
        })

    def save(self, stem: str | Path, tables: bool = True) -> None:
        """Write `<stem>.npz` (arrays) and, with `tables`, `<stem>.csv` (adjacency with names) and
        `<stem>.json`."""
        stem = Path(stem)
        np.savez(stem.with_suffix(".npz"), adjacency=self.adjacency, order=np.array(self.order), mean=self.mean,
                 std=self.std, names=np.array(self.names), n_samples=self.n_samples)
        if not tables:
            return
        pd.DataFrame(self.adjacency, index=self.names, columns=self.names).to_csv(stem.with_suffix(".csv"))
        blob = {"names": self.names, "adjacency": self.adjacency.tolist(), "order": [self.names[i] for i in self.order],
                "n_samples": self.n_samples, "convention": "adjacency[i][j] = direct standardised effect of names[j] on names[i]"}
        stem.with_suffix(".json").write_text(json.dumps(blob, indent=1))

    @classmethod
    def load(cls, stem: str | Path) -> "CausalGraph":
        """Read a graph written by `save`."""
        with np.load(Path(stem).with_suffix(".npz")) as f:
            return cls(f["names"].tolist(), f["adjacency"], f["order"].tolist(), f["mean"], f["std"], int(f["n_samples"]))


def check_variables(data: np.ndarray, names: list[str]) -> None:
    """Refuse data DirectLiNGAM cannot learn from, with one line naming the problem: non-finite
    values, too few molecules for the number of variables, a zero-variance variable, or perfectly
    collinear variables (a pair, or a linear combination)."""
    n, p = data.shape
    if n < MIN_SAMPLES_PER_VARIABLE * p:
        raise DataError(f"too few molecules ({n}) for {p} variables: causal discovery needs at least "
                        f"{MIN_SAMPLES_PER_VARIABLE * p}; use more molecules or fewer descriptors")
    bad = ~np.isfinite(data).all(axis=0)
    if bad.any():
        raise DataError(f"variable {names[int(np.argmax(bad))]!r} has missing or infinite values")
    std = data.std(axis=0)
    flat = std <= 1e-12 * (1.0 + np.abs(data.mean(axis=0)))
    if flat.any():
        raise DataError(f"variable {names[int(np.argmax(flat))]!r} has zero variance over the {n} molecules; remove it")
    corr = np.corrcoef(data, rowvar=False)
    upper = np.triu(np.abs(corr), k=1)
    if upper.max() > COLLINEAR_R:
        i, j = np.unravel_index(np.argmax(upper), upper.shape)
        raise DataError(f"variables {names[i]!r} and {names[j]!r} are perfectly collinear (r = {corr[i, j]:.4f}); keep one")
    values, vectors = np.linalg.eigh(corr)
    if values[0] < 1e-8:
        involved = [names[k] for k in np.argsort(-np.abs(vectors[:, 0]))[:3]]
        raise DataError(f"variables are linearly dependent ({', '.join(involved)}, ...); remove one of them")


def learn_graph(data: np.ndarray, names: list[str], measure: str = "pwling", strict: bool = True) -> CausalGraph:
    """Fit DirectLiNGAM on `data` (n molecules × p variables, target last) after z-scoring each column.

    strict: refuse bad data (`check_variables`). Otherwise (small subsets during selection) a
    variable that is constant, or collinear with an earlier one, on these molecules is left out of
    the fit and kept as an isolated node, so every graph has the same p nodes.
    """
    data = np.asarray(data, dtype=np.float64)
    if strict:
        check_variables(data, names)
    n, p = data.shape
    mean, std = data.mean(axis=0), data.std(axis=0)
    keep = std > 1e-12 * (1.0 + np.abs(mean))
    if not keep[-1]:
        raise DataError(f"the target {names[-1]!r} has zero variance over these {n} molecules")
    z = np.zeros_like(data)
    z[:, keep] = (data[:, keep] - mean[keep]) / std[keep]
    corr = np.atleast_2d(np.abs(np.corrcoef(z[:, keep], rowvar=False)))
    duplicate = np.triu(corr, k=1).max(axis=0) > COLLINEAR_R
    kept = np.flatnonzero(keep)[~duplicate]
    if kept[-1] != p - 1:
        raise DataError(f"the target {names[-1]!r} is collinear with a descriptor over these {n} molecules")
    B = np.zeros((p, p))
    if kept.size > 1:
        model = _direct_lingam(kept.size, measure)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(z[:, kept])
        B[np.ix_(kept, kept)] = model.adjacency_matrix_
        order = [int(kept[i]) for i in model.causal_order_]
    else:
        order = [p - 1]
    order += [i for i in range(p) if i not in order]
    return CausalGraph(list(names), B, order, mean, np.where(keep, std, 1.0), n)


def select_features(graph: CausalGraph, k: int) -> list[str]:
    """The k descriptors with the largest |total effect| on the target (ties: earlier in the list)."""
    effects = graph.effects_on_target().to_numpy()
    ranked = np.argsort(-np.abs(effects), kind="stable")[:k]
    return [graph.names[i] for i in ranked]


def _direct_lingam(n_variables: int, measure: str):
    """A DirectLiNGAM whose last variable may not cause any other (the target is a sink)."""
    try:
        from lingam import DirectLiNGAM
        from lingam.utils import make_prior_knowledge
    except ImportError:
        raise ActivescopeError("causal discovery needs the lingam package: pip install 'activescope[causal]'") from None
    prior = make_prior_knowledge(n_variables, sink_variables=[n_variables - 1])
    return DirectLiNGAM(prior_knowledge=prior, measure=measure)
