"""The structured GP: its law's parameters are recovered (MAP and NUTS), it predicts where the
law extrapolates, and bad input ends in one clear line."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import assert_user_error, invoke

from activescope.engine.errors import DataError, SamplingError, SpecError
from activescope.models.hypothesis import HypothesisSurrogate

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
