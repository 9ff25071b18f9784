"""Scores of a 2-D latent space: k-NN R² of the target from the coordinates, σ–error rank
correlation, and exclusion regions.

Every measure works on coordinates min–max scaled to the unit square over the molecules drawn
(`unit_square`), so the VAE latent (unbounded) and the DKL latent (tanh-bounded, often using a
small part of (-1, 1)²) are compared on one scale.

Exclusion regions: the published observation is that a DKL latent leaves empty areas surrounded
by measured molecules. Here a point of the unit square is *inside* when it lies in the convex
hull of the measured molecules' coordinates, and *empty* when no molecule of the drawn sample
(measured or not) lies within `radius` of it. On a `grid` x `grid` lattice this gives:

- ``largest_empty_radius``: the largest distance from an inside grid point to its nearest
  molecule, i.e. the radius of the largest molecule-free disc centred inside the hull;
- ``empty_fraction``: the fraction of inside grid points that are empty;
- ``regions``: the number of connected empty areas (8-connected grid points) of at least
  `MIN_REGION_POINTS` points.
"""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree
from scipy.stats import spearmanr

MIN_REGION_POINTS = 4
"""Grid points an empty area needs to count as an exclusion region (smaller ones are noise)."""


def unit_square(points: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """`points` (n, 2) min–max scaled per axis to [0, 1] over `reference` (default: themselves)."""
    reference = points if reference is None else reference
    low, high = reference.min(axis=0), reference.max(axis=0)
    return (points - low) / np.where(high - low > 1e-12, high - low, 1.0)


def knn_r2(coords: np.ndarray, y: np.ndarray, k: int, test_fraction: float, seed: int) -> float:
    """R² on a held-out random fraction of the molecules of a k-NN regressor (distance in the
    unit-square latent) trained on the others: how much of the target the 2-D map organises."""
    from sklearn.metrics import r2_score
    from sklearn.neighbors import KNeighborsRegressor

    coords = unit_square(coords)
    order = np.random.default_rng([seed, 7]).permutation(len(y))
    n_test = max(1, int(round(test_fraction * len(y))))
    test, train = order[:n_test], order[n_test:]
    model = KNeighborsRegressor(n_neighbors=min(k, len(train))).fit(coords[train], y[train])
    return float(r2_score(y[test], model.predict(coords[test])))


def sigma_error_spearman(y: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> float:
    """Spearman rank correlation between predictive σ and |error| (NaN when either is constant)."""
    sd = np.sqrt(np.maximum(variance, 0.0))
    error = np.abs(np.asarray(y) - np.asarray(mean))
    if np.ptp(sd) == 0 or np.ptp(error) == 0:
        return float("nan")
    return float(spearmanr(sd, error).statistic)


def exclusion_regions(coords: np.ndarray, measured: np.ndarray, radius: float, grid: int) -> dict[str, float]:
    """Exclusion-region measures (module doc) of a latent map: `coords` (n, 2) of the drawn
    molecules, `measured` a boolean mask or row indices of the measured ones among them;
    `hull_area` is the measured hull's area in the unit square."""
    found = _grid_distances(coords, measured, grid)
    if found is None:
        return {"largest_empty_radius": 0.0, "empty_fraction": 0.0, "regions": 0, "hull_area": 0.0}
    inside, distance, area = found
    holes = inside & (distance > radius)
    labels, _ = ndimage.label(holes, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    return {
        "largest_empty_radius": float(distance[inside].max(initial=0.0)),
        "empty_fraction": float(holes.sum() / max(inside.sum(), 1)),
        "regions": int((sizes >= MIN_REGION_POINTS).sum()),
        "hull_area": area,
    }


def empty_mask(coords: np.ndarray, measured: np.ndarray, radius: float, grid: int) -> np.ndarray:
    """(grid, grid) boolean map of the empty inside points, indexed [x, y] over the unit
    square of `coords` (for drawing)."""
    found = _grid_distances(coords, measured, grid)
    return np.zeros((grid, grid), bool) if found is None else found[0] & (found[1] > radius)


def _grid_distances(coords: np.ndarray, measured: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Over a grid x grid lattice of the unit square: which points lie inside the measured hull,
    their distance to the nearest drawn molecule (0 outside) and the hull's area; None when
    the measured points span no area."""
    unit = unit_square(coords)
    hull_points = unit[measured]
    try:
        hull = ConvexHull(hull_points)
    except (QhullError, ValueError):
        return None
    axis = (np.arange(grid) + 0.5) / grid
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    lattice = np.column_stack([gx.ravel(), gy.ravel()])
    inside = Path(hull_points[hull.vertices]).contains_points(lattice)
    distance = np.zeros(len(lattice))
    if inside.any():
        distance[inside] = cKDTree(unit).query(lattice[inside])[0]
    return inside.reshape(grid, grid), distance.reshape(grid, grid), float(hull.volume)
