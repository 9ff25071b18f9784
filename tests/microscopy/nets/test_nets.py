"""Networks, their input scale, the fused ensemble network and checkpoints."""

import numpy as np
import pytest
import torch

from activescope.engine.errors import DataError, SpecError
from activescope.microscopy.find.predict import fuse_batchnorm
from activescope.microscopy.nets.checkpoint import (
    ModelCard,
    load_checkpoint,
    save_checkpoint,
)
from activescope.microscopy.nets.fused import FusedUNet
from activescope.microscopy.nets.unet import build_network, standardize


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


def test_standardize_gives_zero_mean_unit_std_per_frame():
    x = standardize(torch.rand(3, 1, 16, 16) * torch.tensor([1.0, 10.0, 100.0])[:, None, None, None])
    torch.testing.assert_close(x.mean(dim=(-2, -1)), torch.zeros(3, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(-2, -1)), torch.ones(3, 1))


@pytest.mark.parametrize("kwargs", [dict(n_classes=3, depth=2),
                                    dict(n_classes=2, depth=3, dilated_bottleneck=False),
                                    dict(n_classes=3, depth=1, space_to_depth=1)])
def test_fused_network_equals_its_members_logits(kwargs):
    members = []
    for seed in range(4):
        torch.manual_seed(seed)
        model = build_network("lite_unet", base_filters=4, **kwargs).train()
        with torch.no_grad():
            model(torch.randn(2, 1, 32, 32))
        members.append(fuse_batchnorm(model.eval()))
    fused = FusedUNet(members).to(memory_format=torch.channels_last)
    images = torch.randn(3, 1, 32, 48).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = torch.stack([member(images) for member in members], dim=1)
        np.testing.assert_allclose(fused(images).numpy(), expected.numpy(), atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip_is_exact_and_checks_classes(tmp_path,
                                                            model_with_batch_statistics):
    model = model_with_batch_statistics()
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


def test_corrupt_or_foreign_checkpoints_are_data_errors(tmp_path,
                                                        model_with_batch_statistics):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="not an activescope checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    model = model_with_batch_statistics()
    wrong = ModelCard("lite_unet", {"base_filters": 8}, ["background", "a", "b"])
    path = save_checkpoint(tmp_path / "wrong.safetensors", model, wrong)
    with pytest.raises(DataError, match="does not match its architecture"):
        load_checkpoint(path)
