"""im2spec / spec2im: shapes, the spatial split, learning on the digital twin, checkpoints,
bad input, and the im2spec encoder as a DKL feature extractor."""

from pathlib import Path

import numpy as np
import pytest
import torch

from activescope.engine.errors import DataError, SpecError
from activescope.instruments.imspec_data import beps_pairs, twin_pairs
from activescope.instruments.sources import probe_grid_pool
from activescope.instruments.twin import DigitalTwin, TwinOptions
from activescope.microscopy.imspec.evaluate import block_split, evaluate_split
from activescope.microscopy.imspec.models import ImSpec, ImSpecShape
from activescope.microscopy.imspec.train import (
    ImSpecPredictor,
    ImSpecTrainConfig,
    load_imspec,
    save_imspec,
    train_imspec,
)
from activescope.microscopy.ivae.models import IVAEShape
from activescope.microscopy.ivae.train import IVAETrainConfig, save_ivae, train_ivae
from activescope.models.dkl import DKLSurrogate

BEPS = Path(__file__).resolve().parents[2] / "data" / "beps_pto_50x50.h5"
TINY = ImSpecTrainConfig(epochs=25, latent_dim=4, hidden=48, batch_size=64)


@pytest.fixture(scope="module")
def twin_data():
    return twin_pairs(window=9, step=2, size=64, seed=3)


@pytest.fixture(scope="module")
def trained(twin_data):
    return train_imspec(twin_data.patches, twin_data.spectra, TINY)


def test_networks_map_patches_and_spectra_through_one_latent():
    model = ImSpec(ImSpecShape(side=9, channels=40, latent_dim=5, hidden=16))
    patches, spectra = torch.randn(7, 81), torch.randn(7, 40)
    assert model.encode_patches(patches).shape == model.encode_spectra(spectra).shape == (7, 5)
    assert model.im2spec(patches).shape == (7, 40)
    assert model.spec2im(spectra).shape == (7, 81)
    assert model.loss(patches, spectra).ndim == 0


def test_twin_pairs_are_co_registered_patches_and_spectra(twin_data):
    n = len(twin_data.rows)
    assert twin_data.patches.shape == (n, 81) and twin_data.spectra.shape == (n, 64) == twin_data.clean.shape
    assert twin_data.rows.min() >= 4 and twin_data.rows.max() <= 64 - 5  # no patch crosses the border
    spectrum_total = twin_data.clean.sum(axis=1)  # plasmon intensity follows the local column density
    centre = twin_data.patches[:, 40]
    assert np.corrcoef(centre, spectrum_total)[0, 1] > 0.2


def test_block_split_keeps_a_guard_band_between_train_and_test():
    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(40), np.arange(40), indexing="ij"))
    train, test = block_split(rows, cols, block=10, test_share=0.25, guard=3, seed=1)
    assert test.sum() == 4 * 100 and not (train & test).any()
    distance = np.maximum(abs(rows[train][:, None] - rows[test][None]), abs(cols[train][:, None] - cols[test][None]))
    assert distance.min() > 3


def test_im2spec_beats_the_mean_spectrum_on_held_out_twin_blocks(twin_data):
    result = evaluate_split(twin_data.patches, twin_data.spectra, twin_data.rows, twin_data.cols, TINY, block=16,
                            guard=4, seed=0, reference=twin_data.clean)
    assert result.relative_reference["im2spec"] < 0.95 * result.relative_reference["mean_spectrum"]
    assert result.relative["mean_spectrum"] == pytest.approx(1.0)
    assert result.predicted.shape == (result.n_test, 64)


def test_spec2im_and_checkpoint_round_trip(trained, twin_data, tmp_path):
    path = save_imspec(tmp_path / "imspec.safetensors", trained)
    model, card = load_imspec(path)
    before = ImSpecPredictor(trained.model).im2spec(twin_data.patches[:5])
    after = ImSpecPredictor(model).im2spec(twin_data.patches[:5])
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-4)
    assert card["kind"] == "imspec" and card["shape"]["channels"] == 64
    assert ImSpecPredictor(model).spec2im(twin_data.spectra[:3]).shape == (3, 9, 9)


def test_bad_inputs_give_one_line_data_errors(trained, twin_data, tmp_path):
    predictor = ImSpecPredictor(trained.model)
    with pytest.raises(DataError, match="spectra of 64 points, got shape"):
        predictor.spec2im(np.zeros((2, 50)))
    with pytest.raises(DataError, match="one row per patch"):
        train_imspec(twin_data.patches[:10], twin_data.spectra[:9], TINY)
    with pytest.raises(DataError, match="9 x 9 patches"):
        predictor.im2spec(np.zeros((2, 49)))
    other = train_ivae(np.random.default_rng(0).random((4, 8, 8)), IVAEShape(side=8, hidden=8), IVAETrainConfig(epochs=1))
    wrong = save_ivae(tmp_path / "ivae.safetensors", other)
    with pytest.raises(DataError, match="is an invariant VAE .* checkpoint, not an im2spec"):
        load_imspec(wrong)
    with pytest.raises(DataError, match="window must be odd"):
        beps_pairs(BEPS, window=4)


def test_real_beps_pairs_pair_map_patches_with_loops():
    data = beps_pairs(BEPS, window=5)
    assert data.patches.shape == (46 * 46, 25) and data.spectra.shape == (46 * 46, 64)
    assert data.axis_unit == "V" and data.clean is None


def test_im2spec_encoder_serves_as_a_frozen_dkl_feature_extractor(trained, tmp_path):
    path = save_imspec(tmp_path / "imspec.safetensors", trained)
    pool = probe_grid_pool(DigitalTwin(TwinOptions(seed=11, size=64, channels=64)).overview(), step=4, window=9)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(pool.X), 30, replace=False)
    y = pool.X[rows, 40] + 0.1 * rng.normal(size=30)
    model = DKLSurrogate(extractor="pretrained", checkpoint=str(path), fit_iters=20, hidden=(8,))
    model.fit(pool.X[rows], y)
    mean, variance = model.predict(pool.X[:50])
    assert mean.shape == variance.shape == (50,) and np.isfinite(mean).all()
    encoder = model._model.feature_extractor[0]
    assert not any(p.requires_grad for p in encoder.parameters())
    np.testing.assert_allclose(encoder.model.patch_encoder[1].weight.detach(),
                               trained.model.patch_encoder[1].weight.detach())
    with pytest.raises(SpecError, match="encodes 9 x 9 patches"):
        DKLSurrogate(extractor="pretrained", checkpoint=str(path), fit_iters=2).fit(pool.X[rows, :49], y)
    with pytest.raises(SpecError, match="needs the path"):
        DKLSurrogate(extractor="pretrained", fit_iters=2).fit(pool.X[rows], y)
