"""Deep kernel learning: learns a nonlinear function, exposes its latent space, is reproducible."""

import numpy as np
import pytest

from activescope.models import build_model
from activescope.models.dkl import DKLSurrogate


def nonlinear(X: np.ndarray) -> np.ndarray:
    """Depends on the 6 inputs only through two directions, so a 2-D latent can represent it."""
    return np.sin(2 * (X[:, 0] + X[:, 1])) + (X[:, 2] - X[:, 3]) ** 2


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(260, 6)).astype(np.float32)
    return X[:160], nonlinear(X[:160]), X[160:], nonlinear(X[160:])


@pytest.fixture(scope="module")
def fitted(data) -> DKLSurrogate:
    X, y, _, _ = data
    return DKLSurrogate(hidden=[32, 16], fit_iters=150, lr=0.02).fit(X, y)


def test_fits_nonlinear_function_better_than_a_constant(fitted, data):
    _, y, X_test, y_test = data
    mean, variance = fitted.predict(X_test)
    rmse = np.sqrt(np.mean((mean - y_test) ** 2))
    constant_rmse = np.sqrt(np.mean((y.mean() - y_test) ** 2))
    assert rmse < 0.5 * constant_rmse
    assert (variance > 0).all()


def test_embed_returns_bounded_latent_coordinates(fitted, data):
    latent = fitted.embed(data[2])
    assert latent.shape == (len(data[2]), 2)
    assert np.abs(latent).max() < 1
    wide = DKLSurrogate(latent_dim=3, fit_iters=5).fit(data[0], data[1])
    assert wide.embed(data[2][:4]).shape == (4, 3)


def test_seeded_fits_are_identical(data):
    X, y, X_test, _ = data
    first = build_model("dkl", hidden="16,8", fit_iters=20, seed=3).fit(X, y).predict(X_test)
    second = build_model("dkl", hidden="16,8", fit_iters=20, seed=3).fit(X, y).predict(X_test)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_warm_start_reaches_a_better_fit_in_few_steps(data):
    X, y, _, _ = data
    warm = DKLSurrogate(hidden=[32, 16], fit_iters=150, warm_iters=10, lr=0.02).fit(X[:120], y[:120])
    warm.fit(X, y)
    cold = DKLSurrogate(hidden=[32, 16], fit_iters=10, lr=0.02).fit(X, y)
    assert warm.hyperparameters()["neg_mll"] < cold.hyperparameters()["neg_mll"] - 0.3


def test_joint_posterior_is_consistent_with_marginals(fitted, data):
    X_test = data[2][:30]
    mean, variance = fitted.predict(X_test)
    joint_mean, cov = fitted.predict_joint(X_test)
    assert np.allclose(joint_mean, mean)
    assert np.allclose(np.diag(cov), variance, rtol=2e-3, atol=1e-9)  # pool variances use float32
    assert "lengthscale_1" in fitted.hyperparameters()
