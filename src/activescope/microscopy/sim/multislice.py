"""Multislice HAADF-STEM validation frames rendered with abTEM (an optional extra).

These frames are for **validation only** (keep them out of training): they come from a
physics-based multislice calculation, not from the project's own contrast model, so they test
whether a network learned the lattice or only the simulator's intensity ratios.

How a frame is made:

1. **One periodic cell, once** (abTEM, the slow part, cached per setting): the ASE structure of
   the lattice is orthogonalised, its potential sliced, and a probe (``energy``,
   ``semiangle_cutoff``) scanned over one orthogonal cell at ``scan_sampling`` Å with an
   annular detector (``inner``–``outer`` mrad). A perfect crystal is periodic, so one cell
   is all the physics a frame needs.
2. **The frame** (pure NumPy, :func:`tile_cell`): the cell image is Fourier-upsampled and
   sampled with periodic cubic interpolation on the frame's pixel grid (``pixel_size``,
   rotation, origin), the columns of the cell are tiled the same way into the atom table.
   An incoherent source size (``source_fwhm``) blurs the image.
3. **Dose** (:func:`apply_dose`): Poisson noise with ``dose`` = mean counts per pixel (the unit
   in which microscopists quote low-dose frames, e.g. 2–50), then standardisation.

The result is a :class:`~activescope.microscopy.sim.simulate.Frame` with the same image,
label mask, atom table and class names as :func:`~.simulate.simulate_frame`. Install with
``pip install 'activescope[multislice]'``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from activescope.engine.errors import SpecError
from activescope.microscopy.sim.lattices import _LATTICES, lattice_classes
from activescope.microscopy.sim.simulate import (
    Frame,
    _column_names,
    _disk_labels,
    standardize,
)

__all__ = ["MULTISLICE_LATTICES", "MissingMultisliceError", "multislice_frame",
           "multislice_validation_set", "tile_cell", "apply_dose", "CellImage"]

#: Lattices whose multislice cell is cheap on a CPU (monolayers: a few slices).
MULTISLICE_LATTICES: tuple[str, ...] = ("mos2", "ws2", "graphene")

_MISSING = "multislice frames need abTEM: pip install 'activescope[multislice]'"


class MissingMultisliceError(ImportError):
    """abTEM is not installed (the ``multislice`` extra)."""


def _abtem():
    try:
        import abtem
    except ImportError as err:  # one clear line instead of a traceback into abTEM
        raise MissingMultisliceError(_MISSING) from err
    return abtem


class CellImage:
    """A periodic HAADF image of one orthogonal cell and the columns in it.

    ``image``: (ny, nx) detector signal on the cell's scan grid (row = y). ``lengths``: (Lx, Ly)
    in Å. ``column_xy``: (B, 2) column positions in the cell (Å); ``column_cls``: (B,) class
    index ≥ 1; ``column_z``: (B, D) atomic numbers of each column, 0-padded.
    """

    def __init__(self, image: np.ndarray, lengths: tuple[float, float], column_xy: np.ndarray,
                 column_cls: np.ndarray, column_z: np.ndarray, classes: list[str],
                 settings: dict[str, Any] | None = None) -> None:
        self.image = np.asarray(image, dtype=np.float64)
        self.lengths = (float(lengths[0]), float(lengths[1]))
        self.column_xy = np.asarray(column_xy, dtype=np.float64)
        self.column_cls = np.asarray(column_cls, dtype=np.int64)
        self.column_z = np.asarray(column_z, dtype=np.int64)
        self.classes = list(classes)
        self.settings = dict(settings or {})


def _fourier_upsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Band-limited (periodic) upsampling of a 2-D image by an integer factor; sample 0 stays."""
    from scipy.signal import resample

    ny, nx = image.shape
    return resample(resample(image, ny * factor, axis=0), nx * factor, axis=1)


def tile_cell(cell: CellImage, size: int, pixel_size: float, rotation_deg: float = 0.0,
              origin: tuple[float, float] = (0.0, 0.0), source_fwhm: float = 0.0,
              label_radius: float = 0.35) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Noise-free frame (size x size) of the periodic ``cell``, its label mask and atom table.

    Frame pixel (col, row) sits at ``R(rotation) @ ((col, row) - centre) * pixel_size + origin``
    in the crystal (Å); the atom table gives every column whose rounded position is in frame.
    """
    if size < 8 or not pixel_size > 0:
        raise SpecError(f"need size >= 8 and pixel_size > 0, got {size}, {pixel_size}")
    lx, ly = cell.lengths
    theta = np.radians(rotation_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    frame_xy = np.stack([cols.ravel() - centre, rows.ravel() - centre]) * pixel_size
    crystal = rot @ frame_xy + np.asarray(origin, dtype=np.float64)[:, None]
    factor = 4
    fine = _fourier_upsample(cell.image, factor)
    ny, nx = fine.shape
    coords = np.stack([np.mod(crystal[1], ly) / ly * ny, np.mod(crystal[0], lx) / lx * nx])
    image = ndimage.map_coordinates(fine, coords, order=3, mode="grid-wrap").reshape(size, size)
    if source_fwhm > 0:
        image = ndimage.gaussian_filter(image, source_fwhm / 2.3548 / pixel_size, mode="reflect")

    # columns: every cell copy that can reach the frame, mapped back to frame pixels
    half = np.sqrt(2.0) * size * pixel_size / 2.0 + max(lx, ly)
    lo = (np.asarray(origin) - half) // np.array([lx, ly])
    hi = (np.asarray(origin) + half) // np.array([lx, ly]) + 1
    i, j = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    shifts = np.stack([i.ravel() * lx, j.ravel() * ly], axis=1)
    xy = (shifts[:, None, :] + cell.column_xy[None, :, :]).reshape(-1, 2)
    n_copies = len(shifts)
    cls = np.tile(cell.column_cls, n_copies)
    z = np.tile(cell.column_z, (n_copies, 1))
    pix = ((xy - np.asarray(origin)) @ rot) / pixel_size + centre
    inside = ((np.rint(pix) >= 0) & (np.rint(pix) <= size - 1)).all(axis=1)
    pix, cls, z = pix[inside], cls[inside], z[inside]
    atoms = pd.DataFrame({"x": pix[:, 0], "y": pix[:, 1], "cls": cls,
                          "Z": z.sum(axis=1).astype(np.int64), "name": _column_names(z)})
    labels = _disk_labels(size, pix, cls, max(label_radius / pixel_size, 1.0))
    return image.astype(np.float32), labels, atoms


def apply_dose(image: np.ndarray, dose: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise at ``dose`` mean counts per pixel (``inf``: none), then standardised."""
    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, None)
    if not dose > 0:
        raise SpecError(f"dose must be positive (mean counts per pixel), got {dose}")
    if np.isfinite(dose):
        scale = dose / max(float(image.mean()), 1e-30)
        image = rng.poisson(image * scale).astype(np.float64)
    return standardize(image)


def _orthogonal_columns(atoms, classes: list[str], class_of: dict) -> tuple:
    """Columns (xy, class, Z) of an orthogonal-cell ASE structure, grouped by position."""
    positions = atoms.positions[:, :2]
    lengths = np.diag(atoms.cell[:2, :2])
    frac = np.mod(positions / lengths, 1.0)
    frac[frac > 1 - 1e-4] = 0.0
    keys, first, column_of_atom = np.unique(np.round(frac, 3), axis=0, return_index=True,
                                            return_inverse=True)
    column_of_atom = column_of_atom.ravel()
    symbols = np.array(atoms.get_chemical_symbols())
    depth = int(np.bincount(column_of_atom).max())
    column_z = np.zeros((len(keys), depth), dtype=np.int64)
    column_cls = np.zeros(len(keys), dtype=np.int64)
    for col in range(len(keys)):
        members = np.flatnonzero(column_of_atom == col)
        column_z[col, : len(members)] = atoms.numbers[members]
        column_cls[col] = classes.index(class_of[tuple(sorted(symbols[members]))])
    return frac[first] * lengths, column_cls, column_z, tuple(lengths)


@lru_cache(maxsize=16)
def multislice_cell(lattice: str = "mos2", energy: float = 200e3, semiangle_cutoff: float = 25.0,
                    inner: float = 80.0, outer: float = 200.0, scan_sampling: float = 0.15,
                    potential_sampling: float = 0.05) -> CellImage:
    """abTEM HAADF image of one orthogonal cell of ``lattice`` (cached; seconds on a CPU)."""
    key = lattice.lower()
    if key not in MULTISLICE_LATTICES:
        raise SpecError(f"multislice frames support {', '.join(MULTISLICE_LATTICES)}, "
                        f"got {lattice!r}")
    abtem = _abtem()
    build, class_of, _, _ = _LATTICES[key]
    atoms = build()
    atoms.cell[2, 2] = 1.0  # builders leave c = 0 (no vacuum); give it one, then centre
    atoms.center(vacuum=3.0, axis=2)
    atoms = abtem.orthogonalize_cell(atoms)
    classes = lattice_classes(key)
    column_xy, column_cls, column_z, lengths = _orthogonal_columns(atoms, classes, class_of)
    abtem.config.set({"device": "cpu"})
    potential = abtem.Potential(atoms, sampling=potential_sampling, projection="infinite",
                                slice_thickness=1.0)
    probe = abtem.Probe(energy=energy, semiangle_cutoff=semiangle_cutoff)
    probe.grid.match(potential)
    detector = abtem.AnnularDetector(inner=inner, outer=outer)
    nx = max(int(np.ceil(lengths[0] / scan_sampling)), 4)
    ny = max(int(np.ceil(lengths[1] / scan_sampling)), 4)
    scan = abtem.GridScan(start=(0.0, 0.0), end=lengths, gpts=(nx, ny), endpoint=False,
                          potential=potential)
    measurement = probe.scan(potential, scan=scan, detectors=detector)
    signal = np.asarray(measurement.compute(scheduler="threads", num_workers=1,
                                            progress_bar=False).array)
    settings = dict(energy=energy, semiangle_cutoff=semiangle_cutoff, inner=inner, outer=outer,
                    scan_sampling=scan_sampling, potential_sampling=potential_sampling)
    # abTEM indexes scans (x, y); images here are (row = y, col = x)
    return CellImage(signal.T, lengths, column_xy, column_cls, column_z, classes, settings)


def multislice_frame(lattice: str = "mos2", size: int = 128, pixel_size: float = 0.1,
                     dose: float = 20.0, seed: int = 0, rotation: bool = True,
                     source_fwhm: float = 0.5, label_radius: float = 0.35,
                     **cell_settings: Any) -> Frame:
    """One multislice HAADF validation frame (same structure as ``simulate_frame``'s).

    ``dose``: mean detected counts per pixel (Poisson). Rotation and origin are drawn from
    ``seed``; ``cell_settings`` go to :func:`multislice_cell` (energy, detector angles, ...).
    """
    cell = multislice_cell(lattice, **cell_settings)
    rng = np.random.default_rng(seed)
    rotation_deg = float(rng.uniform(0.0, 360.0)) if rotation else 0.0
    origin = rng.random(2) * np.array(cell.lengths)
    clean, labels, atoms = tile_cell(cell, size, pixel_size, rotation_deg, tuple(origin),
                                     source_fwhm, label_radius)
    params = dict(renderer="abtem-multislice", pixel_size=pixel_size, dose=dose, seed=seed,
                  rotation_deg=rotation_deg, origin=origin.tolist(), source_fwhm=source_fwhm,
                  **cell.settings)
    return Frame(image=apply_dose(clean, dose, rng), labels=labels, atoms=atoms,
                 classes=cell.classes, params=params)


def multislice_validation_set(lattices: tuple[str, ...] = ("mos2",),
                              doses: tuple[float, ...] = (2.0, 5.0, 20.0, 50.0),
                              pixel_sizes: tuple[float, ...] = (0.1,), frames_per: int = 1,
                              size: int = 128, seed: int = 0) -> list[Frame]:
    """Frames for every (lattice, dose, pixel size), ``frames_per`` each, distinct seeds."""
    frames = []
    seeds = iter(np.random.SeedSequence(seed).generate_state(
        len(lattices) * len(doses) * len(pixel_sizes) * frames_per))
    for lattice in lattices:
        for dose in doses:
            for pixel_size in pixel_sizes:
                for _ in range(frames_per):
                    frames.append(multislice_frame(lattice, size, pixel_size, dose,
                                                   int(next(seeds))))
    return frames
