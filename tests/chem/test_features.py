"""Featurizers: shapes, determinism, cache reuse, standardisation and raw fingerprints."""

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from activescope.chem.features import (
    RDKIT2D_DESCRIPTORS,
    FeatureConfig,
    Molecules,
    MorganFeatures,
    PhysicsFeatures,
    Rdkit2dFeatures,
    as_config_dicts,
    featurize,
    morgan_counts,
    rdkit2d_descriptors,
)
from activescope.chem.qm9 import load_qm9
from activescope.engine.cache import cache_dir

CONFIGS = [PhysicsFeatures(), Rdkit2dFeatures(), MorganFeatures(radius=2, n_bits=256)]


@pytest.fixture(scope="module")
def molecules():
    table = load_qm9(300, seed=3)
    return Molecules(
        ids=table.ids,
        smiles=table.smiles,
        data_key={"data": "test-subset-300-seed-3"},
        atomic_numbers=table.atomic_numbers,
        positions=table.positions,
    )


@pytest.fixture(scope="module")
def matrix(molecules):
    return featurize(molecules, CONFIGS)


def test_blocks_and_names(matrix):
    kinds = matrix.kinds
    assert list(kinds) == ["physics", "rdkit2d", "morgan"]
    assert kinds["rdkit2d"].stop - kinds["rdkit2d"].start == len(RDKIT2D_DESCRIPTORS)
    assert kinds["morgan"] == slice(matrix.X.shape[1] - 256, matrix.X.shape[1])
    assert matrix.X.dtype == np.float32 and len(matrix.names) == matrix.X.shape[1]
    assert matrix.names[0].startswith("physics:") and "physics:mmff_dipole" in matrix.names
    assert np.isfinite(matrix.X).all()
    np.testing.assert_array_equal(matrix.rows, np.arange(300))


def test_descriptor_blocks_are_standardised_and_fingerprints_raw(matrix):
    dense = matrix.X[:, : matrix.kinds["morgan"].start]
    std = dense.std(axis=0)
    np.testing.assert_allclose(dense.mean(axis=0), 0, atol=1e-4)
    assert np.all(np.isclose(std, 1, atol=1e-3) | (std == 0))
    counts = matrix.X[:, matrix.kinds["morgan"]]
    assert (counts >= 0).all() and np.array_equal(counts, np.round(counts)) and counts.max() > 1


def test_second_featurization_is_a_cache_hit_and_identical(molecules, matrix):
    entries = sorted(p.name for p in cache_dir().iterdir())
    again = featurize(molecules, CONFIGS)
    assert sorted(p.name for p in cache_dir().iterdir()) == entries
    np.testing.assert_array_equal(again.X, matrix.X)


def test_morgan_counts_match_rdkit_and_flag_bad_smiles():
    counts, valid = morgan_counts(["CCO", "C1CC1", "xyz"], radius=1, n_bits=64)
    assert counts.dtype == np.uint8 and counts.shape == (3, 64)
    assert valid.tolist() == [True, True, False] and counts[2].sum() == 0
    assert counts[0].sum() == 6  # 3 heavy atoms x (radius 0 + radius 1 environments)


def test_rdkit2d_descriptors_values():
    values, valid = rdkit2d_descriptors(["O", "c1ccccc1O", "(("])
    assert values.shape == (3, len(RDKIT2D_DESCRIPTORS)) and valid.tolist() == [True, True, False]
    column = dict(zip(RDKIT2D_DESCRIPTORS, values[1]))
    assert column["NumAromaticRings"] == 1 and column["NumHDonors"] == 1
    assert column["MolWt"] == pytest.approx(94.11, abs=0.01)
    assert np.isnan(values[2]).all()


def test_config_shorthand_and_validation():
    adapter = TypeAdapter(list[FeatureConfig])
    configs = adapter.validate_python(as_config_dicts(["physics", {"kind": "morgan", "radius": 3}]))
    assert configs == [PhysicsFeatures(), MorganFeatures(radius=3, n_bits=2048)]
    with pytest.raises(ValidationError):
        adapter.validate_python(as_config_dicts(["fingerprint"]))
    with pytest.raises(ValidationError):
        adapter.validate_python([{"kind": "morgan", "bits": 10}])
