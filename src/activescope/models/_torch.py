"""Helpers shared by the torch-based surrogates: device choice, row batching, scaling, input checks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..engine.errors import DataError

PREDICT_BATCH_ROWS = 16_384
"""Rows per prediction batch: bounds memory to a (batch, n_train) kernel block whatever the pool size."""


@lru_cache(maxsize=1)
def choose_device() -> torch.device:
    """The device every surrogate uses, chosen once per process: CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def row_batches(n_rows: int, batch_rows: int = PREDICT_BATCH_ROWS) -> Iterator[slice]:
    """Consecutive row slices covering range(n_rows), each at most batch_rows long."""
    for start in range(0, n_rows, batch_rows):
        yield slice(start, min(start + batch_rows, n_rows))


@dataclass(frozen=True)
class Scaler:
    """Affine standardisation `(v - shift) / scale`, fitted on training data.

    Works per column for a feature matrix and as a scalar pair for a target vector. Constant
    columns get scale 1 so they map to 0 instead of NaN.
    """

    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> "Scaler":
        values = np.asarray(values, dtype=np.float64)
        shift = values.mean(axis=0)
        scale = values.std(axis=0)
        return cls(shift=shift, scale=np.where(scale > 1e-12, scale, 1.0))

    @classmethod
    def identity(cls, n_columns: int) -> "Scaler":
        return cls(shift=np.zeros(n_columns), scale=np.ones(n_columns))

    def apply(self, values: np.ndarray) -> np.ndarray:
        """`values` standardised, float64. An identity scaling (count fingerprints for the
        Tanimoto kernel, pretrained extractors) only converts: on a (16,384 x 2,048) block the
        subtraction and division would be two more full copies."""
        values = np.asarray(values, dtype=np.float64)
        if not self.shift.any() and (self.scale == 1.0).all():
            return values
        return (values - self.shift) / self.scale


def check_training_data(X: np.ndarray, y: np.ndarray, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validate fit() inputs and return them as (float array (n, d), float64 (n,)).

    Raises DataError naming the problem: wrong shapes, too few rows, or non-finite values.
    """
    X = np.asarray(X)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2:
        raise DataError(f"training features must be a 2-D array, got shape {X.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"training features have {X.shape[0]} rows but there are {y.shape[0]} targets")
    if X.shape[0] < min_rows:
        raise DataError(f"need at least {min_rows} measured points to fit a surrogate, got {X.shape[0]}")
    if not np.isfinite(y).all():
        raise DataError(f"{int((~np.isfinite(y)).sum())} training targets are NaN or infinite")
    if not np.isfinite(X).all():
        raise DataError("training features contain NaN or infinite values")
    return X, y


def check_prediction_input(X: np.ndarray, n_columns: int) -> np.ndarray:
    """Validate predict() input against the fitted column count (DataError on mismatch)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != n_columns:
        raise DataError(f"expected features of shape (m, {n_columns}), got {X.shape}")
    return X

