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


# --- pixel size: frames resampled to a network's training scale, lattice spacing checks -----

MIN_ATOMS_FOR_SPACING = 8


def rescale_frame(image: np.ndarray, factor: float) -> np.ndarray:
    """Resample a frame ``(H, W)`` by ``factor`` (> 1 enlarges) with cubic splines, vectorised.

    The output has ``round(H * factor) x round(W * factor)`` pixels and pixel centres are
    aligned (``grid_mode``): output pixel ``i`` samples input coordinate
    ``(i + 0.5) * H / H_out - 0.5``, the mapping ``to_original_pixels`` inverts. Shrinking is
    preceded by a Gaussian anti-alias blur. ``factor`` within 0.1 % of 1 returns the frame.
    """
    image = np.asarray(image, dtype=np.float32)
    if not (np.isfinite(factor) and factor > 0):
        raise DataError(f"rescale factor must be positive, got {factor}")
    if abs(factor - 1.0) < 1e-3:
        return image
    shape = tuple(max(int(round(n * factor)), 1) for n in image.shape)
    if factor < 1.0:
        image = ndimage.gaussian_filter(image, sigma=0.5 * np.sqrt(1.0 / factor**2 - 1.0),
                                        mode="nearest")
    zoom = [new / old for new, old in zip(shape, image.shape)]
    return ndimage.zoom(image, zoom, order=3, mode="nearest", grid_mode=True).astype(np.float32)


def to_original_pixels(atoms: pd.DataFrame, original_shape: tuple[int, int],
                       scaled_shape: tuple[int, int], pixel_size: float | None) -> pd.DataFrame:
    """Map ``x``/``y`` found on a ``rescale_frame`` output back to the original frame's pixels.

    Pixel-valued spreads (``pos_spread_px``) are rescaled too; with ``pixel_size`` (Å/px of the
    original frame) columns ``x_A``/``y_A`` give the positions in Å.
    """
    sy = original_shape[0] / scaled_shape[0]
    sx = original_shape[1] / scaled_shape[1]
    table = atoms.copy()
    if (sy, sx) != (1.0, 1.0):
        table["x"] = (table["x"].astype(float) + 0.5) * sx - 0.5
        table["y"] = (table["y"].astype(float) + 0.5) * sy - 0.5
        if "pos_spread_px" in table:
            table["pos_spread_px"] = table["pos_spread_px"].astype(float) * np.sqrt(sx * sy)
    return with_angstrom(table, pixel_size)


def with_angstrom(atoms: pd.DataFrame, pixel_size: float | None) -> pd.DataFrame:
    """``atoms`` with ``x_A``/``y_A`` (Å) after ``x``/``y`` when ``pixel_size`` (Å/px) is known."""
    table = atoms.drop(columns=[c for c in ("x_A", "y_A") if c in atoms.columns])
    if pixel_size is None or len(table.columns) < 2:
        return table
    at = list(table.columns).index("y") + 1 if "y" in table.columns else len(table.columns)
    table.insert(at, "x_A", table["x"].astype(float) * pixel_size)
    table.insert(at + 1, "y_A", table["y"].astype(float) * pixel_size)
    return table


def nearest_neighbour_spacing(xy: np.ndarray) -> float:
    """Median distance from each point ``(n, 2)`` to its nearest neighbour (NaN below 2 points)."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if len(xy) < 2:
        return float("nan")
    distance, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(distance[:, 1]))


def lattice_spacing_angstrom(lattice: str, strain: float = 0.0) -> float:
    """Median nearest-neighbour distance between the projected columns of ``lattice``, Å."""
    from activescope.microscopy.sim.lattices import projected_lattice

    lat = projected_lattice(lattice)
    shifts = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=float) @ lat.cell
    tiled = (lat.column_xy[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
    distance, _ = cKDTree(tiled).query(lat.column_xy, k=2)
    return float(np.median(distance[:, 1])) * (1.0 + strain)


def check_lattice_spacing(atoms: pd.DataFrame, pixel_size: float, expected_angstrom: float,
                          tolerance: float = 0.10) -> str | None:
    """None when the found atoms' spacing agrees with ``expected_angstrom``, else why not.

    The spacing is the median nearest-neighbour distance of the atoms (``x``/``y`` in pixels of
    ``pixel_size`` Å/px); it must lie within ``tolerance`` (relative) of the expected spacing.
    Fewer than ``MIN_ATOMS_FOR_SPACING`` atoms cannot tell, which is reported too.
    """
    if len(atoms) < MIN_ATOMS_FOR_SPACING:
        return (f"only {len(atoms)} atoms found: too few to check the lattice spacing "
                f"(expected {expected_angstrom:.2f} Å between neighbours)")
    found = nearest_neighbour_spacing(atoms[["x", "y"]].to_numpy()) * pixel_size
    mismatch = found / expected_angstrom - 1.0
    if abs(mismatch) > tolerance:
        return (f"atom spacing {found:.2f} Å differs from the model's lattice "
                f"({expected_angstrom:.2f} Å) by {mismatch:+.0%}: wrong material or pixel size "
                f"({pixel_size:.4g} Å/px)?")
    return None
