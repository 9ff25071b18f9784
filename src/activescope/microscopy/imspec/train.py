"""Training, prediction and checkpoints of im2spec / spec2im models.

`train_imspec(patches, spectra, config)` fits an `ImSpec` on co-registered pairs: patches
(n, side*side) or (n, side, side), spectra (n, channels). `ImSpecPredictor` applies it in
batches without gradients and checks shapes (a spectrum of another length is a one-line
DataError). `save_imspec` / `load_imspec` use one .safetensors file of kind ``imspec``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from activescope.engine.errors import DataError
from activescope.microscopy.imspec.models import ImSpec, ImSpecShape
from activescope.microscopy.nets.kinded import load_shaped, save_kinded

PREDICT_BATCH = 4096
"""Rows per forward pass when predicting."""


@dataclass
class ImSpecTrainConfig:
    """latent_dim, hidden (network sizes), epochs, batch_size, lr (Adam), weight_decay, seed."""

    latent_dim: int = 8
    hidden: int = 128
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class TrainedImSpec:
    """A trained model, its card and per-epoch loss."""

    model: ImSpec
    card: dict[str, Any]
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0


def check_pairs(patches: np.ndarray, spectra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, s*s) patches and (n, c) spectra as finite float32, or a one-line DataError."""
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim == 3 and patches.shape[1] == patches.shape[2]:
        patches = patches.reshape(len(patches), -1)
    side = math.isqrt(patches.shape[-1]) if patches.ndim == 2 else 0
    if patches.ndim != 2 or side * side != patches.shape[1] or len(patches) == 0:
        raise DataError(f"patches must be a non-empty (n, side*side) or (n, side, side) array, got shape {patches.shape}")
    if not np.isfinite(patches).all():
        raise DataError("patches contain NaN or inf")
    if spectra is None:
        return patches, None
    spectra = np.asarray(spectra, dtype=np.float32)
    if spectra.ndim != 2 or len(spectra) != len(patches):
        raise DataError(f"spectra must be (n, channels) with one row per patch ({len(patches)}), got shape {spectra.shape}")
    if not np.isfinite(spectra).all():
        raise DataError("spectra contain NaN or inf")
    return patches, spectra


def train_imspec(patches: np.ndarray, spectra: np.ndarray, config: ImSpecTrainConfig, card: dict[str, Any] | None = None,
                 callback: Callable[[int, int, float], None] | None = None) -> TrainedImSpec:
    """Fit im2spec and spec2im jointly (see models.ImSpec.loss). `card` entries (axis, source)
    are kept in the returned card."""
    patches, spectra = check_pairs(patches, spectra)
    torch.manual_seed(config.seed)
    shape = ImSpecShape(side=math.isqrt(patches.shape[1]), channels=spectra.shape[1], latent_dim=config.latent_dim,
                        hidden=config.hidden)
    model = ImSpec(shape)
    x, y = torch.from_numpy(patches), torch.from_numpy(spectra)
    model.set_statistics(x, y)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    batch = min(config.batch_size, len(x))
    n_batches = max(1, len(x) // batch)
    history, start = [], time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)[: n_batches * batch].view(n_batches, -1)
        losses = []
        for rows in order:
            loss = model.loss(x[rows], y[rows])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)))
        if callback:
            callback(epoch + 1, config.epochs, history[-1])
    card = {**(card or {}), "shape": shape.to_dict(), "training": {**asdict(config), "n_pairs": len(x)}}
    return TrainedImSpec(model.eval(), card, history, time.perf_counter() - start)


class ImSpecPredictor:
    """Batched, gradient-free use of a trained ImSpec (inputs checked against its shape)."""

    def __init__(self, model: ImSpec) -> None:
        self.model = model.eval()

    def _run(self, fn: Callable[[torch.Tensor], torch.Tensor], data: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([fn(torch.from_numpy(data[i:i + PREDICT_BATCH])).numpy()
                                   for i in range(0, len(data), PREDICT_BATCH)])

    def _patches(self, patches: np.ndarray) -> np.ndarray:
        patches, _ = check_pairs(patches)
        side = self.model.shape.side
        if patches.shape[1] != side * side:
            raise DataError(f"the model takes {side} x {side} patches, got {patches.shape[1]} values per patch")
        return patches

    def _spectra(self, spectra: np.ndarray) -> np.ndarray:
        spectra = np.asarray(spectra, dtype=np.float32)
        channels = self.model.shape.channels
        if spectra.ndim != 2 or spectra.shape[1] != channels:
            raise DataError(f"the model takes spectra of {channels} points, got shape {spectra.shape}")
        if not np.isfinite(spectra).all():
            raise DataError("spectra contain NaN or inf")
        return spectra

    def im2spec(self, patches: np.ndarray) -> np.ndarray:
        """(n, s*s) or (n, s, s) patches -> (n, channels) spectra."""
        return self._run(self.model.im2spec, self._patches(patches))

    def spec2im(self, spectra: np.ndarray) -> np.ndarray:
        """(n, channels) spectra -> (n, s, s) patches."""
        side = self.model.shape.side
        return self._run(self.model.spec2im, self._spectra(spectra)).reshape(-1, side, side)

    def encode_patches(self, patches: np.ndarray) -> np.ndarray:
        """(n, latent_dim) shared-latent coordinates of patches."""
        return self._run(self.model.encode_patches, self._patches(patches))


def save_imspec(path: str | Path, trained: TrainedImSpec) -> Path:
    """Write the model and its card to one .safetensors file."""
    return save_kinded(path, "imspec", trained.model, trained.card)


def load_imspec(path: str | Path) -> tuple[ImSpec, dict[str, Any]]:
    """(model in eval mode, card); DataError for a missing, corrupt or other-kind file."""
    return load_shaped(path, "imspec", ImSpecShape, ImSpec, "im2spec")
