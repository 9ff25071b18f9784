"""Atom matching metrics on hand-made cases whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activescope.engine.errors import DataError
from activescope.microscopy.find.metrics import detection_scores, match_atoms


def _atoms(rows: list[tuple[float, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["x", "y", "cls"])


TRUE = _atoms([(10.0, 10.0, 1), (20.0, 10.0, 2), (30.0, 10.0, 1)])


def test_perfect_match() -> None:
    result = match_atoms(TRUE, TRUE, tol_px=1.0)
    assert (result.precision, result.recall, result.f1) == (1.0, 1.0, 1.0)
    assert result.rmse_px == 0.0 and result.class_accuracy == 1.0
    assert result.pred_correct.all()
    assert np.array_equal(result.confusion, [[0, 0, 0], [0, 2, 0], [0, 0, 1]])


def test_one_missed_atom() -> None:
    result = match_atoms(TRUE.iloc[:2], TRUE, tol_px=1.0)
    assert result.precision == 1.0 and result.recall == pytest.approx(2 / 3)
    assert result.f1 == pytest.approx(0.8)
    assert result.confusion[1, 0] == 1 and result.confusion.sum() == 3


def test_one_spurious_atom_with_localisation_error() -> None:
    pred = pd.concat([TRUE.assign(x=TRUE["x"] + 0.3), _atoms([(50.0, 50.0, 2)])],
                     ignore_index=True)
    result = match_atoms(pred, TRUE, tol_px=1.0)
    assert result.precision == 0.75 and result.recall == 1.0
    assert result.rmse_px == pytest.approx(0.3)
    assert result.pred_matched.tolist() == [True, True, True, False]
    assert result.confusion[0, 2] == 1


def test_swapped_class_is_matched_but_not_correct() -> None:
    pred = TRUE.assign(cls=[2, 2, 1])
    result = match_atoms(pred, TRUE, tol_px=1.0)
    assert result.f1 == 1.0 and result.class_accuracy == pytest.approx(2 / 3)
    assert result.pred_correct.tolist() == [False, True, True]
    assert result.confusion[1, 2] == 1
    per_class = result.per_class(["background", "A", "B"])
    assert per_class.loc["A", "recall"] == 0.5 and per_class.loc["B", "precision"] == 0.5
    assert result.confusion_frame(["background", "A", "B"]).loc["A", "B"] == 1


def test_tolerance_boundary() -> None:
    true = _atoms([(0.0, 0.0, 1)])
    assert match_atoms(_atoms([(1.999, 0.0, 1)]), true, tol_px=2.0).n_matched == 1
    assert match_atoms(_atoms([(2.001, 0.0, 1)]), true, tol_px=2.0).n_matched == 0


def test_assignment_is_optimal_not_greedy() -> None:
    # greedy nearest pairing takes (1.1 -> 2.0) and strands both others; optimal matches two
    true = np.array([[0.0, 0.0], [2.0, 0.0]])
    pred = np.array([[1.1, 0.0], [3.0, 0.0]])
    result = match_atoms(pred, true, tol_px=1.5)
    assert result.n_matched == 2
    assert result.pred_index.tolist() == [0, 1] and result.true_index.tolist() == [0, 1]


def test_arrays_and_empty_inputs() -> None:
    result = match_atoms(np.zeros((0, 2)), TRUE, tol_px=1.0)
    assert result.recall == 0.0 and np.isnan(result.precision) and result.f1 == 0.0
    result = match_atoms(np.array([[10.0, 10.0, 1]]), np.array([[10.2, 10.0, 1]]), tol_px=1.0)
    assert result.n_matched == 1 and result.rmse_px == pytest.approx(0.2)
    with pytest.raises(DataError):
        match_atoms(TRUE, TRUE, tol_px=0.0)
    with pytest.raises(DataError):
        match_atoms(TRUE.drop(columns="y"), TRUE, tol_px=1.0)


def test_detection_scores_pool_frames() -> None:
    true = [TRUE, TRUE.iloc[:1]]
    pred = pd.concat([TRUE.assign(frame=0), _atoms([(40.0, 40.0, 1)]).assign(frame=1)],
                     ignore_index=True)
    pooled = detection_scores(pred, true, tol_px=1.0)
    assert (pooled.n_true, pooled.n_pred, pooled.n_matched) == (4, 4, 3)
    assert pooled.pred_correct.tolist() == [True, True, True, False]
    assert pooled.true_index.tolist() == [0, 1, 2]
    assert np.array_equal(pooled.confusion, [[0, 1, 0], [1, 2, 0], [0, 0, 1]])
    assert pooled.summary()["f1"] == pytest.approx(0.75)
    as_lists = detection_scores([p.drop(columns="frame") for _, p in pred.groupby("frame")], true,
                                tol_px=1.0)
    assert np.array_equal(as_lists.confusion, pooled.confusion)
    with pytest.raises(DataError):
        detection_scores([TRUE], true, tol_px=1.0)
