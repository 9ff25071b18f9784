"""Ensemble surrogates: mean and variance come from the spread of the members' predictions.

`rf` is a scikit-learn random forest (the MolPAL-style baseline: variance over trees) and
`deep_ensemble` trains a few small MLPs from different random initialisations at once (their
weights are stacked, so one batched matmul runs every member). The joint covariance over a
candidate set is the member covariance, which has rank at most (members - 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import partial

import numpy as np
import scipy.sparse
import torch
from pydantic import Field
from sklearn.ensemble import RandomForestRegressor

from ..engine.registry import register_model
from ._pool_cache import pool_cached
from ._torch import PREDICT_BATCH_ROWS, Scaler, check_prediction_input, check_training_data, choose_device, row_batches
from .base import ColumnSelection, LayerWidths, ModelOptions, Positive, check_options


def member_statistics(member_predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance over axis 0 of a (members, m) prediction matrix."""
    return member_predictions.mean(axis=0), member_predictions.var(axis=0, ddof=1)


def member_covariance(member_predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (k,) and covariance (k, k) across members of a (members, k) prediction matrix."""
    mean = member_predictions.mean(axis=0)
    centred = member_predictions - mean
    return mean, centred.T @ centred / (len(member_predictions) - 1)


class _MemberEnsemble(ColumnSelection):
    """Shared predict/predict_joint for models that expose a (members, m) prediction matrix."""

    batch_rows: int = PREDICT_BATCH_ROWS

    def _members_predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _checked(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_n_pool_columns"):
            raise RuntimeError("call fit() before predicting")
        return self._select(check_prediction_input(X, self._n_pool_columns))

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance over members, in row batches."""
        X = self._checked(X)
        mean = np.empty(len(X))
        variance = np.empty(len(X))
        for rows, batch in self._row_batches(X):
            mean[rows], variance[rows] = member_statistics(self._members_predict(batch))
        return mean, variance

    def _row_batches(self, X_block: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        """The block's row slices with the rows as the members read them (here: dense rows)."""
        for rows in row_batches(len(X_block), self.batch_rows):
            yield rows, X_block[rows]

    def predict_joint(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (k,) and across-member covariance (k, k) for a small candidate set."""
        return member_covariance(self._members_predict(self._checked(X)))


SPARSE_DENSITY = 0.1
"""Pool blocks with at most this fraction of non-zero values are predicted from sparse rows."""


def sparse_batches(block: np.ndarray, batch_rows: int) -> tuple[scipy.sparse.csr_matrix, ...] | None:
    """The block as float32 CSR matrices of `batch_rows` rows each (the layout scikit-learn's
    trees walk without validation), or None when more than `SPARSE_DENSITY` of it is non-zero."""
    if np.count_nonzero(block) > SPARSE_DENSITY * block.size:
        return None
    batches = []
    for rows in row_batches(len(block), batch_rows):
        batch = scipy.sparse.csr_matrix(np.asarray(block[rows], dtype=np.float32))
        batch.indices, batch.indptr = batch.indices.astype(np.int32), batch.indptr.astype(np.int32)
        batches.append(batch)
    return tuple(batches)


class RandomForestOptions(ModelOptions):
    """Options of `model: {kind: rf}`."""

    n_estimators: int = Field(100, ge=2, description="trees (their spread is the uncertainty)")
    max_depth: int | None = Field(None, ge=1, description="maximum tree depth (default unlimited)")
    min_samples_leaf: int = Field(1, ge=1, description="fewest training rows in a leaf")
    max_features: Positive = Field(1.0, le=1.0, description="fraction of columns tried per split")
    seed: int = Field(0, description="random state of the bootstrap and the splits")


@register_model("rf", RandomForestOptions)
class RandomForestSurrogate(_MemberEnsemble):
    """Random forest regression; uncertainty is the variance of the per-tree predictions.

    Options: n_estimators (default 100), max_depth (default unlimited), min_samples_leaf
    (default 1), max_features (fraction of columns tried per split, default 1.0), columns, seed.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        max_features: float = 1.0,
        columns: str | None = None,
        seed: int = 0,
    ) -> None:
        options = check_options(RandomForestOptions, locals())
        self.columns = options["columns"]
        self._forest = RandomForestRegressor(
            n_estimators=options["n_estimators"],
            max_depth=options["max_depth"],
            min_samples_leaf=options["min_samples_leaf"],
            max_features=options["max_features"],
            n_jobs=2,
            random_state=options["seed"],
        )

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RandomForestSurrogate":
        """Fit the forest on measured rows X (n, d) and targets y (n,); returns self."""
        X, y = check_training_data(X, y)
        self._n_pool_columns = X.shape[1]
        self._forest.fit(self._select(X), y)
        return self

    def _row_batches(self, X_block: np.ndarray) -> Iterator[tuple[slice, np.ndarray | scipy.sparse.csr_matrix]]:
        """Dense row batches, or for a mostly-zero pool block (fingerprint counts) its sparse rows,
        built once per pool (`models._pool_cache`): the trees give the same values several times
        faster on them than walking the dense rows."""
        sparse = pool_cached("sparse_rows", X_block, (self.batch_rows,), partial(sparse_batches, batch_rows=self.batch_rows))
        if sparse is None:
            yield from super()._row_batches(X_block)
        else:
            yield from zip(row_batches(len(X_block), self.batch_rows), sparse)

    def _members_predict(self, X: np.ndarray | scipy.sparse.csr_matrix) -> np.ndarray:
        if not scipy.sparse.issparse(X):
            X = np.ascontiguousarray(X, dtype=np.float32)  # validated once here, not once per tree (a full scan each)
        return np.stack([tree.predict(X, check_input=False) for tree in self._forest.estimators_])

    def hyperparameters(self) -> dict[str, float]:
        """n_estimators (trees) and mean_depth (mean depth of the fitted trees)."""
        depths = [tree.get_depth() for tree in self._forest.estimators_]
        return {"n_estimators": float(len(depths)), "mean_depth": float(np.mean(depths))}


class StackedMLP(torch.nn.Module):
    """`members` independent MLPs with identical shapes, evaluated together by batched matmuls."""

    def __init__(self, members: int, widths: Sequence[int], generator: torch.Generator) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(width_in)  # torch.nn.Linear's default initialisation range
            self.weights.append(torch.nn.Parameter((torch.rand(members, width_in, width_out, generator=generator) * 2 - 1) * bound))
            self.biases.append(torch.nn.Parameter((torch.rand(members, 1, width_out, generator=generator) * 2 - 1) * bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, d) -> predictions (members, b)."""
        hidden = x.expand(len(self.weights[0]), *x.shape)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = torch.baddbmm(bias, hidden, weight)
            if layer < len(self.weights) - 1:
                hidden = torch.nn.functional.silu(hidden)
        return hidden.squeeze(-1)


class DeepEnsembleOptions(ModelOptions):
    """Options of `model: {kind: deep_ensemble}`."""

    members: int = Field(5, ge=2, description="independently initialised MLPs")
    hidden: LayerWidths = (64, 64)
    epochs: int = Field(300, ge=1, description="full-batch Adam steps")
    lr: Positive = Field(0.01, description="Adam step size")
    weight_decay: float = Field(1e-4, ge=0, description="Adam L2 weight decay")
    seed: int = Field(0, description="seed of the members' initialisations")


@register_model("deep_ensemble", DeepEnsembleOptions)
class DeepEnsembleSurrogate(_MemberEnsemble):
    """Several small MLPs from different initialisations; variance is their disagreement.

    Options: members (default 5), hidden (widths, default [64, 64]), epochs (full-batch Adam
    steps, default 300), lr (default 0.01), weight_decay (default 1e-4), columns, seed.
    """

    def __init__(
        self,
        members: int = 5,
        hidden: Sequence[int] = (64, 64),
        epochs: int = 300,
        lr: float = 0.01,
        weight_decay: float = 1e-4,
        columns: str | None = None,
        seed: int = 0,
    ) -> None:
        vars(self).update(check_options(DeepEnsembleOptions, locals()))
        self.device = choose_device()

    def fit(self, X: np.ndarray, y: np.ndarray) -> "DeepEnsembleSurrogate":
        """Train every member from its own initialisation for `epochs` full-batch AdamW steps on
        standardised X (n, d) and y (n,); returns self."""
        X, y = check_training_data(X, y)
        self._n_pool_columns = X.shape[1]
        X = self._select(X)
        self._x_scaler, self._y_scaler = Scaler.fit(X), Scaler.fit(y)
        self._net = StackedMLP(self.members, [X.shape[1], *self.hidden, 1], torch.Generator().manual_seed(self.seed))
        self._net.to(self.device)
        train_x, train_y = self._tensor(self._x_scaler.apply(X)), self._tensor(self._y_scaler.apply(y))
        optimiser = torch.optim.AdamW(self._net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.epochs):
            optimiser.zero_grad()
            loss = (self._net(train_x) - train_y).square().mean(dim=1).sum()
            loss.backward()
            optimiser.step()
        self._final_loss = float(loss.item()) / self.members
        return self

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float32, device=self.device)

    def _members_predict(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            standardised = self._net(self._tensor(self._x_scaler.apply(X))).double().cpu().numpy()
        return standardised * float(self._y_scaler.scale) + float(self._y_scaler.shift)

    def hyperparameters(self) -> dict[str, float]:
        """members (ensemble size) and train_mse_standardised (the final training mean squared
        error, averaged over members, in standardised target units)."""
        return {"members": float(self.members), "train_mse_standardised": self._final_loss}
