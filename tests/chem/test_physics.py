"""Physics descriptors: charge models, invariances and agreement with the DFT dipole."""

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.stats import pearsonr, spearmanr

from activescope.chem.physics import (
    coulomb_eigenvalues,
    embed_smiles,
    mmff_charges_from_xyz,
    physics_descriptors,
    qeq_charges,
)
from activescope.chem.qm9 import load_qm9

WATER_Z = np.array([[8, 1, 1, 0]], np.uint8)
WATER_R = np.array([[[0, 0, 0.12], [0, 0.76, -0.47], [0, -0.76, -0.47], [0, 0, 0]]], np.float32)


def _rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q


@pytest.fixture(scope="module")
def sample():
    return load_qm9(300, seed=7)


def test_qeq_charges_are_neutral_and_chemically_sensible():
    q = qeq_charges(WATER_Z, WATER_R)
    assert q.sum() == pytest.approx(0, abs=1e-9)
    assert q[0, 0] < -0.2 and q[0, 1] == pytest.approx(q[0, 2]) and q[0, 1] > 0
    assert q[0, 3] == 0


def test_qeq_marks_unsupported_elements():
    z = np.array([[6, 1, 1, 1, 1], [26, 8, 0, 0, 0]], np.uint8)
    r = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    q = qeq_charges(z, r)
    assert np.isfinite(q[0]).all() and np.isnan(q[1]).all()


def test_empty_rows_do_not_break_the_batch():
    z = np.vstack([WATER_Z, np.zeros_like(WATER_Z)])
    r = np.vstack([WATER_R, np.zeros_like(WATER_R)])
    q = qeq_charges(z, r)
    np.testing.assert_allclose(q[1], 0)
    assert q[0, 0] < 0


@pytest.mark.parametrize("smiles", [None, ["C=O"], ["CC"]])
def test_mmff_charges_follow_xyz_atom_order(smiles):
    """Same charges from bonds perceived on the structure, from a matching SMILES, or (when the
    SMILES does not match the structure) from the fallback perception."""
    mol = Chem.AddHs(Chem.MolFromSmiles("C=O"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    z = np.array([[a.GetAtomicNum() for a in mol.GetAtoms()]], np.uint8)
    r = mol.GetConformer().GetPositions()[None].astype(np.float32)
    order = np.array([2, 0, 3, 1])
    q = mmff_charges_from_xyz(z[:, order], r[:, order], smiles)
    props = AllChem.MMFFGetMoleculeProperties(mol)
    expected = np.array([props.GetMMFFPartialCharge(i) for i in range(4)])[order]
    np.testing.assert_allclose(q[0], expected, atol=1e-6)


def test_smiles_keeps_zwitterion_charges():
    """qm9_130385 is a zwitterion (DFT dipole 15.9 D); bonds perceived from the structure alone
    put the charges on the wrong atoms (2.8 D), its SMILES carries the right ones."""
    table = load_qm9()
    row = int(np.searchsorted(table.ids, "qm9_130385"))
    z, r = table.atomic_numbers[row : row + 1], table.positions[row : row + 1]
    with_smiles = mmff_charges_from_xyz(z, r, [table.smiles[row]])
    from_structure = mmff_charges_from_xyz(z, r)
    dipoles = [np.linalg.norm((q[0, :, None] * r[0]).sum(0)) * 4.8032 for q in (with_smiles, from_structure)]
    assert table.labels.loc[row, "dipole"] > 15
    assert dipoles[0] > 12 > 4 > dipoles[1]


def test_coulomb_eigenvalues_ignore_atom_order_and_padding():
    z = np.array([[8, 1, 1, 0, 0]], np.uint8)
    r = np.concatenate([WATER_R, np.zeros((1, 1, 3), np.float32)], axis=1)
    perm = np.array([2, 0, 4, 1, 3])
    a = coulomb_eigenvalues(z, r, k=6)
    b = coulomb_eigenvalues(z[:, perm], r[:, perm], k=6)
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert a[0, 0] == pytest.approx(a[0].max()) and (a[0, 3:] == 0).all()


def test_descriptors_are_rotation_and_translation_invariant(sample):
    z, r = sample.atomic_numbers[:40], sample.positions[:40]
    q = mmff_charges_from_xyz(z, r)
    moved = (r @ _rotation(3).T + np.array([5.0, -2.0, 1.0])) * (z > 0)[..., None]
    a, names = physics_descriptors(z, r, q)
    b, _ = physics_descriptors(z, moved.astype(np.float32), q)
    assert a.shape == (40, len(names)) and len(set(names)) == len(names)
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


def test_charge_dipoles_rank_the_dft_dipole(sample):
    """Measured on 3000 random QM9 molecules: MMFF dipole Pearson 0.89 / Spearman 0.92, QEq 0.69 / 0.72."""
    z, r = sample.atomic_numbers, sample.positions
    values, names = physics_descriptors(z, r, mmff_charges_from_xyz(z, r, sample.smiles.tolist()))
    dft = sample.labels["Dipole_debye"].to_numpy()
    mmff = values[:, names.index("mmff_dipole")]
    qeq = values[:, names.index("qeq_dipole")]
    assert pearsonr(mmff, dft)[0] > 0.8 and spearmanr(mmff, dft)[0] > 0.8
    assert pearsonr(qeq, dft)[0] > 0.55
    assert np.isfinite(values).all()


def test_embedding_smiles_pads_and_reports_failures():
    z, r, q = embed_smiles(["CCO", "not a smiles", "C"], seed=0)
    assert z.shape == (3, 9) and r.shape == (3, 9, 3)
    assert (z[0] > 0).sum() == 9 and (z[1] == 0).all() and (z[2] > 0).sum() == 5
    assert np.isnan(q[1]).all() and q[0].sum() == pytest.approx(0, abs=1e-6)
    again = embed_smiles(["CCO"], seed=0)[1]
    np.testing.assert_allclose(again[0], r[0, :9])
