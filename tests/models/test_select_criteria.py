"""The cross-validated selection criteria of `engine.select`: the top-recall score by hand, and a
target whose measured top only one block explains, where the top-focused criteria and Spearman
disagree."""

from __future__ import annotations

import numpy as np
import pytest

from activescope.engine.errors import SpecError
from activescope.engine.select import MIN_TOP, SelectSurrogate, top_recall
from activescope.models.auto import AutoSurrogate


def test_top_recall_by_hand():
    y = np.arange(20.0)  # the best 5 (MIN_TOP) are rows 15..19
    predicted = y.copy()
    predicted[[19, 18]] = -1.0  # two of the true best predicted worst
    assert top_recall(predicted, y, 0.1) == pytest.approx(3 / 5)
    assert top_recall(y, y, 0.1) == 1.0 and top_recall(-y, y, 0.1) == 0.0
    assert top_recall(predicted, y, 0.5) == pytest.approx(8 / 10)  # k = 10 rows: 10..17 found
    assert MIN_TOP == 5


def top_only_data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Column 0 (`trend`) orders the bulk of y; column 1 (`flag`) marks the ~10 % of rows whose y
    jumps above every other value, unrelated to the trend."""
    rng = np.random.default_rng(seed)
    trend = rng.uniform(size=n)
    flag = (rng.uniform(size=n) < 0.1).astype(float)
    return np.column_stack([trend, flag]), np.where(flag == 1, 3 + rng.uniform(size=n), trend)


@pytest.mark.parametrize(("criterion", "choice"), [("cv_spearman", "rf:trend"), ("cv_top", "rf:flag"), ("cv_blend", "rf:flag")])
def test_top_focused_criteria_pick_the_block_that_finds_the_top(criterion, choice):
    X, y = top_only_data()
    model = AutoSurrogate(families=["rf"], criterion=criterion)
    model.use_feature_blocks({"trend": slice(0, 1), "flag": slice(1, 2)})
    record = model.fit(X, y).round_record()
    assert record["choice"] == choice and record["criterion"] == criterion
    assert record["cv_spearman"]["rf:trend"] > record["cv_spearman"]["rf:flag"]  # global ranking: the trend
    assert record["cv_top"]["rf:flag"] == 1.0 > record["cv_top"]["rf:trend"]  # the measured top: the flag
    expected = {"cv_spearman": record["cv_spearman"], "cv_top": record["cv_top"]}.get(criterion)
    if expected is None:
        expected = {k: (record["cv_spearman"][k] + record["cv_top"][k]) / 2 for k in record["cv_top"]}
    assert record["rewards"] == pytest.approx(expected)


def test_select_rejects_a_bad_top_fraction():
    with pytest.raises(SpecError, match="top_fraction"):
        SelectSurrogate(candidates={"a": {"kind": "rf"}, "b": {"kind": "rf"}}, reward="cv_top", top_fraction=0.9)


def additive_data(n: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """y = a + b with a and b independent, each seen by one column: either column alone ranks y
    only roughly, both together exactly."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2))
    return X, X[:, 0] + X[:, 1]


def test_an_ensemble_of_the_best_candidates_predicts_when_it_cross_validates_better():
    X, y = additive_data()
    model = AutoSurrogate(families=["rf"], ensemble=2)
    model.use_feature_blocks({"a": slice(0, 1), "b": slice(1, 2)})
    record = model.fit(X, y).round_record()
    assert record["ensemble"]["score"] > max(record["rewards"].values())
    assert sorted(record["predicting"]) == ["rf:a", "rf:b"] and model.hyperparameters()["ensemble_size"] == 2.0
    mean, variance = model.predict(X[:20])
    alone = [model.models[name].predict(X[:20]) for name in ("rf:a", "rf:b")]
    assert np.allclose(mean, (alone[0][0] + alone[1][0]) / 2)
    assert np.allclose(variance, (alone[0][1] + alone[1][1]) / 2 + (alone[0][0] - alone[1][0]) ** 2 / 4)
    joint_mean, joint_cov = model.predict_joint(X[:5])
    assert np.allclose(joint_mean, mean[:5]) and np.allclose(np.diag(joint_cov), variance[:5])
    resumed = AutoSurrogate(families=["rf"], ensemble=2)
    resumed.use_feature_blocks({"a": slice(0, 1), "b": slice(1, 2)})
    resumed.set_state(model.get_state())
    assert resumed.round_record()["predicting"] == record["predicting"]


def test_without_ensemble_or_when_one_block_explains_everything_the_best_predicts_alone():
    X, y = additive_data()
    single = AutoSurrogate(families=["rf"])
    single.use_feature_blocks({"a": slice(0, 1), "b": slice(1, 2)})
    assert len(single.fit(X, y).round_record()["predicting"]) == 1 and "ensemble" not in single.round_record()
    y_a = 3 * X[:, 0]  # only block a matters: averaging in block b's guesses scores worse
    model = AutoSurrogate(families=["rf"], ensemble=2)
    model.use_feature_blocks({"a": slice(0, 1), "b": slice(1, 2)})
    record = model.fit(X, y_a).round_record()
    assert record["predicting"] == ["rf:a"] and record["ensemble"]["score"] < record["rewards"]["rf:a"]
    assert np.allclose(model.predict(X[:10])[0], model.models["rf:a"].predict(X[:10])[0])
