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

**Domain randomisation** (all off by default, so default frames are bit-identical to the
original model): ``contrast_exponent`` (the HAADF Z exponent n, 1.7 by default; 1.3–2.0 is the
physical range), ``sublattice_jitter`` (a per-frame log-normal factor per column class, which
changes sublattice intensity ratios), ``thickness`` (a channelling-like saturation
``I -> I (1 + t) / (1 + t I)`` that compresses bright columns relative to dim ones, as in thicker
crystals), ``column_jitter`` (per-column log-normal intensity noise), ``probe_ellipticity`` /
``probe_tail`` (an elliptical probe at a random angle; a share of the intensity in a broad
Gaussian tail ``probe_tail_width`` times wider) and ``row_noise`` (additive per-scan-line
offsets). These draws come from a fourth random stream, so switching them on never changes the
columns, defects or scan jitter of a seed (the shot and read noise follow the new signal).
:func:`randomized_config` switches them all on at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import fft

from activescope.engine.errors import SpecError
from activescope.microscopy.sim.lattices import (
    ProjectedLattice,
    lattice_classes,
    projected_lattice,
)

Range = float | tuple[float, float]

__all__ = ["SimConfig", "Frame", "lattice_classes", "simulate_frame", "simulate_batch",
           "standardize", "randomized_config", "column_intensities", "RANDOMIZATION"]

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
    ``contrast_exponent``: n in column intensity ∝ Σ Z^n (HAADF, physical range about 1.3–2.0).
    ``sublattice_jitter``: std of log(per-class intensity factor), drawn once per frame.
    ``thickness``: saturation t of the column intensities, ``I (1 + t) / (1 + t I)`` (0 = none).
    ``column_jitter``: std of log(per-column intensity factor).
    ``probe_ellipticity``: 1 - minor/major axis ratio of the probe (random orientation).
    ``probe_tail``: share (0–1) of the probe intensity in a broad Gaussian tail
    ``probe_tail_width`` times wider than the probe core.
    ``row_noise``: std of an additive offset per scan line, in units of a host column's peak.
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
    contrast_exponent: Range = _HAADF_EXPONENT
    sublattice_jitter: Range = 0.0
    thickness: Range = 0.0
    column_jitter: Range = 0.0
    probe_ellipticity: Range = 0.0
    probe_tail: Range = 0.0
    probe_tail_width: Range = 4.0
    row_noise: Range = 0.0


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


_STYLE_FIELDS = ("contrast_exponent", "sublattice_jitter", "thickness", "column_jitter",
                 "probe_ellipticity", "probe_tail", "probe_tail_width", "row_noise")

#: Ranges :func:`randomized_config` uses: everything a network must not key on.
RANDOMIZATION: dict[str, tuple[float, float]] = {
    "contrast_exponent": (1.3, 2.0),
    "sublattice_jitter": (0.0, 0.15),
    "thickness": (0.0, 1.0),
    "column_jitter": (0.0, 0.08),
    "probe_fwhm": (0.6, 1.2),
    "probe_ellipticity": (0.0, 0.3),
    "probe_tail": (0.0, 0.3),
    "probe_tail_width": (3.0, 6.0),
    "background": (0.0, 0.6),
    "read_noise": (0.0, 0.1),
    "jitter": (0.0, 0.6),
    "row_noise": (0.0, 0.05),
}


def randomized_config(**overrides: Any) -> SimConfig:
    """A :class:`SimConfig` with every domain-randomisation range of :data:`RANDOMIZATION` on.

    Keyword arguments override any field (``lattice``, ``size``, or a narrower range).
    """
    return SimConfig(**{**RANDOMIZATION, **overrides})


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


def _draw_style(config: SimConfig, rng: np.random.Generator, n_classes: int) -> dict[str, Any]:
    """Per-frame domain-randomisation settings, from their own stream, always in one order."""
    p = {name: _draw(rng, getattr(config, name), name) for name in _STYLE_FIELDS}
    if not p["contrast_exponent"] > 0:
        raise SpecError(f"SimConfig.contrast_exponent must be positive, got "
                        f"{p['contrast_exponent']}")
    for name in ("sublattice_jitter", "thickness", "column_jitter", "row_noise"):
        if not p[name] >= 0:
            raise SpecError(f"SimConfig.{name} must not be negative, got {p[name]}")
    if not 0.0 <= p["probe_ellipticity"] < 1.0:
        raise SpecError(f"SimConfig.probe_ellipticity must lie in [0, 1), got "
                        f"{p['probe_ellipticity']}")
    if not 0.0 <= p["probe_tail"] <= 1.0:
        raise SpecError(f"SimConfig.probe_tail must lie in [0, 1], got {p['probe_tail']}")
    if not p["probe_tail_width"] >= 1.0:
        raise SpecError(f"SimConfig.probe_tail_width must be at least 1, got "
                        f"{p['probe_tail_width']}")
    p["probe_angle_deg"] = float(rng.uniform(0.0, 180.0))
    p["class_factor"] = np.exp(rng.normal(0.0, 1.0, n_classes) * p["sublattice_jitter"])
    return p


def column_intensities(z: np.ndarray, reference_z: np.ndarray, exponent: float = _HAADF_EXPONENT,
                       thickness: float = 0.0) -> np.ndarray:
    """Relative HAADF column intensities ``Σ Z^n / max_reference Σ Z^n``, then saturated.

    ``z``: (K, D) atomic numbers per column (0 = empty); ``reference_z``: the host columns whose
    brightest one defines intensity 1. ``thickness`` t maps I to ``I (1 + t) / (1 + t I)``
    (1 stays 1, dim columns gain relative to bright ones: channelling saturation).
    """
    z = np.asarray(z, dtype=float)
    reference = (np.asarray(reference_z, dtype=float) ** exponent).sum(axis=1).max()
    intensity = (z ** exponent).sum(axis=1) / reference
    if thickness > 0:
        intensity = intensity * (1.0 + thickness) / (1.0 + thickness * intensity)
    return intensity


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
            row_shift: np.ndarray, ellipticity: float = 0.0, angle_deg: float = 0.0,
            tail: float = 0.0, tail_width: float = 4.0) -> np.ndarray:
    """Unit-peak Gaussians of width ``sigma_px`` at ``xy`` scaled by ``weight``, rows shifted.

    Bilinear splatting (exact first moment), then one FFT pass that applies the Gaussian blur
    and shifts row r by ``row_shift[r]`` pixels along x (scan-line jitter, a per-row phase ramp
    between the column and row transforms). The caller pads the grid so the periodic wrap only
    touches the discarded border.

    With ``ellipticity`` e > 0 the probe core has axes ``sigma_px / sqrt(1 - e)`` and
    ``sigma_px * sqrt(1 - e)`` (same area) along ``angle_deg``; with ``tail`` a > 0 a share a of
    each column's integral is spread ``tail_width`` times wider (the peak drops accordingly).
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
    if ellipticity == 0.0 and tail == 0.0:
        spectrum *= np.exp(damping * ky**2)[:, None] * np.exp(damping * kx**2)[None, :]
    else:
        spectrum *= _probe_transfer(ky, kx, sigma_px, ellipticity, angle_deg, tail, tail_width)
    spectrum = fft.ifft(spectrum, axis=0)
    if np.any(row_shift):
        phase = np.float32(-2.0 * np.pi) * row_shift.astype(np.float32)[:, None] * kx[None, :]
        spectrum *= np.cos(phase) + 1j * np.sin(phase)
    return fft.irfft(spectrum, n=w, axis=1)


def _probe_transfer(ky: np.ndarray, kx: np.ndarray, sigma_px: float, ellipticity: float,
                    angle_deg: float, tail: float, tail_width: float) -> np.ndarray:
    """Fourier transform (unit at k = 0) of an elliptical Gaussian core plus a round tail."""
    theta = np.radians(angle_deg)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    ku = c * kx[None, :] + s * ky[:, None]
    kv = -s * kx[None, :] + c * ky[:, None]
    squash = 1.0 - ellipticity
    q2 = (ku**2 / squash + kv**2 * squash).astype(np.float32)
    core = np.exp(np.float32(-2.0 * np.pi**2 * sigma_px**2) * q2)
    if tail == 0.0:
        return core
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    wide = np.exp(np.float32(-2.0 * np.pi**2 * (sigma_px * tail_width) ** 2) * k2)
    return (np.float32(1.0 - tail) * core + np.float32(tail) * wide).astype(np.float32)


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
    # spawn(4)'s first three children equal spawn(3)'s: the style stream leaves them unchanged.
    geometry_rng, defect_rng, noise_rng, style_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    p = _draw_params(config, geometry_rng)
    style = _draw_style(config, style_rng, len(lat.classes))
    size = config.size
    sigma_px = np.hypot(p["probe_fwhm"] * _FWHM_TO_SIGMA, config.potential_sigma) / p["pixel_size"]
    # The padding ignores the probe style, so the columns (and the defects drawn per column) of
    # a seed do not depend on it: a broad tail wraps around the periodic canvas instead, which
    # on a lattice that fills the canvas stands in for the tails of the columns beyond it.
    margin = int(np.ceil(4.0 * sigma_px + abs(p["drift"]) + 4.0 * p["jitter"])) + 2
    canvas = fft.next_fast_len(size + 2 * margin, real=True)

    xy, basis_index = _columns(lat, config, p, canvas)
    xy += (size - 1) / 2.0
    z, cls = _defects(lat, config, basis_index, defect_rng)
    row_frac = xy[:, 1] / (size - 1)
    xy += row_frac[:, None] * p["drift_xy"][None, :]
    keep = (((xy + margin) >= 0) & (xy + margin < canvas - 1)).all(axis=1) & (z > 0).any(axis=1)
    xy, z, cls = xy[keep], z[keep], cls[keep]

    intensity = column_intensities(z, lat.column_z, style["contrast_exponent"], style["thickness"])
    if style["sublattice_jitter"] > 0:
        intensity = intensity * style["class_factor"][cls]
    if style["column_jitter"] > 0:
        intensity = intensity * np.exp(style_rng.normal(0.0, style["column_jitter"], len(z)))
    row_shift = noise_rng.normal(0.0, 1.0, canvas) * p["jitter"]
    crop = slice(margin, margin + size)
    signal = _render(xy + margin, intensity, (canvas, canvas), sigma_px, row_shift,
                     style["probe_ellipticity"], style["probe_angle_deg"], style["probe_tail"],
                     style["probe_tail_width"])[crop, crop]
    signal += _background(size, p["background"], noise_rng)
    if style["row_noise"] > 0:
        signal += (style_rng.normal(0.0, style["row_noise"], size).astype(np.float32))[:, None]
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
    style["class_factor"] = dict(zip(lat.classes, style["class_factor"].tolist()))
    p.update(style)
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
