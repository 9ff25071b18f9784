"""The specimen under the digital twin's beam: an atomic lattice with vacancies, dopants, a grain
boundary and a hole, and maps of the local structure that the twin's spectra depend on.

The lattice comes from the atom-image simulator (`activescope.microscopy.simulate_frame`,
noise-free): two grains with different random orientations are joined along a straight
boundary, and a round hole (vacuum, with edges) is cut out. The sample canvas is larger than the
field of view by `margin` pixels on each side so that a drifting field of view still shows
sample; beyond that the canvas wraps around.

Every map is an (Hc, Wc) float32 array on the canvas grid (pixel size `pixel_nm`), computed with
a handful of vectorised operations:

- ``image``: noise-free HAADF intensity scaled to [0, 1];
- ``density``: local column density (smoothed over 0.12 nm) relative to the perfect lattice (1
  in the crystal, lower around vacancies and at the hole's edge, 0 in vacuum);
- ``dopant``: proximity to substitutional dopants (1 on an isolated dopant, decaying over 0.3 nm);
- ``boundary``: proximity to the grain boundary (1 on it, decaying over 0.3 nm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from activescope.microscopy import SimConfig, simulate_frame

STRUCTURE_NM = 0.3  # length over which dopants and the boundary influence the spectra, nm
DENSITY_NM = 0.12  # smoothing length of the column density, nm


@dataclass(frozen=True)
class Sample:
    """A simulated specimen; see the module docstring for the maps.

    pixel_nm: canvas pixel size, nm. margin: canvas pixels on each side of the field of view
    (overview pixel (r, c) is canvas pixel (r + margin, c + margin) without drift).
    atoms: columns in canvas pixels (x, y), class ``cls``, summed atomic number ``Z``.
    """

    image: np.ndarray
    density: np.ndarray
    dopant: np.ndarray
    boundary: np.ndarray
    atoms: pd.DataFrame
    pixel_nm: float
    margin: int

    @property
    def shape(self) -> tuple[int, int]:
        """(Hc, Wc) canvas size, pixels."""
        return self.image.shape  # type: ignore[return-value]

    def sample_maps(self, rows: np.ndarray, cols: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Bilinear values of every map (and of the `extra` canvas maps) at fractional canvas
        coordinates (`rows`, `cols`, any matching shapes; the canvas wraps around)."""
        maps = {"density": self.density, "dopant": self.dopant, "boundary": self.boundary, **(extra or {})}
        coords = np.stack([np.asarray(rows, dtype=float), np.asarray(cols, dtype=float)])
        return {name: ndimage.map_coordinates(m, coords, order=1, mode="grid-wrap") for name, m in maps.items()}


def _splat(shape: tuple[int, int], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Count of points per canvas pixel (points rounded to the nearest pixel, outside ones dropped)."""
    h, w = shape
    c, r = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
    return np.bincount(r[inside] * w + c[inside], minlength=h * w).reshape(h, w).astype(np.float32)


def build_sample(lattice: str, size: int, pixel_nm: float, vacancy_prob: float, dopant_prob: float,
                 grain_boundary: bool, hole_radius_nm: float, seed: int) -> Sample:
    """A specimen whose field of view is `size` x `size` pixels of `pixel_nm` nm.

    lattice: a name from `activescope.microscopy.LATTICES`. vacancy_prob, dopant_prob: per-atom
    probabilities. grain_boundary: join two randomly oriented grains along a line through the
    central region. hole_radius_nm: radius of a vacuum hole in the central region (0: none).
    seed: the same arguments and seed always give the same sample.
    """
    margin = size // 4
    canvas = size + 2 * margin
    frame_seeds = np.random.SeedSequence([seed, 0]).generate_state(2)
    layout = np.random.default_rng([seed, 1])
    config = SimConfig(lattice=lattice, size=canvas, pixel_size=pixel_nm * 10.0, rotation=True,
                       probe_fwhm=max(0.9, 2.5 * pixel_nm * 10.0), dose=float("inf"), read_noise=0.0,
                       jitter=0.0, drift=0.0, background=0.0, vacancy_prob=vacancy_prob, dopant_prob=dopant_prob)
    grain = simulate_frame(config, int(frame_seeds[0]))
    image, atoms = grain.image, grain.atoms
    rows, cols = np.mgrid[0:canvas, 0:canvas].astype(np.float32)
    centre = canvas / 2.0 + layout.uniform(-size / 6.0, size / 6.0, 2)
    angle = layout.uniform(0.0, np.pi)
    boundary = np.zeros((canvas, canvas), dtype=np.float32)
    if grain_boundary:
        other = simulate_frame(config, int(frame_seeds[1]))
        side = (cols - centre[0]) * np.cos(angle) + (rows - centre[1]) * np.sin(angle)
        image = np.where(side >= 0, grain.image, other.image)
        atom_side_a = (grain.atoms.x - centre[0]) * np.cos(angle) + (grain.atoms.y - centre[1]) * np.sin(angle)
        atom_side_b = (other.atoms.x - centre[0]) * np.cos(angle) + (other.atoms.y - centre[1]) * np.sin(angle)
        atoms = pd.concat([grain.atoms[atom_side_a >= 0], other.atoms[atom_side_b < 0]], ignore_index=True)
        width_px = STRUCTURE_NM / pixel_nm
        boundary = np.exp(-0.5 * (side / width_px) ** 2).astype(np.float32)

    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
    if hole_radius_nm > 0:
        hole = canvas / 2.0 + layout.uniform(-size / 4.0, size / 4.0, 2)
        radius_px = hole_radius_nm / pixel_nm
        distance = np.hypot(cols - hole[0], rows - hole[1])
        image = image / (1.0 + np.exp(-(distance - radius_px)))
        atoms = atoms[np.hypot(atoms.x - hole[0], atoms.y - hole[1]) > radius_px].reset_index(drop=True)

    sigma_px = STRUCTURE_NM / pixel_nm
    density = ndimage.gaussian_filter(_splat((canvas, canvas), atoms.x.to_numpy(), atoms.y.to_numpy()),
                                      DENSITY_NM / pixel_nm, mode="wrap")
    inner = slice(margin, margin + size)
    reference = float(np.median(density[inner, inner][density[inner, inner] > 0.5 * density.max()]))
    doped = atoms[atoms.cls == len(grain.classes) - 1]
    dopant = ndimage.gaussian_filter(_splat((canvas, canvas), doped.x.to_numpy(), doped.y.to_numpy()), sigma_px, mode="wrap")
    return Sample(image=image.astype(np.float32), density=np.clip(density / reference, 0.0, 1.5).astype(np.float32),
                  dopant=(dopant * 2.0 * np.pi * sigma_px**2).astype(np.float32), boundary=boundary,
                  atoms=atoms, pixel_nm=pixel_nm, margin=margin)
