"""Training of segmentation networks on simulated or labelled frames (the trainer half).

Batches are drawn by a ``torch.Generator`` seeded from ``TrainConfig.batch_seed``, and the
weights are initialised from ``TrainConfig.seed``: the two seeds are what make ensemble members
differ, and fixing both reproduces a run. Loss is cross-entropy (pixels labelled
``IGNORE_INDEX`` are left out) plus an optional soft Dice term; AdamW or Adam with a cosine
learning-rate schedule.

The library prints nothing: progress goes to an optional ``callback(step, total, loss)`` (the
CLI draws a rich progress bar with it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from activescope.engine.errors import SpecError
from activescope.microscopy.find.locate import lattice_spacing_angstrom
from activescope.microscopy.find.metrics import MatchResult, detection_scores
from activescope.microscopy.find.predict import Predictor, default_device
from activescope.microscopy.nets.checkpoint import ModelCard
from activescope.microscopy.nets.unet import UNet, build_network, standardize
from activescope.microscopy.sim.simulate import (
    SimConfig,
    lattice_classes,
    simulate_batch,
)
from activescope.microscopy.training.augment import IGNORE_INDEX, Augmenter

ProgressCallback = Callable[[int, int, float], None]
"""Called after every optimiser step with (steps done, total steps, last loss)."""


@dataclass
class TrainConfig:
    """Optimisation settings; ``crop_size`` in pixels, ``steps`` counts optimiser updates."""

    steps: int = 500
    batch_size: int = 16
    crop_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    dice_weight: float = 0.0
    seed: int = 0
    batch_seed: int | None = None
    augment: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise SpecError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.steps < 1 or self.batch_size < 1 or self.crop_size < 16:
            raise SpecError("TrainConfig needs steps >= 1, batch_size >= 1 and crop_size >= 16")


class FrameSource(Protocol):
    """Anything that yields training batches: images ``(B, 1, S, S)``, labels ``(B, S, S)``."""

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ...


class SimulatedFrames:
    """Fresh simulated frames for every batch (never the same frame twice)."""

    def __init__(self, config: SimConfig, crop_size: int) -> None:
        self.config = replace(config, size=crop_size)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        images, labels, _ = simulate_batch(self.config, n, seed)
        return torch.from_numpy(images)[:, None], torch.from_numpy(labels).long()


class LabelledFrames:
    """Random square crops from a fixed stack of frames and label masks (cached or pseudo-labels)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, crop_size: int) -> None:
        if images.shape != labels.shape or images.ndim != 3:
            raise SpecError(f"images {images.shape} and labels {labels.shape} must both be (N, H, W)")
        if min(images.shape[1:]) < crop_size:
            raise SpecError(f"frames {images.shape[1:]} are smaller than the crop size {crop_size}")
        self.images = torch.as_tensor(images, dtype=torch.float32)
        self.labels = torch.as_tensor(labels).long()
        self.crop_size = crop_size

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        count, height, width = self.images.shape
        frame = torch.randint(0, count, (n,), generator=generator)
        top = torch.randint(0, height - self.crop_size + 1, (n,), generator=generator)
        left = torch.randint(0, width - self.crop_size + 1, (n,), generator=generator)
        offsets = torch.arange(self.crop_size)
        rows = (top[:, None] + offsets)[:, :, None]
        cols = (left[:, None] + offsets)[:, None, :]
        index = (frame[:, None, None], rows, cols)
        return self.images[index][:, None], self.labels[index]


@dataclass
class ValidationSet:
    """Frames ``(N, H, W)`` with their true atom tables, scored by atom-level F1.

    Detection F1 (classes ignored, one-to-one matching within ``tol_px`` pixels, see
    ``metrics``) with counts pooled over all frames.
    """

    images: np.ndarray
    atoms: list[pd.DataFrame]
    tol_px: float = 3.0

    @classmethod
    def simulated(cls, sim: SimConfig, n: int, seed: int, tol_px: float = 3.0) -> "ValidationSet":
        """``n`` frames simulated at full ``sim.size``."""
        images, _, atoms = simulate_batch(sim, n, seed)
        return cls(images, atoms, tol_px)

    def f1(self, predictor: Predictor) -> float:
        """Pooled atom-level F1 of ``predictor`` on these frames."""
        return self.score(predictor.find(self.images)).f1

    def result(self, predictor: Predictor) -> MatchResult:
        """Pooled matching of ``predictor``'s atoms, with every class of the predictor counted
        (``MatchResult.per_class`` then has a row per atom class)."""
        return self.score(predictor.find(self.images), n_classes=len(predictor.classes))

    def score(self, found: pd.DataFrame, n_classes: int | None = None) -> MatchResult:
        """Pooled matching of found atoms (with a ``frame`` column) against the truth."""
        return detection_scores(found, self.atoms, self.tol_px, n_classes)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor,
                      dice_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy over labelled pixels plus ``dice_weight`` x (1 - mean soft Dice)."""
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    if dice_weight <= 0:
        return loss
    valid = (labels != IGNORE_INDEX)[:, None].float()
    probs = torch.softmax(logits, dim=1) * valid
    one_hot = F.one_hot(labels.clamp_max(logits.shape[1] - 1), logits.shape[1])
    one_hot = one_hot.permute(0, 3, 1, 2).float() * valid
    overlap = (probs * one_hot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + one_hot.sum(dim=(0, 2, 3))
    dice = (2 * overlap + 1.0) / (total + 1.0)
    return loss + dice_weight * (1.0 - dice.mean())


@dataclass
class TrainHistory:
    """Per-step loss, validation F1 at each check, and wall time in seconds.

    ``val_result`` is the last validation's full matching (per-class scores via
    ``val_result.per_class(classes)``).
    """

    loss: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_f1: list[float] = field(default_factory=list)
    val_class_f1: list[float] = field(default_factory=list)
    val_result: MatchResult | None = None
    seconds: float = 0.0
    seconds_to_target: float | None = None


class Trainer:
    """Trains one network on batches from a ``FrameSource``.

    ``validation`` (optional) is scored every ``val_every`` steps and at the end; with
    ``target_f1`` set, training stops at the first check reaching it.
    """

    def __init__(self, model: UNet, source: FrameSource, config: TrainConfig,
                 device: str | torch.device | None = None) -> None:
        if config.crop_size % model.size_multiple:
            raise SpecError(f"crop_size {config.crop_size} must be a multiple of "
                            f"{model.size_multiple} pixels for this network")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.source = source
        self.config = config
        self.augmenter = Augmenter() if config.augment else None

    def _optimizer(self) -> torch.optim.Optimizer:
        kind = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
        return kind(self.model.parameters(), lr=self.config.learning_rate,
                    weight_decay=self.config.weight_decay)

    def fit(self, validation: ValidationSet | None = None, classes: list[str] | None = None,
            val_every: int = 0, target_f1: float | None = None,
            progress: bool = False, callback: ProgressCallback | None = None) -> TrainHistory:
        """Run ``config.steps`` updates; returns the loss/F1 history.

        ``callback(step, total, loss)`` is called after every step (``progress`` is ignored,
        kept for callers of the earlier signature: the library never draws progress bars).
        """
        config = self.config
        batch_seed = config.seed if config.batch_seed is None else config.batch_seed
        generator = torch.Generator().manual_seed(batch_seed)
        optimizer = self._optimizer()
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
        history = TrainHistory()
        start = time.perf_counter()
        for step in range(1, config.steps + 1):
            self.model.train()
            images, labels = self.source.sample(config.batch_size, generator)
            if self.augmenter is not None:
                images, labels = self.augmenter(images, labels, generator)
            images = standardize(images).to(self.device)
            loss = segmentation_loss(self.model(images), labels.to(self.device),
                                     config.dice_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            history.loss.append(loss.item())
            if callback is not None:
                callback(step, config.steps, history.loss[-1])
            due = step == config.steps or (val_every > 0 and step % val_every == 0)
            if validation is not None and due:
                f1 = self._validate(validation, classes, history, step)
                if target_f1 is not None and f1 >= target_f1:
                    history.seconds_to_target = time.perf_counter() - start
                    break
        history.seconds = time.perf_counter() - start
        self.model.eval()
        return history

    def _validate(self, validation: ValidationSet, classes: list[str] | None,
                  history: TrainHistory, step: int) -> float:
        self.model.eval()
        names = classes or [str(k) for k in range(self.model.n_classes)]
        # the network's own classes: what training improves (finders add the lattice step)
        result = validation.result(Predictor(self.model, names, self.device, species="network"))
        history.val_step.append(step)
        history.val_f1.append(result.f1)
        history.val_class_f1.append(result.class_aware_f1)
        history.val_result = result
        return result.f1


@dataclass
class TrainedModel:
    """A trained network with the card that describes it and its training history."""

    model: UNet
    card: ModelCard
    history: TrainHistory


def train_on_simulation(sim: SimConfig, config: TrainConfig, architecture: str = "lite_unet",
                        architecture_kwargs: dict | None = None, val_frames: int = 8,
                        val_every: int = 0, target_f1: float | None = None,
                        device: str | torch.device | None = None,
                        progress: bool = False,
                        callback: ProgressCallback | None = None) -> TrainedModel:
    """Build a network for ``sim.lattice`` and train it on fresh simulated frames.

    Validation uses ``val_frames`` full-size frames from a seed disjoint from training. The
    card records the training scale (``pixel_size``, mean of ``sim.pixel_size``, Å/px), the
    lattice and its nearest-neighbour column spacing in Å (``training["lattice_spacing_A"]``).
    """
    classes = lattice_classes(sim.lattice)
    kwargs = dict(architecture_kwargs or {})
    torch.manual_seed(config.seed)
    model = build_network(architecture, n_classes=len(classes), **kwargs)
    validation = ValidationSet.simulated(sim, val_frames, seed=10_000 + config.seed) \
        if val_frames > 0 else None
    trainer = Trainer(model, SimulatedFrames(sim, config.crop_size), config, device)
    history = trainer.fit(validation, classes, val_every, target_f1, callback=callback)
    card = ModelCard(architecture, kwargs, classes,
                     pixel_size=_mean_pixel_size(sim), training={
                         "train": asdict(config), "simulation": _jsonable(asdict(sim)),
                         "lattice": sim.lattice,
                         "lattice_spacing_A": lattice_spacing_angstrom(sim.lattice, sim.strain),
                         "val_f1": history.val_f1[-1] if history.val_f1 else None,
                         "val_class_f1": history.val_class_f1[-1] if history.val_class_f1
                         else None,
                         "seconds": round(history.seconds, 1)})
    return TrainedModel(trainer.model, card, history)


def _mean_pixel_size(sim: SimConfig) -> float:
    value = sim.pixel_size
    return float(np.mean(value)) if isinstance(value, (tuple, list)) else float(value)


def _jsonable(settings: dict) -> dict:
    """Simulation settings with infinities as strings (JSON has no inf)."""
    return {key: (str(value) if isinstance(value, float) and not np.isfinite(value) else value)
            for key, value in settings.items()}
