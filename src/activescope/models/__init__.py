"""Surrogate models, one per file: `gp` (exact GP), `dkl` (deep kernel learning), `ensemble`
(random forest and deep ensemble). Each registers itself with its options model in
`activescope.engine.registry.MODELS`; `build_model` makes one by name as a spec does.
"""

from typing import Any

from ..engine.registry import MODELS
from ..engine.surrogate import Surrogate


def build_model(kind: str, **options: Any) -> Surrogate:
    """A registered surrogate with validated options (SpecError naming the bad option)."""
    return MODELS.build(kind, options, section="model")


__all__ = ["Surrogate", "build_model"]
