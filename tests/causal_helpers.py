"""Synthetic LiNGAM data with a known graph, shaped like the causal study's molecule sets."""

from __future__ import annotations

import numpy as np

from activescope.chem.causal.data import CausalData, MoleculeSet

NAMES = ["a", "b", "c", "d", "y"]
TRUE_B = np.zeros((5, 5))
TRUE_B[1, 0] = 0.8    # a -> b
TRUE_B[2, 1] = -0.7   # b -> c
TRUE_B[4, 2] = 0.9    # c -> y
TRUE_B[4, 3] = 0.5    # d -> y
"""B[i, j]: direct effect of variable j on variable i (y is the sink)."""


def lingam_sample(n: int, seed: int, B: np.ndarray = TRUE_B) -> np.ndarray:
    """n draws of x = B x + e with independent uniform (non-Gaussian) noise, columns as NAMES."""
    noise = np.random.default_rng(seed).uniform(-1, 1, (n, B.shape[0]))
    return noise @ np.linalg.inv(np.eye(B.shape[0]) - B).T


def molecule_set(values: np.ndarray, prefix: str, seed: int) -> MoleculeSet:
    """Molecules with descriptors a..d and target y; `space` is three of the descriptors."""
    n = len(values)
    ids = np.array([f"{prefix}{i:05d}" for i in range(n)])
    space = values[:, :3] + 0.01 * np.random.default_rng(seed).normal(size=(n, 3))
    return MoleculeSet(ids, np.array(["C"] * n), values[:, :-1], values[:, -1], space)


def synthetic_data(n_pool: int = 1500, seed: int = 0) -> CausalData:
    """A pool, a test set and a design set drawn from the known graph."""
    return CausalData(
        descriptors=NAMES[:-1],
        target="y",
        pool=molecule_set(lingam_sample(n_pool, seed), "p", seed),
        test=molecule_set(lingam_sample(300, seed + 1), "t", seed + 1),
        design=molecule_set(lingam_sample(2000, seed + 2), "d", seed + 2),
    )
