"""Acquisition scores and batch selection on a discrete pool."""

import numpy as np
import pytest
from scipy.stats import norm

from activescope.engine.acquisition import (
    Selection,
    expected_improvement,
    log_expected_improvement,
    select_batch,
    upper_confidence_bound,
)
from activescope.engine.errors import DataError
from activescope.engine.spec import AcquisitionSpec
from activescope.models import build_model


class MarginalOnly:
    """A real fitted surrogate seen only through the base protocol (no predict_joint), so
    select_batch must use its fallback batch rule."""

    def __init__(self, model) -> None:
        self._model = model

    def fit(self, X, y):
        self._model.fit(X, y)
        return self

    def predict(self, X):
        return self._model.predict(X)

    def hyperparameters(self):
        return self._model.hyperparameters()


@pytest.fixture(scope="module")
def line_gp():
    """A GP on a 1-D grid pool of 400 points, fitted on 6 of them."""
    grid = np.linspace(0, 1, 400, dtype=np.float32)[:, None]
    train = np.array([10, 80, 150, 220, 300, 380])
    y = np.sin(8 * grid[train, 0])
    return build_model("gp", fit_iters=60).fit(grid[train], y), grid, train, y


@pytest.fixture(scope="module")
def forest_pool():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5)).astype(np.float32)
    y = X[:, 0] - X[:, 1] ** 2
    return build_model("rf", n_estimators=20).fit(X[:60], y[:60]), X, y


def test_ei_matches_closed_form_at_the_incumbent():
    assert expected_improvement(np.array([1.0]), np.array([1.0]), best=1.0)[0] == pytest.approx(norm.pdf(0.0))


def test_ei_and_log_ei_agree_where_both_are_finite():
    mean = np.linspace(-30, 5, 400)
    for variance in (0.01, 1.0, 25.0):
        ei = expected_improvement(mean, np.full_like(mean, variance), best=2.0, xi=0.1)
        log_ei = log_expected_improvement(mean, np.full_like(mean, variance), best=2.0, xi=0.1)
        usable = ei > 1e-250
        assert usable.sum() > 50
        assert np.allclose(np.exp(log_ei[usable]), ei[usable], rtol=1e-6)


def test_log_ei_stays_finite_and_ordered_far_below_the_incumbent():
    mean = -np.logspace(0, 6, 50)
    log_ei = log_expected_improvement(mean, np.ones_like(mean), best=0.0)
    assert np.isfinite(log_ei).all()
    assert (np.diff(log_ei) < 0).all()


def test_ucb_ordering_changes_with_beta():
    mean, variance = np.array([1.0, 0.5]), np.array([0.01, 1.0])
    assert np.argmax(upper_confidence_bound(mean, variance, beta=0.0)) == 0
    assert np.argmax(upper_confidence_bound(mean, variance, beta=4.0)) == 1


@pytest.mark.parametrize("use_joint", [True, False])
def test_never_selects_unavailable_or_duplicate_rows(use_joint, forest_pool):
    model, X, y = forest_pool
    model = model if use_joint else MarginalOnly(model)
    rng = np.random.default_rng(1)
    kinds = ["ei", "logei", "ucb", "max_variance", "greedy", "thompson"]
    for trial in range(24):
        available = rng.random(len(X)) < rng.uniform(0.01, 0.9)
        spec = AcquisitionSpec(kind=kinds[trial % len(kinds)], q=int(rng.integers(1, 15)), prefilter=int(rng.integers(1, 50)))
        selection = select_batch(model, X, available, y[:60], spec, rng)
        assert len(selection.indices) == min(spec.q, available.sum())
        assert available[selection.indices].all()
        assert len(np.unique(selection.indices)) == len(selection.indices)
        assert selection.mean.shape == selection.variance.shape == selection.acquisition.shape == selection.indices.shape


def test_returns_every_available_row_when_fewer_than_q(forest_pool):
    model, X, y = forest_pool
    available = np.zeros(len(X), dtype=bool)
    available[[3, 70, 500]] = True
    selection = select_batch(model, X, available, y[:60], AcquisitionSpec(kind="ucb", q=10), np.random.default_rng(0))
    assert sorted(selection.indices) == [3, 70, 500]
    empty = select_batch(model, X, np.zeros(len(X), dtype=bool), y[:60], AcquisitionSpec(), np.random.default_rng(0))
    assert isinstance(empty, Selection) and len(empty.indices) == 0


def test_reports_the_models_predictions_for_picked_rows(forest_pool):
    model, X, y = forest_pool
    available = np.ones(len(X), dtype=bool)
    selection = select_batch(model, X, available, y[:60], AcquisitionSpec(kind="ei", q=5), np.random.default_rng(0))
    mean, variance = model.predict(X[selection.indices])
    assert np.allclose(selection.mean, mean) and np.allclose(selection.variance, variance)


def test_believer_batch_spreads_out_where_top_q_clusters(line_gp):
    model, grid, train, y = line_gp
    available = np.ones(len(grid), dtype=bool)
    available[train] = False
    spec = AcquisitionSpec(kind="ucb", beta=4.0, q=5, prefilter=400)
    mean, variance = model.predict(grid)
    scores = upper_confidence_bound(mean, variance, spec.beta)
    top_q = np.sort(np.argsort(-np.where(available, scores, -np.inf))[:5])
    assert np.diff(top_q).min() == 1  # the single-point top 5 include neighbouring grid points
    picks = np.sort(select_batch(model, grid, available, y, spec, np.random.default_rng(0)).indices)
    assert np.diff(picks).min() > 5  # the believer batch leaves gaps between picks


def test_batch_thompson_is_reproducible_and_distinct(line_gp):
    model, grid, train, y = line_gp
    available = np.ones(len(grid), dtype=bool)
    available[train] = False
    spec = AcquisitionSpec(kind="thompson", q=6, prefilter=200)
    first = select_batch(model, grid, available, y, spec, np.random.default_rng(5))
    second = select_batch(model, grid, available, y, spec, np.random.default_rng(5))
    assert np.array_equal(first.indices, second.indices)
    assert len(np.unique(first.indices)) == 6 and available[first.indices].all()


def test_precomputed_prediction_gives_the_same_batch(line_gp):
    model, grid, train, y = line_gp
    available = np.ones(len(grid), dtype=bool)
    available[train] = False
    spec = AcquisitionSpec(kind="logei", q=4)
    direct = select_batch(model, grid, available, y, spec, np.random.default_rng(0))
    reused = select_batch(model, grid, available, y, spec, np.random.default_rng(0), prediction=model.predict(grid))
    assert np.array_equal(direct.indices, reused.indices)


def test_mask_of_wrong_length_is_a_data_error(forest_pool):
    model, X, y = forest_pool
    with pytest.raises(DataError, match="availability mask"):
        select_batch(model, X, np.ones(5, dtype=bool), y, AcquisitionSpec(), np.random.default_rng(0))
