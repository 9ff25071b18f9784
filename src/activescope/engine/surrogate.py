"""The surrogate protocol every model implements: the engine's only view of a model."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Surrogate(Protocol):
    """A probabilistic regression model over feature vectors.

    fit(X, y) trains on measured rows (X float32 (n, d), y float (n,)), returning self.
    predict(X) returns (mean, variance), each (m,) float64, computed in batches so memory stays
    bounded for any m; the variance is the model's epistemic (latent-function) variance, without
    observation noise. hyperparameters() returns a flat dict of floats recorded in the run store
    each round.

    Optional methods (check with hasattr; the engine works without them):
      get_state() -> bytes and set_state(bytes): what a warm-starting model carries from one
        round's fit to the next; the campaign stores it with each round, so a resumed run fits
        exactly as an uninterrupted one.
      embed(X) -> (m, k) latent coordinates, for models that learn a latent space (DKL).
      predict_joint(X) -> (mean (k,), cov (k, k)) joint posterior over a SMALL candidate set
        (k up to a few thousand); acquisition uses it for believer batches and batch Thompson
        sampling.
      use_feature_blocks(feature_kinds) -> None: the campaign calls it with Pool.feature_kinds
        before the first fit, so a model whose `columns` option names a block (e.g. "morgan")
        fits and predicts on those columns only. See ColumnSelection.
      use_feature_names(names) -> None: called with Pool.feature_names, for models whose options
        name feature columns (a hypothesis law's descriptors).
      round_record() -> dict: a JSON-ready record of the latest fit (e.g. a selecting
        surrogate's choice, rewards and posteriors), stored with the round (`Store.rounds()`).
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Surrogate":
        """Train on measured rows X (n, d) float32 and targets y (n,); returns self."""
        ...

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and latent variance, each (m,) float64, for rows X (m, d)."""
        ...

    def hyperparameters(self) -> dict[str, float]:
        """A flat dict of floats describing the fit, recorded with every round."""
        ...
