"""Crystal lattices projected along the beam: the atomic columns a STEM image shows.

Each structure is built with ASE, then its atoms are projected onto the image plane and the
atoms that share an in-plane position are grouped into one *column*. A column's type (its
class) is what is physically distinguishable in a projection:

================  ==========================================  =================  =========
lattice           column classes (index 1, 2, ...)            dopant site        dopant Z
================  ==========================================  =================  =========
``graphene``      C                                           C                  14 (Si)
``mos2`` (2H)     metal (Mo), chalcogen (S2, two stacked S)   metal              74 (W)
``ws2`` (2H)      metal (W), chalcogen (S2, two stacked S)    metal              42 (Mo)
``srtio3`` [001]  Sr, Ti-O (Ti over O), O                     Sr                 57 (La)
``srtio3_110``    Sr-O (Sr over O), Ti, O (two O)             Sr                 57 (La)
================  ==========================================  =================  =========

Every lattice ends with a ``dopant`` class (substitutional atom on the dopant site), and class 0
is always ``background``. All lengths are in Å.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from activescope.engine.errors import SpecError

if TYPE_CHECKING:
    from ase import Atoms


@dataclass(frozen=True)
class ProjectedLattice:
    """A unit cell seen along the beam, as columns of atoms.

    ``cell``: (2, 2) in-plane lattice vectors a1, a2 as rows (Å).
    ``column_xy``: (B, 2) column positions in the cell (Å).
    ``column_class``: (B,) class index (≥ 1) of each column.
    ``column_z``: (B, D) atomic numbers of the atoms stacked in each column, 0-padded to depth D.
    ``dopant_slot``: (B, D) True where a dopant may substitute that atom.
    ``classes``: class names, index 0 = "background", last = "dopant".
    ``dopant_z``: default atomic number of the substitutional dopant.
    """

    name: str
    cell: np.ndarray
    column_xy: np.ndarray
    column_class: np.ndarray
    column_z: np.ndarray
    dopant_slot: np.ndarray
    classes: tuple[str, ...]
    dopant_z: int


# ASE is imported inside the builders: it is slow to import and only needed once per lattice.
def _graphene() -> Atoms:
    from ase.build import graphene

    return graphene(formula="C2", a=2.46, vacuum=None)


def _tmd(formula: str, a: float) -> Atoms:
    from ase.build import mx2

    return mx2(formula=formula, kind="2H", a=a, thickness=3.17, vacuum=None)


def _srtio3() -> Atoms:
    from ase.spacegroup import crystal

    return crystal(["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0, 0.5)],
                   spacegroup=221, cellpar=[3.905, 3.905, 3.905, 90, 90, 90])


def _srtio3_110() -> Atoms:
    """SrTiO3 seen along [110]: the projected primitive cell a/√2 x a, one period a√2 deep
    (Sr-O columns at the corners, Ti columns a/2 above them, O2 columns between Ti)."""
    from ase import Atoms

    a = 3.905
    width, depth = a / np.sqrt(2.0), a * np.sqrt(2.0)
    return Atoms("SrOTiO2", positions=[(0, 0, 0), (0, 0, depth / 2), (0, a / 2, depth / 4),
                                       (width / 2, a / 2, 0), (width / 2, a / 2, depth / 2)],
                 cell=[width, a, depth], pbc=True)


# name -> (structure builder, column composition -> class name, dopant-site element, dopant Z)
_LATTICES = {
    "graphene": (_graphene, {("C",): "C"}, "C", 14),
    "mos2": (lambda: _tmd("MoS2", 3.18), {("Mo",): "metal", ("S", "S"): "chalcogen"}, "Mo", 74),
    "ws2": (lambda: _tmd("WS2", 3.18), {("W",): "metal", ("S", "S"): "chalcogen"}, "W", 42),
    "srtio3": (_srtio3, {("Sr",): "Sr", ("O", "Ti"): "Ti-O", ("O",): "O"}, "Sr", 57),
    "srtio3_110": (_srtio3_110, {("O", "Sr"): "Sr-O", ("Ti",): "Ti", ("O", "O"): "O"}, "Sr", 57),
}

LATTICES: tuple[str, ...] = tuple(_LATTICES)


def _check_name(lattice: str) -> str:
    key = lattice.lower()
    if key not in _LATTICES:
        raise SpecError(f"unknown lattice {lattice!r}; choose one of {', '.join(LATTICES)}")
    return key


def lattice_classes(lattice: str) -> list[str]:
    """Class names of a lattice's label masks: ``["background", <column types>..., "dopant"]``."""
    key = _check_name(lattice)
    column_types = list(dict.fromkeys(_LATTICES[key][1].values()))
    return ["background", *column_types, "dopant"]


@lru_cache(maxsize=None)
def projected_lattice(lattice: str) -> ProjectedLattice:
    """Project the ASE unit cell of ``lattice`` along z and group its atoms into columns."""
    key = _check_name(lattice)
    build, class_of, dopant_element, dopant_z = _LATTICES[key]
    atoms = build()
    cell = np.asarray(atoms.cell[:2, :2], dtype=np.float64)
    frac = np.linalg.solve(cell.T, atoms.positions[:, :2].T).T
    frac -= np.floor(frac + 1e-6)
    keys, first, column_of_atom = np.unique(np.round(frac, 4), axis=0, return_index=True,
                                            return_inverse=True)
    column_of_atom = column_of_atom.ravel()
    symbols = np.array(atoms.get_chemical_symbols())
    numbers = atoms.numbers
    depth = int(np.bincount(column_of_atom).max())
    classes = lattice_classes(key)
    column_z = np.zeros((len(keys), depth), dtype=np.int64)
    dopant_slot = np.zeros((len(keys), depth), dtype=bool)
    column_class = np.zeros(len(keys), dtype=np.int64)
    for col in range(len(keys)):
        members = np.flatnonzero(column_of_atom == col)
        column_z[col, : len(members)] = numbers[members]
        dopant_slot[col, : len(members)] = symbols[members] == dopant_element
        composition = tuple(sorted(symbols[members]))
        column_class[col] = classes.index(class_of[composition])
    return ProjectedLattice(
        name=key, cell=cell, column_xy=frac[first] @ cell, column_class=column_class,
        column_z=column_z, dopant_slot=dopant_slot, classes=tuple(classes), dopant_z=dopant_z,
    )
