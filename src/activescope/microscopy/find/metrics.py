"""Detection metrics: optimal one-to-one matching of found atoms to true atoms.

A predicted atom *matches* a true atom when they are paired by the minimum-cost one-to-one
assignment among pairs no farther apart than ``tol_px``; leaving an atom unmatched costs
``tol_px``, so the assignment first maximises the number of matches and then minimises their
summed distance. Candidate pairs come from a k-d tree, and the assignment is solved on the
sparse candidate graph (``min_weight_full_bipartite_matching``), so thousands of atoms per
frame cost milliseconds.

Detection (precision, recall, F1, localisation RMSE) ignores classes; classes enter through
the confusion matrix, whose row/column 0 stands for "no atom": row 0 counts spurious
predictions by predicted class, column 0 counts missed true atoms by true class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

from activescope.engine.errors import DataError


@dataclass
class MatchResult:
    """Outcome of matching predicted atoms to true atoms (counts, rates, pairs, flags).

    ``pred_index``/``true_index``: row positions of matched pairs and ``distance`` (px) their
    separation. ``pred_matched``/``pred_correct``: per prediction, matched at all / matched
    with the right class (the labels an uncertainty-AUROC needs). ``confusion``: (C, C) counts,
    true class × predicted class, 0 = no atom.
    """

    n_true: int
    n_pred: int
    pred_index: np.ndarray
    true_index: np.ndarray
    distance: np.ndarray
    pred_matched: np.ndarray
    pred_correct: np.ndarray
    confusion: np.ndarray

    @property
    def n_matched(self) -> int:
        return int(len(self.distance))

    @property
    def precision(self) -> float:
        return self.n_matched / self.n_pred if self.n_pred else float("nan")

    @property
    def recall(self) -> float:
        return self.n_matched / self.n_true if self.n_true else float("nan")

    @property
    def f1(self) -> float:
        total = self.n_pred + self.n_true
        return 2.0 * self.n_matched / total if total else float("nan")

    @property
    def rmse_px(self) -> float:
        """Root-mean-square localisation error over matched pairs, pixels."""
        return float(np.sqrt(np.mean(self.distance**2))) if self.n_matched else float("nan")

    @property
    def class_accuracy(self) -> float:
        """Share of matched pairs whose predicted class equals the true class."""
        return float(self.pred_correct.sum() / self.n_matched) if self.n_matched else float("nan")

    @property
    def class_aware_f1(self) -> float:
        """F1 counting a match only when the class is right too (pooled over classes)."""
        total = self.n_pred + self.n_true
        return 2.0 * float(self.pred_correct.sum()) / total if total else float("nan")

    def per_class(self, classes: Sequence[str] | None = None) -> pd.DataFrame:
        """Class-aware precision, recall and F1 for each atom class (rows 1..C-1)."""
        hits = np.diag(self.confusion)[1:].astype(float)
        predicted = self.confusion[:, 1:].sum(axis=0)
        actual = self.confusion[1:, :].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            table = pd.DataFrame({
                "precision": hits / predicted, "recall": hits / actual,
                "f1": 2.0 * hits / (predicted + actual), "n_true": actual, "n_pred": predicted,
            })
        table.index = list(classes[1:]) if classes is not None else range(1, len(hits) + 1)
        return table

    def confusion_frame(self, classes: Sequence[str] | None = None) -> pd.DataFrame:
        """The confusion matrix with named rows (true) and columns (predicted); 0 = "none"."""
        names = ["none", *classes[1:]] if classes is not None else list(range(len(self.confusion)))
        return pd.DataFrame(self.confusion, index=pd.Index(names, name="true"),
                            columns=pd.Index(names, name="pred"))

    def summary(self) -> dict[str, float]:
        """Scalar metrics as a flat dict (for tables and JSON)."""
        return {"n_true": self.n_true, "n_pred": self.n_pred, "n_matched": self.n_matched,
                "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "rmse_px": self.rmse_px, "class_accuracy": self.class_accuracy,
                "class_aware_f1": self.class_aware_f1}

    def per_class_summary(self, classes: Sequence[str] | None = None) -> dict[str, float]:
        """Per-class precision/recall/F1 flattened as ``<class>_precision`` ... (for tables)."""
        table = self.per_class(classes)
        return {f"{name}_{metric}": float(table.loc[name, metric])
                for name in table.index for metric in ("precision", "recall", "f1")}

    def report(self, classes: Sequence[str] | None = None) -> str:
        """Position F1, class-aware F1 and a per-class precision/recall/F1 table, as text."""
        lines = [f"position F1 {self.f1:.4f}  class-aware F1 {self.class_aware_f1:.4f}  "
                 f"({self.n_matched} of {self.n_true} true atoms matched, {self.n_pred} found)",
                 f"  {'class':<12}{'precision':>10}{'recall':>10}{'F1':>10}{'true':>8}"
                 f"{'found':>8}"]
        for name, row in self.per_class(classes).iterrows():
            lines.append(f"  {str(name):<12}{row['precision']:>10.4f}{row['recall']:>10.4f}"
                         f"{row['f1']:>10.4f}{int(row['n_true']):>8d}{int(row['n_pred']):>8d}")
        return "\n".join(lines)


def _points(table: pd.DataFrame | np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) x/y positions and (n,) classes (1 when the table has none)."""
    if isinstance(table, pd.DataFrame):
        missing = {"x", "y"} - set(table.columns)
        if missing:
            raise DataError(f"{what} atoms lack column(s) {', '.join(sorted(missing))}")
        xy = table[["x", "y"]].to_numpy(dtype=np.float64)
        cls = table["cls"].to_numpy(dtype=np.int64) if "cls" in table else np.ones(len(xy), int)
    else:
        array = np.asarray(table, dtype=np.float64)
        if array.size == 0:
            array = array.reshape(0, 2)
        if array.ndim != 2 or array.shape[1] not in (2, 3):
            raise DataError(f"{what} atoms must be a table or an (n, 2|3) array of x, y[, cls]")
        xy = array[:, :2]
        cls = array[:, 2].astype(np.int64) if array.shape[1] == 3 else np.ones(len(array), int)
    if not np.isfinite(xy).all():
        raise DataError(f"{what} atom positions contain NaN or inf")
    if len(cls) and cls.min() < 1:
        raise DataError(f"{what} atom classes must be >= 1 (0 is background)")
    return xy, cls


def _assign(pred_xy: np.ndarray, true_xy: np.ndarray,
            tol_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one pairs (pred rows, true rows) within ``tol_px``."""
    n_pred, n_true = len(pred_xy), len(true_xy)
    if n_pred == 0 or n_true == 0:
        return np.zeros(0, int), np.zeros(0, int)
    candidates = cKDTree(pred_xy).sparse_distance_matrix(cKDTree(true_xy), tol_px,
                                                         output_type="ndarray")
    i, j, d = candidates["i"], candidates["j"], candidates["v"]
    if len(i) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    # Square graph: pred rows | dummy rows (one per true atom) against true cols | dummy cols
    # (one per pred atom). A pred left unmatched pairs with its own dummy at cost tol_px (and
    # likewise a true atom), and each candidate edge has a free dummy-dummy twin so any subset
    # of real matches completes to a full matching. Every full matching has the same number of
    # edges, so adding 1 to all costs (to keep zero-cost edges explicit) changes no optimum.
    pred_rows, true_rows = np.arange(n_pred), np.arange(n_true)
    rows = np.concatenate([i, pred_rows, n_pred + true_rows, n_pred + j])
    cols = np.concatenate([j, n_true + pred_rows, true_rows, n_true + i])
    cost = np.concatenate([d, np.full(n_pred + n_true, tol_px), np.zeros(len(i))]) + 1.0
    size = n_pred + n_true
    graph = coo_matrix((cost, (rows, cols)), shape=(size, size)).tocsr()
    partner = min_weight_full_bipartite_matching(graph)[1][:n_pred]
    real = partner < n_true
    return pred_rows[real], partner[real]


def match_atoms(pred: pd.DataFrame | np.ndarray, true: pd.DataFrame | np.ndarray, tol_px: float,
                n_classes: int | None = None) -> MatchResult:
    """Match predicted to true atoms within ``tol_px`` pixels (tables with x, y[, cls])."""
    if not tol_px > 0:
        raise DataError(f"matching tolerance must be positive, got {tol_px}")
    pred_xy, pred_cls = _points(pred, "predicted")
    true_xy, true_cls = _points(true, "true")
    pred_index, true_index = _assign(pred_xy, true_xy, tol_px)
    distance = np.linalg.norm(pred_xy[pred_index] - true_xy[true_index], axis=1)

    if n_classes is None:
        n_classes = int(np.concatenate([[0], pred_cls, true_cls]).max()) + 1
    pred_matched = np.zeros(len(pred_xy), dtype=bool)
    pred_matched[pred_index] = True
    true_matched = np.zeros(len(true_xy), dtype=bool)
    true_matched[true_index] = True
    pred_correct = np.zeros(len(pred_xy), dtype=bool)
    pred_correct[pred_index] = pred_cls[pred_index] == true_cls[true_index]
    rows = np.concatenate([true_cls[true_index], np.zeros((~pred_matched).sum(), int),
                           true_cls[~true_matched]])
    cols = np.concatenate([pred_cls[pred_index], pred_cls[~pred_matched],
                           np.zeros((~true_matched).sum(), int)])
    if len(rows) and max(rows.max(), cols.max()) >= n_classes:
        raise DataError(f"atom classes exceed n_classes={n_classes}")
    confusion = np.bincount(rows * n_classes + cols, minlength=n_classes**2)
    confusion = confusion.reshape(n_classes, n_classes)
    return MatchResult(n_true=len(true_xy), n_pred=len(pred_xy), pred_index=pred_index,
                       true_index=true_index, distance=distance, pred_matched=pred_matched,
                       pred_correct=pred_correct, confusion=confusion)


def _split_frames(tables: pd.DataFrame | Sequence[pd.DataFrame],
                  n: int | None) -> list[pd.DataFrame]:
    """A list of per-frame tables, from a list or from one table with a ``frame`` column."""
    if not isinstance(tables, pd.DataFrame):
        return list(tables)
    if "frame" not in tables:
        raise DataError("a single atom table for many frames needs a 'frame' column")
    count = n if n is not None else int(tables["frame"].max()) + 1 if len(tables) else 0
    groups = dict(iter(tables.groupby("frame")))
    return [groups.get(k, tables.iloc[:0]) for k in range(count)]


def detection_scores(pred: pd.DataFrame | Sequence[pd.DataFrame],
                     true: pd.DataFrame | Sequence[pd.DataFrame], tol_px: float,
                     n_classes: int | None = None) -> MatchResult:
    """Pooled matching over many frames (per-frame lists, or tables with a ``frame`` column).

    Counts, distances and confusion matrices are summed over frames. ``pred_matched`` and
    ``pred_correct`` follow the predictions frame by frame (table order within a frame), and
    ``pred_index``/``true_index`` point into the per-frame tables concatenated in that order.
    """
    true_frames = _split_frames(true, None)
    pred_frames = _split_frames(pred, len(true_frames))
    if len(pred_frames) != len(true_frames):
        raise DataError(f"{len(pred_frames)} predicted frames but {len(true_frames)} true frames")
    if n_classes is None:
        n_classes = 1 + max([1, *(int(t["cls"].max()) for t in [*pred_frames, *true_frames]
                                  if isinstance(t, pd.DataFrame) and len(t) and "cls" in t)])
    results = [match_atoms(p, t, tol_px, n_classes) for p, t in zip(pred_frames, true_frames)]
    pred_offset = np.cumsum([0, *(r.n_pred for r in results)])
    true_offset = np.cumsum([0, *(r.n_true for r in results)])

    def joined(field: str, offsets: np.ndarray | None = None) -> np.ndarray:
        parts = [getattr(r, field) + (0 if offsets is None else offsets[k])
                 for k, r in enumerate(results)]
        return np.concatenate(parts) if parts else np.zeros(0)

    return MatchResult(
        n_true=int(true_offset[-1]), n_pred=int(pred_offset[-1]),
        pred_index=joined("pred_index", pred_offset).astype(int),
        true_index=joined("true_index", true_offset).astype(int),
        distance=joined("distance"), pred_matched=joined("pred_matched").astype(bool),
        pred_correct=joined("pred_correct").astype(bool),
        confusion=sum((r.confusion for r in results), np.zeros((n_classes, n_classes), int)),
    )
