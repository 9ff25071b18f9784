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


def test_a_sparse_pool_block_is_predicted_from_cached_sparse_rows_exactly_as_dense():
    from activescope.models._pool_cache import POOL_CACHE_MIN_ROWS, pool_cached
    from activescope.models._torch import PREDICT_BATCH_ROWS
    from activescope.models.ensemble import RandomForestSurrogate

    rng = np.random.default_rng(0)
    rows = POOL_CACHE_MIN_ROWS + 500
    pool = np.hstack([rng.normal(size=(rows, 4)), rng.poisson(0.05, size=(rows, 60))]).astype(np.float32)
    y = pool[:, 4:].sum(1) + pool[:, 0]
    model = RandomForestSurrogate(n_estimators=20, columns="counts")
    model.use_feature_blocks({"counts": slice(4, 64), "dense": slice(0, 4)})
    model.batch_rows = 1000
    model.fit(pool[:300], y[:300])
    mean, variance = model.predict(pool)  # a large, mostly-zero block: the sparse rows
    assert pool_cached("sparse_rows", pool[:, 4:], (1000,), lambda block: None) is not None
    dense = [model.predict(pool[start:start + 1000]) for start in range(0, rows, 1000)]  # small: dense rows
    assert np.array_equal(mean, np.concatenate([d[0] for d in dense]))
    assert np.allclose(variance, np.concatenate([d[1] for d in dense]))
    dense_model = RandomForestSurrogate(n_estimators=20, columns="dense")
    dense_model.use_feature_blocks({"counts": slice(4, 64), "dense": slice(0, 4)})
    dense_model.fit(pool[:300], y[:300])
    assert np.isfinite(dense_model.predict(pool)[0]).all()
    assert pool_cached("sparse_rows", pool[:, :4], (PREDICT_BATCH_ROWS,), lambda block: "rebuilt") is None  # dense: no sparse rows
