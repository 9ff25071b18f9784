"""Geometry-aware physics descriptors of molecules from their 3D structure.

Inputs are only the structure: atomic numbers and Cartesian positions (Angstrom), padded to a
common atom count with zeros (atomic number 0 = no atom). Nothing computed by DFT is used.

The descriptors aim at properties such as the dipole moment. Partial charges come from two
independent models: MMFF94 (RDKit, on the SMILES molecule matched to the 3D atoms, or on bonds
perceived from the 3D structure; on all of QM9 its dipole has Pearson r 0.91 and Spearman r
0.92 with the DFT dipole, and its top 500 hold all of the true top 100) and charge
equilibration (QEq, Rappe & Goddard 1991, solved for all molecules at once as one batched
linear system; r 0.71). Each gives a dipole vector, its components along the principal axes of
inertia and the distance between the positive and negative charge centroids. Shape (radius of gyration, principal moments), element counts and
sorted Coulomb-matrix eigenvalues complete the block.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Sequence

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem, rdDetermineBonds

E_ANGSTROM_TO_DEBYE = 4.80320
COULOMB_EV_ANGSTROM = 14.3996
N_EIGENVALUES = 29
COUNTED_ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9, "S": 16, "Cl": 17}

# QEq electronegativity chi and idempotential J (eV), Rappe & Goddard, J. Phys. Chem. 95, 3358 (1991).
_QEQ = {1: (4.528, 13.890), 6: (5.343, 10.126), 7: (6.899, 11.760), 8: (8.741, 13.364), 9: (10.874, 14.948),
        14: (4.168, 6.974), 15: (5.463, 8.000), 16: (6.928, 8.972), 17: (8.564, 9.892), 35: (7.790, 8.850),
        53: (6.822, 7.524)}
_PERIODIC = Chem.GetPeriodicTable()
_MASS = np.array([0.0] + [_PERIODIC.GetAtomicWeight(z) for z in range(1, 119)])
_CHI = np.full(119, np.nan)
_HARDNESS = np.full(119, np.nan)
for _z, (_chi, _j) in _QEQ.items():
    _CHI[_z], _HARDNESS[_z] = _chi, _j

RDLogger.DisableLog("rdApp.*")


def qeq_charges(atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """QEq partial charges (e) of neutral molecules, (n, m) from (n, m) Z and (n, m, 3) Angstrom.

    Minimises sum_i chi_i q_i + J_i q_i^2 / 2 + sum_{i<j} q_i q_j k / sqrt(r_ij^2 + a_ij^2)
    (Ohno-Klopman shielding, a_ij = 2k / (J_i + J_j)) subject to sum_i q_i = 0: one
    (m+1) x (m+1) linear system per molecule, all solved in one batched call. Padding atoms get
    an identity row and zero charge. Molecules with an element lacking parameters get NaN.
    """
    z = atomic_numbers.astype(np.int64)
    present = z > 0
    n, m = z.shape
    chi = np.where(present, _CHI[z], 0.0)
    hardness = np.where(present, _HARDNESS[z], 1.0)
    unsupported = ~np.isfinite(chi).all(axis=1)
    chi = np.nan_to_num(chi)
    hardness = np.where(np.isfinite(hardness), hardness, 1.0)
    r2 = _squared_distances(positions.astype(np.float64))
    shield = 2.0 * COULOMB_EV_ANGSTROM / (hardness[:, :, None] + hardness[:, None, :])
    coupling = COULOMB_EV_ANGSTROM / np.sqrt(r2 + shield**2)
    pair = present[:, :, None] & present[:, None, :]
    system = np.zeros((n, m + 1, m + 1))
    system[:, :m, :m] = np.where(pair, coupling, 0.0)
    diag = np.arange(m)
    system[:, diag, diag] = hardness
    system[:, :m, m] = present
    system[:, m, :m] = present
    system[:, m, m] = ~present.any(axis=1)
    rhs = np.zeros((n, m + 1, 1))
    rhs[:, :m, 0] = -chi
    charges = np.linalg.solve(system, rhs)[:, :m, 0]
    charges[unsupported] = np.nan
    return charges


def coulomb_eigenvalues(atomic_numbers: np.ndarray, positions: np.ndarray, k: int = N_EIGENVALUES) -> np.ndarray:
    """The k largest-magnitude eigenvalues of each Coulomb matrix, sorted by decreasing |value|.

    Coulomb matrix: M_ii = Z_i^2.4 / 2, M_ij = Z_i Z_j / r_ij (r in Angstrom); padding atoms give
    zero rows, hence zero eigenvalues, so molecules of any size share one (n, k) layout.
    """
    z = atomic_numbers.astype(np.float64)
    r = np.sqrt(_squared_distances(positions.astype(np.float64)))
    m = z.shape[1]
    off_diag = ~np.eye(m, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        matrix = np.where(off_diag, z[:, :, None] * z[:, None, :] / r, 0.0)
    matrix = np.nan_to_num(matrix, nan=0.0, posinf=0.0)
    matrix[:, np.arange(m), np.arange(m)] = 0.5 * z**2.4
    values = np.linalg.eigvalsh(matrix)
    order = np.argsort(-np.abs(values), axis=1)
    values = np.take_along_axis(values, order, axis=1)[:, :k]
    return np.pad(values, ((0, 0), (0, k - values.shape[1])))


def principal_axes(atomic_numbers: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre of mass (n, 3), principal moments (n, 3; amu A^2, ascending) and axes (n, 3, 3)."""
    mass = _MASS[atomic_numbers.astype(np.int64)]
    total = mass.sum(axis=1, keepdims=True)
    centre = (mass[..., None] * positions).sum(axis=1) / total
    rel = (positions - centre[:, None, :]) * (atomic_numbers > 0)[..., None]
    second = np.einsum("na,nai,naj->nij", mass, rel, rel)
    inertia = np.trace(second, axis1=1, axis2=2)[:, None, None] * np.eye(3) - second
    moments, axes = np.linalg.eigh(inertia)
    return centre, moments, axes


def charge_descriptors(charges: np.ndarray, positions: np.ndarray, axes: np.ndarray) -> dict[str, np.ndarray]:
    """Dipole and charge-separation descriptors from partial charges (e) at positions (A).

    dipole: |sum q_i r_i| in Debye; dipole_a/b/c: its absolute components along the principal
    axes (a: smallest moment); separation: distance (A) between the positive- and negative-charge
    centroids; charge_spread: total positive charge (e); q_max, q_min: extreme atomic charges.
    """
    q = np.nan_to_num(charges)
    vector = (q[..., None] * positions).sum(axis=1) * E_ANGSTROM_TO_DEBYE
    components = np.abs(np.einsum("ni,nij->nj", vector, axes))
    positive, negative = np.clip(q, 0, None), np.clip(-q, 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre_pos = (positive[..., None] * positions).sum(axis=1) / positive.sum(axis=1, keepdims=True)
        centre_neg = (negative[..., None] * positions).sum(axis=1) / negative.sum(axis=1, keepdims=True)
    separation = np.nan_to_num(np.linalg.norm(centre_pos - centre_neg, axis=1))
    out = {
        "dipole": np.linalg.norm(vector, axis=1),
        "dipole_a": components[:, 0],
        "dipole_b": components[:, 1],
        "dipole_c": components[:, 2],
        "separation": separation,
        "charge_spread": positive.sum(axis=1),
        "q_max": q.max(axis=1),
        "q_min": q.min(axis=1),
    }
    failed = ~np.isfinite(charges).all(axis=1)
    return {name: np.where(failed, np.nan, value) for name, value in out.items()}


def physics_descriptors(
    atomic_numbers: np.ndarray, positions: np.ndarray, mmff: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """The physics block: (n, d) float32 descriptors and their names.

    mmff: (n, m) MMFF94 partial charges in the same atom order, NaN rows where MMFF failed
    (those rows get NaN MMFF descriptors, to be imputed, and `mmff_failed` = 1).
    """
    present = atomic_numbers > 0
    columns: dict[str, np.ndarray] = {
        f"count_{symbol}": (atomic_numbers == z).sum(axis=1) for symbol, z in COUNTED_ELEMENTS.items()
    }
    columns["n_atoms"] = present.sum(axis=1)
    columns["n_heavy"] = (atomic_numbers > 1).sum(axis=1)
    centre, moments, axes = principal_axes(atomic_numbers, positions)
    mass = _MASS[atomic_numbers.astype(np.int64)]
    spread = ((positions - centre[:, None, :]) ** 2).sum(axis=2) * present
    columns["radius_of_gyration"] = np.sqrt((mass * spread).sum(axis=1) / mass.sum(axis=1))
    for label, moment in zip("abc", moments.T):
        columns[f"inertia_{label}"] = moment
    relative = (positions - centre[:, None, :]) * present[..., None]
    for model, charges in (("mmff", mmff), ("qeq", qeq_charges(atomic_numbers, relative))):
        for name, value in charge_descriptors(charges, relative, axes).items():
            columns[f"{model}_{name}"] = value
    columns["mmff_failed"] = ~np.isfinite(mmff).all(axis=1)
    eigen = coulomb_eigenvalues(atomic_numbers, positions)
    names = list(columns) + [f"coulomb_eig_{i}" for i in range(eigen.shape[1])]
    values = np.column_stack([np.asarray(v, np.float64) for v in columns.values()] + [eigen])
    return values.astype(np.float32), names


def mmff_charges_from_xyz(
    atomic_numbers: np.ndarray, positions: np.ndarray, smiles: Sequence[str] | None = None
) -> np.ndarray:
    """MMFF94 partial charges (e) in XYZ atom order, (n, m); NaN rows where no molecule is found.

    With `smiles`, the SMILES molecule (hydrogens added) is used when its graph matches the bonds
    perceived from the 3D structure: its bond orders and formal charges (zwitterions!) are then
    exact, and its charges are mapped onto the XYZ atoms by a graph match. Otherwise bond orders
    are perceived from the 3D structure (xyz2mol, then extended Hueckel as a fallback).
    """
    out = np.zeros(atomic_numbers.shape)
    for row, (z, r) in enumerate(zip(atomic_numbers, positions)):
        n = int((z > 0).sum())
        block = _xyz_block(z[:n], r[:n])
        charges = _charges_by_graph_match(block, smiles[row]) if smiles is not None else None
        if charges is None:
            mol = _mol_from_xyz(block)
            charges = np.nan if mol is None else _mmff_charges(mol)
        out[row, :n] = charges
    return out


def embed_smiles(smiles: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3D structures for SMILES by RDKit ETKDG (seeded) with MMFF94 charges, padded to the
    largest molecule: atomic numbers (n, m), positions (n, m, 3) in A, charges (n, m) in e.
    Molecules that fail to parse or embed have all-zero atomic numbers and NaN charges.
    """
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    mols = []
    for text in smiles:
        mol = Chem.MolFromSmiles(text)
        mol = Chem.AddHs(mol) if mol is not None else None
        mols.append(mol if mol is not None and AllChem.EmbedMolecule(mol, params) == 0 else None)
    width = max([mol.GetNumAtoms() for mol in mols if mol is not None], default=1)
    z_out = np.zeros((len(smiles), width), np.uint8)
    r_out = np.zeros((len(smiles), width, 3), np.float32)
    q_out = np.full((len(smiles), width), np.nan)
    for row, mol in enumerate(mols):
        if mol is not None:
            n = mol.GetNumAtoms()
            z_out[row, :n] = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
            r_out[row, :n] = mol.GetConformer().GetPositions()
            q_out[row] = 0.0
            q_out[row, :n] = _mmff_charges(mol)
    return z_out, r_out, q_out


def _mmff_charges(mol: Chem.Mol) -> np.ndarray:
    props = AllChem.MMFFGetMoleculeProperties(mol)
    if props is None:
        return np.full(mol.GetNumAtoms(), np.nan)
    return np.array([props.GetMMFFPartialCharge(i) for i in range(mol.GetNumAtoms())])


def _xyz_block(z: np.ndarray, r: np.ndarray) -> str:
    lines = (f"{_PERIODIC.GetElementSymbol(int(a))} {x:.6f} {y:.6f} {w:.6f}" for a, (x, y, w) in zip(z, r))
    return f"{len(z)}\n\n" + "\n".join(lines)


def _charges_by_graph_match(block: str, smiles: str) -> np.ndarray | None:
    """MMFF charges of the SMILES molecule in XYZ atom order, or None if the graphs differ."""
    template = Chem.MolFromSmiles(smiles)
    if template is None:
        return None
    template = Chem.AddHs(template)
    structure = Chem.MolFromXYZBlock(block)
    if structure is None or template.GetNumAtoms() != structure.GetNumAtoms():
        return None
    rdDetermineBonds.DetermineConnectivity(structure)
    if structure.GetNumBonds() != template.GetNumBonds():
        return None
    match = _skeleton(structure).GetSubstructMatch(_skeleton(template))
    if len(match) != template.GetNumAtoms():
        return None
    template_charges = _mmff_charges(template)
    if not np.isfinite(template_charges).all():
        return None
    charges = np.empty(len(match))
    charges[list(match)] = template_charges
    return charges


def _skeleton(mol: Chem.Mol) -> Chem.Mol:
    """The bare graph: element-labelled atoms joined by single bonds, no charges or aromaticity."""
    skeleton = Chem.RWMol(mol)
    for bond in skeleton.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    for atom in skeleton.GetAtoms():
        atom.SetIsAromatic(False)
        atom.SetFormalCharge(0)
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(0)
    skeleton.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(skeleton)
    return skeleton


def _mol_from_xyz(block: str) -> Chem.Mol | None:
    for hueckel in (False, True):
        mol = Chem.MolFromXYZBlock(block)
        try:
            with _silenced_output() if hueckel else contextlib.nullcontext():
                rdDetermineBonds.DetermineBonds(mol, charge=0, useHueckel=hueckel)
            Chem.SanitizeMol(mol)
            return mol
        except (ValueError, RuntimeError):
            continue
    return None


@contextlib.contextmanager
def _silenced_output() -> Iterator[None]:
    """Redirect file descriptors 1 and 2 to /dev/null (C++ code writes there directly)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (devnull, *saved):
            os.close(fd)


def _squared_distances(positions: np.ndarray) -> np.ndarray:
    diff = positions[:, :, None, :] - positions[:, None, :, :]
    return (diff**2).sum(axis=-1)
