"""Simulated HAADF-STEM frames with exact atom tables and per-pixel class masks.

A frame is made in five vectorised steps, each drawn from a numpy Generator seeded per frame:

1. **Geometry** — the projected lattice (:mod:`.lattices`) is strained, rotated, shifted by a
   random origin and tiled to cover the field of view at a random pixel size (Å/px).
   Slow linear drift is a shear/stretch along the slow-scan (row) axis applied to the column
   coordinates, so the atom table moves with the image.
2. **Defects** — each atom is replaced by the dopant with ``dopant_prob`` (dopant sites only) and
   removed with ``vacancy_prob``; a column with no atoms left is gone, a column that lost one of
   two stacked atoms keeps its class but its summed ``Z`` drops.
3. **Image formation** — column intensity ∝ Σ Z^1.7 (Rutherford-like HAADF contrast),
   normalised so a full host column of the brightest type peaks at 1. Each column is a
   Gaussian whose width combines the projected potential (``potential_sigma``) and the Gaussian
   probe (``probe_fwhm``): intensities are splatted bilinearly onto a padded grid and blurred
   once by FFT, in the same pass that shifts each row along x (scan-line jitter).
4. **Scan and detector** — a smooth background is added, then Poisson shot noise at ``dose``
   (expected counts per pixel = dose × pixel area in Å² × intensity) and Gaussian read noise.
   The image is finally standardised (zero mean, unit standard deviation).
5. **Labels** — every column whose rounded (``np.rint``) position lies in the frame is in the
   atom table and gets a disk of radius ``label_radius`` in the class mask; its centre pixel
   always carries its class.

Parameters given as ``(low, high)`` are drawn uniformly per frame (augmentation); a single
number fixes them. All lengths are in Å unless the name says pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import fft

from activescope.engine.errors import SpecError
from activescope.microscopy.sim.lattices import ProjectedLattice, lattice_classes, projected_lattice

Range = float | tuple[float, float]

__all__ = ["SimConfig", "Frame", "lattice_classes", "simulate_frame", "simulate_batch",
           "standardize"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_HAADF_EXPONENT = 1.7


@dataclass
class SimConfig:
    """What to simulate; defaults are moderate, in-distribution conditions.

    ``dose``: detected electrons per Å² at unit intensity (``inf`` = no shot noise).
    ``read_noise``: std of Gaussian detector noise, in units of a host column's peak.
    ``jitter``: std of the per-row scan-line shift, pixels.
    ``drift``: total drift accumulated over the frame (slow-scan axis), pixels.
    ``background``: peak amplitude of the smooth background, in units of a host column's peak.
    ``strain``: relative change of the lattice parameter (isotropic), for out-of-distribution tests.
    ``label_radius``: radius of the label disks (Å), at least one pixel.
    """

    lattice: str = "graphene"
    size: int = 256
    pixel_size: Range = (0.10, 0.14)
    rotation: bool = True
    probe_fwhm: Range = (0.8, 1.0)
    dose: Range = (2e3, 2e4)
    read_noise: Range = (0.0, 0.05)
    jitter: Range = (0.0, 0.3)
    drift: Range = (0.0, 2.0)
    background: Range = (0.0, 0.3)
    vacancy_prob: float = 0.02
    dopant_prob: float = 0.01
    dopant_z: int | None = None
    strain: float = 0.0
    potential_sigma: float = 0.2
    label_radius: float = 0.35


@dataclass
class Frame:
    """One simulated frame.

    ``image``: (H, W) float32, standardised. ``labels``: (H, W) uint8 class per pixel
    (0 = background). ``atoms``: one row per column in the frame with x (column index), y (row
    index) in sub-pixel pixels, ``cls`` (≥ 1), summed atomic number ``Z`` and composition
    ``name``.
    ``params``: the values drawn for this frame (pixel size, probe, dose, ...).
    """

    image: np.ndarray
    labels: np.ndarray
    atoms: pd.DataFrame
    classes: list[str]
    params: dict[str, Any] = field(default_factory=dict)


def _draw(rng: np.random.Generator, value: Range, name: str) -> float:
    """A fixed value, or a uniform draw from ``(low, high)``; the draw happens either way."""
    u = rng.random()
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] > value[1]:
            raise SpecError(f"SimConfig.{name} must be a number or (low, high), got {value!r}")
        return float(value[0] + u * (value[1] - value[0]))
    return float(value)


def _validate(config: SimConfig) -> None:
    if config.size < 8:
        raise SpecError(f"SimConfig.size must be at least 8 pixels, got {config.size}")
    for name in ("vacancy_prob", "dopant_prob"):
        p = getattr(config, name)
        if not 0.0 <= p <= 1.0:
            raise SpecError(f"SimConfig.{name} must lie in [0, 1], got {p}")
    if config.strain <= -1.0:
        raise SpecError(f"SimConfig.strain must be greater than -1, got {config.strain}")


def _draw_params(config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """All per-frame random settings, always drawn in the same order (seed-stable)."""
    p = {name: _draw(rng, getattr(config, name), name)
         for name in ("pixel_size", "probe_fwhm", "dose", "read_noise", "jitter", "drift",
                      "background")}
    for name in ("pixel_size", "probe_fwhm", "dose"):
        if not p[name] > 0:
            raise SpecError(f"SimConfig.{name} must be positive, got {p[name]}")
    for name in ("read_noise", "jitter", "drift", "background"):
        if not p[name] >= 0:
            raise SpecError(f"SimConfig.{name} must not be negative, got {p[name]}")
    angle = rng.uniform(0.0, 2.0 * np.pi)
    p["rotation_deg"] = float(np.degrees(angle)) if config.rotation else 0.0
    p["origin_frac"] = rng.random(2)
    drift_angle = rng.uniform(0.0, 2.0 * np.pi)
    p["drift_xy"] = p["drift"] * np.array([np.cos(drift_angle), np.sin(drift_angle)])
    return p


def _columns(lat: ProjectedLattice, config: SimConfig, p: dict[str, Any],
             extent_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Column centres (K, 2) in pixels (frame centre at the origin) and their basis index (K,)."""
    theta = np.radians(p["rotation_deg"])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cell = lat.cell * (1.0 + config.strain) @ rot.T / p["pixel_size"]
    radius = extent_px * np.sqrt(2.0) / 2.0
    reach = np.ceil(radius * np.linalg.norm(np.linalg.inv(cell), axis=0)).astype(int) + 1
    i, j = np.meshgrid(np.arange(-reach[0], reach[0] + 1), np.arange(-reach[1], reach[1] + 1),
                       indexing="ij")
    cells = np.stack([i.ravel(), j.ravel()], axis=1) + p["origin_frac"]
    basis = lat.column_xy * (1.0 + config.strain) @ rot.T / p["pixel_size"]
    xy = (cells @ cell)[:, None, :] + basis[None, :, :]
    basis_index = np.broadcast_to(np.arange(len(basis)), xy.shape[:2])
    return xy.reshape(-1, 2), basis_index.ravel()


def _defects(lat: ProjectedLattice, config: SimConfig, basis_index: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers (K, D) after dopants and vacancies, and each column's class (K,)."""
    z = lat.column_z[basis_index].copy()
    dopant_z = lat.dopant_z if config.dopant_z is None else int(config.dopant_z)
    doped = lat.dopant_slot[basis_index] & (rng.random(z.shape) < config.dopant_prob)
    z[doped] = dopant_z
    z[rng.random(z.shape) < config.vacancy_prob] = 0
    cls = lat.column_class[basis_index].copy()
    cls[(doped & (z > 0)).any(axis=1)] = len(lat.classes) - 1
    return z, cls


def _render(xy: np.ndarray, weight: np.ndarray, shape: tuple[int, int], sigma_px: float,
            row_shift: np.ndarray) -> np.ndarray:
    """Unit-peak Gaussians of width ``sigma_px`` at ``xy`` scaled by ``weight``, rows shifted.

    Bilinear splatting (exact first moment), then one FFT pass that applies the Gaussian blur
    and shifts row r by ``row_shift[r]`` pixels along x (scan-line jitter, a per-row phase ramp
    between the column and row transforms). The caller pads the grid so the periodic wrap only
    touches the discarded border.
    """
    h, w = shape
    x0 = np.floor(xy[:, 0]).astype(np.int64)
    y0 = np.floor(xy[:, 1]).astype(np.int64)
    fx = xy[:, 0] - x0
    fy = xy[:, 1] - y0
    index = np.concatenate([(y0 + dy) * w + x0 + dx for dy in (0, 1) for dx in (0, 1)])
    share = np.concatenate([wy * wx for wy in (1.0 - fy, fy) for wx in (1.0 - fx, fx)])
    peak_to_integral = 2.0 * np.pi * sigma_px**2
    grid = np.bincount(index, weights=share * np.tile(weight * peak_to_integral, 4),
                       minlength=h * w)
    grid = grid.reshape(h, w).astype(np.float32)
    ky = fft.fftfreq(h).astype(np.float32)
    kx = fft.rfftfreq(w).astype(np.float32)
    damping = np.float32(-2.0 * np.pi**2 * sigma_px**2)
    spectrum = fft.fft(fft.rfft(grid, axis=1), axis=0)
    spectrum *= np.exp(damping * ky**2)[:, None] * np.exp(damping * kx**2)[None, :]
    spectrum = fft.ifft(spectrum, axis=0)
    if np.any(row_shift):
        phase = np.float32(-2.0 * np.pi) * row_shift.astype(np.float32)[:, None] * kx[None, :]
        spectrum *= np.cos(phase) + 1j * np.sin(phase)
    return fft.irfft(spectrum, n=w, axis=1)


def _background(size: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth non-negative background: a random 4 x 4 grid of broad Gaussian bumps."""
    centres = np.linspace(0.0, size - 1.0, 4)
    axis = np.arange(size, dtype=np.float32)[:, None]
    basis = np.exp(-0.5 * ((axis - centres[None, :]) / (size / 4.0)) ** 2).astype(np.float32)
    rows = basis @ rng.random((4, 4)).astype(np.float32)
    field_ = sum(rows[:, k, None] * basis[None, :, k] for k in range(4))
    return amplitude * field_ / max(float(field_.max()), 1e-12)


def _disk_labels(size: int, xy: np.ndarray, cls: np.ndarray, radius_px: float) -> np.ndarray:
    """uint8 mask with a disk of class ``cls`` around every column; centres written last."""
    labels = np.zeros((size, size), dtype=np.uint8)
    centre = np.rint(xy).astype(np.int64)
    reach = int(np.ceil(radius_px)) + 1
    oy, ox = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    px = centre[:, 0, None] + ox.ravel()[None, :]
    py = centre[:, 1, None] + oy.ravel()[None, :]
    inside = ((px - xy[:, 0, None]) ** 2 + (py - xy[:, 1, None]) ** 2 <= radius_px**2)
    inside &= (px >= 0) & (px < size) & (py >= 0) & (py < size)
    labels[py[inside], px[inside]] = np.broadcast_to(cls[:, None], px.shape)[inside]
    labels[centre[:, 1], centre[:, 0]] = cls
    return labels


def _column_names(z: np.ndarray) -> np.ndarray:
    """Composition names such as "Mo", "S2", "TiO" (heaviest first), one per column."""
    from ase.data import chemical_symbols

    rows, inverse = np.unique(-np.sort(-z, axis=1), axis=0, return_inverse=True)
    names = []
    for row in rows:
        elements, counts = np.unique(row[row > 0], return_counts=True)
        order = np.argsort(-elements)
        names.append("".join(chemical_symbols[e] + (str(c) if c > 1 else "")
                             for e, c in zip(elements[order], counts[order])))
    return np.array(names, dtype=object)[inverse.ravel()]


def standardize(image: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-std float32 copy of ``image`` (the normalisation networks expect)."""
    image = np.asarray(image, dtype=np.float32)
    std = float(image.std())
    return (image - image.mean()) / (std if std > 0 else 1.0)


def simulate_frame(config: SimConfig, seed: int) -> Frame:
    """Simulate one frame; the same ``config`` and ``seed`` always give the same frame."""
    _validate(config)
    lat = projected_lattice(config.lattice)
    geometry_rng, defect_rng, noise_rng = (np.random.default_rng(s)
                                           for s in np.random.SeedSequence(seed).spawn(3))
    p = _draw_params(config, geometry_rng)
    size = config.size
    sigma_px = np.hypot(p["probe_fwhm"] * _FWHM_TO_SIGMA, config.potential_sigma) / p["pixel_size"]
    margin = int(np.ceil(4.0 * sigma_px + abs(p["drift"]) + 4.0 * p["jitter"])) + 2
    canvas = fft.next_fast_len(size + 2 * margin, real=True)

    xy, basis_index = _columns(lat, config, p, canvas)
    xy += (size - 1) / 2.0
    z, cls = _defects(lat, config, basis_index, defect_rng)
    row_frac = xy[:, 1] / (size - 1)
    xy += row_frac[:, None] * p["drift_xy"][None, :]
    keep = (((xy + margin) >= 0) & (xy + margin < canvas - 1)).all(axis=1) & (z > 0).any(axis=1)
    xy, z, cls = xy[keep], z[keep], cls[keep]

    reference = (lat.column_z.astype(float) ** _HAADF_EXPONENT).sum(axis=1).max()
    intensity = (z.astype(float) ** _HAADF_EXPONENT).sum(axis=1) / reference
    row_shift = noise_rng.normal(0.0, 1.0, canvas) * p["jitter"]
    crop = slice(margin, margin + size)
    signal = _render(xy + margin, intensity, (canvas, canvas), sigma_px, row_shift)[crop, crop]
    signal += _background(size, p["background"], noise_rng)
    xy[:, 0] += row_shift[margin + np.clip(np.rint(xy[:, 1]).astype(np.int64), 0, size - 1)]

    counts_per_unit = p["dose"] * p["pixel_size"] ** 2
    if np.isfinite(counts_per_unit):
        counts = noise_rng.poisson(np.clip(signal, 0.0, None) * counts_per_unit)
        signal = counts.astype(np.float32) / np.float32(counts_per_unit)
    read_noise = noise_rng.standard_normal(signal.shape, dtype=np.float32)
    signal += read_noise * np.float32(p["read_noise"])

    in_frame = ((np.rint(xy) >= 0) & (np.rint(xy) <= size - 1)).all(axis=1)
    xy, z, cls = xy[in_frame], z[in_frame], cls[in_frame]
    radius_px = max(config.label_radius / p["pixel_size"], 1.0)
    atoms = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "cls": cls.astype(np.int64),
                          "Z": z.sum(axis=1).astype(np.int64), "name": _column_names(z)})
    p["drift_xy"] = p["drift_xy"].tolist()
    p["origin_frac"] = p["origin_frac"].tolist()
    p["seed"] = seed
    return Frame(image=standardize(signal), labels=_disk_labels(size, xy, cls, radius_px),
                 atoms=atoms, classes=list(lat.classes), params=p)


def simulate_batch(config: SimConfig, n: int, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                   list[pd.DataFrame]]:
    """``n`` frames: images (n, H, W) float32, labels (n, H, W) uint8 and one atom table each.

    Frame ``i`` is ``simulate_frame(config, frame_seeds(seed, n)[i])``.
    """
    frames = [simulate_frame(config, int(s)) for s in frame_seeds(seed, n)]
    return (np.stack([f.image for f in frames]), np.stack([f.labels for f in frames]),
            [f.atoms for f in frames])


def frame_seeds(seed: int, n: int) -> np.ndarray:
    """Independent per-frame seeds (uint32) for ``n`` ≥ 1 frames, derived from one batch seed."""
    if n < 1:
        raise SpecError(f"number of frames must be at least 1, got {n}")
    return np.random.SeedSequence(seed).generate_state(n)
