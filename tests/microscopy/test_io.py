"""Image reading: every supported format round-trips, every bad input is a one-line DataError.

Output destinations: ``check_destination`` refuses unwritable ones before any work is done.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from activescope.engine.errors import DataError
from activescope.microscopy.io import (
    as_image,
    check_destination,
    pixel_size_angstrom,
    read_image,
)

PFM = Path(__file__).resolve().parents[2] / "data" / "pfm_pto_256.h5"
PFM_CHANNEL = "/Measurement_000/Channel_0/Channel_0/Channel_0"


@pytest.fixture
def picture() -> np.ndarray:
    return np.random.default_rng(0).random((12, 20)).astype(np.float32)


def test_npy_and_tiff_round_trip(tmp_path: Path, picture: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", picture[None])  # a singleton channel is squeezed away
    image, meta = read_image(tmp_path / "a.npy")
    assert np.array_equal(image, picture) and meta["shape"] == (12, 20)
    assert meta["pixel_size_angstrom"] is None
    tifffile.imwrite(tmp_path / "a.tif", picture, imagej=True, resolution=(1 / 0.05, 1 / 0.05),
                     metadata={"unit": "nm"})
    image, meta = read_image(tmp_path / "a.tif")
    assert np.array_equal(image, picture)
    assert meta["pixel_size_angstrom"] == pytest.approx(0.5)


def test_png_grey_and_colour(tmp_path: Path) -> None:
    grey = (np.arange(48, dtype=np.uint8).reshape(6, 8) * 5)
    Image.fromarray(grey).save(tmp_path / "g.png")
    image, meta = read_image(tmp_path / "g.png")
    assert np.array_equal(image, grey.astype(np.float32)) and meta["format"] == "png"
    colour = np.zeros((6, 8, 3), dtype=np.uint8)
    colour[..., 1] = grey
    Image.fromarray(colour).save(tmp_path / "c.png")
    image, _ = read_image(tmp_path / "c.png")
    assert image.shape == (6, 8)
    assert np.allclose(image, 0.587 * grey, atol=1e-3)


def test_hspy_written_by_rosettasciio(tmp_path: Path, picture: np.ndarray) -> None:
    from rsciio.hspy import file_writer

    axes = [{"name": n, "size": s, "scale": 0.02, "offset": 0.0, "units": "nm", "navigate": False}
            for n, s in (("y", 12), ("x", 20))]
    file_writer(str(tmp_path / "a.hspy"), {
        "data": picture, "axes": axes, "metadata": {"General": {"title": "haadf"}},
        "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False},
        "package_info": {"name": "activescope", "version": "0"}, "learning_results": {},
        "models": {},
    })
    image, meta = read_image(tmp_path / "a.hspy")
    assert np.array_equal(image, picture)
    assert meta["pixel_size_angstrom"] == pytest.approx(0.2) and meta["title"] == "haadf"


def test_emd_written_with_h5py(tmp_path: Path, picture: np.ndarray) -> None:
    # Berkeley EMD 0.2: data stored x-first with dim1 = x, dim2 = y
    with h5py.File(tmp_path / "a.emd", "w") as h5:
        h5.attrs["version_major"], h5.attrs["version_minor"] = 0, 2
        group = h5.create_group("data/haadf")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=picture.T)
        for name, label, size in (("dim1", "x", 20), ("dim2", "y", 12)):
            axis = group.create_dataset(name, data=np.arange(size) * 0.5)
            axis.attrs["name"], axis.attrs["units"] = label, "[n_m]"
    image, meta = read_image(tmp_path / "a.emd")
    assert np.array_equal(image, picture)
    assert meta["pixel_size_angstrom"] == pytest.approx(5.0)


def test_real_pfm_channel_from_hdf5_path() -> None:
    image, meta = read_image(f"{PFM}:{PFM_CHANNEL}")
    assert image.shape == (256, 256) and image.dtype == np.float32
    assert meta["dataset"] == PFM_CHANNEL and meta["pixel_unit"] == "m"
    assert meta["pixel_size_angstrom"] == pytest.approx(39.2157, rel=1e-4)
    with pytest.raises(DataError, match="4 image datasets"):
        read_image(PFM)
    with pytest.raises(DataError, match="no dataset"):
        read_image(f"{PFM}:/Measurement_000/Channel_9")


def test_hdf5_with_single_image_needs_no_dataset_path(tmp_path: Path, picture: np.ndarray) -> None:
    with h5py.File(tmp_path / "one.h5", "w") as h5:
        h5["scan/image"] = picture
        h5["scan/axis"] = np.arange(5.0)
    image, meta = read_image(tmp_path / "one.h5")
    assert np.array_equal(image, picture) and meta["dataset"] == "/scan/image"


@pytest.mark.parametrize("data, message", [
    (np.zeros((3, 16, 16)) + np.arange(16), "stack of 3"),
    (np.arange(10.0), "2-D"),
    (np.zeros((0, 5)), "empty"),
    (np.full((4, 4), 2.0), "constant"),
    (np.where(np.eye(4) > 0, np.nan, 1.0), "NaN"),
    (np.ones((4, 4)) * 1j, "real numbers"),
])
def test_bad_arrays_raise_one_line_data_errors(tmp_path: Path, data: np.ndarray,
                                               message: str) -> None:
    np.save(tmp_path / "bad.npy", data)
    with pytest.raises(DataError, match=message) as caught:
        read_image(tmp_path / "bad.npy")
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match=message):
        as_image(data, "array")


def test_unreadable_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "nothing.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown image format"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(DataError, match="cannot read"):
        read_image(tmp_path / "broken.tif")
    (tmp_path / "broken.dm4").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="cannot read"):
        read_image(tmp_path / "broken.dm4")


def test_pixel_size_units() -> None:
    assert pixel_size_angstrom(0.1, "nm") == pytest.approx(1.0)
    assert pixel_size_angstrom(3e-10, "m") == pytest.approx(3.0)
    assert pixel_size_angstrom(0.5, "Å") == 0.5
    assert pixel_size_angstrom(1.0, "deg") is None and pixel_size_angstrom(None, "nm") is None


def test_destinations_are_created_and_existing_files_kept(tmp_path: Path) -> None:
    out = check_destination(tmp_path / "a" / "b", folder=True)
    assert out.is_dir() and list(out.iterdir()) == []
    (out / "kept.csv").write_text("x,y\n")
    assert check_destination(str(out), folder=True) == out
    assert (out / "kept.csv").read_text() == "x,y\n" and len(list(out.iterdir())) == 1
    model = check_destination(tmp_path / "c" / "model.safetensors", folder=False)
    assert model.parent.is_dir() and not model.exists()


def _unwritable(tmp_path: Path) -> dict[str, tuple[Path, bool, str]]:
    """Destinations that must fail: (path, folder?, expected words); runs as root too."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    (tmp_path / "folder").mkdir()
    return {
        "folder onto a file": (a_file, True, "is an existing file, not a folder"),
        "file onto a folder": (tmp_path / "folder", False, "is an existing folder, not a file"),
        "folder under a file": (a_file / "out", True, "notes.txt is a file, not a folder"),
        "file under a file": (a_file / "m.safetensors", False, "notes.txt is a file, not a folder"),
        "folder under /proc": (Path("/proc/activescope-out"), True, "cannot write output folder"),
        "file under /proc": (Path("/proc/activescope.safetensors"), False, "cannot write output file"),
    }


@pytest.mark.parametrize("case", ["folder onto a file", "file onto a folder", "folder under a file",
                                  "file under a file", "folder under /proc", "file under /proc"])
def test_unwritable_destinations_are_one_line_data_errors(tmp_path: Path, case: str) -> None:
    path, folder, words = _unwritable(tmp_path)[case]
    with pytest.raises(DataError, match=words) as raised:
        check_destination(path, folder=folder)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
