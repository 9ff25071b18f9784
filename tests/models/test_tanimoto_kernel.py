"""The Tanimoto (MinMax) kernel on hand-checkable fingerprints."""

import numpy as np
import pytest
import torch

from activescope.models.kernels import TanimotoKernel


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
