"""The hypothesis generator finds a planted law among its proposals, and what it proposes is a
ready-to-use structured GP."""

from __future__ import annotations

import numpy as np
import pytest

from activescope.engine.errors import DataError
from activescope.hypotheses.generator import expand, propose
from activescope.models.hypothesis import HypothesisSurrogate


def _planted(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 5, size=(n, 2))
    return X, 2.0 + 1.5 * X[:, 0] ** 2 / X[:, 1] + 0.01 * rng.normal(size=n)


def test_expansion_applies_transforms_only_where_defined():
    X = np.array([[1.0, -1.0], [2.0, 0.5], [3.0, 2.0]])
    expressions, values = expand(X, ["a", "b"])
    assert "log(a)" in expressions and "log(b)" not in expressions and "sqrt(b)" not in expressions
    assert "(a**2) / (b)" in expressions and np.isfinite(values).all()
    np.testing.assert_allclose(values[:, expressions.index("(a**2) / (b)")], X[:, 0] ** 2 / X[:, 1])


def test_planted_law_is_proposed_and_fits_as_a_structured_gp():
    X, y = _planted()
    proposals = propose(X, y, ["a", "b"], max_terms=2, top=5)
    assert all("(a**2) / (b)" in p.law for p in proposals[:3])
    best = next(p for p in proposals if p.law == "c0 + c1 * ((a**2) / (b))")
    assert best.coefficients["c1"] == pytest.approx(1.5, abs=0.01) and best.rmse < 0.02
    model = HypothesisSurrogate(**{k: v for k, v in best.model_section().items() if k != "kind"}, fit_iters=40)
    X_new = np.array([[4.0, 0.6], [1.0, 4.0]])
    mean, _ = model.fit(X, y).predict(X_new)
    np.testing.assert_allclose(mean, 2.0 + 1.5 * X_new[:, 0] ** 2 / X_new[:, 1], rtol=0.02)


def test_bad_subsets_are_refused():
    X, y = _planted(10)
    y[2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        propose(X, y, ["a", "b"])
    with pytest.raises(DataError, match="at least"):
        propose(X[:2], y[:2], ["a", "b"])
