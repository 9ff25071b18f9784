"""Read one 2-D microscope image from common and vendor formats, with clear errors.

Supported: ``.npy``; ``.tif``/``.tiff`` (tifffile); ``.png``/``.jpg``/``.jpeg``/``.bmp``
(Pillow; colour is converted to luminance); Gatan ``.dm3``/``.dm4``, Velox/Berkeley ``.emd`` and
HyperSpy ``.hspy`` (RosettaSciIO); and any 2-D dataset inside an HDF5 file addressed as
``file.h5:/group/dataset`` (``.h5``/``.hdf5``; the dataset path may be left out when the file
holds exactly one 2-D dataset). The pixel size is reported in Å when the file records it in a
length unit (for ``.npy``, in a sidecar ``<name>.json`` with ``pixel_size_angstrom``).

Outputs go the other way: ``check_destination`` makes sure an output folder or file can be
written before a command spends minutes simulating or training for it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from activescope.engine.errors import DataError

_RSCIIO_READERS = {".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd",
                   ".hspy": "hspy"}
_PILLOW = {".png", ".jpg", ".jpeg", ".bmp"}
_HDF5 = {".h5", ".hdf5"}
SUPPORTED_SUFFIXES: tuple[str, ...] = (".npy", ".tif", ".tiff", *sorted(_PILLOW),
                                       *sorted(_RSCIIO_READERS), *sorted(_HDF5))

_ANGSTROM_PER_UNIT = {"m": 1e10, "cm": 1e8, "mm": 1e7, "um": 1e4, "µm": 1e4, "micron": 1e4,
                      "nm": 10.0, "a": 1.0, "å": 1.0, "angstrom": 1.0, "pm": 1e-2}
_LUMINANCE = np.array([0.299, 0.587, 0.114])


def pixel_size_angstrom(scale: float | None, unit: str | None) -> float | None:
    """A pixel size in Å from a scale and its length unit; None when the unit is not a length."""
    if scale is None or unit is None:
        return None
    factor = _ANGSTROM_PER_UNIT.get(str(unit).strip().lower())
    return float(scale) * factor if factor and np.isfinite(scale) and scale > 0 else None


def as_image(data: Any, source: str) -> np.ndarray:
    """Validate ``data`` as one 2-D finite, non-constant image and return it as float32.

    A trailing RGB(A) axis is converted to luminance and singleton axes are squeezed; a stack
    of frames, a volume, an empty array, NaN/inf or a constant image raise ``DataError``.
    """
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{source}: image data must be real numbers, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] in (3, 4) and min(array.shape[:2]) > 4:
        array = array[..., :3].astype(np.float64) @ _LUMINANCE
    array = np.squeeze(array)
    if array.size == 0:
        raise DataError(f"{source}: image is empty (shape {np.shape(data)})")
    if array.ndim == 3:
        raise DataError(f"{source}: is a stack of {array.shape[0]} images of "
                        f"{array.shape[1]}x{array.shape[2]}; save or select a single frame")
    if array.ndim != 2:
        raise DataError(f"{source}: expected a 2-D image, got shape {np.shape(data)}")
    image = array.astype(np.float32)
    if not np.isfinite(image).all():
        raise DataError(f"{source}: image contains NaN or inf values")
    if image.min() == image.max():
        raise DataError(f"{source}: image is constant ({image.flat[0]}); nothing to analyse")
    return image


def _read_npy(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A ``.npy`` array; its pixel size comes from a sidecar ``<name>.json`` when there is one
    (``{"pixel_size_angstrom": 0.1}``, as ``activescope atoms simulate`` writes)."""
    meta: dict[str, Any] = {}
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            value = json.loads(sidecar.read_text()).get("pixel_size_angstrom")
        except (ValueError, AttributeError, OSError):
            value = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            meta.update(pixel_size=float(value), pixel_unit="Å")
    return np.load(path, allow_pickle=False), meta


def _read_tiff(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        meta: dict[str, Any] = {}
        imagej = tif.imagej_metadata or {}
        resolution = tif.pages[0].tags.get("XResolution")
        if "unit" in imagej and resolution is not None:
            numerator, denominator = resolution.value
            if numerator:
                meta["pixel_size"] = denominator / numerator
                meta["pixel_unit"] = imagej["unit"]
    return data, meta


def _read_pillow(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image

    with Image.open(path) as img:
        grey_modes = {"L", "I", "F", "I;16", "I;16B", "I;16L", "1"}
        data = np.asarray(img if img.mode in grey_modes else img.convert("RGB"))
    return data, {}


def _read_rsciio(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import importlib

    reader = importlib.import_module(f"rsciio.{_RSCIIO_READERS[path.suffix.lower()]}")
    signals = reader.file_reader(str(path))
    if not signals:
        raise DataError(f"{path}: the file holds no signals")
    images = [s for s in signals if np.squeeze(s["data"]).ndim == 2]
    signal = (images or signals)[0]
    axes = [a for a in signal.get("axes", []) if a.get("size", 1) > 1]
    meta: dict[str, Any] = {"n_signals": len(signals)}
    if axes:
        meta["pixel_size"] = float(axes[-1].get("scale", 1.0))
        meta["pixel_unit"] = axes[-1].get("units")
    title = signal.get("metadata", {}).get("General", {}).get("title")
    if title:
        meta["title"] = title
    return signal["data"], meta


def _split_hdf5(spec: str) -> tuple[Path, str | None]:
    """``file.h5:/a/b`` -> (file.h5, "/a/b"); a plain path -> (path, None)."""
    for suffix in _HDF5:
        marker = suffix + ":"
        at = spec.lower().find(marker)
        if at >= 0:
            return Path(spec[: at + len(suffix)]), spec[at + len(marker):] or None
    return Path(spec), None


def _hdf5_pixel_size(node: Any) -> dict[str, Any]:
    """Pixel size from the x axis: an attached dimension scale or a sibling ``x`` dataset."""
    try:
        axis = node.dims[node.ndim - 1][0]
    except (IndexError, OverflowError, RuntimeError, KeyError):
        axis = node.parent.get("x")
    if axis is None or axis.ndim != 1 or axis.shape[0] < 2:
        return {}
    unit = axis.attrs.get("units")
    return {"pixel_size": float(abs(axis[1] - axis[0])),
            "pixel_unit": unit.decode() if isinstance(unit, bytes) else unit}


def _read_hdf5(path: Path, dataset: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    import h5py

    with h5py.File(path, "r") as h5:
        if dataset is None:
            found: list[str] = []
            h5.visititems(lambda name, obj: found.append(name)
                          if isinstance(obj, h5py.Dataset) and len(obj.shape) >= 2
                          and sum(n > 1 for n in obj.shape) == 2 else None)
            if len(found) != 1:
                listed = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
                raise DataError(f"{path}: name the dataset as {path.name}:/path/to/dataset "
                                f"({len(found)} image datasets: {listed or 'none'})")
            dataset = found[0]
        if dataset not in h5 or not isinstance(h5[dataset], h5py.Dataset):
            raise DataError(f"{path}: no dataset {dataset!r} in the file")
        node = h5[dataset]
        data = node[()]
        meta: dict[str, Any] = {"dataset": node.name}
        meta.update(_hdf5_pixel_size(node))
    return data, meta


def read_image(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """One image as float32 (H, W) and its metadata (source, format, pixel size if known).

    ``metadata["pixel_size_angstrom"]`` is the x pixel size in Å, or None when the file does
    not record one in a length unit; ``pixel_size``/``pixel_unit`` keep the raw values.
    """
    file, dataset = _split_hdf5(str(path))
    suffix = file.suffix.lower()
    if not file.is_file():
        raise DataError(f"image file {file} does not exist")
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"unknown image format {suffix or file.name!r}; "
                        f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        if suffix in _HDF5:
            data, meta = _read_hdf5(file, dataset)
        elif suffix == ".npy":
            data, meta = _read_npy(file)
        elif suffix in (".tif", ".tiff"):
            data, meta = _read_tiff(file)
        elif suffix in _PILLOW:
            data, meta = _read_pillow(file)
        else:
            data, meta = _read_rsciio(file)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure is an unreadable file
        raise DataError(f"cannot read {file}: {type(err).__name__}: {err}") from err
    image = as_image(data, str(path))
    meta.update(source=str(path), format=suffix.lstrip("."), shape=image.shape)
    meta["pixel_size_angstrom"] = pixel_size_angstrom(meta.get("pixel_size"),
                                                      meta.get("pixel_unit"))
    return image, meta


def check_destination(path: str | Path, folder: bool) -> Path:
    """Make sure ``path`` can be written before any work is done for it; return it as a Path.

    ``folder=True``: ``path`` is an output folder, created with its parents when missing.
    ``folder=False``: ``path`` is an output file; its folder is created when missing and an
    existing file there stays untouched until the caller replaces it. A probe file is created
    and removed in the folder, so read-only or special locations fail here, not after the work.
    Raises ``DataError`` naming ``path`` and the problem; files already there are never removed.
    """
    path = Path(path)
    what = "output folder" if folder else "output file"
    directory = path if folder else path.parent
    try:
        if folder and path.exists() and not path.is_dir():
            raise DataError(f"{what} {path} is an existing file, not a folder")
        if not folder and path.is_dir():
            raise DataError(f"{what} {path} is an existing folder, not a file")
        existing = next(p for p in (directory, *directory.parents) if p.exists())
        if not existing.is_dir():
            raise DataError(f"cannot write {what} {path}: {existing} is a file, not a folder")
        if not folder and path.is_file() and not os.access(path, os.W_OK):
            raise DataError(f"cannot write {what} {path}: the existing file is read-only")
    except OSError as err:
        raise DataError(f"cannot write {what} {path}: {err.strerror or err}") from None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot write {what} {path}: cannot create folder "
                        f"{err.filename or directory} ({err.strerror or err})") from None
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise DataError(f"cannot write {what} {path}: cannot write files in {directory} "
                        f"({err.strerror or err})") from None
    return path
