"""DirectLiNGAM discovery: a known graph is recovered, the target stays a sink, total effects and
feature ranking follow the graph, and data it cannot learn from is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from causal_helpers import NAMES, TRUE_B, lingam_sample

from activescope.chem.causal.discovery import CausalGraph, learn_graph, select_features
from activescope.engine.errors import DataError


@pytest.fixture(scope="module")
def graph() -> CausalGraph:
    return learn_graph(lingam_sample(3000, seed=0), NAMES)


def _standardised_truth(data: np.ndarray) -> np.ndarray:
    """The true B in z-scored units: B_z[i, j] = B[i, j] std_j / std_i."""
    std = data.std(axis=0)
    return TRUE_B * std[None, :] / std[:, None]


def test_recovers_a_known_graph_from_non_gaussian_data(graph):
    truth = _standardised_truth(lingam_sample(3000, seed=0))
    assert np.array_equal(np.abs(graph.adjacency) > 0.1, np.abs(truth) > 0.1), graph.adjacency.round(2)
    assert np.abs(graph.adjacency - truth).max() < 0.1
    assert graph.order.index(0) < graph.order.index(1) < graph.order.index(2) < graph.order.index(4)


def test_target_is_a_sink_even_when_data_say_it_causes_a_descriptor():
    B = np.zeros((3, 3))
    B[1, 2] = 0.9  # y -> b: forbidden by the prior knowledge
    B[2, 0] = 0.8  # a -> y
    graph = learn_graph(lingam_sample(2000, seed=3, B=B), ["a", "b", "y"])
    assert np.all(graph.adjacency[:, -1] == 0)
    assert graph.order[-1] == 2 or 2 not in graph.order[:-1]


def test_total_effects_include_mediated_paths(graph):
    effects = graph.effects_on_target()
    B = graph.adjacency
    mediated = B[4, 2] * B[2, 1] * B[1, 0]
    assert effects["a"] == pytest.approx(mediated, abs=1e-9)
    assert effects["d"] == pytest.approx(B[4, 3], abs=1e-9)
    physical = graph.effects_on_target(physical=True)
    assert physical["d"] == pytest.approx(effects["d"] * graph.std[-1] / graph.std[3])


def test_feature_selection_ranks_by_absolute_total_effect(graph):
    effects = graph.effects_on_target().abs().sort_values(ascending=False)
    assert select_features(graph, 2) == effects.index[:2].tolist()
    assert select_features(graph, 2)[0] == "c"  # the direct, strongest cause


def test_saved_graph_reads_back(tmp_path, graph):
    graph.save(tmp_path / "g")
    back = CausalGraph.load(tmp_path / "g")
    assert back.names == graph.names and np.array_equal(back.adjacency, graph.adjacency)
    assert (tmp_path / "g.csv").read_text().splitlines()[0] == "," + ",".join(NAMES)
    assert '"convention"' in (tmp_path / "g.json").read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x: np.column_stack([x[:, :2], np.full(len(x), 4.2), x[:, 3:]]), "'c' has zero variance"),
        (lambda x: np.column_stack([x[:, :2], 3 * x[:, 1] + 1, x[:, 3:]]), "'b' and 'c' are perfectly collinear"),
        (lambda x: np.column_stack([x[:, :3], x[:, 0] + x[:, 1] - x[:, 2], x[:, 4]]), "linearly dependent"),
        (lambda x: x[:9], "too few molecules (9) for 5 variables"),
        (lambda x: np.where(np.arange(len(x))[:, None] == 3, np.nan, x), "missing or infinite"),
    ],
)
def test_data_it_cannot_learn_from_is_refused(change, message):
    with pytest.raises(DataError, match=None) as err:
        learn_graph(change(lingam_sample(400, seed=1)), NAMES)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_subset_fits_keep_constant_variables_as_isolated_nodes():
    data = lingam_sample(200, seed=2)
    data[:, 3] = 1.0
    graph = learn_graph(data, NAMES, strict=False)
    assert graph.adjacency.shape == (5, 5)
    assert not graph.adjacency[3].any() and not graph.adjacency[:, 3].any()
    assert abs(graph.adjacency[4, 2]) > 0.3
