"""Random forest and deep ensemble surrogates: sensible means, positive spread, joint covariance."""

import numpy as np
import pytest

from activescope.engine.errors import SpecError
from activescope.models import build_model


def smooth(X: np.ndarray) -> np.ndarray:
    return 2 * X[:, 0] - X[:, 1] ** 2 + np.sin(3 * X[:, 2])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(400, 4)).astype(np.float32)
    return X[:250], smooth(X[:250]), X[250:], smooth(X[250:])


@pytest.mark.parametrize("name, options", [("rf", {"n_estimators": 40}), ("deep_ensemble", {"members": 4, "epochs": 150, "hidden": [32, 32]})])
def test_mean_tracks_truth_and_variance_is_positive(name, options, data):
    X, y, X_test, y_test = data
    model = build_model(name, **options).fit(X, y)
    mean, variance = model.predict(X_test)
    assert np.corrcoef(mean, y_test)[0, 1] > 0.9
    assert (variance > 0).all()
    joint_mean, cov = model.predict_joint(X_test[:20])
    assert np.allclose(joint_mean, mean[:20])
    assert np.allclose(np.diag(cov), variance[:20])
    assert all(np.isfinite(v) for v in model.hyperparameters().values())


def test_batched_prediction_equals_single_batch(data):
    X, y, X_test, _ = data
    model = build_model("rf", n_estimators=10).fit(X, y)
    whole = model.predict(X_test)
    model.batch_rows = 9
    batched = model.predict(X_test)
    assert np.array_equal(whole[0], batched[0]) and np.array_equal(whole[1], batched[1])


def test_ensembles_need_two_members():
    with pytest.raises(SpecError, match="model.members"):
        build_model("deep_ensemble", members=1)
    with pytest.raises(SpecError, match="model.n_estimators"):
        build_model("rf", n_estimators=1)
