"""The surrogate interface every model implements, and the model registry."""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Surrogate(Protocol):
    """A probabilistic regression model over feature vectors.

    fit(X, y) trains on measured rows (X float32 (n, d), y float (n,)), returning self.
    predict(X) returns (mean, variance), each (m,) float64, computed in batches so memory stays
    bounded for any m. Models that learn a latent space also implement embed(X) -> (m, k).
    hyperparameters() returns a flat dict of floats recorded in the run store each round.
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Surrogate": ...

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def hyperparameters(self) -> dict[str, float]: ...


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


def build_model(name: str, **params: Any) -> Surrogate:
    """Instantiate a registered surrogate; params come from the spec's model section."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose one of {model_names()}")
    return _REGISTRY[name](**params)
