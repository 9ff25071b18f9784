"""The candidate pool: what the engine can choose to measure.

A pool is domain-agnostic: rows with string ids, a float32 feature matrix and optional label
columns (known values, used by dataset oracles and retrospective benchmarks). Domain packages
(chemistry, microscopy) build pools; the engine only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


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
