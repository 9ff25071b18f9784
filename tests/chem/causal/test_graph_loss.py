"""The graph loss: zero for the same graph (whatever the node order), one for an empty graph
against a non-empty one, and growing as a graph moves away from the reference."""

from __future__ import annotations

import numpy as np
import pytest
from causal_helpers import TRUE_B

from activescope.chem.causal.graph_loss import spectral_distance, spectrum


@pytest.mark.parametrize("kind", ["adjacency", "laplacian"])
def test_same_graph_and_relabelled_graph_have_zero_loss(kind):
    perm = np.array([3, 0, 4, 2, 1])
    assert spectral_distance(TRUE_B, TRUE_B, kind) == 0
    assert spectral_distance(TRUE_B[np.ix_(perm, perm)], TRUE_B, kind) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("kind", ["adjacency", "laplacian"])
def test_empty_graph_has_loss_one(kind):
    assert spectral_distance(np.zeros_like(TRUE_B), TRUE_B, kind) == pytest.approx(1.0)


def test_loss_grows_as_the_weights_move_away():
    losses = [spectral_distance(TRUE_B * s, TRUE_B) for s in (1.0, 0.9, 0.6, 0.2)]
    assert losses[0] == 0 and losses == sorted(losses)
    assert losses[1] == pytest.approx(0.1)  # the adjacency spectrum scales with the weights


def test_the_sign_of_an_edge_does_not_matter_but_its_place_does():
    flipped = TRUE_B.copy()
    flipped[4, 3] *= -1
    assert spectral_distance(flipped, TRUE_B) == pytest.approx(0, abs=1e-12)
    moved = TRUE_B.copy()
    moved[4, 3], moved[1, 3] = 0.0, 0.5  # d -> y becomes d -> b: a chain instead of a fork
    assert spectral_distance(moved, TRUE_B) > 0.01


def test_laplacian_spectrum_is_that_of_degree_minus_weights():
    W = np.abs(TRUE_B) + np.abs(TRUE_B).T
    expected = np.sort(np.linalg.eigvalsh(np.diag(W.sum(axis=1)) - W))[::-1]
    assert np.allclose(spectrum(TRUE_B, "laplacian"), expected)
    assert spectrum(TRUE_B, "laplacian")[-1] == pytest.approx(0, abs=1e-12)
