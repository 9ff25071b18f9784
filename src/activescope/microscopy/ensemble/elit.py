"""Ensemble-based iterative training (ELIT) on unlabelled, out-of-distribution frames.

Each round: the ensemble finds atoms on the unlabelled frames; atoms it is confident about
(found by most members, with one class, at one place) are rendered as label disks; the
neighbourhoods of uncertain atoms and pixels where members disagree are marked
``IGNORE_INDEX`` so the loss never sees them; everything else is background. Every member is
then fine-tuned on these pseudo-labels (optionally mixed with fresh simulated frames so that
it does not forget the clean case), with its own batch order, and the next round starts from
the improved ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from activescope.engine.errors import DataError
from activescope.microscopy.ensemble.finder import Ensemble
from activescope.microscopy.find.predict import validate_images
from activescope.microscopy.nets.unet import UNet
from activescope.microscopy.sim.simulate import SimConfig
from activescope.microscopy.training.augment import IGNORE_INDEX
from activescope.microscopy.training.trainer import (
    FrameSource,
    LabelledFrames,
    ProgressCallback,
    SimulatedFrames,
    TrainConfig,
    Trainer,
)


@dataclass
class PseudoLabelRule:
    """When an ensemble detection becomes a pseudo-label, and how it is drawn (pixels).

    An atom is confident when its ``uncertainty`` (1 - detection frequency x class agreement)
    is at most ``max_uncertainty`` and its detections spread at most ``max_spread_px``.
    Pixels whose atom probability varies across members by more than ``max_pixel_std`` (std)
    are ignored, as are disks of ``ignore_radius_px`` around unconfident atoms.
    """

    max_uncertainty: float = 0.1
    max_spread_px: float = 1.0
    max_pixel_std: float = 0.2
    label_radius_px: float = 3.0
    ignore_radius_px: float = 5.0


def _paint_disks(canvas: np.ndarray, atoms: pd.DataFrame, radius_px: float,
                 values: np.ndarray) -> None:
    """Write ``values`` into disks of ``radius_px`` around each atom of ``canvas`` (N, H, W)."""
    if atoms.empty:
        return
    _, height, width = canvas.shape
    reach = int(np.ceil(radius_px))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    inside = dy**2 + dx**2 <= radius_px**2
    dy, dx = dy[inside], dx[inside]
    rows = np.rint(atoms["y"].to_numpy())[:, None].astype(int) + dy[None]
    cols = np.rint(atoms["x"].to_numpy())[:, None].astype(int) + dx[None]
    frames = np.broadcast_to(atoms["frame"].to_numpy()[:, None], rows.shape)
    ok = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    canvas[frames[ok], rows[ok], cols[ok]] = np.broadcast_to(values[:, None], rows.shape)[ok]


def pseudo_labels(ensemble: Ensemble, images: np.ndarray,
                  rule: PseudoLabelRule | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Pseudo-label masks ``(N, H, W)`` uint8 and the ensemble's atoms with a ``confident`` flag.

    Masks hold the atom class on confident atoms, ``IGNORE_INDEX`` where the ensemble is unsure
    and 0 (background) elsewhere.
    """
    rule = rule or PseudoLabelRule()
    stack = validate_images(images)
    maps = ensemble.probabilities(stack)
    atoms = ensemble.group_all(maps)
    confident = ((atoms["uncertainty"] <= rule.max_uncertainty)
                 & (atoms["pos_spread_px"] <= rule.max_spread_px))
    atoms = atoms.assign(confident=confident.to_numpy())
    labels = np.zeros(stack.shape, dtype=np.uint8)
    labels[np.sqrt(maps.atom_variance) > rule.max_pixel_std] = IGNORE_INDEX
    unsure = atoms[~atoms["confident"]]
    _paint_disks(labels, unsure, rule.ignore_radius_px, np.full(len(unsure), IGNORE_INDEX))
    sure = atoms[atoms["confident"]]
    _paint_disks(labels, sure, rule.label_radius_px, sure["cls"].to_numpy().astype(np.uint8))
    return labels, atoms


class MixedFrames:
    """Batches split between pseudo-labelled frames and fresh simulated frames."""

    def __init__(self, labelled: FrameSource, simulated: FrameSource, simulated_share: float) -> None:
        self.labelled, self.simulated = labelled, simulated
        self.simulated_share = simulated_share

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n_sim = int(round(n * self.simulated_share))
        parts = [source.sample(count, generator)
                 for source, count in ((self.labelled, n - n_sim), (self.simulated, n_sim))
                 if count > 0]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@dataclass
class IterationRound:
    """What one ELIT round did: confident/total atoms and the ignored pixel share."""

    round: int
    n_atoms: int
    n_confident: int
    ignored_fraction: float


@dataclass
class IterationResult:
    """The fine-tuned members, the last pseudo-labels and a per-round log."""

    members: list[UNet]
    labels: np.ndarray
    rounds: list[IterationRound] = field(default_factory=list)


def iterate(members: list[UNet], classes: list[str], images: np.ndarray, rounds: int,
            config: TrainConfig, rule: PseudoLabelRule | None = None,
            sim: SimConfig | None = None, simulated_share: float = 0.25,
            device: str | torch.device | None = None, progress: bool = False,
            callback: ProgressCallback | None = None, **ensemble_kwargs) -> IterationResult:
    """Run ``rounds`` ELIT rounds of ``config.steps`` fine-tuning steps per member.

    ``images`` are unlabelled frames ``(N, H, W)`` at least ``config.crop_size`` pixels wide.
    With ``sim`` given, ``simulated_share`` of every batch is fresh simulated frames.
    ``callback(step, total, loss)`` counts fine-tuning steps over all rounds and members.
    """
    if rounds < 1:
        raise DataError(f"ELIT needs at least one round, got {rounds}")
    stack = validate_images(images)
    if min(stack.shape[1:]) < config.crop_size:
        raise DataError(f"frames {stack.shape[1:]} are smaller than the crop size "
                        f"{config.crop_size}; lower crop_size")
    members = list(members)
    log: list[IterationRound] = []
    total = rounds * len(members) * config.steps
    for round_index in range(rounds):
        ensemble = Ensemble(members, classes, device, **ensemble_kwargs)
        labels, atoms = pseudo_labels(ensemble, stack, rule)
        log.append(IterationRound(round_index, len(atoms), int(atoms["confident"].sum()),
                                  float((labels == IGNORE_INDEX).mean())))
        source: FrameSource = LabelledFrames(stack, labels, config.crop_size)
        if sim is not None and simulated_share > 0:
            source = MixedFrames(source, SimulatedFrames(sim, config.crop_size), simulated_share)
        for k, member in enumerate(members):
            seed = config.seed + 7919 * (round_index + 1) + k
            offset = (round_index * len(members) + k) * config.steps
            counted = (None if callback is None else
                       lambda step, _, loss, offset=offset: callback(offset + step, total, loss))
            Trainer(member, source, replace(config, batch_seed=seed), device).fit(
                callback=counted)
    return IterationResult(members, labels, log)
