"""Training, embedding and checkpoints of invariant VAEs (trainer and predictor kept apart).

`train_ivae(patches, IVAEShape(...), IVAETrainConfig(...))` fits a model on atom-centred
patches (n, side, side) in [0, 1]; `Embedder(model)` maps patches to their latent coordinates
in batches without gradients; `save_ivae` / `load_ivae` write and read one ``.safetensors``
file with a card (kind ``ivae``, the architecture, the patch window in Å, training settings).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from activescope.engine.errors import DataError
from activescope.microscopy.ivae.models import IVAE, IVAEShape
from activescope.microscopy.nets.kinded import load_shaped, save_kinded

EMBED_BATCH = 4096
"""Patches per forward pass when embedding."""


@dataclass
class IVAETrainConfig:
    """epochs over the patch set, batch_size, lr (Adam), beta (KL weight; warmed up linearly
    from 0 over the first `warmup` share of steps), consistency (weight of the rotation
    consistency term, models.IVAE.loss; 0 = the plain rVAE objective), seed."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    warmup: float = 0.3
    consistency: float = 20.0
    seed: int = 0


@dataclass
class TrainedIVAE:
    """A trained model, its card (architecture, window_A, training, classes) and per-epoch loss."""

    model: IVAE
    card: dict[str, Any]
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0


def check_patches(patches: np.ndarray, side: int | None = None) -> np.ndarray:
    """(n, s, s) finite float32 patches, or DataError."""
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2] or len(patches) == 0:
        raise DataError(f"patches must be a non-empty (n, side, side) stack, got shape {patches.shape}")
    if side is not None and patches.shape[1] != side:
        raise DataError(f"the model takes {side} x {side} patches, got {patches.shape[1]} x {patches.shape[2]}")
    if not np.isfinite(patches).all():
        raise DataError("patches contain NaN or inf")
    return patches


def train_ivae(patches: np.ndarray, shape: IVAEShape, config: IVAETrainConfig, classes: np.ndarray | None = None,
               card: dict[str, Any] | None = None, callback: Callable[[int, int, float], None] | None = None) -> TrainedIVAE:
    """Fit an IVAE on patches (n, side, side); `classes` (n,) ints for the conditional variant.
    `card` entries (window_A, class names, source) are kept in the returned card."""
    patches = check_patches(patches, shape.side)
    if shape.n_classes and (classes is None or len(classes) != len(patches)):
        raise DataError("a class-conditioned VAE needs one class per patch")
    torch.manual_seed(config.seed)
    model = IVAE(shape)
    data = torch.from_numpy(patches)
    labels = torch.as_tensor(np.asarray(classes), dtype=torch.long) if shape.n_classes else None
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    n_batches = max(1, len(data) // config.batch_size)
    total = config.epochs * n_batches
    warm = max(1, int(config.warmup * total))
    history, step, start = [], 0, time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(data), generator=generator)[: n_batches * config.batch_size].view(n_batches, -1)
        losses = []
        for rows in order:
            beta = config.beta * min(1.0, (step + 1) / warm)
            loss = model.loss(data[rows], None if labels is None else labels[rows], beta, config.consistency)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            step += 1
        history.append(float(np.mean(losses)))
        if callback:
            callback(epoch + 1, config.epochs, history[-1])
    card = {**(card or {}), "shape": shape.to_dict(), "training": {**asdict(config), "n_patches": len(patches)}}
    return TrainedIVAE(model.eval(), card, history, time.perf_counter() - start)


class Embedder:
    """Latent coordinates of patches: `embed(patches)` -> DataFrame with z0..z{d-1} (the
    posterior means), angle_deg (with rotation), shift_x, shift_y (with translation, in patch
    pixels) and z_std (mean posterior std of z)."""

    def __init__(self, model: IVAE) -> None:
        self.model = model.eval()

    @torch.no_grad()
    def latent(self, patches: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """(n, latent_dim + n_pose) posterior means."""
        return self._encode(patches, classes)[0]

    @torch.no_grad()
    def _encode(self, patches: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        patches = check_patches(patches, self.model.shape.side)
        data = torch.from_numpy(patches)
        labels = torch.as_tensor(np.asarray(classes), dtype=torch.long) if self.model.shape.n_classes else None
        means, stds = [], []
        for start in range(0, len(data), EMBED_BATCH):
            rows = slice(start, start + EMBED_BATCH)
            mean, logvar = self.model.encode(data[rows], None if labels is None else labels[rows])
            means.append(mean)
            stds.append(torch.exp(0.5 * logvar))
        return torch.cat(means).numpy(), torch.cat(stds).numpy()

    def embed(self, patches: np.ndarray, classes: np.ndarray | None = None) -> pd.DataFrame:
        """One row per patch; see the class docstring."""
        mean, std = self._encode(patches, classes)
        shape = self.model.shape
        d = shape.latent_dim
        table = pd.DataFrame({f"z{k}": mean[:, k] for k in range(d)})
        table["z_std"] = std[:, :d].mean(axis=1)
        offset = d
        if shape.rotation:
            table["angle_deg"] = np.degrees(mean[:, offset])
            offset += 1
        if shape.translation:
            half = (shape.side - 1) / 2.0
            table["shift_x"], table["shift_y"] = mean[:, offset] * half, mean[:, offset + 1] * half
        return table

    @torch.no_grad()
    def reconstruct(self, patches: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Decoded posterior means (n, side, side)."""
        mean = torch.from_numpy(self.latent(patches, classes))
        labels = torch.as_tensor(np.asarray(classes), dtype=torch.long) if self.model.shape.n_classes else None
        return self.model.decode(mean, labels).numpy()


def save_ivae(path: str | Path, trained: TrainedIVAE) -> Path:
    """Write the model and its card to one .safetensors file."""
    return save_kinded(path, "ivae", trained.model, trained.card)


def load_ivae(path: str | Path) -> tuple[IVAE, dict[str, Any]]:
    """(model in eval mode, card); DataError for a missing, corrupt or other-kind file."""
    return load_shaped(path, "ivae", IVAEShape, IVAE, "invariant-VAE")
