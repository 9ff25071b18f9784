"""Chemistry: the QM9 data set, molecular featurizers and the `qm9` / `csv` pool sources.

The pool sources register themselves in `activescope.engine.registry.SOURCES` when
`chem.sources` is imported; the engine finds them through the `activescope.sources` entry points.
"""

from . import sources
from .features import MorganFeatures, PhysicsFeatures, Rdkit2dFeatures, featurize
from .qm9 import TARGET_ALIASES, QM9Table, load_qm9, resolve_target

__all__ = [
    "MorganFeatures",
    "PhysicsFeatures",
    "QM9Table",
    "Rdkit2dFeatures",
    "TARGET_ALIASES",
    "featurize",
    "load_qm9",
    "resolve_target",
    "sources",
]
