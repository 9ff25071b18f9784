"""Kernels that GPyTorch does not ship: the Tanimoto (MinMax) kernel for molecular fingerprints."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch
from gpytorch.kernels import Kernel


class TanimotoKernel(Kernel):
    """MinMax / Tanimoto similarity for non-negative count (or bit) fingerprints.

    k(x, z) = sum_i min(x_i, z_i) / sum_i max(x_i, z_i), which for 0/1 bits is the classic
    Tanimoto |x & z| / |x | z|. It has no hyperparameters (wrap it in a ScaleKernel). Neither
    path forms an (n, m, d) tensor: for 0/1 bits the intersection is a matmul, x . z; for
    integer counts (2-D inputs) it is a sparse matmul of unary level indicators (`count_intersection`),
    whose cost grows with the non-zero counts, not with d; other non-negative values use L1
    norms, min + max = x + z and max - min = |x - z|, via one `torch.cdist(p=1)`. The union is
    then x + z - min. Two all-zero vectors count as identical (1).
    """

    has_lengthscale = False

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params) -> torch.Tensor:
        """Tanimoto similarities: (..., n, m) between the rows of x1 (..., n, d) and x2 (..., m, d),
        or the diagonal (..., n), all ones, when `diag`. Values lie in [0, 1]."""
        if diag:
            return torch.ones(x1.shape[:-1], dtype=x1.dtype, device=x1.device)
        total = x1.sum(-1).unsqueeze(-1) + x2.sum(-1).unsqueeze(-2)
        if _is_binary(x1) and _is_binary(x2):
            intersection = x1 @ x2.transpose(-1, -2)
            union = total - intersection
        elif x1.dim() == 2 and x2.dim() == 2 and _is_integer(x1) and _is_integer(x2):
            intersection = count_intersection(x1, x2)
            union = total - intersection
        else:
            l1_distance = torch.cdist(x1, x2, p=1)
            union = 0.5 * (total + l1_distance)
            intersection = 0.5 * (total - l1_distance)
        return torch.where(union > 0, intersection / union.clamp_min(1e-30), torch.ones_like(union))


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def _is_integer(x: torch.Tensor) -> bool:
    return bool((x == torch.round(x)).all())


def count_intersection(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """`sum_i min(x1_i, x2_i)` for every pair of rows of non-negative integer counts x1 (n, d) and
    x2 (m, d): (n, m), from `min(a, b) = sum_t 1(a >= t) * 1(b >= t)` over levels t = 1..max.

    Only the columns where x2 is non-zero matter; x1's level indicators there form a sparse
    (n, columns x levels) matrix with one entry per unit of count (SciPy CSR), x2's a small dense
    one, so the cost is (count units in x1) x m instead of n x m x d. Inputs carry no gradient
    (the kernel has no parameters of its own); the result is on x1's device and dtype.
    """
    a_all, b_all = x1.detach().cpu().numpy(), x2.detach().cpu().numpy()
    used = np.flatnonzero((b_all > 0).any(0))
    a, b = a_all[:, used], b_all[:, used]
    levels = int(min(a.max(initial=0), b.max(initial=0)))
    if levels < 1:
        return x1.new_zeros(len(x1), len(x2))
    dense_b = (b[:, :, None] >= np.arange(1, levels + 1)).reshape(len(b), -1).astype(np.float64)
    row, column = np.nonzero(a)
    counts = np.minimum(a[row, column], levels).astype(np.int64)
    unit = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    sparse_a = scipy.sparse.csr_matrix(
        (np.ones(unit.size), (np.repeat(row, counts), np.repeat(column, counts) * levels + unit)),
        shape=(len(a), dense_b.shape[1]),
    )
    return torch.as_tensor(sparse_a @ dense_b.T, dtype=x1.dtype, device=x1.device)
