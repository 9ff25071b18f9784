"""Species by sublattice: a brightness threshold that fails on new contrast is repaired."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activescope.engine.errors import DataError
from activescope.microscopy.find.species import (
    assign_species,
    assign_species_table,
    fit_lattice_vectors,
    sample_intensity,
    split_sublattices,
)
from activescope.microscopy.sim.simulate import SimConfig, simulate_frame

# moderate noise and drift, no defects: the S2 / Mo ratio is set by the contrast exponent
MOS2 = dict(lattice="mos2", size=128, pixel_size=0.12, dose=5e3, vacancy_prob=0.0,
            dopant_prob=0.0, background=0.0, read_noise=0.02, drift=1.0, jitter=0.1)
MULTISLICE_LIKE = 1.44  # 2 (16/42)^n = 0.50, the S2/Mo ratio of multislice HAADF (default 0.39)


def _relative_brightness(frame) -> tuple[np.ndarray, np.ndarray]:
    xy = frame.atoms[["x", "y"]].to_numpy()
    image = frame.image - np.percentile(frame.image, 1)
    value = sample_intensity(image, xy)
    return xy, value / np.percentile(value, 90)


@pytest.fixture(scope="module")
def threshold_network():
    """A 'network' that learned an intensity threshold on default frames (ratio ≈ 0.39).

    Its threshold sits just above the brightest chalcogen column seen in training: perfect
    there, like a network that separated the training classes by brightness alone.
    """
    train = simulate_frame(SimConfig(**MOS2), 1)
    _, value = _relative_brightness(train)
    cls = train.atoms["cls"].to_numpy()
    threshold = 1.05 * value[cls == 2].max()
    assert threshold < value[cls == 1].min()

    def predict(frame) -> tuple[np.ndarray, np.ndarray]:
        xy, value = _relative_brightness(frame)
        p_metal = 1.0 / (1.0 + np.exp(-(value - threshold) / 0.02))
        probs = np.zeros((len(value), 4))
        probs[:, 1], probs[:, 2] = p_metal, 1.0 - p_metal
        return xy, probs

    return predict


@pytest.fixture(scope="module")
def multislice_like_frame():
    return simulate_frame(SimConfig(contrast_exponent=MULTISLICE_LIKE, **MOS2), 2)


def test_threshold_fails_but_sublattice_ranking_repairs(threshold_network,
                                                        multislice_like_frame) -> None:
    frame = multislice_like_frame
    truth = frame.atoms["cls"].to_numpy()
    xy, probs = threshold_network(frame)
    per_atom = probs.argmax(axis=1)
    assert (per_atom[truth == 2] == 2).mean() < 0.5  # most S2 columns called "metal"
    result = assign_species(xy, probs=probs, lattice="mos2")
    assert result.method == "rank"
    assert (result.cls == truth).mean() == 1.0
    # the measured intensities rank the sublattices the same way
    by_intensity = assign_species(xy, intensity=sample_intensity(frame.image, xy),
                                  lattice="mos2")
    assert (by_intensity.cls == truth).mean() == 1.0


def test_global_brightness_shift_cannot_flip_a_sublattice(multislice_like_frame) -> None:
    frame = multislice_like_frame
    xy = frame.atoms[["x", "y"]].to_numpy()
    truth = frame.atoms["cls"].to_numpy()
    intensity = sample_intensity(frame.image, xy)
    for scale, shift in [(1.0, 0.0), (0.3, 5.0), (4.0, -2.0)]:
        result = assign_species(xy, intensity=scale * intensity + shift, lattice="mos2")
        assert (result.cls == truth).all()


def test_lattice_fit_and_sublattices_follow_the_crystal(multislice_like_frame) -> None:
    frame = multislice_like_frame
    xy = frame.atoms[["x", "y"]].to_numpy()
    vectors = fit_lattice_vectors(xy)
    a_px = 3.18 / frame.params["pixel_size"]
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([a_px, a_px], rel=0.03)
    cosine = vectors[0] @ vectors[1] / np.prod(np.linalg.norm(vectors, axis=1))
    assert abs(cosine) == pytest.approx(0.5, abs=0.03)  # hexagonal: 60° or 120°
    sublattice = split_sublattices(xy, vectors)
    truth = frame.atoms["cls"].to_numpy()
    assert set(sublattice) == {0, 1}
    for s in (0, 1):  # each sublattice holds one species only
        assert np.unique(truth[sublattice == s]).size == 1


def test_majority_vote_without_a_lattice_name() -> None:
    frame = simulate_frame(SimConfig(**MOS2), 3)
    xy = frame.atoms[["x", "y"]].to_numpy()
    truth = frame.atoms["cls"].to_numpy()
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(len(truth)) < 0.3, 3 - truth, truth)  # 30 % flipped
    probs = np.zeros((len(truth), 4))
    probs[np.arange(len(truth)), noisy] = 0.9
    result = assign_species(xy, probs=probs)
    assert result.method == "vote"
    assert (result.cls == truth).all()


def test_confident_dopants_keep_their_class() -> None:
    config = SimConfig(**{**MOS2, "dopant_prob": 0.15})
    frame = simulate_frame(config, 4)
    atoms = frame.atoms
    truth = atoms["cls"].to_numpy()
    assert (truth == 3).sum() >= 2
    table = atoms[["x", "y"]].assign(cls=truth, class_score=0.95)
    out = assign_species_table(table, image=frame.image, lattice="mos2")
    assert (out["cls"].to_numpy() == truth).all()
    assert (out["cls_network"].to_numpy() == truth).all()
    assert set(out["sublattice"]) == {0, 1}


def test_no_lattice_is_an_error() -> None:
    xy = np.random.default_rng(1).random((200, 2)) * 100
    with pytest.raises(DataError, match="no lattice"):
        fit_lattice_vectors(xy)
    with pytest.raises(DataError):
        assign_species(np.zeros((3, 2)), intensity=np.zeros(3))
    with pytest.raises(DataError, match="probabilities or"):
        assign_species(xy)


def test_table_needs_positions_and_classes() -> None:
    with pytest.raises(DataError, match="x, y and cls"):
        assign_species_table(pd.DataFrame({"x": [1.0], "y": [2.0]}))
