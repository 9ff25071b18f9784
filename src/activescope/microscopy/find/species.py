"""Species from the lattice: class decisions per sublattice instead of per atom.

A network that keys on brightness labels each column on its own, so a contrast it has not seen
(another Z exponent, thickness, detector angles) can flip many columns of one sublattice at
once. Columns of one sublattice are the same species in a perfect crystal, so here the found
atoms are

1. **fitted to a 2-D lattice** (:func:`fit_lattice_vectors`): the difference vectors to each
   atom's nearest neighbours are clustered; a cluster is a lattice translation when almost
   every atom finds another atom at that offset (bond vectors between sublattices only score
   about 1/B); the two shortest non-collinear translations are the lattice vectors;
2. **split into sublattices** (:func:`split_sublattices`): atoms linked by a lattice vector
   form connected pieces, and pieces whose atoms differ by a whole lattice translation are
   merged. Links are local, so slow drift or strain across the frame does not break them;
3. **classed per sublattice** (:func:`assign_species`):

   * with a known ``lattice`` and as many sublattices as its basis has columns, sublattices are
     **ranked** by mean brightness — the measured column ``intensity`` when given, otherwise
     the network's expected brightness ``Σ_c p_c I_c`` — and matched to the basis columns
     ranked by their ``Σ Z^1.7`` (the order is the same for any exponent in 1.3–2.0). A global
     brightness shift moves every sublattice alike and cannot change the ranking;
   * otherwise each sublattice takes the **majority class** of its confident atoms.

   Atoms with a confident per-atom ``keep`` class (by default the lattice's ``dopant``) and
   atoms on no sublattice (small isolated pieces) keep the network's class.

The finders (``Predictor``, ``Ensemble``; ``atoms find --species lattice``, the default) run
this frame by frame through :func:`species_by_frame`; ELIT's pseudo-labels use it too, and
:func:`missing_sites` gives the sublattice sites where a finder found nothing.

Positions are in pixels; nothing here needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from activescope.engine.errors import DataError

__all__ = ["SPECIES_MODES", "SpeciesAssignment", "fit_lattice_vectors", "split_sublattices",
           "assign_species", "assign_species_table", "fit_lattice", "lattice_vector_length_px",
           "missing_sites", "sample_intensity", "species_by_frame"]

#: How a finder decides classes: per sublattice (default) or per atom, as the network says.
SPECIES_MODES = ("lattice", "network")


@dataclass
class SpeciesAssignment:
    """Result of :func:`assign_species`.

    ``cls``: (N,) class per atom after the sublattice decision. ``sublattice``: (N,) sublattice
    index (-1: on none; those atoms keep their own class). ``vectors``: (2, 2) lattice vectors
    (rows, pixels). ``sublattice_class``: class given to each sublattice. ``method``: "rank"
    or "vote".
    """

    cls: np.ndarray
    sublattice: np.ndarray
    vectors: np.ndarray
    sublattice_class: dict[int, int] = field(default_factory=dict)
    method: str = "vote"


def _fold(v: np.ndarray) -> np.ndarray:
    """v and -v as one vector: the one in the upper half-plane."""
    flip = (v[:, 1] < 0) | ((v[:, 1] == 0) & (v[:, 0] < 0))
    return np.where(flip[:, None], -v, v)


def _translation_score(xy: np.ndarray, tree: cKDTree, v: np.ndarray, tol: float) -> float:
    """Share of atoms p (with p + v inside the atoms' bounding box) that have an atom at p + v."""
    target = xy + v
    lo, hi = xy.min(axis=0) + tol, xy.max(axis=0) - tol
    inside = ((target >= lo) & (target <= hi)).all(axis=1)
    if inside.sum() < 3:
        return 0.0
    distance, _ = tree.query(target[inside], distance_upper_bound=tol)
    return float(np.isfinite(distance).mean())


def fit_lattice_vectors(xy: np.ndarray, expected_length: float | None = None,
                        tol: float = 0.2, min_score: float = 0.7,
                        neighbours: int = 12, max_sources: int = 200) -> np.ndarray:
    """Two lattice vectors (2, 2), rows, in the units of ``xy`` (N, 2).

    ``tol`` is the matching tolerance as a share of the nearest-neighbour distance;
    ``min_score`` the share of atoms that must find a partner for an offset to count as a
    translation; the offsets come from at most ``max_sources`` atoms (a fixed random sample).
    ``expected_length`` (optional, same units) picks, among translations, those
    closest to that length (needed where a sub-cell translation also scores, e.g. the a/2
    square of column positions in SrTiO3 [001]). Raises ``DataError`` when no lattice is found.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 6:
        raise DataError(f"need at least 6 atom positions (N, 2) to fit a lattice, got "
                        f"shape {xy.shape}")
    tree = cKDTree(xy)
    k = min(neighbours, len(xy) - 1)
    distance, index = tree.query(xy, k=k + 1)
    nn = float(np.median(distance[:, 1]))
    if not nn > 0:
        raise DataError("atom positions coincide; no lattice can be fitted")
    tol_px = tol * nn
    # offsets from a sample of atoms suffice to find the clusters (and keep the fit fast)
    sources = np.arange(len(xy))
    if len(xy) > max_sources:
        sources = np.random.default_rng(0).choice(len(xy), max_sources, replace=False)
    diffs = _fold((xy[index[sources, 1:]] - xy[sources, None, :]).reshape(-1, 2))
    diff_tree = cKDTree(diffs)
    counts = diff_tree.query_ball_point(diffs, tol_px, return_length=True)
    # greedy clustering, densest offset first; offsets near a chosen one are covered by it
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] >= 0.1 * len(diffs) / k]
    covered = np.zeros(len(diffs), dtype=bool)
    centres: list[np.ndarray] = []
    while len(centres) < 4 * k:
        open_ = order[~covered[order]]
        if not len(open_):
            break
        seed = diffs[open_[0]]
        centres.append(diffs[diff_tree.query_ball_point(seed, tol_px)].mean(axis=0))
        covered[diff_tree.query_ball_point(seed, 2 * tol_px)] = True
    translations = [c for c in centres if _translation_score(xy, tree, c, tol_px) >= min_score]
    if expected_length is not None:
        translations = [c for c in translations
                        if abs(np.linalg.norm(c) / expected_length - 1.0) < 0.15]
    translations.sort(key=lambda c: float(np.linalg.norm(c)))
    if not translations:
        raise DataError("no lattice found: no offset repeats for most atoms")
    a1 = translations[0]
    for a2 in translations[1:]:
        sine = abs(a1[0] * a2[1] - a1[1] * a2[0]) / (np.linalg.norm(a1) * np.linalg.norm(a2))
        if sine > 0.3:
            return np.stack([a1, a2])
    raise DataError("no lattice found: only one direction repeats")


def split_sublattices(xy: np.ndarray, vectors: np.ndarray, tol: float = 0.2,
                      min_size: int = 3) -> np.ndarray:
    """Sublattice index per atom (-1: none), largest sublattice first.

    Atoms one lattice vector apart are linked; linked pieces whose atoms differ by a whole
    translation (fractional offset within ``tol`` of an integer) are merged. Pieces smaller
    than ``min_size`` atoms after merging get -1.
    """
    xy = np.asarray(xy, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(xy)
    tree = cKDTree(xy)
    nn = float(np.median(tree.query(xy, k=2)[0][:, 1]))
    tol_px = tol * nn
    rows, cols = [], []
    for v in vectors:
        distance, j = tree.query(xy + v, distance_upper_bound=tol_px)
        ok = np.isfinite(distance)
        rows.append(np.flatnonzero(ok))
        cols.append(j[ok])
    rows_, cols_ = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows_)), (rows_, cols_)), shape=(n, n))
    _, piece = connected_components(graph, directed=False)

    # merge pieces that sit on the same sublattice: whole-translation offsets between neighbours
    k = min(12, n - 1)
    _, index = tree.query(xy, k=k + 1)
    i = np.repeat(np.arange(n), k)
    j = index[:, 1:].ravel()
    frac = np.linalg.solve(vectors.T, (xy[j] - xy[i]).T).T
    whole = (np.abs(frac - np.rint(frac)) < tol).all(axis=1) & (piece[i] != piece[j])
    pairs = np.stack([piece[i[whole]], piece[j[whole]]], axis=1)
    if len(pairs):
        pair_id, support = np.unique(np.sort(pairs, axis=1), axis=0, return_counts=True)
        sizes = np.bincount(piece)
        needed = np.minimum(2, sizes[pair_id].min(axis=1))
        pair_id = pair_id[support >= needed]
        n_pieces = int(piece.max()) + 1
        merge = coo_matrix((np.ones(len(pair_id)), (pair_id[:, 0], pair_id[:, 1])),
                           shape=(n_pieces, n_pieces))
        _, group = connected_components(merge, directed=False)
        piece = group[piece]
    labels, sizes = np.unique(piece, return_counts=True)
    order = np.argsort(-sizes, kind="stable")
    sublattice = np.full(n, -1, dtype=np.int64)
    for rank, o in enumerate(o for o in order if sizes[o] >= min_size):
        sublattice[piece == labels[o]] = rank
    return sublattice


def sample_intensity(image: np.ndarray, xy: np.ndarray, radius_px: float = 1.5) -> np.ndarray:
    """Mean of ``image`` within ``radius_px`` of each position (pixels clipped to the frame)."""
    image = np.asarray(image, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    reach = int(np.ceil(radius_px))
    oy, ox = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    disk = ox**2 + oy**2 <= max(radius_px, 0.5) ** 2
    ox, oy = ox[disk], oy[disk]
    col = np.clip(np.rint(xy[:, 0, None]).astype(np.int64) + ox[None, :], 0, image.shape[1] - 1)
    row = np.clip(np.rint(xy[:, 1, None]).astype(np.int64) + oy[None, :], 0, image.shape[0] - 1)
    return image[row, col].mean(axis=1)


def _expected_basis(lattice: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Per basis column: class and relative HAADF brightness; and the dopant class index."""
    from activescope.microscopy.sim.lattices import projected_lattice

    lat = projected_lattice(lattice)
    brightness = (lat.column_z.astype(float) ** 1.7).sum(axis=1)
    return lat.column_class, brightness, len(lat.classes) - 1


def assign_species(xy: np.ndarray, probs: np.ndarray | None = None,
                   intensity: np.ndarray | None = None, lattice: str | None = None,
                   vectors: np.ndarray | None = None, expected_length: float | None = None,
                   confidence: float = 0.6, keep: tuple[int, ...] | None = None,
                   tol: float = 0.2) -> SpeciesAssignment:
    """Class per atom decided per sublattice (see the module text).

    ``xy``: (N, 2) positions (pixels). ``probs``: (N, C) class probabilities with column 0 the
    background (rows need not sum to 1; a one-hot of the network's class works). ``intensity``:
    (N,) measured column brightness (e.g. :func:`sample_intensity`). At least one of the two.
    ``lattice``: material name (``"mos2"``, ...), enables ranking against the expected Z order.
    ``vectors``: lattice vectors if already known; ``expected_length``: lattice-vector length in
    pixels (from the pixel size) to guide the fit. ``keep``: classes an atom keeps when its own
    probability for them is at least ``confidence`` (default: the lattice's dopant class).
    """
    xy = np.asarray(xy, dtype=np.float64)
    n = len(xy)
    if probs is None and intensity is None:
        raise DataError("assign_species needs class probabilities or column intensities")
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape[0] != n or probs.ndim != 2 or probs.shape[1] < 2:
            raise DataError(f"probs must be (N, C) with C >= 2 for {n} atoms, got {probs.shape}")
    if intensity is not None:
        intensity = np.asarray(intensity, dtype=np.float64)
        if intensity.shape != (n,):
            raise DataError(f"intensity must have one value per atom ({n}), got "
                            f"{intensity.shape}")
    if vectors is None:
        vectors = fit_lattice_vectors(xy, expected_length, tol=tol)
    sublattice = split_sublattices(xy, vectors, tol=tol)
    n_sub = int(sublattice.max()) + 1

    basis_class = basis_brightness = None
    if lattice is not None:
        basis_class, basis_brightness, dopant = _expected_basis(lattice)
        keep = (dopant,) if keep is None else keep
    keep = () if keep is None else tuple(keep)
    own = probs.argmax(axis=1) if probs is not None else None
    if own is not None:
        own = np.where(own == 0, 1 + probs[:, 1:].argmax(axis=1), own)
    cls = own.copy() if own is not None else np.zeros(n, dtype=np.int64)

    # atoms confidently of a kept class (dopants) neither vote nor get overruled, unless they
    # are most of their sublattice: then the kept class is the host, not a dopant
    kept = np.zeros(n, dtype=bool)
    if probs is not None:
        for c in keep:
            if c < probs.shape[1]:
                kept |= (own == c) & (probs[:, c] >= confidence)
        on = sublattice >= 0
        kept_share = (np.bincount(sublattice[on], weights=kept[on], minlength=n_sub)
                      / np.maximum(np.bincount(sublattice[on], minlength=n_sub), 1))
        kept &= ~on | (kept_share[np.maximum(sublattice, 0)] < 0.5)

    decided: dict[int, int] = {}
    method = "vote"
    if basis_class is not None and n_sub == len(basis_class):
        method = "rank"
        if intensity is not None:
            score = intensity
        else:
            per_class = np.zeros(probs.shape[1])
            for c, b in zip(basis_class, basis_brightness):
                per_class[c] = max(per_class[c], b)
            weights = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
            score = weights @ per_class
        on = sublattice >= 0
        mean = (np.bincount(sublattice[on], weights=score[on], minlength=n_sub)
                / np.bincount(sublattice[on], minlength=n_sub))
        by_measured = np.argsort(mean, kind="stable")
        by_expected = np.argsort(basis_brightness, kind="stable")
        decided = {int(s): int(basis_class[b]) for s, b in zip(by_measured, by_expected)}
    elif probs is not None:
        confident = probs.max(axis=1) >= confidence
        for s in range(n_sub):
            members = (sublattice == s) & ~kept
            voters = members & confident
            voters = voters if voters.any() else members
            if voters.any():
                decided[s] = int(np.bincount(own[voters], minlength=probs.shape[1]).argmax())
    else:
        raise DataError("without class probabilities, assign_species needs the lattice name "
                        "and as many sublattices as its basis has columns")
    for s, c in decided.items():
        cls[(sublattice == s) & ~kept] = c
    return SpeciesAssignment(cls=cls.astype(np.int64), sublattice=sublattice,
                             vectors=np.asarray(vectors, dtype=np.float64),
                             sublattice_class=decided, method=method)


def assign_species_table(atoms: pd.DataFrame, image: np.ndarray | None = None,
                         lattice: str | None = None, n_classes: int | None = None,
                         **kwargs) -> pd.DataFrame:
    """:func:`assign_species` on an atom table from ``find_atoms`` (one frame).

    Uses ``cls`` and ``class_score`` as probabilities (the rest spread over the other classes)
    and, when ``image`` is given, the column intensities sampled from it. Returns a copy with
    ``cls`` replaced, the network's class in ``cls_network`` and ``sublattice`` added.
    """
    if not {"x", "y", "cls"} <= set(atoms.columns):
        raise DataError("atom table needs columns x, y and cls")
    xy = atoms[["x", "y"]].to_numpy(dtype=np.float64)
    own = atoms["cls"].to_numpy(dtype=np.int64)
    if n_classes is None:
        if lattice is not None:
            from activescope.microscopy.sim.lattices import lattice_classes

            n_classes = len(lattice_classes(lattice))
        else:
            n_classes = int(own.max()) + 1
    share = (atoms["class_score"].to_numpy(dtype=np.float64) if "class_score" in atoms.columns
             else np.ones(len(atoms)))
    probs = np.zeros((len(atoms), n_classes))
    probs[:, 1:] = ((1.0 - share) / max(n_classes - 2, 1))[:, None]
    probs[np.arange(len(atoms)), own] = share
    intensity = sample_intensity(image, xy) if image is not None else None
    result = assign_species(xy, probs, intensity, lattice=lattice, **kwargs)
    table = atoms.copy()
    table["cls_network"] = own
    table["cls"] = result.cls
    table["sublattice"] = result.sublattice
    return table


def lattice_vector_length_px(lattice: str, pixel_size: float) -> float:
    """Length of the shortest lattice vector of ``lattice`` in pixels of ``pixel_size`` Å."""
    from activescope.microscopy.sim.lattices import projected_lattice

    return float(np.linalg.norm(projected_lattice(lattice).cell, axis=1).min() / pixel_size)


def fit_lattice(xy: np.ndarray, lattice: str | None = None,
                pixel_size: float | None = None) -> np.ndarray:
    """:func:`fit_lattice_vectors` guided by the material's lattice-vector length at
    ``pixel_size`` Å/px when both are known, unguided when that fails or they are not.

    Raises ``DataError`` when no lattice is found either way.
    """
    if lattice is not None and pixel_size is not None:
        try:
            return fit_lattice_vectors(xy, lattice_vector_length_px(lattice, pixel_size))
        except DataError:
            pass
    return fit_lattice_vectors(xy)


def species_by_frame(atoms: pd.DataFrame, images: np.ndarray, lattice: str | None = None,
                     pixel_size: float | None = None, n_classes: int | None = None
                     ) -> pd.DataFrame:
    """:func:`assign_species_table` on every frame of a finder's table (``frame`` column).

    ``images``: (N, H, W) frames the atoms were found in (intensities are sampled there).
    ``pixel_size`` (Å/px of those frames) guides the lattice fit when ``lattice`` is known.
    Confidence is ``class_score``, else ``1 - class_disagreement`` (ensembles). A frame where
    no lattice is found keeps the network's classes and gets ``sublattice`` -1 throughout.
    """
    if atoms.empty:
        return atoms.assign(cls_network=atoms["cls"], sublattice=np.zeros(0, dtype=np.int64))
    table = atoms
    if "class_score" not in table.columns and "class_disagreement" in table.columns:
        table = table.assign(class_score=1.0 - table["class_disagreement"].astype(float))
    frames = table["frame"].to_numpy() if "frame" in table.columns else np.zeros(len(table), int)
    parts = []
    for k in np.unique(frames):
        part = table[frames == k]
        try:
            vectors = fit_lattice(part[["x", "y"]].to_numpy(dtype=np.float64), lattice,
                                  pixel_size)
            decided = assign_species_table(part, images[k], lattice, n_classes,
                                           vectors=vectors)
        except DataError:
            decided = part.assign(cls_network=part["cls"], sublattice=-1)
        parts.append(decided)
    out = pd.concat(parts).loc[atoms.index]
    return atoms.assign(cls=out["cls"].to_numpy(), cls_network=out["cls_network"].to_numpy(),
                        sublattice=out["sublattice"].to_numpy())


def missing_sites(xy: np.ndarray, sublattice: np.ndarray, vectors: np.ndarray,
                  shape: tuple[int, int], steps: int = 2, margin_px: float = 2.0,
                  tol: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Sites of each sublattice where no atom was found: positions (M, 2) and sublattice (M,).

    Candidates are the atoms of a sublattice shifted by up to ``steps`` lattice vectors along
    each direction, inside the ``shape`` (rows, cols) frame by ``margin_px``; a candidate with
    no atom within ``tol`` x the nearest-neighbour distance is missing. Candidates of one site
    are merged (mean position). Positions in pixels.
    """
    xy = np.asarray(xy, dtype=np.float64)
    on = sublattice >= 0
    if on.sum() < 2:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    tree = cKDTree(xy)
    nn = float(np.median(tree.query(xy, k=2)[0][:, 1]))
    i, j = np.meshgrid(np.arange(-steps, steps + 1), np.arange(-steps, steps + 1))
    shifts = np.stack([i.ravel(), j.ravel()], axis=1) @ np.asarray(vectors, dtype=np.float64)
    shifts = shifts[np.linalg.norm(shifts, axis=1) > 0]
    candidate = (xy[on][:, None, :] + shifts[None]).reshape(-1, 2)
    owner = np.repeat(sublattice[on], len(shifts))
    height, width = shape
    inside = ((candidate[:, 0] >= margin_px) & (candidate[:, 0] <= width - 1 - margin_px)
              & (candidate[:, 1] >= margin_px) & (candidate[:, 1] <= height - 1 - margin_px))
    candidate, owner = candidate[inside], owner[inside]
    distance, _ = tree.query(candidate, distance_upper_bound=tol * nn)
    candidate, owner = candidate[~np.isfinite(distance)], owner[~np.isfinite(distance)]
    if not len(candidate):
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    pairs = cKDTree(candidate).query_pairs(tol * nn, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                       shape=(len(candidate), len(candidate)))
    _, site = connected_components(graph, directed=False)
    count = np.bincount(site)
    centre = np.stack([np.bincount(site, weights=candidate[:, d]) / count for d in (0, 1)],
                      axis=1)
    first = np.unique(site, return_index=True)[1]
    return centre, owner[first]
