"""The qm9 and csv pool sources, built through the engine's registry and spec."""

import logging

import numpy as np
import pandas as pd
import pytest

from activescope.chem.qm9 import load_qm9
from activescope.engine.errors import DataError, SpecError
from activescope.engine.pool import build_pool
from activescope.engine.registry import SOURCES
from activescope.engine.spec import parse_spec


def test_sources_are_registered():
    assert {"qm9", "csv"} <= set(SOURCES.names())


def test_qm9_pool_subset():
    pool = build_pool("qm9", subset=120, subset_seed=5, features=["physics", {"kind": "morgan", "n_bits": 128}])
    assert len(pool) == 120 and pool.X.shape == (120, len(pool.feature_names))
    assert set(pool.feature_kinds) == {"physics", "morgan"}
    assert pool.ids[0].startswith("qm9_") and pool.info["smiles"].notna().all()
    assert {"dipole", "Dipole_debye", "gap", "u0", "cv"} <= set(pool.labels.columns)
    table = load_qm9(120, seed=5)
    assert pool.ids.tolist() == table.ids.tolist()
    np.testing.assert_array_equal(pool.labels["dipole"], table.labels["Dipole_debye"])
    assert pool.info["smiles"].tolist() == table.smiles.tolist()


def test_spec_validates_qm9_options():
    spec = parse_spec({"target": {"column": "dipole"}, "data": {"source": "qm9", "subset": 50, "features": "physics"}})
    assert spec.data.options()["subset"] == 50
    with pytest.raises(SpecError, match="features"):
        parse_spec({"target": {"column": "dipole"}, "data": {"source": "qm9", "features": ["fingerprints"]}})
    with pytest.raises(SpecError, match="subet"):
        parse_spec({"target": {"column": "dipole"}, "data": {"source": "qm9", "subet": 50}})


@pytest.fixture
def user_csv(tmp_path):
    path = tmp_path / "pool.csv"
    pd.DataFrame(
        {
            "name": ["ethanol", "broken", "benzene", "acetone", "empty"],
            "smiles": ["CCO", "C1CC", "c1ccccc1", "CC(C)=O", None],
            "yield": [0.5, 0.1, 0.9, 0.3, 0.2],
            "note": ["a", "b", "c", "d", "e"],
        }
    ).to_csv(path, index=False)
    return path


def test_csv_pool_skips_and_reports_invalid_smiles(user_csv, caplog):
    with caplog.at_level(logging.WARNING, logger="activescope.chem"):
        pool = build_pool("csv", path=str(user_csv), id_column="name", features=["physics", "rdkit2d"])
    assert pool.ids.tolist() == ["ethanol", "benzene", "acetone"]
    assert pool.info["smiles"].tolist() == ["CCO", "c1ccccc1", "CC(C)=O"]
    assert pool.labels.columns.tolist() == ["yield"]
    np.testing.assert_allclose(pool.labels["yield"], [0.5, 0.9, 0.3])
    assert "2 invalid SMILES" in caplog.text and "broken, empty" in caplog.text
    assert np.isfinite(pool.X).all()
    dipole = pool.X[:, pool.feature_names.index("physics:mmff_dipole")]
    assert dipole[1] == dipole.min()  # benzene has no dipole


def test_csv_row_numbers_are_default_ids(user_csv):
    pool = build_pool("csv", path=str(user_csv), features=[{"kind": "morgan", "n_bits": 64}])
    assert pool.ids.tolist() == ["0", "2", "3"]
    assert "name" not in pool.labels.columns


def test_csv_strict_missing_column_and_no_valid_smiles(user_csv, tmp_path):
    with pytest.raises(DataError, match="2 invalid SMILES"):
        build_pool("csv", path=str(user_csv), strict=True)
    with pytest.raises(DataError, match="no column 'SMILES'"):
        build_pool("csv", path=str(user_csv), smiles_column="SMILES")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"smiles": ["((", "xx"], "y": [1, 2]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="no valid SMILES"):
        build_pool("csv", path=str(bad))
    with pytest.raises(DataError, match="not found"):
        build_pool("csv", path=str(tmp_path / "missing.csv"))
