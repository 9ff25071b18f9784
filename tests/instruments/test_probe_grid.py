"""The probe_grid pool source on real PFM images and BEPS playback: positions, ids, and patch
features cut from the overview."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from activescope.engine.errors import SpecError
from activescope.engine.pool import build_pool
from activescope.engine.registry import SOURCES
from activescope.instruments.protocol import Geometry, Overview
from activescope.instruments.sources import patches, probe_grid_pool


@pytest.fixture(scope="module")
def pfm(data_dir) -> Overview:
    """The PFM amplitude image (256 x 256) as an overview, pixel size from its x axis."""
    with h5py.File(data_dir / "pfm_pto_256.h5", "r") as f:
        g = f["Measurement_000/Channel_1/Channel_1"]
        image, x = g["Channel_1"][()], g["x"][()]
    return Overview(image=image, geometry=Geometry(image.shape, float((x[1] - x[0]) * 1e9)), channel="amplitude")


def test_a_grid_on_the_pfm_image_has_patch_features_and_positions(pfm):
    pool = probe_grid_pool(pfm, step=8, window=9)
    assert len(pool) == 32 * 32 and pool.X.shape == (1024, 81) and pool.X.dtype == np.float32
    assert pool.feature_kinds == {"patch": slice(0, 81)} and pool.feature_names[:2] == ["p0_0", "p0_1"]
    standard = (pfm.image - pfm.image.mean()) / pfm.image.std()
    row = pool.index_of(["x40_y16"])[0]
    np.testing.assert_allclose(pool.X[row].reshape(9, 9), standard[12:21, 36:45], rtol=1e-4, atol=1e-5)
    corner = pool.index_of(["x0_y0"])[0]
    np.testing.assert_allclose(pool.X[corner].reshape(9, 9), np.pad(standard, 4, mode="reflect")[:9, :9], rtol=1e-4, atol=1e-5)
    info = pool.info.iloc[row]
    assert (info["col"], info["row"]) == (40, 16)
    assert (info["x_nm"], info["y_nm"]) == pytest.approx((40 * pfm.geometry.pixel_nm, 16 * pfm.geometry.pixel_nm))
    assert len(set(pool.ids)) == len(pool)


def test_patch_normalisation_standardises_each_patch(pfm):
    pool = probe_grid_pool(pfm, step=16, window=7, normalize="patch")
    np.testing.assert_allclose(pool.X.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(pool.X.std(axis=1), 1.0, rtol=1e-3)


def test_patches_match_a_loop_over_positions():
    image = np.arange(7 * 6, dtype=np.float32).reshape(7, 6)
    rows, cols = np.array([0, 3, 6]), np.array([5, 2, 0])
    padded = np.pad(image, 1, mode="reflect")
    expected = np.stack([padded[r:r + 3, c:c + 3].ravel() for r, c in zip(rows, cols)])
    np.testing.assert_array_equal(patches(image, rows, cols, 3), expected)


def test_every_pixel_of_the_beps_playback_is_a_candidate(beps):
    pool = build_pool("probe_grid", instrument=beps, window=5)
    assert len(pool) == 2500 and pool.X.shape == (2500, 25)
    assert pool.ids[0] == "x0_y0" and pool.ids[-1] == "x49_y49"
    x_nm, y_nm = pool.info["x_nm"].to_numpy(), pool.info["y_nm"].to_numpy()
    assert beps.describe().geometry.contains(x_nm, y_nm).all()


def test_probe_grid_needs_an_instrument_and_an_odd_window(beps):
    with pytest.raises(SpecError, match="instrument: section"):
        build_pool("probe_grid", window=5)
    with pytest.raises(SpecError, match="data.window: window must be odd"):
        build_pool("probe_grid", instrument=beps, window=4)
    with pytest.raises(SpecError, match="larger than the 50 x 50 overview"):
        build_pool("probe_grid", instrument=beps, window=51)
    assert "probe_grid" in SOURCES
