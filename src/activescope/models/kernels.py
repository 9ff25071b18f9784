"""Kernels that GPyTorch does not ship: the Tanimoto (MinMax) kernel for molecular fingerprints."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from gpytorch.kernels import Kernel


class TanimotoKernel(Kernel):
    """MinMax / Tanimoto similarity for non-negative count (or bit) fingerprints.

    k(x, z) = sum_i min(x_i, z_i) / sum_i max(x_i, z_i), which for 0/1 bits is the classic
    Tanimoto |x & z| / |x | z|. It has no hyperparameters (wrap it in a ScaleKernel). No path
    forms an (n, m, d) tensor: for integer counts or bits (2-D inputs; x2, the small side, is
    checked, x1 only at its non-zeros) the intersection is a sparse matmul of unary level
    indicators (`count_intersection`), whose cost grows with the non-zero counts, not with d;
    batched 0/1 bits use a matmul, x . z; other non-negative values use L1 norms, min + max = x + z
    and max - min = |x - z|, via one `torch.cdist(p=1)`. The union is then x + z - min. Two
    all-zero vectors count as identical (1).
    """

    has_lengthscale = False

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params) -> torch.Tensor:
        """Tanimoto similarities: (..., n, m) between the rows of x1 (..., n, d) and x2 (..., m, d),
        or the diagonal (..., n), all ones, when `diag`. Values lie in [0, 1]."""
        if diag:
            return torch.ones(x1.shape[:-1], dtype=x1.dtype, device=x1.device)
        total = x1.sum(-1).unsqueeze(-1) + x2.sum(-1).unsqueeze(-2)
        intersection = None
        if x1.dim() == 2 and x2.dim() == 2 and _is_integer(x2):  # x2 (training rows) is the small side
            intersection = count_intersection(x1, x2)
        if intersection is None and _is_binary(x2) and _is_binary(x1):  # batched bits
            intersection = x1 @ x2.transpose(-1, -2)
        if intersection is not None:
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


_TRAIN_LEVELS: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, torch.Tensor]] = []
"""The last x2 seen by `count_intersection` (a copy) with its used columns, column positions, levels
and level indicators: a prediction calls the kernel once per batch of rows with the same x2."""


def _train_levels(b_all: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, torch.Tensor]:
    """For integer counts b_all (m, d): the columns it uses, each column's position among them
    (-1 if unused), the number of levels (its largest count) and the (columns x levels, m) float32
    level indicators 1(b >= t); reused while the same values come back (compared exactly)."""
    if _TRAIN_LEVELS and _TRAIN_LEVELS[0][0].shape == b_all.shape and np.array_equal(_TRAIN_LEVELS[0][0], b_all):
        return _TRAIN_LEVELS[0][1:]
    used = np.flatnonzero((b_all > 0).any(0))
    position = np.full(b_all.shape[1], -1)
    position[used] = np.arange(used.size)
    b = b_all[:, used]
    levels = int(b.max(initial=0))
    indicators = (b[:, :, None] >= np.arange(1, levels + 1)).reshape(len(b), -1).T
    _TRAIN_LEVELS[:] = [(b_all.copy(), used, position, levels, torch.as_tensor(np.ascontiguousarray(indicators), dtype=torch.float32))]
    return used, position, levels, _TRAIN_LEVELS[0][4]


def count_intersection(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor | None:
    """`sum_i min(x1_i, x2_i)` for every pair of rows of non-negative counts x1 (n, d) and integer
    counts x2 (m, d): (n, m), from `min(a, b) = sum_t 1(a >= t) * 1(b >= t)` over levels t = 1..max(x2);
    None when x1 holds a non-integer value where x2 has non-zero counts (the formula needs integers
    there; elsewhere min is 0 whatever x1 holds).

    Only the columns where x2 is non-zero matter; x1's level indicators there form a sparse
    (n, columns x levels) matrix with one entry per unit of count (a torch CSR tensor), x2's a small
    dense one, reused across calls with the same x2 (`_train_levels`), so the cost is one pass over
    x1 to find its non-zeros plus (count units in x1) x m, instead of n x m x d. The product is in
    float32, exact for counts below 2^24. Inputs carry no gradient (the kernel has no parameters of
    its own); the result is on x1's device and dtype.
    """
    a_all = x1.detach().cpu().numpy()
    used, position, levels, indicators = _train_levels(x2.detach().cpu().numpy())
    if levels < 1:
        return x1.new_zeros(len(x1), len(x2))
    row, column = np.nonzero(a_all)  # the one pass over x1
    keep = position[column] >= 0
    row, column = row[keep], column[keep]
    values = a_all[row, column]
    if (values != np.round(values)).any():
        return None
    counts = np.minimum(values, levels).astype(np.int64)
    unit = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    starts = np.concatenate([[0], np.cumsum(np.bincount(row, weights=counts, minlength=len(a_all)).astype(np.int64))])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        sparse_a = torch.sparse_csr_tensor(  # row-major non-zeros and increasing positions: sorted CSR indices
            torch.as_tensor(starts), torch.as_tensor(np.repeat(position[column], counts) * levels + unit),
            torch.ones(int(starts[-1]), dtype=torch.float32), size=(len(a_all), indicators.shape[0]), check_invariants=False,
        )
    return (sparse_a @ indicators).to(dtype=x1.dtype, device=x1.device)
