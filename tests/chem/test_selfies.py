"""SELFIES featurizer: exact round trip on QM9, fixed vocabulary, unencodable SMILES skipped and reported."""

import logging

import numpy as np
import pytest

from activescope.chem.features import Molecules, featurize
from activescope.chem.qm9 import load_qm9
from activescope.chem.selfies import (
    PAD,
    SelfiesFeatures,
    canonical,
    sample_quality,
    tokens_to_smiles,
    vocabulary,
)

NITRO = "O=N(=O)C1=CC=CN1"  # a QM9 SMILES with pentavalent nitrogen: SELFIES' constraints refuse it


def _molecules(smiles, key):
    return Molecules(ids=np.array([f"m{i}" for i in range(len(smiles))]), smiles=np.array(smiles), data_key={"data": key})


def _tokens(matrix):
    alphabet, length = vocabulary(matrix.names)
    return matrix.X.reshape(len(matrix.X), length, len(alphabet)).argmax(axis=2), alphabet, length


def test_round_trip_smiles_selfies_one_hot_smiles_on_qm9():
    table = load_qm9(400, seed=5)
    matrix = featurize(_molecules(table.smiles.tolist(), "selfies-qm9-400-5"), [SelfiesFeatures()])
    assert matrix.X.dtype == np.float32 and set(np.unique(matrix.X)) <= {0.0, 1.0}
    tokens, alphabet, length = _tokens(matrix)
    assert alphabet[0] == PAD and alphabet[1:] == sorted(alphabet[1:])
    assert matrix.X.shape == (len(matrix.rows), length * len(alphabet))
    assert (matrix.X.reshape(len(tokens), length, -1).sum(axis=2) == 1).all()  # exactly one token per position
    decoded = canonical(tokens_to_smiles(tokens, alphabet))
    original = canonical(table.smiles[matrix.rows].tolist())
    assert len(matrix.rows) >= 395 and decoded == original


def test_unencodable_smiles_are_skipped_and_reported(caplog):
    smiles = ["CCO", NITRO, "c1ccccc1O", "C#N"]
    with caplog.at_level(logging.WARNING, logger="activescope.chem"):
        matrix = featurize(_molecules(smiles, "selfies-bad"), [SelfiesFeatures()])
    assert matrix.rows.tolist() == [0, 2, 3]
    report = [r.getMessage() for r in caplog.records if r.getMessage().startswith("selfies:")]
    assert report == [f"selfies: skipped 1 SELFIES cannot encode (e.g. {NITRO})"]
    tokens, alphabet, _ = _tokens(matrix)
    assert canonical(tokens_to_smiles(tokens, alphabet)) == canonical(["CCO", "c1ccccc1O", "C#N"])


def test_given_vocabulary_fixes_the_columns_and_skips_what_does_not_fit(caplog):
    fitted = featurize(_molecules(["CCO", "CCN"], "selfies-vocab"), [SelfiesFeatures()])
    alphabet, length = vocabulary(fitted.names)
    config = SelfiesFeatures(alphabet=tuple(alphabet), max_length=length)
    with caplog.at_level(logging.WARNING, logger="activescope.chem"):
        other = featurize(_molecules(["CO", "CCF", "CCCCCO"], "selfies-vocab-2"), [config])
    assert other.names == fitted.names and other.rows.tolist() == [0]
    message = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("selfies:"))
    assert f"1 longer than max_length {length} (e.g. CCCCCO)" in message and "1 tokens outside the alphabet (e.g. CCF)" in message


def test_sample_quality_counts_valid_unique_and_novel():
    quality = sample_quality(["CCO", "OCC", "C1CC", "CCN"], reference=["CCO"])
    assert quality == pytest.approx({"validity": 0.75, "uniqueness": 2 / 3, "novelty": 0.25})
