"""The QM9 table (130,831 small organic molecules with B3LYP/6-31G(2df,p) properties).

The data ship with the `qm9pack` package as CSV files, read here directly (importing `qm9pack`
itself needs `pkg_resources`, which current setuptools no longer provides). Geometries are
parsed in one vectorised pass into padded arrays and the parsed table is kept in the on-disk
cache, so only the first load pays the ~15 s of CSV parsing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.cache import cached_arrays
from ..engine.errors import DataError, SpecError

MAX_ATOMS = 29
PARSE_VERSION = 1
_ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_POLARIZABILITY = "qm9_polarizability.csv"
_NON_LABELS = ("Index",)

TARGET_ALIASES: dict[str, str] = {
    "dipole": "Dipole_debye",
    "mu": "Dipole_debye",
    "alpha": "Polarizability_bohr3",
    "polarizability": "Polarizability_bohr3",
    "homo": "HOMO_au",
    "lumo": "LUMO_au",
    "gap": "HOMO_LUMO_gap_au",
    "r2": "R2_bohr2",
    "zpve": "ZPVE_au",
    "u0": "InternalEnergy_0K_au",
    "u": "InternalEnergy_298K_au",
    "h": "Enthalphy_298K_au",
    "g": "GibbsFreeEnergy_298K_au",
    "cv": "Heatcapacity_Cv_cal_mol_K",
}
"""Short names for QM9 targets -> table columns (units are in the column names: au = Hartree)."""

QM9_GOALS: dict[str, str] = {
    "Dipole_debye": "maximize",  # strongly polar molecules
    "Polarizability_bohr3": "maximize",  # soft, polarizable electron clouds
    "HOMO_au": "maximize",  # good electron donors
    "LUMO_au": "minimize",  # good electron acceptors
    "HOMO_LUMO_gap_au": "minimize",  # small-gap (optoelectronic) molecules
    "R2_bohr2": "maximize",  # largest electronic spatial extent
    "ZPVE_au": "maximize",
    "InternalEnergy_0K_au": "minimize",  # the most stable (lowest energy) molecules
    "InternalEnergy_298K_au": "minimize",
    "Enthalphy_298K_au": "minimize",
    "GibbsFreeEnergy_298K_au": "minimize",
    "Heatcapacity_Cv_cal_mol_K": "maximize",  # heat storage
}
"""The 12 standard numeric QM9 targets with the direction a screening campaign usually wants;
`activescope bench --targets all-qm9` runs them all."""


@dataclass
class QM9Table:
    """Parsed QM9: one row per molecule.

    ids: (n,) `qm9_000001`-style ids from the QM9 index.
    smiles: (n,) GDB SMILES strings.
    labels: DataFrame of every numeric property (original column names, plus `TARGET_ALIASES`).
    atomic_numbers: (n, 29) uint8, zero-padded after each molecule's atoms (XYZ file order).
    positions: (n, 29, 3) float32 Cartesian coordinates in Angstrom, zero-padded.
    """

    ids: np.ndarray
    smiles: np.ndarray
    labels: pd.DataFrame
    atomic_numbers: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> "QM9Table":
        """The table restricted to the given row positions (order kept)."""
        return QM9Table(
            ids=self.ids[rows],
            smiles=self.smiles[rows],
            labels=self.labels.iloc[rows].reset_index(drop=True),
            atomic_numbers=self.atomic_numbers[rows],
            positions=self.positions[rows],
        )


def qm9_data_dir() -> Path:
    """Folder holding qm9pack's CSV files; DataError if the package or its files are missing."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("QM9 data not found: the 'qm9pack' package is not installed (pip install qm9pack)")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    missing = [name for name in (*_PARTS, _POLARIZABILITY) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"QM9 data incomplete: {', '.join(missing)} missing in {folder}")
    return folder


def resolve_target(name: str) -> str:
    """The QM9 label column for a target name or alias; SpecError listing the allowed names."""
    if name in TARGET_ALIASES:
        return TARGET_ALIASES[name]
    columns = label_columns()
    if name in columns:
        return name
    allowed = sorted(TARGET_ALIASES) + columns
    raise SpecError(f"unknown QM9 target {name!r}; allowed: {', '.join(allowed)}")


def label_columns() -> list[str]:
    """The numeric QM9 columns usable as targets (original names, aliases excluded)."""
    return _load_arrays()["label_names"].tolist()


def load_qm9(subset: int | None = None, seed: int = 0) -> QM9Table:
    """The QM9 table, from the cache after the first call.

    subset: if given, a random sample of that many molecules (drawn with `seed`, sorted by index).
    """
    arrays = _load_arrays()
    labels = pd.DataFrame(arrays["labels"], columns=arrays["label_names"].tolist())
    for alias, column in TARGET_ALIASES.items():
        labels[alias] = labels[column]
    table = QM9Table(
        ids=arrays["ids"],
        smiles=arrays["smiles"],
        labels=labels,
        atomic_numbers=arrays["atomic_numbers"],
        positions=arrays["positions"],
    )
    if subset is None or subset >= len(table):
        return table
    if subset < 1:
        raise DataError(f"QM9 subset must be at least 1 molecule, got {subset}")
    rows = np.sort(np.random.default_rng(seed).choice(len(table), size=subset, replace=False))
    return table.take(rows)


def data_version() -> str:
    """Identifies the QM9 data for cache keys: the qm9pack version and our parser version."""
    return f"qm9pack-{importlib.metadata.version('qm9pack')}/parse-{PARSE_VERSION}"


def _load_arrays() -> dict[str, np.ndarray]:
    return cached_arrays({"what": "qm9-table", "data": data_version()}, _parse_csv)


def _parse_csv() -> dict[str, np.ndarray]:
    folder = qm9_data_dir()
    frame = pd.concat([pd.read_csv(folder / name) for name in _PARTS], ignore_index=True)
    polar = pd.read_csv(folder / _POLARIZABILITY)
    frame = frame.merge(polar, on="XYZ_file", how="left", validate="one_to_one")
    n_atoms = frame["N_atoms"].to_numpy(np.int64)
    if n_atoms.max() > MAX_ATOMS:
        raise DataError(f"QM9 table has a molecule with {n_atoms.max()} atoms (> {MAX_ATOMS})")
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and c not in _NON_LABELS]
    atomic_numbers, positions = _parse_geometry(frame["Elements"], frame["XYZ_Ang"], n_atoms)
    return {
        "ids": np.char.add("qm9_", np.char.zfill(frame["Index"].to_numpy().astype(str), 6)),
        "smiles": frame["SMILES"].to_numpy().astype(str),
        "labels": frame[numeric].to_numpy(np.float64),
        "label_names": np.array([str(c) for c in numeric]),
        "atomic_numbers": atomic_numbers,
        "positions": positions,
    }


def _parse_geometry(elements: pd.Series, xyz: pd.Series, n_atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element-list and nested-coordinate strings -> padded (n, 29) uint8 and (n, 29, 3) float32.

    All strings are joined and read in one numpy pass; each molecule's atoms then go to the
    first `n_atoms` slots of its row (slot index = position within the molecule).
    """
    n = len(n_atoms)
    total = int(n_atoms.sum())
    coords = np.fromstring(",".join(xyz.tolist()).replace("[", "").replace("]", ""), sep=",")
    symbols = np.array(",".join(elements.tolist()).translate(str.maketrans("", "", "[]' ")).split(","))
    if coords.size != 3 * total or symbols.size != total:
        raise DataError("QM9 geometry strings do not match the N_atoms column")
    known, codes = np.unique(symbols, return_inverse=True)
    unknown = set(known.tolist()) - set(_ELEMENTS)
    if unknown:
        raise DataError(f"QM9 table has unexpected elements: {sorted(unknown)}")
    z_of_symbol = np.array([_ELEMENTS[s] for s in known], dtype=np.uint8)
    row = np.repeat(np.arange(n), n_atoms)
    slot = np.arange(total) - np.repeat(np.cumsum(n_atoms) - n_atoms, n_atoms)
    atomic_numbers = np.zeros((n, MAX_ATOMS), np.uint8)
    positions = np.zeros((n, MAX_ATOMS, 3), np.float32)
    atomic_numbers[row, slot] = z_of_symbol[codes]
    positions[row, slot] = coords.reshape(total, 3)
    return atomic_numbers, positions
