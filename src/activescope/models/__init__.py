"""Surrogate models. Importing this package registers every built-in model."""

from . import dkl, ensemble, gp  # noqa: F401  (importing registers gp, dkl, rf, deep_ensemble)
from .base import Surrogate, build_model, model_names, register_model

__all__ = ["Surrogate", "build_model", "model_names", "register_model"]
