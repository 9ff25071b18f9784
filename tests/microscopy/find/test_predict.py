"""The predictor: folded batch norm, input handling and atom-finding settings."""

import numpy as np
import pytest
import torch

from activescope.engine.errors import DataError
from activescope.microscopy.find.predict import (
    Predictor,
    fuse_batchnorm,
    validate_images,
)


@pytest.mark.parametrize("separable", [False, True])
def test_folding_batchnorm_keeps_outputs(separable, model_with_batch_statistics):
    model = model_with_batch_statistics(separable=separable)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fuse_batchnorm(model)(x), model(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fuse_batchnorm(model).modules())


def test_predictor_pads_any_frame_size_and_returns_probabilities(model_with_batch_statistics):
    model = model_with_batch_statistics()
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


@pytest.mark.parametrize("settings, message", [
    ({"min_distance_px": -1.0}, "at least 0 pixels"),
    ({"min_distance_px": float("nan")}, "at least 0 pixels"),
    ({"threshold": 1.0}, "threshold"),
])
def test_bad_find_settings_fail_when_the_predictor_is_built(settings, message,
                                                            model_with_batch_statistics):
    with pytest.raises(DataError, match=message):
        Predictor(model_with_batch_statistics(), ["background", "a", "b"], "cpu", **settings)
