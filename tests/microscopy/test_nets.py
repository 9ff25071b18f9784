"""Networks, augmentation, checkpoints and the predictor's input handling."""

import numpy as np
import pytest
import torch

from activescope.errors import DataError, SpecError
from activescope.microscopy.augment import (IGNORE_INDEX, Augmenter, gaussian_blur, rot90_flip,
                                            standardize, zoom)
from activescope.microscopy.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from activescope.microscopy.nets import build_network
from activescope.microscopy.predict import Predictor, fuse_batchnorm, validate_images


@pytest.mark.parametrize("name, kwargs", [
    ("unet", {"base_filters": 4, "depth": 2}),
    ("unet", {"base_filters": 4, "depth": 2, "dilated_bottleneck": False, "separable": True}),
    ("lite_unet", {"base_filters": 4}),
])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_networks_give_logits_per_class_and_pixel(name, kwargs, n_classes):
    model = build_network(name, n_classes=n_classes, **kwargs).eval()
    side = 2 * model.size_multiple
    with torch.no_grad():
        logits = model(torch.randn(3, 1, side, side))
    assert logits.shape == (3, n_classes, side, side)


def test_unknown_network_and_bad_arguments_are_spec_errors():
    with pytest.raises(SpecError, match="unknown network"):
        build_network("resnet")
    with pytest.raises(SpecError, match="bad arguments"):
        build_network("unet", n_classes=2, filters=3)
    with pytest.raises(SpecError):
        build_network("unet", n_classes=1)


def _model_with_batch_statistics(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = build_network("lite_unet", n_classes=3, base_filters=4, **kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 1, 32, 32) * 3 + 1)
    return model.eval()


@pytest.mark.parametrize("separable", [False, True])
def test_folding_batchnorm_keeps_outputs(separable):
    model = _model_with_batch_statistics(separable=separable)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fuse_batchnorm(model)(x), model(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fuse_batchnorm(model).modules())


def test_predictor_pads_any_frame_size_and_returns_probabilities():
    model = _model_with_batch_statistics()
    predictor = Predictor(model, ["background", "a", "b"], "cpu")
    probs = predictor.probabilities(np.random.default_rng(0).random((2, 45, 70)))
    assert probs.shape == (2, 3, 45, 70)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 2, 32, 32)), "expected an image"),
    (np.full((32, 32), 3.0), "constant"),
    (np.where(np.eye(32) > 0, np.nan, 1.0), "NaN"),
    (np.zeros((0, 32)), "empty"),
    (np.ones((8, 8)), "smaller"),
])
def test_bad_images_raise_data_error(bad, message):
    with pytest.raises(DataError, match=message):
        validate_images(bad)


def _stripes(n: int = 4, size: int = 32):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, size, size, generator=generator)
    return images, (images[:, 0] > 0.5).long()


def test_geometric_augmentation_moves_labels_with_images():
    images, labels = _stripes()
    generator = torch.Generator().manual_seed(1)
    turned, turned_labels = rot90_flip(images, labels, generator)
    assert torch.equal(turned_labels, (turned[:, 0] > 0.5).long())
    assert not torch.equal(turned, images)
    step = torch.zeros(2, 1, 32, 32)
    step[..., 16:] = 1.0
    zoomed, zoomed_labels = zoom(step, step[:, 0].long(), (1.3, 1.3), generator)
    assert torch.equal(zoomed_labels, (zoomed[:, 0] > 0.5).long())


def test_blur_smooths_and_augmenter_is_seeded_and_keeps_ignore_labels():
    images, labels = _stripes()
    blurred = gaussian_blur(images, (1.0, 2.0), torch.Generator().manual_seed(0))
    assert blurred.std() < 0.6 * images.std()
    labels[:, :4] = IGNORE_INDEX
    first = Augmenter(p=1.0)(images, labels, torch.Generator().manual_seed(3))
    second = Augmenter(p=1.0)(images, labels, torch.Generator().manual_seed(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.isfinite(first[0]).all()
    assert set(first[1].unique().tolist()) <= {0, 1, IGNORE_INDEX}
    assert (first[1] == IGNORE_INDEX).any()


def test_standardize_gives_zero_mean_unit_std_per_frame():
    x = standardize(torch.rand(3, 1, 16, 16) * torch.tensor([1.0, 10.0, 100.0])[:, None, None, None])
    torch.testing.assert_close(x.mean(dim=(-2, -1)), torch.zeros(3, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(-2, -1)), torch.ones(3, 1))


def test_checkpoint_round_trip_is_exact_and_checks_classes(tmp_path):
    model = _model_with_batch_statistics()
    classes = ["background", "metal", "chalcogen"]
    card = ModelCard("lite_unet", {"base_filters": 4}, classes, pixel_size=0.12,
                     training={"steps": 3})
    path = save_checkpoint(tmp_path / "m.safetensors", model, card)
    (loaded,), loaded_card = load_checkpoint(path, classes)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded_card == card
    with pytest.raises(DataError, match="classes"):
        load_checkpoint(path, ["background", "C", "dopant"])


def test_corrupt_or_foreign_checkpoints_are_data_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="not an activescope checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    model = _model_with_batch_statistics()
    wrong = ModelCard("lite_unet", {"base_filters": 8}, ["background", "a", "b"])
    path = save_checkpoint(tmp_path / "wrong.safetensors", model, wrong)
    with pytest.raises(DataError, match="does not match its architecture"):
        load_checkpoint(path)
