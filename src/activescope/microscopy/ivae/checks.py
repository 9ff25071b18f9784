"""The checks users care about for an invariant VAE, and a toy data set to run them on.

- `rotation_sensitivity`: rotate each patch by a random angle and measure how far its
  non-rotational latent z moves, relative to the spread of z over the patches (0: invariant;
  about 1.4: as far as two random patches).
- `knn_accuracy`: how well site/defect types are told apart by k nearest neighbours in a
  representation (latent coordinates or raw pixels), on a held-out share of the patches.
- `toy_patches`: patches of two or three kinds of atom motif (a round atom, a dimer, an
  L-shaped trimer) at random orientations and sub-pixel offsets, with their kind.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from activescope.microscopy.ivae.patches import rotate_patches


def rotation_sensitivity(latent: Callable[[np.ndarray], np.ndarray], patches: np.ndarray, seed: int = 0) -> float:
    """Median over patches of |z(rotated) - z(original)| / (RMS spread of z), rotating each
    patch by a uniform random angle in [0, 2π). `latent` maps (n, s, s) patches to z (n, d)."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0.0, 2.0 * np.pi, len(patches))
    z = latent(patches)
    z_rotated = latent(rotate_patches(patches, angles))
    spread = float(np.sqrt(((z - z.mean(axis=0)) ** 2).sum(axis=1).mean()))
    return float(np.median(np.linalg.norm(z_rotated - z, axis=1)) / max(spread, 1e-12))


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5, test_share: float = 0.3, seed: int = 0,
                 balanced: bool = False) -> float:
    """Accuracy of a k-NN majority vote (standardised features) on a random held-out share;
    balanced: the mean of the per-type recalls instead (rare defect types count as much)."""
    features = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    features = (features - features.mean(axis=0)) / np.maximum(features.std(axis=0), 1e-12)
    labels = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = max(1, int(test_share * len(labels)))
    test, train = order[:n_test], order[n_test:]
    _, neighbours = cKDTree(features[train]).query(features[test], k=min(k, len(train)))
    votes = labels[train][np.atleast_2d(neighbours.reshape(n_test, -1))]
    values = np.unique(labels)
    counts = (votes[:, :, None] == values[None, None, :]).sum(axis=1)
    correct = values[counts.argmax(axis=1)] == labels[test]
    if balanced:
        return float(np.mean([correct[labels[test] == value].mean() for value in np.unique(labels[test])]))
    return float(correct.mean())


def toy_patches(n: int, side: int = 20, kinds: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patches (n, side, side) in [0, 1], kind (n,), angle (n,) radians) of rendered motifs:
    kind 0 a single atom, 1 a dimer, 2 an L-shaped trimer, each at a random orientation, with
    small random offsets and Gaussian noise (std 0.03)."""
    rng = np.random.default_rng(seed)
    motifs = [np.array([[0.0, 0.0]]), np.array([[-0.3, 0.0], [0.3, 0.0]]),
              np.array([[-0.25, -0.15], [0.25, -0.15], [-0.25, 0.35]])][:kinds]
    kind = rng.integers(0, kinds, n)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    axis = np.linspace(-1.0, 1.0, side)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    points = np.zeros((n, 3, 2))
    weight = np.zeros((n, 3))
    for k, motif in enumerate(motifs):
        rows = kind == k
        points[rows, : len(motif)] = motif
        weight[rows, : len(motif)] = 1.0
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    px = cos * points[..., 0] - sin * points[..., 1] + rng.normal(0.0, 0.03, (n, 1))
    py = sin * points[..., 0] + cos * points[..., 1] + rng.normal(0.0, 0.03, (n, 1))
    d2 = (xx[None, None] - px[..., None, None]) ** 2 + (yy[None, None] - py[..., None, None]) ** 2
    image = (weight[..., None, None] * np.exp(-d2 / (2 * 0.15**2))).sum(axis=1)
    image = np.clip(image + rng.normal(0.0, 0.03, image.shape), 0.0, 1.0)
    return image.astype(np.float32), kind, angle
