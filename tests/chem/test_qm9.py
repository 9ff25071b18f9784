"""QM9 loading: geometry parsing, labels, ids, subsets, target aliases."""

import numpy as np
import pandas as pd
import pytest

from activescope.chem.qm9 import TARGET_ALIASES, _parse_geometry, label_columns, load_qm9, resolve_target
from activescope.engine.errors import DataError, SpecError


@pytest.fixture(scope="module")
def qm9():
    return load_qm9()


def test_full_table_size_and_ids(qm9):
    assert len(qm9) == 130_831
    assert qm9.ids[0] == "qm9_000001"
    assert qm9.ids[-1] == "qm9_133885"
    assert len(set(qm9.ids.tolist())) == len(qm9)


def test_methane_geometry_and_labels(qm9):
    assert qm9.smiles[0] == "C"
    np.testing.assert_array_equal(qm9.atomic_numbers[0, :6], [6, 1, 1, 1, 1, 0])
    assert (qm9.atomic_numbers[0, 5:] == 0).all() and (qm9.positions[0, 5:] == 0).all()
    np.testing.assert_allclose(qm9.positions[0, 0], [-0.0126981359, 1.0858041578, 0.0080009958], atol=1e-6)
    bond = np.linalg.norm(qm9.positions[0, 1:5] - qm9.positions[0, 0], axis=1)
    np.testing.assert_allclose(bond, 1.09, atol=0.01)
    assert qm9.labels.loc[0, "Dipole_debye"] == 0.0
    assert qm9.labels.loc[0, "N_atoms"] == 5
    assert qm9.labels.loc[0, "A_xx"] == pytest.approx(13.211)


def test_water_is_polar(qm9):
    assert qm9.smiles[2] == "O"
    assert qm9.labels.loc[2, "dipole"] == pytest.approx(1.8511, abs=1e-3)


def test_atom_counts_match_padding(qm9):
    counts = (qm9.atomic_numbers > 0).sum(axis=1)
    np.testing.assert_array_equal(counts, qm9.labels["N_atoms"].to_numpy())
    assert set(np.unique(qm9.atomic_numbers).tolist()) == {0, 1, 6, 7, 8, 9}


def test_labels_are_numeric_and_exclude_mulliken(qm9):
    assert all(pd.api.types.is_float_dtype(qm9.labels[c]) or c == "N_atoms" for c in label_columns())
    assert "Mulliken_pop" not in qm9.labels.columns
    for alias, column in TARGET_ALIASES.items():
        np.testing.assert_array_equal(qm9.labels[alias].to_numpy(), qm9.labels[column].to_numpy())


def test_subset_is_seeded_sorted_and_consistent(qm9):
    a, b, c = load_qm9(50, seed=1), load_qm9(50, seed=1), load_qm9(50, seed=2)
    assert a.ids.tolist() == b.ids.tolist() != c.ids.tolist()
    assert a.ids.tolist() == sorted(a.ids.tolist())
    rows = np.searchsorted(qm9.ids, a.ids)
    np.testing.assert_array_equal(a.positions, qm9.positions[rows])
    np.testing.assert_array_equal(a.labels["gap"].to_numpy(), qm9.labels["gap"].to_numpy()[rows])
    with pytest.raises(DataError):
        load_qm9(0)


def test_resolve_target():
    assert resolve_target("dipole") == "Dipole_debye"
    assert resolve_target("gap") == "HOMO_LUMO_gap_au"
    assert resolve_target("ZPVE_au") == "ZPVE_au"
    with pytest.raises(SpecError, match="allowed: .*dipole"):
        resolve_target("bandgap")


def test_geometry_parser_reads_python_floats():
    elements = pd.Series(["['O','H','H']", "['C','F']"])
    xyz = pd.Series(["[[0.,0.,1.5e-1],[1.,0.,0.],[-1.,0,0.]]", "[[1E-1,2.,3.],[4.,5.,-6.]]"])
    z, r = _parse_geometry(elements, xyz, np.array([3, 2]))
    np.testing.assert_array_equal(z[:, :4], [[8, 1, 1, 0], [6, 9, 0, 0]])
    np.testing.assert_allclose(r[0, 0], [0, 0, 0.15])
    np.testing.assert_allclose(r[1, :2], [[0.1, 2, 3], [4, 5, -6]])
    with pytest.raises(DataError):
        _parse_geometry(elements, xyz, np.array([3, 3]))
