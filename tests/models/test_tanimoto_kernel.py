"""The Tanimoto (MinMax) kernel on hand-checkable fingerprints."""

import numpy as np
import pytest
import torch

from activescope.models.gp import GPSurrogate
from activescope.models._pool_cache import POOL_CACHE_MIN_ROWS
from activescope.models.kernels import TanimotoKernel, count_intersection, pool_count_levels


def kernel_values(a, b) -> np.ndarray:
    with torch.no_grad():
        return TanimotoKernel()(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)).to_dense().numpy()


def test_identical_fingerprints_have_similarity_one():
    x = [[1.0, 0.0, 3.0, 2.0], [0.0, 1.0, 0.0, 0.0]]
    assert np.allclose(np.diag(kernel_values(x, x)), 1.0)


def test_disjoint_fingerprints_have_similarity_zero():
    assert kernel_values([[1.0, 2.0, 0.0, 0.0]], [[0.0, 0.0, 5.0, 1.0]])[0, 0] == pytest.approx(0.0)


def test_count_fingerprints_match_hand_computed_minmax():
    # sum(min) = 1 + 1 + 0 + 0 = 2, sum(max) = 2 + 2 + 1 + 3 = 8
    assert kernel_values([[1.0, 2.0, 0.0, 3.0]], [[2.0, 1.0, 1.0, 0.0]])[0, 0] == pytest.approx(0.25)


def test_bit_fingerprints_reduce_to_classic_tanimoto():
    # |x & z| = 1, |x | z| = 3
    assert kernel_values([[1.0, 1.0, 0.0, 0.0]], [[1.0, 0.0, 1.0, 0.0]])[0, 0] == pytest.approx(1 / 3)


@pytest.mark.parametrize("fingerprint", ["counts", "bits"])
def test_matrix_is_symmetric_with_unit_diagonal_and_matches_pairwise_definition(fingerprint):
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(7, 32)).astype(float)
    if fingerprint == "bits":  # takes the matmul path instead of the L1 one
        x = np.minimum(x, 1.0)
    K = kernel_values(x, x)
    expected = np.minimum(x[:, None], x[None]).sum(-1) / np.maximum(x[:, None], x[None]).sum(-1)
    assert np.allclose(K, expected)
    assert np.allclose(K, K.T)
    with torch.no_grad():
        diag = TanimotoKernel()(torch.tensor(x), diag=True).numpy()
    assert np.allclose(diag, 1.0)


def minmax(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The MinMax definition, pair by pair (dense, for small inputs)."""
    return np.minimum(a[:, None], b[None]).sum(-1) / np.maximum(a[:, None], b[None]).sum(-1)


def test_training_rows_that_change_in_place_are_not_served_from_the_level_cache():
    rng = np.random.default_rng(1)
    pool, train = rng.poisson(1.0, size=(9, 24)).astype(float), rng.poisson(1.0, size=(5, 24)).astype(float)
    assert np.allclose(kernel_values(pool, train), minmax(pool, train))
    train[0] += 3.0  # same array, same shape, new values: the cached level indicators must not be reused
    train[1, :] = 0.0
    assert np.allclose(kernel_values(pool, train), minmax(pool, train))
    assert np.allclose(kernel_values(pool, train[:3]), minmax(pool, train[:3]))


def test_non_integer_pool_values_where_training_rows_count_fall_back_to_the_exact_formula():
    rng = np.random.default_rng(2)
    pool, train = rng.poisson(1.0, size=(6, 16)).astype(float), rng.poisson(0.3, size=(4, 16)).astype(float)
    column = int(np.flatnonzero(train[0])[0])
    pool[0, column] = 0.5  # a fractional value where a training row has counts
    assert np.allclose(kernel_values(pool, train), minmax(pool, train))
    assert count_intersection(torch.tensor(pool), torch.tensor(train)) is None
    unused = np.flatnonzero(~(train > 0).any(0))
    pool[0, column], pool[1, unused[0]] = 1.0, 0.25  # fractional where no training row counts: min is 0 there
    assert np.allclose(count_intersection(torch.tensor(pool), torch.tensor(train)).numpy(), np.minimum(pool[:, None], train[None]).sum(-1))


def count_pool(seed: int, rows: int = POOL_CACHE_MIN_ROWS + 900, columns: int = 40) -> np.ndarray:
    """A float32 pool whose last `columns` are sparse counts, behind a dense block (like the
    Morgan block of a pool with other descriptors before it)."""
    rng = np.random.default_rng(seed)
    return np.hstack([rng.normal(size=(rows, 3)), rng.poisson(0.4, size=(rows, columns))]).astype(np.float32)


def fitted_tanimoto_gp(pool: np.ndarray) -> GPSurrogate:
    model = GPSurrogate(kernel="tanimoto", columns="counts", fit_iters=20, batch_rows=1000)
    model.use_feature_blocks({"counts": slice(3, pool.shape[1])})
    rows = np.random.default_rng(5).choice(len(pool), 80, replace=False)
    return model.fit(pool[rows], pool[rows, 3:].sum(1) + np.sin(pool[rows, 3]))


def test_a_large_pool_is_predicted_from_cached_count_levels_exactly_as_batch_by_batch():
    pool = count_pool(0)
    model = fitted_tanimoto_gp(pool)
    mean, variance = model.predict(pool)  # >= POOL_CACHE_MIN_ROWS rows: the cached levels
    assert pool_count_levels(pool[:, 3:], 1000) is pool_count_levels(pool[:, 3:], 1000) is not None
    pieces = [model.predict(pool[start:start + 1000]) for start in range(0, len(pool), 1000)]  # small: the kernel
    assert np.allclose(mean, np.concatenate([p[0] for p in pieces]), rtol=1e-5, atol=1e-5)
    assert np.allclose(variance, np.concatenate([p[1] for p in pieces]), rtol=1e-4, atol=1e-6)
    assert mean.std() > 0.1 and (variance > 0).all()


def test_the_count_level_cache_follows_the_array_and_refuses_fractions():
    first, second = count_pool(1), count_pool(2)
    assert pool_count_levels(first[:, 3:], 1000) is not pool_count_levels(second[:, 3:], 1000)
    model = fitted_tanimoto_gp(second)
    expected = model.predict(second[:2000])[0]
    assert np.allclose(model.predict(second)[0][:2000], expected, atol=1e-5)  # the second pool's own levels
    assert pool_count_levels(first[:100, 3:], 1000) is None  # small blocks are computed directly
    second[0, 3] = 0.5
    assert pool_count_levels(second[:, 3:].copy(), 1000) is None  # not integer counts: the general path
