"""Deep ensembles for atom finding: batched prediction and per-atom uncertainty.

Members share one architecture (see ``ensemble.train`` for how they are trained). At inference the
members run as one fused network of grouped convolutions (``nets.fused.FusedUNet``), under
``torch.func.vmap``, or one after another, giving mean and variance probability maps. On a CPU
the loop is fastest: oneDNN's grouped convolutions of 8-channel groups are slower than N ordinary
ones (10 members at 512 x 512 with per-atom uncertainty, quiet 2-core machine: loop 2.5 and 4.3
frames/s on 1 and 2 threads, fused 1.9 and 3.3, vmap 1.0 and 1.7). On a GPU the fused network
replaces N kernel launches per layer by one, so ``auto`` picks it there. Per-atom
uncertainty comes from grouping the members' own detections: detections of different members
within ``cluster_radius_px`` form one atom, whose detection frequency, positional spread and
class disagreement say how much the ensemble agrees about it. ``member_lookup=True`` instead takes
the atoms from the mean map and only looks each member up around them (``lookup_members``): no
atom finder on every member map (25-40% more frames/s for 10 members at 512 x 512, one
thread), but an approximation (see ``lookup_members``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from torch.func import functional_call, stack_module_state

from activescope.engine.errors import DataError, SpecError
from activescope.microscopy.find.locate import (
    check_find_settings,
    rescale_frame,
    to_original_pixels,
)
from activescope.microscopy.find.metrics import detection_scores
from activescope.microscopy.find.predict import (
    atoms_from_probabilities,
    check_species,
    decide_species,
    default_device,
    fuse_batchnorm,
    to_network_input,
    validate_images,
)
from activescope.microscopy.nets.checkpoint import load_checkpoint
from activescope.microscopy.nets.fused import FusedUNet, fusable
from activescope.microscopy.nets.unet import UNet

BACKENDS = ("auto", "fused", "vmap", "loop")
UNCERTAINTY_COLUMNS = ["n_detections", "detection_freq", "pos_spread_px", "class_disagreement",
                       "prob_std", "uncertainty"]


@dataclass
class EnsembleMaps:
    """Probability maps ``(N, C, H, W)``: members' mean and variance, plus each member's."""

    mean: np.ndarray
    variance: np.ndarray
    members: np.ndarray

    @property
    def atom_variance(self) -> np.ndarray:
        """Variance across members of the atom probability ``1 - p(background)``, ``(N, H, W)``."""
        return self.variance[:, 0]


class Ensemble:
    """A trained ensemble turned into an atom finder with per-atom uncertainty.

    Args:
        members: at least two trained networks of one architecture.
        classes: class names per output channel, background first.
        cluster_radius_px: detections of different members closer than this are one atom.
        backend: how the members run: ``"fused"`` (one grouped-convolution network; members
            that cannot be fused fall back to ``"vmap"``), ``"vmap"`` (``torch.func``), ``"loop"``
            (one by one) or ``"auto"`` (loop on a CPU, fused on a GPU; decided
            when the ensemble is built, see the module docstring for the measurements).
        member_lookup: ``find`` takes atoms from the mean map and looks every member up around
            them (``lookup_members``) instead of clustering every member's own detections
            (``group_detections``, the default): the same columns, 10x less atom finding.
        min_frequency: fraction of members that must find an atom for it to be reported.
        threshold, min_distance_px, refine, edge_px, min_area_px: passed to ``locate.find_atoms``
            (defaults tuned on simulated frames: 0.5, 4 px, True, 0, 3 px).
        species, lattice, pixel_size: how consensus classes are decided, as in ``Predictor``
            (default ``"lattice"``: per sublattice; confidence ``1 - class_disagreement``).
    """

    def __init__(self, members: Sequence[UNet], classes: Sequence[str],
                 device: str | torch.device | None = None, threshold: float = 0.5,
                 min_distance_px: float = 4.0, refine: bool = True, edge_px: int = 0,
                 min_area_px: int = 3, cluster_radius_px: float = 2.5, min_frequency: float = 0.5,
                 batch_size: int = 2, backend: str = "auto", member_lookup: bool = False,
                 species: str = "lattice", lattice: str | None = None,
                 pixel_size: float | None = None) -> None:
        if len(members) < 2:
            raise SpecError(f"an ensemble needs at least 2 members, got {len(members)}")
        if any(member.n_classes != len(classes) for member in members):
            raise DataError(f"ensemble members do not all have {len(classes)} output classes")
        shapes = [{k: v.shape for k, v in member.state_dict().items()} for member in members]
        if any(shape != shapes[0] for shape in shapes[1:]):
            raise DataError("ensemble members differ in architecture; they must share one")
        if backend not in BACKENDS:
            raise SpecError(f"ensemble backend must be one of {BACKENDS}, got {backend!r}")
        check_find_settings(threshold, min_distance_px)
        check_species(species)
        self.species, self.lattice, self.pixel_size = species, lattice, pixel_size
        self.device = torch.device(device) if device is not None else default_device()
        folded = [fuse_batchnorm(member).to(self.device) for member in members]
        if backend == "auto":
            backend = "loop" if self.device.type == "cpu" else "fused"
        if backend == "fused" and not fusable(folded):
            backend = "vmap"
        self.backend = backend
        self.sequential = [member.to(memory_format=torch.channels_last) for member in folded]
        if backend == "fused":
            self.fused = FusedUNet(folded).to(memory_format=torch.channels_last)
        if backend == "vmap":
            self.params, self.buffers = stack_module_state(folded)
            self.template = copy.deepcopy(folded[0]).to("meta")
        self.size_multiple = folded[0].size_multiple
        self.classes = list(classes)
        self.find_kwargs = dict(threshold=threshold, min_distance_px=min_distance_px,
                                refine=refine, edge_px=edge_px, min_area_px=min_area_px)
        self.cluster_radius_px = cluster_radius_px
        self.min_frequency = min_frequency
        self.member_lookup = member_lookup
        self.batch_size = batch_size

    @property
    def n_members(self) -> int:
        return len(self.sequential)

    @classmethod
    def from_checkpoint(cls, path: str | Path, classes: Sequence[str] | None = None,
                        device: str | torch.device | None = None, **kwargs) -> "Ensemble":
        """Load an ensemble checkpoint (``save_checkpoint`` with a list of members); the card's
        lattice and pixel size guide the species decision."""
        members, card = load_checkpoint(path, classes, device or default_device())
        if len(members) < 2:
            raise DataError(f"checkpoint {path} holds one model, not an ensemble")
        kwargs = {"lattice": card.lattice, "pixel_size": card.pixel_size, **kwargs}
        return cls(members, card.classes, device, **kwargs)

    def _logits(self, batch: torch.Tensor) -> Iterator[torch.Tensor]:
        """All members on one batch ``(B, 1, H, W)`` -> logits ``(B, C, H, W)``, member by member."""
        if self.backend == "loop":
            batch = batch.contiguous(memory_format=torch.channels_last)
            yield from (member(batch) for member in self.sequential)
        elif self.backend == "fused":
            yield from self.fused(batch.contiguous(memory_format=torch.channels_last)).unbind(1)
        else:
            def one_member(params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
                return functional_call(self.template, (params, buffers), (x,))
            yield from torch.vmap(one_member, in_dims=(0, 0, None))(self.params, self.buffers,
                                                                    batch).unbind(0)

    def probabilities(self, images: np.ndarray | torch.Tensor) -> EnsembleMaps:
        """Frames ``(H, W)`` or ``(N, H, W)`` -> mean, variance (unbiased) and per-member maps.

        The statistics are taken in NumPy: ``torch.var`` over the leading member axis measured
        10x slower than NumPy's on CPU, a fifth of the whole ensemble's time at 512 x 512.
        """
        stack = validate_images(images)
        height, width = stack.shape[1:]
        members = np.empty((self.n_members, len(stack), len(self.classes), height, width),
                           dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(stack), self.batch_size):
                batch = to_network_input(stack[start:start + self.batch_size],
                                         self.size_multiple, self.device)
                for member, logits in enumerate(self._logits(batch)):
                    probs = torch.softmax(logits[..., :height, :width], dim=1)
                    members[member, start:start + len(batch)] = probs.float().cpu().numpy()
        return EnsembleMaps(members.mean(0), members.var(0, ddof=1), members)

    def member_atoms(self, maps: EnsembleMaps) -> pd.DataFrame:
        """Every member's detections: columns x, y, cls, score, frame, member."""
        return member_detections(maps.members, self.find_kwargs)

    def find(self, images: np.ndarray | torch.Tensor) -> pd.DataFrame:
        """Consensus atoms with uncertainty columns (``lookup_members`` or ``group_detections``)."""
        return self.find_with_maps(images)[0]

    def find_with_maps(self, images: np.ndarray | torch.Tensor
                       ) -> tuple[pd.DataFrame, EnsembleMaps]:
        """Consensus atoms and the probability maps they came from."""
        stack = validate_images(images)
        maps = self.probabilities(stack)
        if self.member_lookup:
            consensus = atoms_from_probabilities(maps.mean, **self.find_kwargs)
            atoms = lookup_members(consensus, maps.members, self.find_kwargs["threshold"],
                                   self.cluster_radius_px)
        else:
            atoms = self.group_all(maps)
        atoms = atoms[atoms["detection_freq"] >= self.min_frequency].reset_index(drop=True)
        return self.decide_species(atoms, stack), maps

    def decide_species(self, atoms: pd.DataFrame, stack: np.ndarray) -> pd.DataFrame:
        """This ensemble's species decision on consensus atoms of frames ``(N, H, W)``."""
        return decide_species(atoms, stack, self.species, self.lattice, self.pixel_size,
                              len(self.classes))

    def find_at_scale(self, image: np.ndarray, pixel_size: float, model_pixel_size: float
                      ) -> tuple[pd.DataFrame, EnsembleMaps]:
        """Consensus atoms of one frame of ``pixel_size`` Å/px, found at ``model_pixel_size``.

        As ``Predictor.find_at_scale``: positions come back in the frame's own pixels, with
        ``x_A``/``y_A`` in Å; the maps stay at the network's scale.
        """
        frame = validate_images(image)[0]
        scaled = rescale_frame(frame, pixel_size / model_pixel_size)
        atoms, maps = self.find_with_maps(scaled)
        return to_original_pixels(atoms, frame.shape, scaled.shape, pixel_size), maps

    def group_all(self, maps: EnsembleMaps) -> pd.DataFrame:
        """Every atom any member found, with its uncertainty columns (no frequency cut)."""
        return group_detections(self.member_atoms(maps), self.n_members,
                                self.cluster_radius_px, maps.members)

    def rank_members(self, images: np.ndarray | torch.Tensor, tol_px: float = 3.0) -> pd.DataFrame:
        """Each member's agreement (F1) with the ensemble consensus on these frames, best first.

        Useful for choosing which member(s) to trust on a new kind of frame.
        """
        maps = self.probabilities(images)
        detections = self.member_atoms(maps)
        consensus = group_detections(detections, self.n_members, self.cluster_radius_px,
                                     maps.members)
        consensus = consensus[consensus["detection_freq"] >= self.min_frequency]
        n_frames = maps.mean.shape[0]
        truth = [consensus[consensus["frame"] == k] for k in range(n_frames)]
        rows = []
        for member in range(self.n_members):
            own = detections[detections["member"] == member]
            result = detection_scores([own[own["frame"] == k] for k in range(n_frames)], truth,
                                      tol_px)
            rows.append({"member": member, "agreement_f1": float(result.f1)})
        return pd.DataFrame(rows).sort_values("agreement_f1", ascending=False,
                                              ignore_index=True)

    def best_members(self, images: np.ndarray | torch.Tensor, k: int = 1) -> list[int]:
        """Indices of the ``k`` members agreeing most with the consensus on ``images``."""
        return self.rank_members(images)["member"].head(k).tolist()


def member_detections(member_maps: np.ndarray, find_kwargs: dict) -> pd.DataFrame:
    """Atoms of every member's maps ``(M, N, C, H, W)``: x, y, cls, score, frame, member."""
    n_members, n_frames = member_maps.shape[:2]
    flat = member_maps.reshape(n_members * n_frames, *member_maps.shape[2:])
    atoms = atoms_from_probabilities(flat, **find_kwargs)
    member, frame = np.divmod(atoms["frame"].to_numpy(), n_frames)
    return atoms.assign(frame=frame, member=member)


def group_detections(detections: pd.DataFrame, n_members: int, radius_px: float,
                     member_maps: np.ndarray | None = None) -> pd.DataFrame:
    """Cluster members' detections into atoms and measure the members' agreement on each.

    Detections (columns x, y, cls, score, frame, member) closer than ``radius_px`` in the same
    frame are linked; each connected group is one atom with: mean position, majority class,
    ``n_detections`` (distinct members), ``detection_freq`` (= n_detections / n_members),
    ``pos_spread_px`` (RMS distance of detections from their centroid), ``class_disagreement``
    (fraction of detections not of the majority class), ``prob_std`` (std across members of the
    atom probability at the centroid, when ``member_maps`` ``(M, N, C, H, W)`` are given) and
    ``uncertainty`` = 1 - detection_freq x (1 - class_disagreement), in [0, 1).
    """
    columns = ["x", "y", "cls", "score", "frame", *UNCERTAINTY_COLUMNS]
    if detections.empty:
        return pd.DataFrame(columns=columns)
    frame = detections["frame"].to_numpy()
    xy = detections[["x", "y"]].to_numpy(dtype=float)
    spaced = xy + np.stack([frame * (xy[:, 0].max() + 10 * radius_px + 1), 0 * frame], axis=1)
    pairs = cKDTree(spaced).query_pairs(radius_px, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                       shape=(len(xy), len(xy)))
    _, group = connected_components(graph, directed=False)
    table = detections.assign(group=group)
    by_group = table.groupby("group")
    centre = by_group[["x", "y"]].transform("mean").to_numpy()
    table["sq_dist"] = ((xy - centre) ** 2).sum(axis=1)
    majority = table.groupby(["group", "cls"]).size().unstack(fill_value=0)
    summary = by_group.agg(x=("x", "mean"), y=("y", "mean"), score=("score", "mean"),
                           frame=("frame", "first"), n_detections=("member", "nunique"),
                           n_rows=("member", "size"), mean_sq=("sq_dist", "mean"))
    summary["cls"] = majority.idxmax(axis=1).reindex(summary.index)
    summary["class_disagreement"] = 1.0 - majority.max(axis=1).reindex(summary.index) / summary["n_rows"]
    summary["detection_freq"] = summary["n_detections"] / n_members
    summary["pos_spread_px"] = np.sqrt(summary["mean_sq"])
    summary["prob_std"] = np.nan
    if member_maps is not None:
        rows = np.clip(np.rint(summary["y"]).astype(int), 0, member_maps.shape[-2] - 1)
        cols = np.clip(np.rint(summary["x"]).astype(int), 0, member_maps.shape[-1] - 1)
        atom_prob = 1.0 - member_maps[:, summary["frame"].to_numpy(), 0, rows, cols]
        summary["prob_std"] = atom_prob.std(axis=0)
    summary["uncertainty"] = 1.0 - summary["detection_freq"] * (1.0 - summary["class_disagreement"])
    return summary[columns].reset_index(drop=True)


def lookup_members(consensus: pd.DataFrame, member_maps: np.ndarray, threshold: float,
                   radius_px: float) -> pd.DataFrame:
    """Uncertainty columns for atoms found on the mean map, from each member's map near them.

    Member ``m`` detects an atom when its atom probability ``1 - p(background)`` exceeds
    ``threshold`` somewhere within ``radius_px`` of the atom; its position there is the
    centroid of that probability above the threshold in the disc, and its class the most likely
    atom class at its peak. The columns then mean what ``group_detections`` computes from
    clustered detections: ``n_detections``, ``detection_freq``, ``pos_spread_px`` (RMS distance
    of detecting members' positions from their mean), ``class_disagreement`` (share of
    detecting members disagreeing with the consensus class), ``prob_std`` and ``uncertainty``.
    Approximate: a member region too small or merged with a neighbour still counts as a
    detection (measured detection_freq ~1.0 where clustering gave 0.91-0.97), and the disc
    truncates member regions, so ``pos_spread_px`` comes out smaller (0.07-0.09 vs 0.17-0.30 px).
    """
    columns = ["x", "y", "cls", "score", "frame", *UNCERTAINTY_COLUMNS]
    if consensus.empty:
        return pd.DataFrame(columns=columns)
    n_members, height, width = member_maps.shape[0], member_maps.shape[-2], member_maps.shape[-1]
    reach = int(np.floor(radius_px))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1].reshape(2, -1)
    disc = dx**2 + dy**2 <= radius_px**2
    dy, dx = dy[disc], dx[disc]
    frame = consensus["frame"].to_numpy()
    centre_row = np.rint(consensus["y"].to_numpy()).astype(int)
    centre_col = np.rint(consensus["x"].to_numpy()).astype(int)
    rows = np.clip(centre_row[:, None] + dy, 0, height - 1)
    cols = np.clip(centre_col[:, None] + dx, 0, width - 1)
    atom_prob = 1.0 - member_maps[:, frame[:, None], 0, rows, cols]
    weight = np.clip(atom_prob - threshold, 0.0, None)
    detects = (weight > 0).any(axis=-1)
    total = np.maximum(weight.sum(axis=-1), 1e-12)
    member_x = (weight * cols).sum(axis=-1) / total
    member_y = (weight * rows).sum(axis=-1) / total
    n_detections = detects.sum(axis=0)
    per_detection = 1.0 / np.maximum(n_detections, 1)
    mean_x = (member_x * detects).sum(axis=0) * per_detection
    mean_y = (member_y * detects).sum(axis=0) * per_detection
    sq_dist = (member_x - mean_x) ** 2 + (member_y - mean_y) ** 2
    peak = atom_prob.argmax(axis=-1)
    peak_rows = np.take_along_axis(rows[None], peak[..., None], axis=-1)[..., 0]
    peak_cols = np.take_along_axis(cols[None], peak[..., None], axis=-1)[..., 0]
    member_cls = member_maps[np.arange(n_members)[:, None], frame[None, :], 1:,
                             peak_rows, peak_cols].argmax(axis=-1) + 1
    disagree = detects & (member_cls != consensus["cls"].to_numpy())
    centre_prob = 1.0 - member_maps[:, frame, 0, np.clip(centre_row, 0, height - 1),
                                    np.clip(centre_col, 0, width - 1)]
    table = consensus.assign(
        n_detections=n_detections, detection_freq=n_detections / n_members,
        pos_spread_px=np.sqrt((sq_dist * detects).sum(axis=0) * per_detection),
        class_disagreement=disagree.sum(axis=0) * per_detection,
        prob_std=centre_prob.std(axis=0))
    table["uncertainty"] = 1.0 - table["detection_freq"] * (1.0 - table["class_disagreement"])
    return table[columns].reset_index(drop=True)
