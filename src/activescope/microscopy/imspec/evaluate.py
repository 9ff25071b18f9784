"""Held-out evaluation of im2spec: a spatially separated split and two baselines.

`block_split` cuts the grid into square blocks and holds out a random share of them; training
points closer than `guard` pixels (Chebyshev distance) to a held-out point are left out too, so
no training patch overlaps a test patch and neighbouring positions do not leak. Baselines:
the spectrum of the nearest training patch (Euclidean, pixels) and the mean training spectrum.
Errors: RMSE over every point of every held-out spectrum (data units), and the relative error
RMSE / RMS deviation of the test spectra from the training mean (1.0 = the mean baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from activescope.engine.errors import DataError
from activescope.microscopy.imspec.train import (
    ImSpecPredictor,
    ImSpecTrainConfig,
    check_pairs,
    train_imspec,
)


def block_split(rows: np.ndarray, cols: np.ndarray, block: int, test_share: float = 0.25, guard: int = 0,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) boolean masks over points at integer grid positions (rows, cols)."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if block < 1 or not 0 < test_share < 1:
        raise DataError(f"block must be >= 1 and test_share in (0, 1), got {block} and {test_share}")
    block_id = (rows // block) * (cols.max() // block + 1) + cols // block
    blocks = np.unique(block_id)
    n_test = max(1, round(test_share * len(blocks)))
    if n_test >= len(blocks):
        raise DataError(f"{len(blocks)} blocks of {block} px are too few to hold some out")
    held = np.random.default_rng(seed).choice(blocks, n_test, replace=False)
    test = np.isin(block_id, held)
    mask = np.zeros((rows.max() + 1, cols.max() + 1), dtype=bool)
    mask[rows[test], cols[test]] = True
    near = ndimage.maximum_filter(mask, size=2 * guard + 1) if guard > 0 else mask
    return ~near[rows, cols], test


def nearest_patch_baseline(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Spectrum of each test patch's nearest training patch (Euclidean distance over pixels)."""
    a, b = torch.from_numpy(np.asarray(test_x, dtype=np.float32)), torch.from_numpy(np.asarray(train_x, dtype=np.float32))
    nearest = torch.cat([torch.cdist(a[i:i + 2048], b).argmin(1) for i in range(0, len(a), 2048)]).numpy()
    return np.asarray(train_y)[nearest]


@dataclass
class SplitScores:
    """Held-out errors (see the module docstring) of im2spec and the baselines against the
    measured spectra, relative errors against the `reference` spectra when given (else {}),
    and the predictions."""

    rmse: dict[str, float]
    relative: dict[str, float]
    relative_reference: dict[str, float]
    n_train: int
    n_test: int
    test_index: np.ndarray
    predicted: np.ndarray
    nearest: np.ndarray
    train_seconds: float


def scores(truth: np.ndarray, predictions: dict[str, np.ndarray], train_mean: np.ndarray) -> tuple[dict, dict]:
    """(RMSE, relative error) per named prediction of `truth` (n, c)."""
    scale = float(np.sqrt(((truth - train_mean) ** 2).mean()))
    rmse = {name: float(np.sqrt(((p - truth) ** 2).mean())) for name, p in predictions.items()}
    return rmse, {name: value / max(scale, 1e-12) for name, value in rmse.items()}


def evaluate_split(patches: np.ndarray, spectra: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                   config: ImSpecTrainConfig, block: int, guard: int, test_share: float = 0.25,
                   seed: int = 0, reference: np.ndarray | None = None) -> SplitScores:
    """Train on the training blocks, score im2spec, nearest-patch and mean baselines on the
    held-out blocks (`seed` draws the blocks and seeds training). `reference`: noise-free or
    denoised spectra (n, channels) to score the same predictions against as well."""
    patches, spectra = check_pairs(patches, spectra)
    train, test = block_split(rows, cols, block, test_share, guard, seed)
    if train.sum() < 2:
        raise DataError("too few training points left after the guard band; use smaller blocks or guard")
    config = ImSpecTrainConfig(**{**vars(config), "seed": seed})
    trained = train_imspec(patches[train], spectra[train], config)
    predicted = ImSpecPredictor(trained.model).im2spec(patches[test])
    nearest = nearest_patch_baseline(patches[train], spectra[train], patches[test])
    mean = spectra[train].mean(axis=0)
    predictions = {"im2spec": predicted, "nearest_patch": nearest, "mean_spectrum": np.broadcast_to(mean, predicted.shape)}
    rmse, relative = scores(spectra[test], predictions, mean)
    against = scores(np.asarray(reference)[test], predictions, np.asarray(reference)[train].mean(axis=0))[1] if reference is not None else {}
    return SplitScores(rmse, relative, against, int(train.sum()), int(test.sum()), np.flatnonzero(test), predicted, nearest,
                       trained.seconds)
