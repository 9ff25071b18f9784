"""Atom-centred patches: one bilinear gather for all atoms of a frame.

Each patch is a `side` x `side` grid spanning `window_px` pixels of the frame, centred on the
atom's sub-pixel position (x = column, y = row), so frames of different pixel sizes give
patches of the same physical size when `window_px` = window in Å / pixel size. The frame is
first scaled to [0, 1] by its 1st and 99th percentiles (clipped), so frames of different
contrast and dose share one intensity scale.

Border handling (`border`): ``"drop"`` (the default) leaves out every atom whose window
crosses the frame's edge and reports how many; ``"reflect"`` keeps them and mirrors the frame
at its edges (the patch is then partly made up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from activescope.engine.errors import DataError

Border = Literal["drop", "reflect"]


@dataclass(frozen=True)
class Patches:
    """patches: (n, side, side) float32 in about [0, 1]; kept: (n_atoms,) bool, which input
    atoms have a patch (all with border="reflect"); n_dropped: atoms left out at the border."""

    patches: np.ndarray
    kept: np.ndarray

    @property
    def n_dropped(self) -> int:
        """Atoms whose window crossed the frame's border and were left out."""
        return int((~self.kept).sum())


def scale_frame(image: np.ndarray) -> np.ndarray:
    """`image` mapped to [0, 1] by its 1st and 99th percentiles (clipped), float32."""
    image = np.asarray(image, dtype=np.float32)
    low, high = np.percentile(image, [1.0, 99.0])
    return np.clip((image - low) / max(float(high - low), 1e-12), 0.0, 1.0).astype(np.float32)


def extract_patches(image: np.ndarray, x: np.ndarray, y: np.ndarray, window_px: float, side: int = 20,
                    border: Border = "drop") -> Patches:
    """Patches of `image` around atoms at (x[k], y[k]) (pixels; x = column index).

    window_px: patch width in frame pixels (> 1); side: patch pixels per axis (>= 4);
    border: "drop" or "reflect" (module docstring).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise DataError(f"patch extraction needs a 2-D frame, got shape {image.shape}")
    if side < 4:
        raise DataError(f"patch side must be at least 4 pixels, got {side}")
    if not window_px > 1:
        raise DataError(f"patch window must span more than 1 pixel, got {window_px:.3g}")
    if border not in ("drop", "reflect"):
        raise DataError(f"border must be 'drop' or 'reflect', got {border!r}")
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise DataError(f"x and y have different lengths ({len(x)} and {len(y)})")
    half = window_px / 2.0
    h, w = image.shape
    inside = (x - half >= 0) & (x + half <= w - 1) & (y - half >= 0) & (y + half <= h - 1)
    kept = inside if border == "drop" else np.ones_like(inside)
    offsets = np.linspace(-half, half, side)
    rows = y[kept, None, None] + offsets[None, :, None]
    cols = x[kept, None, None] + offsets[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    values = ndimage.map_coordinates(scale_frame(image), np.stack([rows, cols]), order=1, mode="mirror")
    return Patches(patches=values.astype(np.float32), kept=kept)


def rotate_patches(patches: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Each patch (n, s, s) rotated by angles[k] radians (counter-clockwise) about its centre,
    bilinear, with the mirrored patch outside; for invariance checks."""
    patches = np.asarray(patches, dtype=np.float32)
    n, s, _ = patches.shape
    c = (s - 1) / 2.0
    grid = np.arange(s) - c
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    src_rows = c + cos * rows - sin * cols
    src_cols = c + sin * rows + cos * cols
    index = np.broadcast_to(np.arange(n)[:, None, None], src_rows.shape).astype(np.float64)
    return ndimage.map_coordinates(patches, np.stack([index, src_rows, src_cols]), order=1,
                                   mode="mirror").astype(np.float32)
