"""Fixtures shared by the microscopy tests."""

from typing import Callable

import pytest
import torch

from activescope.microscopy.nets.unet import UNet, build_network


@pytest.fixture
def model_with_batch_statistics() -> Callable[..., UNet]:
    """Factory of small eval-mode light U-Nets (3 classes) whose batch norms saw real batches."""

    def make(seed: int = 0, **kwargs) -> UNet:
        torch.manual_seed(seed)
        model = build_network("lite_unet", n_classes=3, base_filters=4, **kwargs)
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(2, 1, 32, 32) * 3 + 1)
        return model.eval()

    return make
