"""Exact GP surrogate: recovers smooth functions, calibrated-looking variance, batching, options."""

import numpy as np
import pytest

from activescope.engine.errors import DataError, SpecError
from activescope.models import build_model
from activescope.models.gp import GPSurrogate


@pytest.fixture(scope="module")
def fitted_1d() -> GPSurrogate:
    x = np.linspace(0, 1, 15, dtype=np.float32)[:, None]
    return GPSurrogate(fit_iters=80).fit(x, np.sin(6 * x[:, 0]))


def test_recovers_smooth_1d_function(fitted_1d):
    grid = np.linspace(0.05, 0.95, 50, dtype=np.float32)[:, None]
    mean, _ = fitted_1d.predict(grid)
    assert np.abs(mean - np.sin(6 * grid[:, 0])).max() < 0.05


def test_variance_grows_away_from_data(fitted_1d):
    _, variance = fitted_1d.predict(np.array([[0.5], [3.0]], dtype=np.float32))
    assert variance[1] > 20 * variance[0]


def test_recovers_smooth_5d_function():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(150, 5)).astype(np.float32)
    f = lambda A: np.sin(2 * A[:, 0]) + A[:, 1] ** 2 - 0.5 * A[:, 2]
    model = GPSurrogate(kernel="rbf", fit_iters=100).fit(X, f(X))
    X_test = rng.uniform(-0.8, 0.8, size=(300, 5)).astype(np.float32)
    mean, _ = model.predict(X_test)
    rmse = np.sqrt(np.mean((mean - f(X_test)) ** 2))
    assert rmse < 0.1 * f(X_test).std()


def test_batched_prediction_equals_single_batch(fitted_1d):
    grid = np.linspace(-1, 2, 101, dtype=np.float32)[:, None]
    whole = fitted_1d.predict(grid)
    fitted_1d.batch_rows = 7
    try:
        batched = fitted_1d.predict(grid)
    finally:
        fitted_1d.batch_rows = 16_384
    assert np.allclose(whole[0], batched[0]) and np.allclose(whole[1], batched[1])


def test_joint_posterior_matches_marginals(fitted_1d):
    grid = np.linspace(-0.5, 1.5, 40, dtype=np.float32)[:, None]
    mean, variance = fitted_1d.predict(grid)
    joint_mean, cov = fitted_1d.predict_joint(grid)
    assert np.allclose(joint_mean, mean)
    assert np.allclose(np.diag(cov), variance, rtol=1e-4, atol=1e-5 * variance.max())  # pool variances use float32
    assert np.allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > -1e-6 * variance.max()


def test_tanimoto_gp_on_a_named_fingerprint_block():
    rng = np.random.default_rng(2)
    counts = rng.poisson(0.7, size=(80, 64)).astype(np.float32)
    descriptors = rng.normal(size=(80, 3)).astype(np.float32)
    X = np.hstack([descriptors, counts])
    y = counts[:, :8].sum(1) - counts[:, 8:16].sum(1)
    model = build_model("gp", kernel="tanimoto", columns="morgan", fit_iters=60)
    model.use_feature_blocks({"desc": slice(0, 3), "morgan": slice(3, 67)})
    model.fit(X[:60], y[:60])
    mean, variance = model.predict(X[60:])
    assert np.corrcoef(mean, y[60:])[0, 1] > 0.6
    assert (variance > 0).all()
    assert "lengthscale_median" not in model.hyperparameters()


def test_tanimoto_rejects_negative_features():
    with pytest.raises(DataError, match="non-negative"):
        GPSurrogate(kernel="tanimoto").fit(np.array([[1.0, -1.0], [0.0, 2.0]]), np.array([0.0, 1.0]))


def test_bad_options_and_inputs_raise_user_errors():
    with pytest.raises(SpecError, match="model.kernel"):
        GPSurrogate(kernel="cosine")
    with pytest.raises(SpecError, match="feature block 'morgan'"):
        GPSurrogate(columns="morgan").use_feature_blocks({"desc": slice(0, 3)})
    with pytest.raises(DataError, match="NaN"):
        GPSurrogate().fit(np.zeros((3, 2)), np.array([0.0, np.nan, 1.0]))
    with pytest.raises(DataError, match="at least 2"):
        GPSurrogate().fit(np.zeros((1, 2)), np.array([0.0]))


def test_warm_refit_on_grown_data_keeps_improving(fitted_1d):
    x = np.linspace(0, 2, 30, dtype=np.float32)[:, None]
    model = GPSurrogate(fit_iters=80, warm_iters=20).fit(x[:15], np.sin(6 * x[:15, 0]))
    model.fit(x, np.sin(6 * x[:, 0]))
    mean, _ = model.predict(np.array([[1.5]], dtype=np.float32))
    assert mean[0] == pytest.approx(np.sin(9.0), abs=0.1)
    assert all(np.isfinite(v) for v in model.hyperparameters().values())


def test_linear_mean_extrapolates_a_trend_that_constant_mean_forgets():
    x = np.linspace(0, 1, 20, dtype=np.float32)[:, None]
    y = 3.0 * x[:, 0] + 0.05 * np.sin(20 * x[:, 0])
    far = np.array([[4.0]], dtype=np.float32)
    linear, _ = GPSurrogate(mean="linear", fit_iters=150).fit(x, y).predict(far)
    constant, _ = GPSurrogate(fit_iters=150).fit(x, y).predict(far)
    assert abs(linear[0] - 12.0) < 1.5
    assert abs(constant[0] - 12.0) > 6.0


def test_unknown_mean_is_a_spec_error():
    with pytest.raises(SpecError, match="model.mean"):
        GPSurrogate(mean="quadratic")
