"""Co-registered (image patch, local spectrum) pairs for im2spec / spec2im.

- `twin_pairs`: the STEM-EELS digital twin. Patches come from the twin's overview image
  standardised as the `probe_grid` source does it (``normalize: image``), so a model trained
  here reads the same features a campaign's pool has; spectra are the twin's spectra at the
  same positions (no drift), with Poisson noise at `dwell_s`.
- `beps_pairs`: the real BEPS PbTiO3 data. The image is a piezoresponse map derived from the
  loops (the mean response over the sweep, or the loop area by the shoelace formula over the
  voltage axis; standardised); each grid
  point's patch of that map is paired with the loop measured at its centre.

Positions whose patch would cross the image border are dropped (no padding), so every patch
is real data; `rows`, `cols` give each pair's grid position for spatial splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activescope.engine.errors import DataError

from .playback import beps_playback, loop_area_map
from .sources import patches as cut_patches
from .twin import DigitalTwin, TwinOptions


@dataclass(frozen=True)
class Pairs:
    """patches (n, window*window) float32, spectra (n, channels) float32, axis (channels,),
    axis_unit, clean (n, channels) noise-free spectra when known (the twin), rows/cols (n,) grid positions of the patch centres, image (H, W) the image the
    patches were cut from."""

    patches: np.ndarray
    spectra: np.ndarray
    clean: np.ndarray | None
    axis: np.ndarray
    axis_unit: str
    rows: np.ndarray
    cols: np.ndarray
    image: np.ndarray


def _grid(shape: tuple[int, int], window: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    if window % 2 == 0 or window < 3:
        raise DataError(f"window must be odd and at least 3 pixels, got {window}")
    half = window // 2
    if min(shape) <= 2 * half:
        raise DataError(f"a {window}-pixel window does not fit in a {shape[0]} x {shape[1]} image")
    r, c = np.meshgrid(np.arange(half, shape[0] - half, step), np.arange(half, shape[1] - half, step), indexing="ij")
    return r.ravel(), c.ravel()


def _standardised(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    return (image - image.mean()) / max(float(image.std()), 1e-12)


def twin_pairs(window: int = 9, step: int = 1, dwell_s: float = 0.01, seed: int = 0, **twin_options: Any) -> Pairs:
    """Pairs from a digital twin built with `twin_options` (TwinOptions fields; default 64
    channels over the plasmon range and `seed`); spectra in counts at `dwell_s` seconds."""
    options = TwinOptions(**{"seed": seed, "channels": 64, "drift_velocity_nm_s": (0.0, 0.0), "drift_walk_nm": 0.0,
                             **twin_options})
    twin = DigitalTwin(options)
    image = twin.overview().image
    rows, cols = _grid(image.shape, window, step)
    margin = twin.sample.margin
    local = twin.sample.sample_maps(rows + margin, cols + margin)
    counts = twin.expected_counts(local, dwell_s)
    spectra = np.random.default_rng([seed, 7]).poisson(counts).astype(np.float32)
    return Pairs(cut_patches(_standardised(image), rows, cols, window), spectra, counts.astype(np.float32), np.asarray(twin.axis), "eV", rows, cols,
                 image)


BEPS_MAPS = ("mean", "loop_area")


def beps_pairs(path: str | Path, window: int = 5, step: int = 1, image: str = "mean") -> Pairs:
    """Pairs from a BEPS file such as data/beps_pto_50x50.h5: patches of a map derived from the
    loops (`image`: "mean", the mean response over the voltage sweep; "loop_area") -> loops."""
    if image not in BEPS_MAPS:
        raise DataError(f"image must be one of {', '.join(BEPS_MAPS)}, got {image!r}")
    playback = beps_playback(path)
    cube, axis = np.asarray(playback.cube, dtype=np.float32), np.asarray(playback.axis)
    image = (cube.mean(axis=2) if image == "mean" else loop_area_map(cube, axis)).astype(np.float32)
    rows, cols = _grid(image.shape, window, step)
    return Pairs(cut_patches(_standardised(image), rows, cols, window), cube[rows, cols], None, axis, "V", rows, cols, image)
