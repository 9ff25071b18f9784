"""Proposing candidate laws from a small labelled subset (SISSO-like sparse regression).

1. Expand the descriptors into a feature space: powers, square roots, logs and exponentials
   where defined, reciprocals, and products and ratios of pairs from different descriptors.
   Each feature is an expression string evaluated by the same parser as the structured GP's
   laws (`models.law`), so what is screened is exactly what the GP will compute.
2. Screen: the Lasso path on standardised features keeps the first `screen` features to enter.
3. Select: every combination of up to `max_terms` screened features is fitted by least squares;
   combinations are ranked by BIC.

The top combinations come back as `Proposal`s whose `model_section()` is a ready-to-use
`hypothesis` model (coefficients as parameters with Normal priors centred on the fit).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.errors import DataError
from ..models.law import numpy_ops, parse_law


@dataclass(frozen=True)
class Proposal:
    """One candidate law fitted on the subset: its expression, default priors and fit quality."""

    law: str
    priors: dict[str, str]
    descriptors: list[str]
    coefficients: dict[str, float]
    rmse: float  # training root-mean-square error (target units)
    bic: float
    options: dict[str, Any] = field(default_factory=dict)

    def model_section(self) -> dict[str, Any]:
        """The law as a spec model section, `{kind: hypothesis, law: ..., priors: ...}`."""
        return {"kind": "hypothesis", "law": self.law, "priors": dict(self.priors), "descriptors": list(self.descriptors)} | self.options


def _evaluate(expression: str, X: np.ndarray, names: Sequence[str]) -> np.ndarray:
    law = parse_law(expression, {}, list(names))
    with np.errstate(all="ignore"):
        value = law(numpy_ops(), {name: X[:, i] for i, name in enumerate(names)})
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (len(X),))


def expand(X: np.ndarray, names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Feature expressions and their values (n, k) built from descriptor columns X (n, d):
    unary transforms of each descriptor (only where finite on the data), then products and
    ratios of pairs from different descriptors. Constant or duplicate columns are dropped."""
    unary: list[tuple[int, str]] = []
    for i, name in enumerate(names):
        column = X[:, i]
        forms = [name, f"{name}**2", f"{name}**3"]
        if column.min() >= 0:
            forms.append(f"sqrt({name})")
        if column.min() > 0:
            forms.append(f"log({name})")
        if np.abs(column).max() < 50:
            forms.append(f"exp({name})")
        if np.abs(column).min() > 0:
            forms.append(f"1 / {name}")
        unary += [(i, form) for form in forms]
    expressions = [form for _, form in unary]
    for (i, a), (j, b) in itertools.combinations(unary, 2):
        if i != j:
            expressions += [f"({a}) * ({b})", f"({a}) / ({b})", f"({b}) / ({a})"]
    values = np.column_stack([_evaluate(e, X, names) for e in expressions])
    finite = np.isfinite(values).all(axis=0)
    spread = np.where(finite, np.nanstd(np.where(np.isfinite(values), values, 0.0), axis=0), 0.0)
    keep = finite & (spread > 1e-12 * (1 + np.abs(values).max(axis=0, initial=0, where=np.isfinite(values))))
    values = values[:, keep]
    expressions = [e for e, k in zip(expressions, keep) if k]
    _, unique = np.unique(np.round(values / values.std(axis=0), 10), axis=1, return_index=True)
    unique = np.sort(unique)
    return [expressions[u] for u in unique], values[:, unique]


def _screen(values: np.ndarray, y: np.ndarray, screen: int) -> np.ndarray:
    """Columns in the order they enter the Lasso path (then by |correlation|), first `screen`."""
    from sklearn.linear_model import lasso_path

    z = (values - values.mean(0)) / values.std(0)
    yc = y - y.mean()
    _, coefs, _ = lasso_path(z, yc, alphas=60)
    active = np.abs(coefs) > 1e-10
    entry = np.where(active.any(axis=1), active.argmax(axis=1), coefs.shape[1])
    correlation = np.abs(z.T @ yc) / (np.linalg.norm(yc) * math.sqrt(len(yc)) + 1e-300)
    order = np.lexsort((-correlation, entry))
    return order[:screen]


def propose(
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    max_terms: int = 2,
    top: int = 5,
    screen: int = 20,
) -> list[Proposal]:
    """Candidate laws for y from descriptor columns X (n, d) named `names`, best (lowest BIC)
    first. Raises DataError on NaN or infinite data or too few rows."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[1] != len(names) or len(X) != len(y):
        raise DataError(f"expected X of shape (n, {len(names)}) and y of length n; got {X.shape} and {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise DataError("hypothesis generation: the subset holds NaN or infinite values")
    if len(y) < max_terms + 3:
        raise DataError(f"hypothesis generation needs at least {max_terms + 3} labelled rows, got {len(y)}")
    expressions, values = expand(X, names)
    screened = _screen(values, y, screen)
    n = len(y)
    fits = []
    for k in range(1, max_terms + 1):
        for combo in itertools.combinations(screened, k):
            design = np.column_stack([np.ones(n), values[:, combo]])
            coef, *_ = np.linalg.lstsq(design, y, rcond=None)
            rss = float(np.sum((y - design @ coef) ** 2))
            bic = n * math.log(max(rss, 1e-300) / n) + (k + 1) * math.log(n)
            fits.append((bic, combo, coef, rss, design))
    fits.sort(key=lambda item: item[0])
    proposals = []
    for bic, combo, coef, rss, design in fits[:top]:
        sigma2 = rss / max(n - len(coef), 1)
        se = np.sqrt(np.maximum(np.diag(np.linalg.pinv(design.T @ design)) * sigma2, 0))
        parameters = [f"c{i}" for i in range(len(coef))]
        terms = [parameters[0]] + [f"{p} * ({expressions[c]})" for p, c in zip(parameters[1:], combo)]
        width = np.maximum(np.maximum(3 * se, 0.5 * np.abs(coef)), 1e-6 * (np.abs(coef).max() + 1))
        priors = {p: f"Normal({c:.6g}, {w:.3g})" for p, c, w in zip(parameters, coef, width)}
        proposals.append(Proposal(law=" + ".join(terms), priors=priors, descriptors=list(names),
                                  coefficients=dict(zip(parameters, map(float, coef))),
                                  rmse=math.sqrt(rss / n), bic=bic))  # fmt: skip
    return proposals
