"""Helpers shared by the built-in surrogates (the protocol itself is `engine.surrogate`)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..engine.errors import SpecError
from ..engine.registry import format_validation_error


def _split_widths(value: object) -> object:
    """Accept "64,32" as well as [64, 32] for layer widths."""
    return [item.strip() for item in value.split(",")] if isinstance(value, str) else value


LayerWidths = Annotated[
    tuple[Annotated[int, Field(ge=1)], ...],
    BeforeValidator(_split_widths),
    Field(min_length=1, description="hidden layer widths, e.g. [64, 32] or \"64,32\""),
]
Positive = Annotated[float, Field(gt=0)]


def check_options(options: type[BaseModel], arguments: dict[str, object]) -> dict[str, Any]:
    """Validate a constructor's arguments (its `locals()`) with its options model, so a model
    built directly in Python is checked exactly like one built from a spec; returns the validated
    options by name (a constructor stores them with `vars(self).update(...)`)."""
    given = {name: value for name, value in arguments.items() if name not in ("self", "__class__")}
    try:
        return dict(options.model_validate(given))
    except ValidationError as err:
        raise SpecError(f"model.{format_validation_error(err)}") from None


class ModelOptions(BaseModel):
    """Options every built-in surrogate accepts (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")
    columns: str | None = Field(None, description="feature block to use (e.g. morgan); default every column")


class ColumnSelection:
    """Mixin for surrogates with a `columns` option naming one feature block of the pool.

    Call use_feature_blocks(pool.feature_kinds) once; afterwards `_select(X)` keeps only the
    named block. With `columns` unset (None) every column is used. The full pool matrix is
    always what fit/predict receive, so the campaign never slices features itself.
    """

    columns: str | None = None
    _column_slice: slice = slice(None)

    def use_feature_blocks(self, feature_kinds: dict[str, slice]) -> None:
        """Choose the model's columns from the pool's feature blocks (`Pool.feature_kinds`).

        feature_kinds: block name -> column slice of the pool matrix, e.g. {"morgan": slice(0, 2048)}.
        Raises SpecError naming the available blocks when `columns` is not one of them.
        """
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
