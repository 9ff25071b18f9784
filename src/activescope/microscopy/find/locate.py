"""Class-probability maps to atom tables: connected components, centroids, class votes.

A segmentation network gives per-pixel class probabilities ``(N, C, H, W)`` (softmax, class 0 =
background). An atom is a connected region where the foreground probability ``1 - p_0``
exceeds ``threshold``; its position is the centroid of that region, weighted when ``refine``
is on by the foreground probability above the threshold (weights fall to zero at the region's
edge, so the pixelated boundary hardly biases the sub-pixel position), its class is the atom
class with the largest summed probability over the region, and its ``score`` is the region's
peak foreground probability. Everything is computed
for all frames at once with one ``scipy.ndimage.label`` call and ``np.bincount`` sums.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from activescope.engine.errors import DataError

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Label masks ``(..., H, W)`` as exact float32 probabilities ``(..., C, H, W)``."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"labels must lie in [0, {n_classes - 1}], "
                        f"got {labels.min()}..{labels.max()}")
    classes = np.arange(n_classes).reshape((n_classes,) + (1, 1))
    return (labels[..., None, :, :] == classes).astype(np.float32)


def _check_prob(prob: np.ndarray) -> np.ndarray:
    prob = np.asarray(prob)
    if prob.ndim not in (3, 4):
        raise DataError("class probabilities must be (C, H, W) or (N, C, H, W), "
                        f"got shape {prob.shape}")
    if prob.shape[-3] < 2:
        raise DataError(f"need at least 2 classes (background + atoms), got {prob.shape[-3]}")
    if not np.isfinite(prob.sum(dtype=np.float64)):
        raise DataError("class probabilities contain NaN or inf")
    return prob if prob.ndim == 4 else prob[None]


def _suppress_close(table: pd.DataFrame, min_distance_px: float, frame_height: int) -> pd.DataFrame:
    """Drop every atom that has a higher-scoring atom in the same frame closer than the limit."""
    if min_distance_px <= 0 or len(table) < 2:
        return table
    stride = frame_height + 2.0 * min_distance_px + 1.0
    points = np.column_stack([table["x"], table["y"] + table["frame"] * stride])
    pairs = cKDTree(points).query_pairs(min_distance_px, output_type="ndarray")
    if len(pairs) == 0:
        return table
    score = table["score"].to_numpy()
    i, j = pairs[:, 0], pairs[:, 1]
    loser = np.where(score[i] < score[j], i, j)
    return table.drop(index=table.index[np.unique(loser)])


def check_find_settings(threshold: float, min_distance_px: float) -> None:
    """Reject settings ``find_atoms`` cannot honour, so finders fail before running a network.

    ``threshold`` is a foreground probability in [0, 1); ``min_distance_px`` is a distance in
    pixels, at least 0 (0 keeps atoms however close they are).
    """
    if not 0.0 <= threshold < 1.0:
        raise DataError(f"threshold must lie in [0, 1), got {threshold}")
    if not min_distance_px >= 0.0:
        raise DataError(f"min distance between atoms must be at least 0 pixels, "
                        f"got {min_distance_px} px")


def find_atoms(prob: np.ndarray, threshold: float = 0.5, min_distance_px: float = 2.0,
               refine: bool = True, edge_px: float = 0.0, min_area_px: int = 1) -> pd.DataFrame:
    """Atoms in class-probability maps ``(C, H, W)`` or ``(N, C, H, W)``.

    Returns one row per atom with ``x`` (column index) and ``y`` (row index) in pixels,
    ``cls`` (≥ 1), ``score`` (peak foreground probability), ``class_score`` (share of the
    region's atom-class probability held by ``cls``), ``area`` (pixels) and, for a batch,
    ``frame``. Atoms closer than ``edge_px`` to the border, regions smaller than
    ``min_area_px`` and the weaker of two atoms closer than ``min_distance_px`` are dropped.
    """
    check_find_settings(threshold, min_distance_px)
    batched = np.asarray(prob).ndim == 4
    prob = _check_prob(prob)
    n, n_classes, height, width = prob.shape
    foreground = 1.0 - prob[:, 0].astype(np.float32)
    regions, n_regions = ndimage.label(foreground > threshold, structure=_IN_PLANE)
    flat = regions.ravel()
    pixels = np.flatnonzero(flat)
    region = flat[pixels] - 1
    frame, within = np.divmod(pixels, height * width)
    row, col = np.divmod(within, width)
    fg = foreground.ravel()[pixels]
    weight = fg - threshold if refine else np.ones_like(fg)

    total = np.bincount(region, weights=weight, minlength=n_regions)
    x = np.bincount(region, weights=weight * col, minlength=n_regions) / total
    y = np.bincount(region, weights=weight * row, minlength=n_regions) / total
    area = np.bincount(region, minlength=n_regions)
    peak = np.zeros(n_regions, dtype=np.float32)
    np.maximum.at(peak, region, fg)
    region_frame = np.zeros(n_regions, dtype=np.int64)
    region_frame[region] = frame
    atom_prob = prob.reshape(n, n_classes, height * width)[frame[:, None],
                                                           np.arange(1, n_classes)[None, :],
                                                           within[:, None]]
    class_mass = np.stack([np.bincount(region, weights=atom_prob[:, k], minlength=n_regions)
                           for k in range(n_classes - 1)], axis=1)
    cls = class_mass.argmax(axis=1) + 1
    class_score = class_mass.max(axis=1) / np.maximum(class_mass.sum(axis=1), 1e-12)

    table = pd.DataFrame({"x": x, "y": y, "cls": cls, "score": peak.astype(np.float64),
                          "class_score": class_score, "area": area, "frame": region_frame})
    keep = ((table["area"] >= min_area_px)
            & table["x"].between(edge_px, width - 1 - edge_px)
            & table["y"].between(edge_px, height - 1 - edge_px))
    table = _suppress_close(table[keep], min_distance_px, height).reset_index(drop=True)
    return table if batched else table.drop(columns="frame")


def save_atoms(table: pd.DataFrame, path: str | Path) -> Path:
    """Write an atom table as ``.csv`` or ``.parquet`` (Parquet needs pyarrow installed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table.to_csv(path, index=False)
    elif suffix == ".parquet":
        try:
            table.to_parquet(path, index=False)
        except ImportError as err:
            raise DataError(f"writing {path.name} needs pyarrow; install it or use .csv") from err
    else:
        raise DataError(f"atom tables are saved as .csv or .parquet, got {path.name!r}")
    return path


def read_atoms(path: str | Path) -> pd.DataFrame:
    """Read an atom table written by :func:`save_atoms` (needs at least columns x and y)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"atom table {path} does not exist")
    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except (ImportError, ValueError, OSError) as err:
        raise DataError(f"cannot read atom table {path}: {err}") from err
    missing = {"x", "y"} - set(table.columns)
    if missing:
        raise DataError(f"atom table {path} lacks column(s) {', '.join(sorted(missing))}")
    return table
