"""The structured GP: its law's parameters are recovered (MAP and NUTS), it predicts where the
law extrapolates, and bad input ends in one clear line."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, invoke

from activescope.engine.errors import DataError, SamplingError, SpecError
from activescope.models.gp import GPSurrogate
from activescope.models.hypothesis import (
    HypothesisSurrogate,
    exact_neg_mll,
    safe_cholesky,
)

PRIORS = {"a": "Normal(0, 2)", "b": "Normal(0, 5)"}


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 3, size=(n, 1))
    return x, 1.5 * x[:, 0] ** 2 - 2.0 + 0.05 * rng.normal(size=n)


def test_map_fit_recovers_the_law_and_extrapolates_with_it():
    X, y = _data(40)
    model = HypothesisSurrogate(law="a * x**2 + b", priors=PRIORS, descriptors=["x"], fit_iters=80)
    model.fit(X, y)
    summary = model.posterior_summary()
    assert summary["a"]["mean"] == pytest.approx(1.5, abs=0.05)
    assert summary["b"]["mean"] == pytest.approx(-2.0, abs=0.1)
    far = np.array([[5.0], [6.0]])  # outside the data: a constant-mean GP would revert, the law does not
    mean, variance = model.predict(far)
    np.testing.assert_allclose(mean, 1.5 * far[:, 0] ** 2 - 2.0, rtol=0.05)
    assert (variance >= 0).all()
    params = model.hyperparameters()
    assert params["law.a"] == summary["a"]["mean"] and params["noise"] > 0


def test_restored_state_fits_exactly_as_the_uninterrupted_model():
    X, y = _data(30)
    options = {"law": "a * x**2 + b", "priors": PRIORS, "descriptors": ["x"], "fit_iters": 40, "warm_iters": 20}
    uninterrupted = HypothesisSurrogate(**options).fit(X[:25], y[:25])
    resumed = HypothesisSurrogate(**options)
    resumed.set_state(uninterrupted.get_state())  # as a resumed campaign does
    uninterrupted.fit(X, y)
    resumed.fit(X, y)
    for name in ("a", "b"):
        assert resumed.posterior_summary()[name]["mean"] == pytest.approx(uninterrupted.posterior_summary()[name]["mean"], rel=1e-9)


def test_plain_torch_likelihood_and_posterior_equal_gpytorch_on_random_data():
    """The MAP fit's plain-torch marginal likelihood, its analytic gradient and the posterior cache
    must stay what GPyTorch computes, at random data and random hyperparameters."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] - 0.5 * X[:, 1] ** 2 + rng.normal(size=60)
    model = HypothesisSurrogate(law="a * x0 + b * x1**2", priors=PRIORS, descriptors=["x0", "x1", "x2"], fit_iters=2).fit(X, y)
    gp = model._model
    train_x, train_y = gp.train_inputs[0], gp.train_targets
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(gp.likelihood, gp)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        with torch.no_grad():
            for parameter in gp.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
        gp.train()
        gp.zero_grad()
        reference = -mll(gp(train_x), train_y)
        reference.backward()
        expected = [p.grad.clone() for p in gp.parameters()]
        gp.zero_grad()
        value = exact_neg_mll(gp, train_x, train_y)
        value.backward()
        assert value.item() == pytest.approx(reference.item(), rel=1e-10)
        for got, want in zip((p.grad for p in gp.parameters()), expected):
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)
        gp.eval()
        X_new = rng.normal(size=(25, 3))
        model._cache = model._posterior_cache()
        mean, variance = model.predict(X_new)
        joint_mean, covariance = model.predict_joint(X_new[:5])
        model._cache = GPSurrogate._posterior_cache(model)  # GPyTorch's root decompositions
        np.testing.assert_allclose(mean, model.predict(X_new)[0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(variance, model.predict(X_new)[1], rtol=1e-5, atol=1e-9)  # float32 pool path
        np.testing.assert_allclose(covariance, model.predict_joint(X_new[:5])[1], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(joint_mean, model.predict_joint(X_new[:5])[0], rtol=1e-9, atol=1e-9)


def test_safe_cholesky_adds_jitter_only_when_needed_and_refuses_an_indefinite_matrix():
    spd = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(safe_cholesky(spd), torch.linalg.cholesky(spd))
    singular = torch.ones(5, 5, dtype=torch.float64)  # rank 1: fails without jitter
    factor = safe_cholesky(singular)
    assert (factor @ factor.T - singular).abs().max() <= 1e-6
    with pytest.raises(torch.linalg.LinAlgError, match="not positive definite"):
        safe_cholesky(-torch.eye(3, dtype=torch.float64))
    with pytest.raises(torch.linalg.LinAlgError, match="NaN"):
        safe_cholesky(torch.full((3, 3), float("nan"), dtype=torch.float64))


def test_law_start_scores_for_all_candidates_at_once_equal_one_at_a_time():
    X, y = _data(30)
    model = HypothesisSurrogate(law="a * log(x - b)", priors={"a": "Normal(1, 1)", "b": "Normal(-1, 1)"}, descriptors=["x"],
                                fit_iters=2).fit(X, y)  # fmt: skip
    mean, train_x, train_y = model._model.mean_module, model._model.train_inputs[0], model._model.train_targets
    rng = np.random.default_rng(0)
    candidates = [{"a": rng.normal(1, 1), "b": rng.normal(-1, 1)} for _ in range(16)]  # some put log(x - b) out of its domain
    scores = mean.least_squares_scores(train_x, train_y, candidates)
    expected = []
    with torch.no_grad():
        for values in candidates:
            mean.set_values(values)
            expected.append((train_y - mean(train_x)).square().mean() - mean.log_prior() / len(train_y))
    expected = np.array([float(v) if np.isfinite(float(v)) else np.inf for v in expected])
    assert np.isinf(expected).any() and np.isfinite(expected).any()
    np.testing.assert_allclose(scores, expected, rtol=1e-9)


def test_law_uncertainty_equals_the_gp_with_a_random_linear_mean():
    """For a law linear in its parameters with Normal priors, the Laplace law variance is exact:
    the GP whose kernel gains the prior covariance of the law (Rasmussen & Williams, sec. 2.7)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 3, size=(25, 1))
    y = 1.5 * X[:, 0] - 2.0 + 0.05 * rng.normal(size=25)
    options = {"law": "a * x + b", "priors": PRIORS, "descriptors": ["x"], "fit_iters": 60}
    model = HypothesisSurrogate(**options, law_uncertainty=True).fit(X, y)
    X_new = np.array([[1.0], [3.5], [6.0]])  # inside, just past and far past the data
    _, variance = model.predict(X_new)
    gp, y_scale = model._model, float(model._y_scaler.scale)

    def basis(A: np.ndarray) -> np.ndarray:  # d law / d(a, b), standardised target units
        return np.stack([A[:, 0], np.ones(len(A))], -1) / y_scale

    prior = np.diag([2.0**2, 5.0**2])
    with torch.no_grad():
        z, z_new = (torch.as_tensor(model._x_scaler.apply(A)) for A in (X, X_new))
        K, K_cross, K_new = (gp.covar_module(a, b).to_dense().numpy() for a, b in ((z, z), (z_new, z), (z_new, z_new)))
        noise = float(gp.likelihood.noise)
    K = K + basis(X) @ prior @ basis(X).T + noise * np.eye(len(X))
    K_cross = K_cross + basis(X_new) @ prior @ basis(X).T
    K_new = K_new + basis(X_new) @ prior @ basis(X_new).T
    expected = np.diag(K_new - K_cross @ np.linalg.solve(K, K_cross.T)) * y_scale**2
    np.testing.assert_allclose(variance, expected, rtol=1e-4)  # pool variances use a float32 factor
    np.testing.assert_allclose(np.diag(model.predict_joint(X_new)[1]), expected, rtol=1e-6)
    plain = HypothesisSurrogate(**options).fit(X, y).predict(X_new)[1]
    assert variance[2] > 3 * plain[2]  # far from the data the slope's uncertainty dominates


def test_nuts_posterior_covers_the_truth_with_diagnostics():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 3, size=(16, 1))
    y = 1.5 * X[:, 0] ** 2 + 0.3 * np.sin(3 * X[:, 0]) + 0.05 * rng.normal(size=16)  # a law plus a smooth residual
    model = HypothesisSurrogate(law="a * x**2", priors={"a": "Normal(0, 2)"}, descriptors=["x"], inference="nuts",
                                num_warmup=100, num_samples=100, num_chains=2, max_tree_depth=5, predict_samples=16)  # fmt: skip
    model.fit(X, y)
    summary = model.posterior_summary()["a"]
    map_fit = HypothesisSurrogate(law="a * x**2", priors={"a": "Normal(0, 2)"}, descriptors=["x"]).fit(X, y)
    assert abs(summary["mean"] - map_fit.posterior_summary()["a"]["mean"]) < 2 * summary["sd"] + 0.05  # the modes agree
    assert summary["q5"] < summary["mean"] < summary["q95"] and 0 < summary["sd"] < 0.5
    assert summary["r_hat"] <= 1.1 and summary["ess"] > 0  # above 1.1 the fit restarts, then raises
    params = model.hyperparameters()
    assert params["r_hat_max"] <= 1.1 and params["law.a"] == summary["mean"]
    mean, variance = model.predict(np.array([[1.0], [2.0]]))
    np.testing.assert_allclose(mean, 1.5 * np.array([1.0, 4.0]) + 0.3 * np.sin([3.0, 6.0]), atol=0.2)
    assert (variance > 0).all()


def test_nuts_with_the_kernel_fixed_at_map_samples_the_law_only():
    X, y = _data(40, seed=3)
    options = {"law": "a * x**2 + b", "priors": PRIORS, "descriptors": ["x"], "fit_iters": 80}
    model = HypothesisSurrogate(**options, inference="nuts", nuts_kernel="map", num_warmup=100, num_samples=100,
                                max_tree_depth=5, predict_samples=16)  # fmt: skip
    model.fit(X, y)
    summary = model.posterior_summary()
    for name, truth, prior_sd in (("a", 1.5, 2.0), ("b", -2.0, 5.0)):  # b trades off against the residual GP's level
        assert summary[name]["q5"] - 0.02 < truth < summary[name]["q95"] + 0.02
        assert 0 < summary[name]["sd"] < prior_sd / 4 and summary[name]["r_hat"] <= 1.1
    assert set(model._nuts.samples) == {"a", "b"}  # the kernel and noise are not sampled
    map_noise = HypothesisSurrogate(**options).fit(X, y).hyperparameters()["noise"]
    assert model.hyperparameters()["noise"] == pytest.approx(map_noise, rel=1e-6)  # the MAP fit's, fixed
    far = np.array([[3.5], [4.0]])  # past the data (x <= 3): the law extrapolates
    mean, variance = model.predict(far)
    np.testing.assert_allclose(mean, 1.5 * far[:, 0] ** 2 - 2.0, rtol=0.08)
    assert (variance > 0).all()


def test_nuts_that_cannot_converge_raises_instead_of_answering():
    X, y = _data(16, seed=2)
    model = HypothesisSurrogate(law="a**2 * x**2 + b", priors={"a": "Normal(0, 2)", "b": "Normal(0, 5)"}, descriptors=["x"],
                                inference="nuts", num_warmup=10, num_samples=10, num_chains=2, max_restarts=0,
                                max_divergent=0.0, max_tree_depth=3)  # fmt: skip
    with pytest.raises(SamplingError, match="NUTS (did not converge|diverged)"):
        model.fit(X, y)


def test_nuts_on_a_law_undefined_on_the_data_raises():
    X = np.linspace(0, 3, 8)[:, None]
    model = HypothesisSurrogate(law="a * log(x - 10)", priors={"a": "Normal(0, 1)"}, descriptors=["x"], inference="nuts")
    with pytest.raises(SamplingError, match="could not start.*no log or sqrt of negative values"):
        model.fit(X, X[:, 0])


def test_bad_input_is_refused():
    X, y = _data(10)
    with pytest.raises(SpecError, match="prior"):
        HypothesisSurrogate(law="a * x + c", priors={"a": "Normal(0, 1)"}, descriptors=["x"]).fit(X, y)
    y_nan = y.copy()
    y_nan[3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        HypothesisSurrogate(law="a * x", priors={"a": "Normal(0, 1)"}, descriptors=["x"]).fit(X, y_nan)
    with pytest.raises(SpecError, match="descriptors: 2 name"):
        HypothesisSurrogate(law="a * x", priors={"a": "Normal(0, 1)"}, descriptors=["x", "y"]).fit(X, y)


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        ({"kind": "hypothesis", "law": "a * (", "priors": {"a": "Normal(0, 1)"}}, ("model.", "does not parse")),
        ({"kind": "hypothesis", "law": "a * MolWt", "priors": {}}, ("'a'", "parameter with a prior")),
        ({"kind": "select", "candidates": {"H1": {"kind": "hypothesis", "law": "E * x", "priors": {"E": "Normal(0)"}},
                                           "H2": {"kind": "gp"}}}, ("model.candidates.H1", "Normal takes 2")),
    ],
)  # fmt: skip
def test_cli_reports_a_bad_hypothesis_in_one_line(spec_dict, write_spec, tmp_path, model, fragments):
    spec_dict["model"] = model
    result = invoke("run", write_spec(spec_dict), "--run-dir", tmp_path / "run", "--no-report", "--no-progress")
    assert_user_error(result, *fragments)
    assert not (tmp_path / "run").exists()
