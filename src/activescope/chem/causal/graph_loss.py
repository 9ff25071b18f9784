"""Graph loss: how far a causal graph learned on a subset is from the full pool's graph.

Definition. For a LiNGAM adjacency B (B[i, j] = standardised effect of j on i) the weighted
undirected adjacency is W = |B| + |B|ᵀ (a DAG's B is nilpotent, so its own eigenvalues are all
zero and say nothing; W's are real and describe edge strengths and how they connect). With
`kind="laplacian"` the matrix is L = D − W, D = diag(W·1). Let λ(M) be M's eigenvalues sorted
in descending order. The loss is the relative spectral distance

    loss(B_sub, B_full) = ‖λ(M_sub) − λ(M_full)‖₂ / ‖λ(M_full)‖₂

(denominator replaced by 1 when the full graph has no edges). It is 0 for identical graphs,
invariant to relabelling nodes, dimensionless, and about 1 when the subset graph is empty or as
far from the full one as the full one is from an empty graph.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def spectrum(adjacency: np.ndarray, kind: Literal["adjacency", "laplacian"] = "adjacency") -> np.ndarray:
    """Eigenvalues, descending, of W = |B| + |B|ᵀ (kind="adjacency") or of its Laplacian D − W."""
    W = np.abs(adjacency) + np.abs(adjacency).T
    if kind == "laplacian":
        W = np.diag(W.sum(axis=1)) - W
    return np.linalg.eigvalsh(W)[::-1]


def spectral_distance(subset: np.ndarray, full: np.ndarray, kind: Literal["adjacency", "laplacian"] = "adjacency") -> float:
    """The graph loss ‖λ(subset) − λ(full)‖₂ / ‖λ(full)‖₂ between two p×p adjacency matrices."""
    if subset.shape != full.shape:
        raise ValueError(f"graphs over different variables: {subset.shape} vs {full.shape}")
    reference = spectrum(full, kind)
    scale = float(np.linalg.norm(reference))
    return float(np.linalg.norm(spectrum(subset, kind) - reference) / (scale if scale > 0 else 1.0))
