"""Kernels that GPyTorch does not ship: the Tanimoto (MinMax) kernel for molecular fingerprints."""

from __future__ import annotations

import torch
from gpytorch.kernels import Kernel


class TanimotoKernel(Kernel):
    """MinMax / Tanimoto similarity for non-negative count (or bit) fingerprints.

    k(x, z) = sum_i min(x_i, z_i) / sum_i max(x_i, z_i), which for 0/1 bits is the classic
    Tanimoto |x & z| / |x | z|. It has no hyperparameters (wrap it in a ScaleKernel). Neither
    path forms an (n, m, d) tensor: for 0/1 bits the intersection is a matmul, x . z; for counts
    both sums come from L1 norms, min + max = x + z and max - min = |x - z|, via one
    `torch.cdist(p=1)` (much slower than the matmul). Two all-zero vectors count as identical (1).
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
        else:
            l1_distance = torch.cdist(x1, x2, p=1)
            union = 0.5 * (total + l1_distance)
            intersection = 0.5 * (total - l1_distance)
        return torch.where(union > 0, intersection / union.clamp_min(1e-30), torch.ones_like(union))


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())
