"""The surrogate interface every model implements, and the model registry."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import SpecError


@runtime_checkable
class Surrogate(Protocol):
    """A probabilistic regression model over feature vectors.

    fit(X, y) trains on measured rows (X float32 (n, d), y float (n,)), returning self.
    predict(X) returns (mean, variance), each (m,) float64, computed in batches so memory stays
    bounded for any m; the variance is the model's epistemic (latent-function) variance, without
    observation noise. hyperparameters() returns a flat dict of floats recorded in the run store
    each round.

    Optional methods (check with hasattr; the engine works without them):
      embed(X) -> (m, k) latent coordinates, for models that learn a latent space (DKL).
      predict_joint(X) -> (mean (k,), cov (k, k)) joint posterior over a SMALL candidate set
        (k up to a few thousand); acquisition uses it for believer batches and batch Thompson
        sampling.
      use_feature_blocks(feature_kinds) -> None: the campaign calls it with Pool.feature_kinds
        before the first fit, so a model whose `columns` option names a block (e.g. "morgan")
        fits and predicts on those columns only. See ColumnSelection.
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Surrogate": ...

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def hyperparameters(self) -> dict[str, float]: ...


class ColumnSelection:
    """Mixin for surrogates with a `columns` option naming one feature block of the pool.

    Call use_feature_blocks(pool.feature_kinds) once; afterwards `_select(X)` keeps only the
    named block. With `columns` unset (None) every column is used. The full pool matrix is
    always what fit/predict receive, so the campaign never slices features itself.
    """

    columns: str | None = None
    _column_slice: slice = slice(None)

    def use_feature_blocks(self, feature_kinds: dict[str, slice]) -> None:
        if self.columns is None:
            return
        if self.columns not in feature_kinds:
            raise SpecError(
                f"model.columns: the pool has no feature block {self.columns!r}; "
                f"available: {', '.join(sorted(feature_kinds)) or 'none'}"
            )
        self._column_slice = feature_kinds[self.columns]

    def _select(self, X: np.ndarray) -> np.ndarray:
        return X[:, self._column_slice]


ModelFactory = Callable[..., Surrogate]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Class decorator: make a surrogate buildable by name from a spec."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def model_options(name: str) -> set[str]:
    """The keyword options a registered surrogate's constructor accepts."""
    return set(inspect.signature(_REGISTRY[name]).parameters)


def build_model(name: str, **params: Any) -> Surrogate:
    """Instantiate a registered surrogate; params come from the spec's model section."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose one of {model_names()}")
    return _REGISTRY[name](**params)
