"""Kernels that GPyTorch does not ship: the Tanimoto (MinMax) kernel for molecular fingerprints."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from gpytorch.kernels import Kernel

from ._pool_cache import pool_cached


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
        if intersection is None:
            intersection = 0.5 * (total - torch.cdist(x1, x2, p=1))
        return tanimoto_from_intersection(intersection, total)


def tanimoto_from_intersection(intersection: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Tanimoto similarity from `sum min(x, z)` and `sum x + sum z` (same shape): the intersection
    over the union `total - intersection`, 1 where both vectors are all zero."""
    union = total - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1e-30), torch.ones_like(union))


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def _is_integer(x: torch.Tensor) -> bool:
    return bool((x == torch.round(x)).all())


def _sparse_levels(row: np.ndarray, column: np.ndarray, counts: np.ndarray, offsets: np.ndarray,
                   n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Unary level indicators of the non-zero counts (row, column, counts; row-major order) of an
    (n_rows, d) matrix in CSR form: the n_rows + 1 row offsets and, per unit of count, its position
    offsets[column] + level - 1 (column c owns positions offsets[c] .. offsets[c + 1] - 1)."""
    unit = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.repeat(offsets[column], counts) + unit
    row_starts = np.concatenate([[0], np.cumsum(np.bincount(row, weights=counts, minlength=n_rows).astype(np.int64))])
    return row_starts, positions


def _dense_levels(counts: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
    """Dense (positions, m) float32 level indicators 1(count >= level) of integer counts (m, d),
    each already capped at its column's number of positions."""
    row, column = np.nonzero(counts)
    values = counts[row, column].astype(np.int64)
    row_starts, positions = _sparse_levels(row, column, values, offsets, len(counts))
    dense = torch.zeros(int(offsets[-1]), len(counts), dtype=torch.float32)
    dense[torch.as_tensor(positions), torch.as_tensor(np.repeat(np.arange(len(counts)), np.diff(row_starts)))] = 1.0
    return dense


def _csr(row_starts: np.ndarray, positions: np.ndarray, n_columns: int) -> torch.Tensor:
    """A float32 torch CSR matrix of ones at sorted `positions` per row (`row_starts`: n + 1 offsets)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(
            torch.as_tensor(row_starts, dtype=torch.int64), torch.as_tensor(positions, dtype=torch.int64),
            torch.ones(len(positions), dtype=torch.float32), size=(len(row_starts) - 1, n_columns), check_invariants=False,
        )


def count_intersection(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor | None:
    """`sum_i min(x1_i, x2_i)` for every pair of rows of non-negative counts x1 (n, d) and integer
    counts x2 (m, d): (n, m), from `min(a, b) = sum_t 1(a >= t) * 1(b >= t)` over levels t = 1..max(x2);
    None when x1 holds a non-integer value where x2 has non-zero counts (the formula needs integers
    there; elsewhere min is 0 whatever x1 holds).

    Only the columns where x2 is non-zero matter; x1's level indicators there form a sparse
    (n, columns x levels) matrix with one entry per unit of count (a torch CSR tensor), x2's a small
    dense one, so the cost is one pass over x1 to find its non-zeros plus (count units in x1) x m,
    instead of n x m x d. The product is in float32, exact for counts below 2^24. Inputs carry no
    gradient (the kernel has no parameters of its own); the result is on x1's device and dtype.
    A pool predicted every round skips even the pass over x1: `pool_count_levels`.
    """
    a, b = x1.detach().cpu().numpy(), x2.detach().cpu().numpy()
    caps = b.max(axis=0, initial=0).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(caps)])
    row, column = np.nonzero(a)  # the one pass over x1
    keep = caps[column] > 0
    row, column = row[keep], column[keep]
    values = a[row, column]
    if (values != np.round(values)).any():
        return None
    row_starts, positions = _sparse_levels(row, column, np.minimum(values, caps[column]).astype(np.int64), offsets, len(a))
    return (_csr(row_starts, positions, int(offsets[-1])) @ _dense_levels(b, offsets)).to(dtype=x1.dtype, device=x1.device)


@dataclass(frozen=True)
class CountLevels:
    """The unary level indicators of a large block of integer counts (a pool's fingerprints),
    built once so that every later Tanimoto prediction against it is one sparse product per batch.

    Column c owns positions offsets[c] .. offsets[c + 1] - 1, one per level up to its largest
    count in the block. totals: the row sums (n,), float64; batches: one float32 CSR (rows,
    positions) per `batch_rows` consecutive rows.
    """

    totals: np.ndarray
    offsets: np.ndarray
    batches: tuple[torch.Tensor, ...]

    @classmethod
    def build(cls, block: np.ndarray, batch_rows: int) -> "CountLevels | None":
        """The levels of `block` (n, d), or None when it holds a negative or non-integer value."""
        row, column = np.nonzero(block)
        values = block[row, column]
        if (values < 0).any() or (values != np.round(values)).any():
            return None
        counts = values.astype(np.int64)
        caps = np.zeros(block.shape[1], dtype=np.int64)
        np.maximum.at(caps, column, counts)
        offsets = np.concatenate([[0], np.cumsum(caps)])
        row_starts, positions = _sparse_levels(row, column, counts, offsets, len(block))
        bounds = [(start, min(start + batch_rows, len(block))) for start in range(0, len(block), batch_rows)]
        batches = tuple(_csr(row_starts[start:stop + 1] - row_starts[start], positions[row_starts[start]:row_starts[stop]],
                             int(offsets[-1])) for start, stop in bounds)
        return cls(block.sum(axis=1, dtype=np.float64), offsets, batches)

    def train_indicators(self, train: np.ndarray) -> torch.Tensor:
        """Dense (positions, m) float32 level indicators of integer counts `train` (m, d); levels
        above the block's largest count in a column add nothing to a minimum with its rows."""
        return _dense_levels(np.minimum(train, np.diff(self.offsets)), self.offsets)


def pool_count_levels(block: np.ndarray, batch_rows: int) -> CountLevels | None:
    """`CountLevels` of a pool's count block in batches of `batch_rows`, built once per pool
    (`models._pool_cache`); None for small blocks or ones that are not integer counts."""
    return pool_cached("count_levels", block, (batch_rows,), lambda values: CountLevels.build(values, batch_rows))
