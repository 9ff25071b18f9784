"""QM9 molecules for causal learning: raw RDKit descriptors and the target, split by region.

The learning region (at most `max_heavy_atoms` heavy atoms) is split into the pool the graphs
are learned from and a test set that scores predictive models; the design region (larger
molecules) is never seen while learning and is where interventions look for real molecules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ...engine.errors import DataError
from ..features import Molecules, Rdkit2dFeatures, raw_block
from ..qm9 import data_version, load_qm9, resolve_target
from ..sources import _digest
from .spec import CausalDataOptions

log = logging.getLogger("activescope.chem.causal")
SPACE = ("MolLogP", "TPSA", "MolMR")
"""Descriptors spanning the chemical space that selection regions are drawn in."""


@dataclass
class MoleculeSet:
    """Molecules with raw descriptor values X (n, d; the descriptors' RDKit units), target y (n,)
    and chemical-space coordinates `space` (n, 3): MolLogP, TPSA (Å²) and MolMR."""

    ids: np.ndarray
    smiles: np.ndarray
    X: np.ndarray
    y: np.ndarray
    space: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> "MoleculeSet":
        """The molecules at the given row positions (order kept)."""
        return MoleculeSet(self.ids[rows], self.smiles[rows], self.X[rows], self.y[rows], self.space[rows])


@dataclass
class CausalData:
    """Descriptor names, the target column, and the pool / test / design molecule sets."""

    descriptors: list[str]
    target: str
    pool: MoleculeSet
    test: MoleculeSet
    design: MoleculeSet

    def columns(self, names: list[str]) -> np.ndarray:
        """Positions of the named descriptors in X."""
        return np.array([self.descriptors.index(n) for n in names], dtype=np.int64)


def load_causal_data(options: CausalDataOptions) -> CausalData:
    """The QM9 molecules of a causal spec with their descriptors (computed once, then cached).

    Molecules whose descriptors or target are missing are dropped (reported in one log line).
    Raises SpecError for an unknown target, DataError for an empty region.
    """
    target = resolve_target(options.target)
    table = load_qm9()
    heavy = (table.atomic_numbers > 1).sum(axis=1)
    learn = np.flatnonzero(heavy <= options.max_heavy_atoms)
    design = np.flatnonzero(heavy > options.max_heavy_atoms)
    if learn.size < 10:
        raise DataError(f"only {learn.size} QM9 molecules have at most {options.max_heavy_atoms} heavy atoms; raise data.max_heavy_atoms")
    rng = np.random.default_rng([options.subset_seed, 101])
    if options.pool_size is not None and options.pool_size < learn.size:
        learn = np.sort(rng.choice(learn, options.pool_size, replace=False))
    if options.design_size < design.size:
        design = np.sort(rng.choice(design, options.design_size, replace=False))
    rows = np.concatenate([learn, design])
    part = table.take(rows)
    molecules = Molecules(ids=part.ids, smiles=part.smiles, data_key={"data": data_version(), "rows": _digest(part.ids)})
    values, valid, names = raw_block(molecules, Rdkit2dFeatures())
    values = np.asarray(values, dtype=np.float64)
    X = values[:, [names.index(d) for d in options.descriptors]]
    space = values[:, [names.index(d) for d in SPACE]]
    y = part.labels[target].to_numpy(np.float64)
    ok = valid & np.isfinite(X).all(axis=1) & np.isfinite(space).all(axis=1) & np.isfinite(y)
    if not ok.all():
        log.warning("dropped %d molecules with a missing descriptor or target (first: %s)", (~ok).sum(), ", ".join(part.ids[~ok][:5]))
    everything = MoleculeSet(part.ids, part.smiles, X, y, space)
    in_learn = np.arange(rows.size) < learn.size
    learn_rows, design_rows = np.flatnonzero(ok & in_learn), np.flatnonzero(ok & ~in_learn)
    shuffled = np.random.default_rng([options.subset_seed, 102]).permutation(learn_rows)
    n_test = int(round(options.test_fraction * shuffled.size))
    return CausalData(
        descriptors=list(options.descriptors),
        target=target,
        pool=everything.take(np.sort(shuffled[n_test:])),
        test=everything.take(np.sort(shuffled[:n_test])),
        design=everything.take(design_rows),
    )
