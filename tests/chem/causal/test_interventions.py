"""Interventions: do() moves only the intervened feature's descendants, the intervention value
puts the predicted target at the threshold plus the margin, proposals are the design molecules
nearest the intervened vectors, and on data from a known graph they beat random picks."""

from __future__ import annotations

import numpy as np
import pytest
from causal_helpers import NAMES, synthetic_data

from activescope.chem.causal.discovery import learn_graph
from activescope.chem.causal.interventions import (
    intervention_table,
    propose,
    success_rates,
)
from activescope.chem.causal.spec import InterventionOptions


@pytest.fixture(scope="module")
def data():
    return synthetic_data(seed=5)


@pytest.fixture(scope="module")
def graph(data):
    return learn_graph(np.column_stack([data.pool.X, data.pool.y]), NAMES)


def test_intervention_value_reaches_threshold_plus_margin(graph):
    options = InterventionOptions(threshold=1.0, margin=0.2, max_shift=10.0)
    table, vectors = intervention_table(graph, options)
    assert table["used"].all() and table["reaches_threshold"].all()
    assert np.allclose(table["predicted_target"], 1.2)
    row = table.set_index("feature").loc["c"]
    expected = graph.mean[2] + (1.2 - graph.mean[-1]) / graph.std[-1] / row["total_effect_std"] * graph.std[2]
    assert row["intervention_value"] == pytest.approx(expected)
    assert abs(table["total_effect_std"].iloc[0]) == table["total_effect_std"].abs().max()


def test_do_moves_only_descendants(graph):
    table, vectors = intervention_table(graph, InterventionOptions(threshold=1.0, max_shift=10.0))
    on_b = vectors[table.index[table["feature"] == "b"][0]]
    assert on_b[0] == 0 and on_b[3] == 0            # a (a parent) and d (unrelated) stay at their means
    assert on_b[1] != 0 and on_b[2] != 0            # b itself and its child c move
    assert on_b[2] == pytest.approx(graph.adjacency[2, 1] * on_b[1])


def test_shift_is_clipped_and_flagged(graph):
    table, _ = intervention_table(graph, InterventionOptions(threshold=50.0, max_shift=2.0))
    assert (table["shift_sd"].abs() <= 2.0).all() and not table["reaches_threshold"].any()


def test_proposals_are_the_nearest_design_molecules(data, graph):
    options = InterventionOptions(threshold=1.0, proposals=12, max_shift=10.0)
    design = propose(graph, data.design, np.arange(4), options)
    assert len(design.proposals) == 12 and design.proposals["id"].is_unique
    table, vectors = intervention_table(graph, options)
    z = (data.design.X - graph.mean[:-1]) / graph.std[:-1]
    first = design.proposals.iloc[0]
    k = table.index[table["feature"] == first["intervention"]][0]
    nearest = np.argmin(np.linalg.norm(z - vectors[k], axis=1))
    assert first["id"] == data.design.ids[nearest]
    assert design.proposals["intervention"].iloc[: len(vectors)].tolist() == table.loc[table["used"], "feature"].tolist()


def test_causal_design_beats_random_on_a_known_graph(data, graph):
    options = InterventionOptions(threshold=1.0, margin=0.5, proposals=40, max_shift=10.0)
    design = propose(graph, data.design, np.arange(4), options)
    rates = success_rates(design, data, graph, np.arange(len(data.pool)), options).set_index("method")["success_rate"]
    expectation = float((data.design.y > 1.0).mean())
    assert rates["random (expectation)"] == pytest.approx(expectation)
    assert rates["causal intervention"] > expectation + 0.2
    assert 0 <= rates["random forest (greedy)"] <= 1
