"""Surrogate models. Importing this package registers every built-in model."""

from .base import Surrogate, build_model, model_names, register_model

__all__ = ["Surrogate", "build_model", "model_names", "register_model"]
