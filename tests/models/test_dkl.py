"""Deep kernel learning: learns a nonlinear function, exposes its latent space, is reproducible."""

import numpy as np
import pytest
import torch

from activescope.engine.errors import SpecError
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


def blob_patches(n: int, side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flattened side x side patches of one Gaussian blob at a random position; y is the blob's
    distance from the patch centre (what a probe centred on the patch would 'see')."""
    centre = rng.uniform(0, side - 1, size=(n, 2))
    rows, cols = np.mgrid[0:side, 0:side]
    patches = np.exp(-((rows - centre[:, :1, None]) ** 2 + (cols - centre[:, 1:, None]) ** 2) / 2.0)
    return patches.reshape(n, -1).astype(np.float32), np.hypot(*(centre - (side - 1) / 2).T)


def test_conv_extractor_learns_from_square_patches():
    rng = np.random.default_rng(4)
    X, y = blob_patches(200, 7, rng)
    model = build_model("dkl", extractor="conv", hidden=[16], fit_iters=150, lr=0.02).fit(X[:150], y[:150])
    mean, _ = model.predict(X[150:])
    assert np.sqrt(np.mean((mean - y[150:]) ** 2)) < 0.5 * y[150:].std()
    assert model.embed(X[:3]).shape == (3, 2)
    with pytest.raises(SpecError, match="square"):
        build_model("dkl", extractor="conv", fit_iters=1).fit(X[:20, :48], y[:20])


def test_raw_kernel_makes_an_untrained_network_a_plain_gp(data):
    X, y, X_test, y_test = data
    gp_mean, _ = build_model("gp", kernel="matern").fit(X, y).predict(X_test)
    hybrid = build_model("dkl", raw_kernel="matern", fit_iters=60, lr=1e-6, kernel_lr=0.1).fit(X, y)
    mean, variance = hybrid.predict(X_test)
    gp_rmse = np.sqrt(np.mean((gp_mean - y_test) ** 2))
    assert np.sqrt(np.mean((mean - y_test) ** 2)) < 1.2 * gp_rmse and (variance > 0).all()
    params = hybrid.hyperparameters()
    assert {"raw_outputscale", "raw_lengthscale_median", "lengthscale_0", "lengthscale_1"} <= set(params)
    assert hybrid.embed(X_test[:5]).shape == (5, 2)


def test_raw_kernel_state_round_trips_for_a_resumed_warm_start(data):
    X, y, X_test, _ = data
    first = build_model("dkl", raw_kernel="rbf", hidden=[8], fit_iters=20, warm_iters=5, kernel_lr=0.05).fit(X[:100], y[:100])
    resumed = build_model("dkl", raw_kernel="rbf", hidden=[8], fit_iters=20, warm_iters=5, kernel_lr=0.05)
    resumed.set_state(first.get_state())
    first.fit(X, y)
    resumed.fit(X, y)
    assert np.array_equal(first.predict(X_test)[0], resumed.predict(X_test)[0])


def test_weight_decay_shrinks_the_extractor_weights(data):
    X, y, _, _ = data
    norms = []
    for decay in (0.0, 1.0):
        model = build_model("dkl", hidden=[16], fit_iters=80, lr=0.02, weight_decay=decay).fit(X, y)
        norms.append(sum(float(p.detach().square().sum()) for p in model._model.feature_extractor.parameters()))
    assert norms[1] < 0.5 * norms[0]



def test_a_warm_start_that_broke_down_numerically_is_refitted_from_scratch(data):
    X, y, X_test, y_test = data
    model = DKLSurrogate(hidden=[16], fit_iters=60, warm_iters=5, lr=0.02).fit(X[:100], y[:100])
    with torch.no_grad():  # what a diverged warm start leaves behind
        model._model.feature_extractor[0].weight.fill_(float("nan"))
    mean, variance = model.fit(X, y).predict(X_test)
    assert np.isfinite(mean).all() and (variance > 0).all()
    assert np.isfinite(model._model.feature_extractor[0].weight.detach().numpy()).all()


def test_the_residual_extractor_starts_as_the_plain_gp_and_keeps_the_input_dimension(data):
    X, y, X_test, _ = data
    gp_mean, gp_var = build_model("gp", kernel="matern").fit(X, y).predict(X_test)
    still = build_model("dkl", extractor="residual", kernel="matern", fit_iters=60, lr=1e-9, kernel_lr=0.1).fit(X, y)
    mean, var = still.predict(X_test)
    np.testing.assert_allclose(mean, gp_mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(var, gp_var, rtol=1e-2, atol=1e-6)
    assert still.embed(X_test[:5]).shape == (5, 6)
    params = still.hyperparameters()
    assert {"gate_0", "gate_1", "lengthscale_median", "noise"} <= set(params) and abs(params["gate_0"]) < 1e-6


def test_the_residual_extractor_learns_without_folding_distant_points_together(data):
    X, y, X_test, y_test = data
    model = build_model("dkl", extractor="residual", hidden=[32], fit_iters=150, lr=0.05).fit(X, y)
    mean, _ = model.predict(X_test)
    assert np.sqrt(np.mean((mean - y_test) ** 2)) < 0.5 * np.std(y_test)
    assert min(abs(v) for k, v in model.hyperparameters().items() if k.startswith("gate")) > 1e-3  # it did warp
    scaled = model._inputs(X_test)
    with torch.no_grad():
        latent = model._model.latent(scaled)
    pairs = torch.cdist(latent, latent) / torch.cdist(scaled, scaled).clamp_min(1e-12)
    off_diagonal = ~torch.eye(len(X_test), dtype=torch.bool)
    # bi-Lipschitz: each block moves a point by at most 0.9 x 1.1 of what it moves a neighbour
    assert float(pairs[off_diagonal].min()) > (1 - 0.99) ** 2 and float(pairs[off_diagonal].max()) < (1 + 0.99) ** 2


def test_the_residual_extractor_state_round_trips_for_a_resumed_warm_start(data):
    X, y, X_test, _ = data
    options = dict(extractor="residual", hidden=[8], fit_iters=20, warm_iters=5)
    first = build_model("dkl", **options).fit(X[:100], y[:100])
    resumed = build_model("dkl", **options)
    resumed.set_state(first.get_state())
    first.fit(X, y)
    resumed.fit(X, y)
    assert np.array_equal(first.predict(X_test)[0], resumed.predict(X_test)[0])


def test_the_residual_extractor_refuses_a_raw_kernel():
    with pytest.raises(SpecError, match="raw_kernel"):
        build_model("dkl", extractor="residual", raw_kernel="matern")
