"""Training: loss, batch sources, reproducibility, and a tiny model that really finds atoms."""

import numpy as np
import pytest
import torch

from activescope.microscopy.find.predict import Predictor
from activescope.microscopy.sim.simulate import SimConfig, simulate_batch
from activescope.microscopy.training.augment import IGNORE_INDEX
from activescope.microscopy.training.trainer import (
    LabelledFrames,
    SimulatedFrames,
    TrainConfig,
    Trainer,
    ValidationSet,
    segmentation_loss,
    train_on_simulation,
)

EASY = SimConfig(lattice="graphene", size=96, pixel_size=0.12, probe_fwhm=0.9, dose=float("inf"),
                 read_noise=0.0, jitter=0.0, drift=0.0, background=0.0, vacancy_prob=0.0,
                 dopant_prob=0.0)
TINY = {"base_filters": 8, "depth": 2}



@pytest.fixture(scope="module")
def trained():
    config = TrainConfig(steps=150, batch_size=8, crop_size=64, augment=False, seed=1)
    return train_on_simulation(EASY, config, "lite_unet", TINY, val_frames=0, device="cpu",
                               progress=False)


def test_briefly_trained_tiny_model_finds_atoms_of_an_easy_frame(trained):
    validation = ValidationSet.simulated(EASY, 2, seed=77)
    predictor = Predictor(trained.model, trained.card.classes, "cpu")
    assert validation.f1(predictor) > 0.9
    assert trained.history.loss[-1] < 0.5 * trained.history.loss[0]
    assert trained.card.classes == ["background", "C", "dopant"]
    assert trained.card.architecture_kwargs == TINY


def test_loss_ignores_pixels_marked_ignore():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    masked = labels.clone()
    masked[:, :4] = IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(
        logits.permute(0, 2, 3, 1)[:, 4:].reshape(-1, 3), labels[:, 4:].reshape(-1))
    torch.testing.assert_close(segmentation_loss(logits, masked), expected)
    with_dice = segmentation_loss(logits, masked, dice_weight=1.0)
    assert with_dice > expected


def test_labelled_frames_crop_images_and_labels_at_the_same_place():
    images, labels, _ = simulate_batch(EASY, 2, seed=3)
    source = LabelledFrames(images, labels, crop_size=32)
    crops, crop_labels = source.sample(6, torch.Generator().manual_seed(0))
    assert crops.shape == (6, 1, 32, 32) and crop_labels.shape == (6, 32, 32)
    for crop, crop_label in zip(crops[:, 0].numpy(), crop_labels.numpy()):
        hits = [(f, r, c) for f in range(2) for r in range(65) for c in range(65)
                if np.array_equal(images[f, r:r + 32, c:c + 32], crop)]
        f, r, c = hits[0]
        assert np.array_equal(labels[f, r:r + 32, c:c + 32], crop_label)


def test_same_seeds_give_identical_training_and_other_batch_seed_differs():
    def weights(batch_seed):
        torch.manual_seed(0)
        from activescope.microscopy.nets.unet import build_network
        model = build_network("lite_unet", n_classes=3, base_filters=4, depth=2)
        config = TrainConfig(steps=3, batch_size=2, crop_size=32, seed=0, batch_seed=batch_seed)
        Trainer(model, SimulatedFrames(EASY, 32), config, "cpu").fit(progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(5), weights(5))
    assert not torch.equal(weights(5), weights(6))
