"""Playback of recorded data: the real BEPS loops of PbTiO3 and generic HDF5/npz cubes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from activescope.engine.errors import DataError
from activescope.engine.registry import INSTRUMENTS
from activescope.engine.scalarizers import loop_area
from activescope.instruments.playback import CubePlayback, PlaybackOptions, beps_playback, loop_area_map, read_playback


@pytest.fixture(scope="module")
def recorded(data_dir):
    """The BEPS file's loops (X, Y, V order as stored), voltage axis and X coordinates (m)."""
    with h5py.File(data_dir / "beps_pto_50x50.h5", "r") as f:
        g = f["Channel_000/generic"]
        return g["generic"][()], g["Voltage"][()], g["X"][()]


def test_beps_playback_returns_the_recorded_loop_at_the_nearest_grid_point(beps, recorded):
    loops, voltage, x = recorded
    pixel = (x[1] - x[0]) * 1e9
    info = beps.describe()
    assert info.geometry.shape == (50, 50) and info.geometry.pixel_nm == pytest.approx(pixel)
    assert (info.axis_name, info.axis_unit, info.channels) == ("voltage", "V", 64)
    for col, row in [(0, 0), (3, 7), (49, 12), (25, 49)]:
        spectrum = beps.acquire(col * pixel + 0.3 * pixel, row * pixel - 0.4 * pixel if row else 0.0)
        np.testing.assert_array_equal(spectrum.values, loops[col, row])  # stored as (X, Y, V)
        np.testing.assert_array_equal(spectrum.axis, voltage)
        assert spectrum.metadata == {"row": row, "col": col}


def test_the_beps_overview_is_the_loop_area_map(beps, recorded):
    loops, voltage, _ = recorded
    overview = beps.overview()
    assert overview.channel == "loop_area"
    area = loop_area()
    expected = np.array([[area(np.vstack([voltage, loops[c, r]])) for c in range(50)] for r in range(50)])
    np.testing.assert_allclose(overview.image, expected, rtol=1e-5)
    np.testing.assert_allclose(loop_area_map(loops, voltage).T, expected)


def test_a_generic_npz_cube_plays_back_with_its_image_and_axis(cube_npz):
    data = np.load(cube_npz)
    instrument = INSTRUMENTS.build("playback", {"path": str(cube_npz), "cube": "data", "axis": "energy", "image": "haadf",
                                                "axis_name": "energy_loss", "axis_unit": "eV", "pixel_nm": 0.5},
                                   section="instrument")
    assert isinstance(instrument, CubePlayback)
    np.testing.assert_allclose(instrument.overview().image, data["haadf"], rtol=1e-6)
    spectrum = instrument.acquire(4 * 0.5, 9 * 0.5)
    np.testing.assert_array_equal(spectrum.values, data["data"][9, 4])
    np.testing.assert_array_equal(spectrum.axis, data["energy"])


def test_an_hdf5_cube_without_image_or_axis_uses_a_computed_overview(tmp_path):
    cube = np.arange(6 * 5 * 4, dtype=float).reshape(6, 5, 4) ** 0.5
    path = tmp_path / "cube.h5"
    with h5py.File(path, "w") as f:
        f["spectra/cube"] = cube
        x = f.create_dataset("x", data=np.arange(5) * 2e-9)
        x.attrs["units"] = "m"
    instrument = read_playback(PlaybackOptions(path=str(path), cube="spectra/cube", x="x", overview="std"))
    assert instrument.describe().geometry.pixel_nm == pytest.approx(2.0)
    np.testing.assert_allclose(instrument.overview().image, cube.std(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(instrument.acquire(0.0, 0.0).axis, np.arange(4.0))


@pytest.mark.parametrize("options, words", [
    ({"path": "nowhere.h5"}, "not found"),
    ({"cube": "missing"}, "no dataset 'missing'"),
    ({"cube": "Channel_000/generic/Voltage"}, "expected a 3-D cube"),
    ({"axis": "Channel_000/generic/X"}, "spectral axis has shape"),  # 50 points, not 64
])
def test_bad_playback_files_are_data_errors(data_dir, options, words):
    merged = {"path": str(data_dir / "beps_pto_50x50.h5"), "cube": "Channel_000/generic/generic", "dims": "xyn", **options}
    with pytest.raises(DataError, match=words):
        read_playback(PlaybackOptions(**merged))


def test_a_wrong_file_type_is_a_data_error(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5"):
        read_playback(PlaybackOptions(path=str(path)))


def test_beps_playback_options_can_override_the_defaults(data_dir):
    instrument = beps_playback(data_dir / "beps_pto_50x50.h5", overview="mean", pixel_nm=10.0, dwell_s=0.5)
    info = instrument.describe()
    assert info.geometry.pixel_nm == 10.0 and info.default_dwell_s == 0.5
    assert instrument.overview().channel == "mean"
