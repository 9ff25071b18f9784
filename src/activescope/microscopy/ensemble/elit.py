"""Ensemble-based iterative training (ELIT) on unlabelled, out-of-distribution frames.

Each round: the ensemble finds atoms on the unlabelled frames; atoms it is confident about
(found by most members, with one class, at one place) are rendered as label disks; the
neighbourhoods of uncertain atoms and pixels where members disagree are marked
``IGNORE_INDEX`` so the loss never sees them; everything else is background. Every member is
then fine-tuned on these pseudo-labels (optionally mixed with fresh simulated frames so that
it does not forget the clean case), with its own batch order, and the next round starts from
the improved ensemble. With the lattice rule (``PseudoLabelRule.species="lattice"``, default)
the classes come from the sublattices (``find.species``), not from the members' votes, and
sublattice sites the ensemble missed are labelled or ignored instead of taught as background:
the network learns the species of a contrast it was never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from activescope.engine.errors import DataError
from activescope.microscopy.ensemble.finder import Ensemble
from activescope.microscopy.find.predict import (
    check_species,
    decide_species,
    validate_images,
)
from activescope.microscopy.find.species import (
    fit_lattice,
    missing_sites,
    sample_intensity,
)
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

    With ``species="network"`` an atom is confident when its ``uncertainty`` (1 - detection
    frequency x class agreement) is at most ``max_uncertainty``; with ``species="lattice"``
    (default) its class comes from its sublattice (``find.species``), so it only needs a
    detection frequency of at least ``1 - max_uncertainty`` and a place on a sublattice (atoms
    on none, such as dopants, still need the class agreement). Either way its detections
    spread at most ``max_spread_px``. Pixels whose atom probability varies across members by
    more than ``max_pixel_std`` (std) are ignored, as are disks of ``ignore_radius_px`` around
    unconfident atoms.

    ``fill_sites`` (lattice species only): sites of a sublattice within two lattice steps of
    its atoms where the ensemble found nothing (columns it misses, e.g. fainter than in
    training) are labelled with the sublattice's class when their image brightness is at
    least halfway from the frame's median to the sublattice's mean, and ignored otherwise
    (a vacancy is then never taught as an atom, nor a missed column as background).
    """

    max_uncertainty: float = 0.1
    max_spread_px: float = 1.0
    max_pixel_std: float = 0.2
    label_radius_px: float = 3.0
    ignore_radius_px: float = 5.0
    species: str = "lattice"
    fill_sites: bool = True

    def __post_init__(self) -> None:
        check_species(self.species)
        if not 0.0 <= self.max_uncertainty < 1.0:
            raise DataError(f"max_uncertainty must lie in [0, 1), got {self.max_uncertainty}")
        for name in ("max_spread_px", "max_pixel_std", "label_radius_px", "ignore_radius_px"):
            if not getattr(self, name) >= 0:
                raise DataError(f"{name} must be at least 0, got {getattr(self, name)}")


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
    frames = np.broadcast_to(atoms["frame"].to_numpy().astype(int)[:, None], rows.shape)
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
    agreed = atoms["uncertainty"].to_numpy() <= rule.max_uncertainty
    if rule.species == "lattice":
        atoms = decide_species(atoms, stack, "lattice", ensemble.lattice, ensemble.pixel_size,
                               len(ensemble.classes))
        on_lattice = atoms["sublattice"].to_numpy() >= 0
        frequent = atoms["detection_freq"].to_numpy() >= 1.0 - rule.max_uncertainty
        agreed = np.where(on_lattice, frequent, agreed)
    confident = agreed & (atoms["pos_spread_px"].to_numpy() <= rule.max_spread_px)
    atoms = atoms.assign(confident=confident)
    labels = np.zeros(stack.shape, dtype=np.uint8)
    labels[np.sqrt(maps.atom_variance) > rule.max_pixel_std] = IGNORE_INDEX
    unsure = atoms[~atoms["confident"]]
    _paint_disks(labels, unsure, rule.ignore_radius_px, np.full(len(unsure), IGNORE_INDEX))
    if rule.species == "lattice" and rule.fill_sites:
        sites = lattice_sites(atoms[atoms["confident"]], stack, ensemble.lattice,
                              ensemble.pixel_size)
        filled = sites[sites["cls"] > 0]
        _paint_disks(labels, sites[sites["cls"] == 0], rule.ignore_radius_px,
                     np.full((sites["cls"] == 0).sum(), IGNORE_INDEX))
        atoms = atoms.assign(filled=False)
        if len(filled):
            atoms = pd.concat([atoms, filled.assign(confident=True, filled=True)],
                              ignore_index=True)
    sure = atoms[atoms["confident"]]
    _paint_disks(labels, sure, rule.label_radius_px, sure["cls"].to_numpy().astype(np.uint8))
    return labels, atoms


def lattice_sites(atoms: pd.DataFrame, stack: np.ndarray, lattice: str | None,
                  pixel_size: float | None) -> pd.DataFrame:
    """Missing sublattice sites of every frame (``find.species.missing_sites``): x, y, frame
    and ``cls`` (the sublattice's class where the site is bright enough, else 0)."""
    rows = []
    for k in np.unique(atoms["frame"].to_numpy()) if len(atoms) else []:
        own = atoms[(atoms["frame"] == k) & (atoms["sublattice"] >= 0)]
        xy = own[["x", "y"]].to_numpy(dtype=np.float64)
        try:
            vectors = fit_lattice(xy, lattice, pixel_size)
        except DataError:
            continue
        sublattice = own["sublattice"].to_numpy()
        site_xy, site_sub = missing_sites(xy, sublattice, vectors, stack.shape[1:])
        if not len(site_xy):
            continue
        image = stack[k]
        brightness = sample_intensity(image, xy)
        n_sub = int(sublattice.max()) + 1
        mean = np.bincount(sublattice, weights=brightness, minlength=n_sub) / np.maximum(
            np.bincount(sublattice, minlength=n_sub), 1)
        cls_of = np.array([np.bincount(own["cls"].to_numpy()[sublattice == s]).argmax()
                           if (sublattice == s).any() else 0 for s in range(n_sub)])
        cut = 0.5 * (np.median(image) + mean[site_sub])
        bright = sample_intensity(image, site_xy) >= cut
        rows.append(pd.DataFrame({"x": site_xy[:, 0], "y": site_xy[:, 1], "frame": k,
                                  "cls": np.where(bright, cls_of[site_sub], 0)}))
    empty = pd.DataFrame({"x": np.zeros(0), "y": np.zeros(0), "frame": np.zeros(0, int),
                          "cls": np.zeros(0, int)})
    return pd.concat(rows, ignore_index=True) if rows else empty


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
    ``ensemble_kwargs`` go to ``Ensemble`` (e.g. ``lattice`` and ``pixel_size``, which the
    lattice pseudo-label rule uses to rank sublattices against the material's Z order).
    ``callback(step, total, loss)`` counts fine-tuning steps over all rounds and members.
    """
    if rounds < 1:
        raise DataError(f"ELIT needs at least one round, got {rounds}")
    if not 0.0 <= simulated_share < 1.0:
        raise DataError(f"the simulated share of a batch must lie in [0, 1), got "
                        f"{simulated_share}")
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
