"""Atom-centred training patches from simulated frames (known site and defect types) and the
default patch window.

Site/defect type of a simulated atom is its column's composition `name` (for MoS2: ``Mo``,
``S2``, ``S`` = a chalcogen column that lost one atom, ``W`` = a dopant), the label the k-NN
check predicts. Frames are drawn with random lattice rotations, so the same site appears at
many orientations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from activescope.microscopy.find.locate import lattice_spacing_angstrom
from activescope.microscopy.ivae.patches import Border, extract_patches
from activescope.microscopy.sim.simulate import SimConfig, simulate_frame

WINDOW_SPACINGS = 2.2
"""Default patch window: this many nearest-neighbour column spacings of the lattice."""


def default_window(lattice: str) -> float:
    """Default patch window for `lattice`, Å (WINDOW_SPACINGS nearest-neighbour spacings)."""
    return WINDOW_SPACINGS * lattice_spacing_angstrom(lattice)


@dataclass(frozen=True)
class PatchSet:
    """patches (n, side, side); names (n,) site type; frame (n,) frame index; x, y (n,)
    positions in their frame, px; angle (n,) the frame's lattice rotation, degrees."""

    patches: np.ndarray
    names: np.ndarray
    frame: np.ndarray
    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray


def simulated_patches(config: SimConfig, n_frames: int, window_A: float, side: int = 16, seed: int = 0,
                      border: Border = "drop") -> PatchSet:
    """Patches around every simulated atom of `n_frames` frames drawn with `config`."""
    parts = []
    for index in range(n_frames):
        frame = simulate_frame(config, seed + index)
        atoms = frame.atoms
        cut = extract_patches(frame.image, atoms.x.to_numpy(), atoms.y.to_numpy(),
                              window_A / frame.params["pixel_size"], side, border)
        kept = atoms[cut.kept]
        parts.append((cut.patches, kept.name.to_numpy(), np.full(len(kept), index), kept.x.to_numpy(),
                      kept.y.to_numpy(), np.full(len(kept), float(frame.params["rotation_deg"]))))
    columns = [np.concatenate(column) for column in zip(*parts)]
    return PatchSet(*columns)
