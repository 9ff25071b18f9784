"""The candidate pool: what the engine can choose to measure.

A pool is domain-agnostic: rows with string ids, a float32 feature matrix and optional label
columns (known values, used by dataset oracles and retrospective benchmarks). Domain packages
(chemistry, microscopy) register pool sources (`registry.SOURCES`) that a spec's data section
names; `Pool.from_frame` builds one from a user's DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .registry import SOURCES


@dataclass
class Pool:
    """Candidates the campaign may select.

    ids: (n,) unique string ids.
    X: (n, d) float32 features, one row per id (already scaled as the featurizer chose).
    labels: DataFrame indexed 0..n-1 with known property columns (may be empty).
    info: per-row display columns (e.g. SMILES) used by reports; may be empty.
    feature_names: d names, for reports and debugging.
    feature_kinds: which featurizer produced which columns, e.g. {"morgan": slice(0, 2048)};
        models such as the Tanimoto GP use it to pick their columns.
    """

    ids: np.ndarray
    X: np.ndarray
    labels: pd.DataFrame = field(default_factory=pd.DataFrame)
    info: pd.DataFrame = field(default_factory=pd.DataFrame)
    feature_names: list[str] = field(default_factory=list)
    feature_kinds: dict[str, slice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids).astype(str)
        if self.X.ndim != 2 or self.X.shape[0] != len(self.ids):
            raise ValueError(f"X has shape {self.X.shape}, expected ({len(self.ids)}, d)")
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, ids) -> np.ndarray:
        """Row positions of the given ids; raises KeyError naming the first unknown id."""
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.ids.tolist())}
        out = np.empty(len(ids), dtype=np.int64)
        for j, k in enumerate(ids):
            try:
                out[j] = self._index[str(k)]
            except KeyError:
                raise KeyError(str(k)) from None
        return out

    def known(self, ids) -> set[str]:
        """Those of `ids` that are candidates of this pool."""
        if self._index is None:
            self.index_of([])
        return {str(k) for k in ids if str(k) in self._index}

    def subset(self, rows: np.ndarray) -> "Pool":
        """A new pool holding only the given row positions (order kept)."""
        rows = np.asarray(rows)
        return Pool(
            ids=self.ids[rows],
            X=self.X[rows],
            labels=self.labels.iloc[rows].reset_index(drop=True) if len(self.labels.columns) else pd.DataFrame(),
            info=self.info.iloc[rows].reset_index(drop=True) if len(self.info.columns) else pd.DataFrame(),
            feature_names=list(self.feature_names),
            feature_kinds=dict(self.feature_kinds),
        )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        features: Sequence[str],
        labels: Sequence[str] = (),
        id_column: str | None = None,
        info: Sequence[str] = (),
    ) -> "Pool":
        """A pool from a DataFrame: `features` are the numeric columns the model sees, `labels`
        known target columns (for a dataset oracle or a retrospective benchmark), `info` display
        columns, `id_column` unique ids (default: the row numbers as strings)."""
        wanted = [*features, *labels, *info, *([id_column] if id_column else [])]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise DataError(f"column(s) {', '.join(map(str, missing))} not in the frame; it has {', '.join(map(str, frame.columns))}")
        if not features:
            raise DataError("give at least one feature column")
        try:
            X = frame[list(features)].to_numpy(dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise DataError(f"feature columns must be numeric: {err}") from None
        if not np.isfinite(X).all():
            rows = np.flatnonzero(~np.isfinite(X).all(axis=1))
            raise DataError(f"feature columns hold NaN or infinite values in {len(rows)} row(s), first at row {rows[0]}")
        ids = frame[id_column].astype(str).to_numpy() if id_column else np.arange(len(frame)).astype(str)
        duplicated = pd.Index(ids).duplicated()
        if duplicated.any():
            raise DataError(f"id column {id_column!r} holds duplicate id {ids[duplicated][0]!r}")
        return cls(
            ids=ids,
            X=X,
            labels=frame[list(labels)].reset_index(drop=True).astype(float) if labels else pd.DataFrame(),
            info=frame[list(info)].reset_index(drop=True) if info else pd.DataFrame(),
            feature_names=[str(c) for c in features],
        )


def build_pool(source: str, instrument: Any = None, **options: Any) -> Pool:
    """The pool named by a spec's data section (`source` and its options), features included;
    a source that builds its candidates from an instrument (probe positions on an overview
    image) gets `instrument`."""
    return SOURCES.build(source, options, section="data", instrument=instrument)
