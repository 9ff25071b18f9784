"""Ensembles: batched prediction, per-atom uncertainty, member ranking, and one ELIT round."""

import numpy as np
import pandas as pd
import pytest
import torch

from activescope.engine.errors import DataError, SpecError
from activescope.microscopy.ensemble.elit import PseudoLabelRule, iterate, pseudo_labels
from activescope.microscopy.ensemble.finder import (
    Ensemble,
    group_detections,
    lookup_members,
)
from activescope.microscopy.ensemble.train import train_ensemble
from activescope.microscopy.find.predict import Predictor, fuse_batchnorm
from activescope.microscopy.nets.fused import FusedUNet, fusable
from activescope.microscopy.nets.unet import build_network
from activescope.microscopy.sim.simulate import SimConfig, simulate_batch
from activescope.microscopy.training.augment import IGNORE_INDEX
from activescope.microscopy.training.trainer import TrainConfig, ValidationSet

EASY = SimConfig(lattice="graphene", size=96, pixel_size=0.12, probe_fwhm=0.9, dose=float("inf"),
                 read_noise=0.0, jitter=0.0, drift=0.0, background=0.0, vacancy_prob=0.0,
                 dopant_prob=0.0)
CLASSES = ["background", "C", "dopant"]


@pytest.fixture(scope="module")
def members():
    config = TrainConfig(steps=100, batch_size=8, crop_size=64, augment=False, seed=3)
    trained = train_ensemble(EASY, config, 3, "lite_unet", {"base_filters": 8, "depth": 2},
                             device="cpu", progress=False)
    assert trained.card.training["ensemble_mode"] == "scratch"
    return trained.members


def _random_members(n: int, base_filters: int = 4):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = build_network("lite_unet", n_classes=3, base_filters=base_filters, depth=2).train()
        with torch.no_grad():
            model(torch.randn(2, 1, 32, 32))
        out.append(model.eval())
    return out


def test_batched_ensemble_equals_each_member_run_alone():
    members = _random_members(3)
    images = np.random.default_rng(0).random((2, 40, 48)).astype(np.float32)
    maps = Ensemble(members, CLASSES, "cpu").probabilities(images)
    alone = np.stack([Predictor(m, CLASSES, "cpu").probabilities(images) for m in members])
    np.testing.assert_allclose(maps.members, alone, atol=1e-5)
    np.testing.assert_allclose(maps.mean, alone.mean(0), atol=1e-5)
    np.testing.assert_allclose(maps.variance, alone.var(0, ddof=1), atol=1e-6)
    for backend in ("fused", "vmap", "loop"):
        other = Ensemble(members, CLASSES, "cpu", backend=backend)
        assert other.backend == backend
        np.testing.assert_allclose(other.probabilities(images).members, maps.members, atol=1e-5)
    assert Ensemble(members, CLASSES, "cpu").backend == "loop"


def test_unfusable_members_fall_back_to_vmap():
    members = [build_network("lite_unet", n_classes=3, base_filters=4, depth=2, separable=True)
               for _ in range(2)]
    assert not fusable([fuse_batchnorm(m.eval()) for m in members])
    assert not fusable([m.eval() for m in _random_members(2)])
    assert Ensemble(members, CLASSES, "cpu", backend="fused").backend == "vmap"
    with pytest.raises(DataError, match="fused"):
        FusedUNet([m.eval() for m in members])
    with pytest.raises(SpecError, match="backend"):
        Ensemble(members, CLASSES, "cpu", backend="gpu")


def test_an_ensemble_needs_two_members_of_one_architecture():
    with pytest.raises(SpecError):
        Ensemble(_random_members(1), CLASSES, "cpu")
    with pytest.raises(DataError, match="architecture"):
        Ensemble([*_random_members(1), *_random_members(1, base_filters=8)], CLASSES, "cpu")


def test_grouping_measures_frequency_spread_and_class_disagreement():
    detections = pd.DataFrame({
        "x": [10.0, 10.5, 9.5, 30.0, 50.0, 50.0, 50.2, 10.0],
        "y": [10.0, 10.0, 10.0, 30.0, 50.0, 50.2, 50.0, 10.0],
        "cls": [1, 1, 1, 1, 1, 2, 2, 1],
        "score": [0.9] * 8,
        "frame": [0, 0, 0, 0, 0, 0, 0, 1],
        "member": [0, 1, 2, 0, 0, 1, 2, 1],
    })
    atoms = group_detections(detections, n_members=3, radius_px=2.0).sort_values(["frame", "x"])
    assert len(atoms) == 4
    agreed, lone, split, other_frame = (row for _, row in atoms.iterrows())
    assert agreed.detection_freq == 1.0 and agreed.class_disagreement == 0.0
    assert agreed.pos_spread_px == pytest.approx(np.sqrt(1 / 6))
    assert agreed.uncertainty == pytest.approx(0.0)
    assert lone.detection_freq == pytest.approx(1 / 3) and lone.uncertainty > 0.6
    assert split.cls == 2 and split.class_disagreement == pytest.approx(1 / 3)
    assert other_frame.frame == 1 and other_frame.n_detections == 1


def _blob_maps(blobs: list[list[tuple[int, int, int]]], size: int = 32) -> np.ndarray:
    """Member maps ``(M, 1, 3, H, W)``: member m has a 3x3 atom of class c at each (row, col, c)."""
    maps = np.zeros((len(blobs), 1, 3, size, size), dtype=np.float32)
    maps[:, :, 0] = 1.0
    for member, atoms in enumerate(blobs):
        for row, col, cls in atoms:
            maps[member, 0, :, row - 1:row + 2, col - 1:col + 2] = 0.0
            maps[member, 0, cls, row - 1:row + 2, col - 1:col + 2] = 1.0
    return maps


def test_member_lookup_measures_frequency_spread_and_class_disagreement():
    maps = _blob_maps([[(10, 11, 1), (20, 20, 1)], [(10, 10, 1), (20, 20, 2)], [(10, 10, 1)]])
    consensus = pd.DataFrame({"x": [10.0, 20.0], "y": [10.0, 20.0], "cls": [1, 1],
                              "score": [1.0, 1.0], "frame": [0, 0]})
    agreed, split = (row for _, row in lookup_members(consensus, maps, 0.5, 2.5).iterrows())
    assert agreed.detection_freq == 1.0 and agreed.class_disagreement == 0.0
    assert agreed.pos_spread_px == pytest.approx(np.sqrt(2 / 9))
    assert agreed.uncertainty == pytest.approx(0.0)
    assert split.n_detections == 2 and split.detection_freq == pytest.approx(2 / 3)
    assert split.class_disagreement == pytest.approx(0.5) and split.pos_spread_px == 0.0
    assert split.uncertainty == pytest.approx(1 - 2 / 3 * 0.5)
    assert split.prob_std == pytest.approx(np.std([1.0, 1.0, 0.0]))


def test_trained_ensemble_finds_atoms_and_is_less_sure_on_corrupted_frames(members):
    ensemble = Ensemble(members, CLASSES, "cpu")
    validation = ValidationSet.simulated(EASY, 2, seed=11)
    images = validation.images
    atoms, clean = ensemble.find_with_maps(images)
    assert {"uncertainty", "detection_freq", "pos_spread_px", "class_disagreement"} <= set(atoms)
    assert validation.score(atoms).f1 > 0.9
    looked_up = Ensemble(members, CLASSES, "cpu", member_lookup=True).find(images)
    assert validation.score(looked_up).f1 > 0.9
    assert list(looked_up.columns) == list(atoms.columns)
    assert looked_up["detection_freq"].mean() >= atoms["detection_freq"].mean() - 0.05
    rng = np.random.default_rng(0)
    noisy = images + rng.normal(0, 1.0, images.shape).astype(np.float32)
    blurred = torch.nn.functional.avg_pool2d(torch.from_numpy(images)[:, None], 9, 1, 4)[:, 0]
    for corrupted in (noisy, blurred.numpy()):
        assert ensemble.probabilities(corrupted).variance.mean() > 1.05 * clean.variance.mean()


def test_members_are_ranked_by_agreement_with_the_consensus(members):
    images = simulate_batch(EASY, 1, seed=12)[0]
    ensemble = Ensemble([*members, _random_members(1, base_filters=8)[0]], CLASSES, "cpu")
    ranking = ensemble.rank_members(images)
    assert sorted(ranking["member"]) == [0, 1, 2, 3]
    assert ranking["member"].iloc[-1] == 3
    assert ensemble.best_members(images, k=2) == ranking["member"].head(2).tolist()


def test_one_elit_round_labels_only_confident_atoms(members):
    shifted = SimConfig(lattice="graphene", size=96, pixel_size=0.12, probe_fwhm=1.2, dose=3e3,
                        jitter=0.3, vacancy_prob=0.0, dopant_prob=0.0)
    images = simulate_batch(shifted, 2, seed=21)[0]
    rule = PseudoLabelRule(max_uncertainty=0.0, label_radius_px=2.0, ignore_radius_px=4.0)
    ensemble = Ensemble([m for m in members], CLASSES, "cpu")
    labels, atoms = pseudo_labels(ensemble, images, rule)
    sure, unsure = atoms[atoms["confident"]], atoms[~atoms["confident"]]
    assert len(sure) > 0
    expected = (atoms["uncertainty"] <= 0.0) & (atoms["pos_spread_px"] <= rule.max_spread_px)
    assert atoms["confident"].equals(expected) and len(unsure) > 0
    frames, rows, cols = np.nonzero((labels > 0) & (labels != IGNORE_INDEX))
    centres = sure[["frame", "y", "x"]].to_numpy()
    for f, r, c in zip(frames, rows, cols):
        mine = centres[centres[:, 0] == f]
        assert np.hypot(mine[:, 1] - r, mine[:, 2] - c).min() <= 2.0 + 0.75
    for _, atom in unsure.iterrows():
        assert labels[int(atom.frame), int(round(atom.y)), int(round(atom.x))] != 0
    before = [p.detach().clone() for p in members[0].parameters()]
    copies = [build_network("lite_unet", n_classes=3, base_filters=8, depth=2) for _ in members]
    for copy, member in zip(copies, members):
        copy.load_state_dict(member.state_dict())
    result = iterate(copies, CLASSES, images, rounds=1,
                     config=TrainConfig(steps=3, batch_size=4, crop_size=64, learning_rate=1e-4),
                     rule=rule, device="cpu", progress=False)
    assert len(result.rounds) == 1 and result.rounds[0].n_confident == len(sure)
    assert np.array_equal(result.labels, labels)
    assert any(not torch.equal(a, b) for a, b in zip(before, result.members[0].parameters()))
