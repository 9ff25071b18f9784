"""Playback of recorded data: an instrument that answers from a stored hyperspectral cube.

A cube holds one spectrum (or curve) per pixel of a spatial grid, shape (rows, cols, n), with its
spectral axis (n,). `acquire(x, y)` returns the recorded spectrum at the grid point nearest to
(x, y); `overview()` returns a stored image or a map computed from the cube (the hysteresis
loop area for band-excitation piezoresponse spectroscopy, the mean, the standard deviation or
the first channel). Nothing drifts and no dose is delivered; the instrument clock advances by
the dwell and overhead of each acquisition, so budgets and latency behave as on an instrument.

Files: HDF5 (``.h5``, ``.hdf5``; options name dataset paths) or NumPy ``.npz`` (options name
keys). The repository's BEPS file (``data/beps_pto_50x50.h5``, 50 x 50 loops of 64 points over
a voltage axis, stored in pyNSID order X, Y, Voltage) plays back with::

    instrument: {kind: playback, path: data/beps_pto_50x50.h5, cube: Channel_000/generic/generic,
                 dims: xyn, axis: Channel_000/generic/Voltage, axis_name: voltage, axis_unit: V,
                 x: Channel_000/generic/X, overview: loop_area}

(`beps_playback(path)` builds the same in Python).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from activescope.engine.errors import DataError
from activescope.engine.registry import register_instrument

from .base import InstrumentBase
from .protocol import Budget, Geometry, InstrumentInfo

_LENGTH_TO_NM = {"m": 1e9, "mm": 1e6, "um": 1e3, "µm": 1e3, "nm": 1.0, "a": 0.1, "å": 0.1, "angstrom": 0.1}


class PlaybackOptions(BaseModel):
    """Options of recorded-data playback (the `instrument:` section with `kind: playback`)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="HDF5 (.h5, .hdf5) or .npz file holding the cube")
    cube: str = Field("cube", description="dataset path (HDF5) or key (npz) of the hyperspectral cube")
    dims: Literal["yxn", "xyn"] = Field("yxn", description="cube axis order: yxn = (rows, cols, n); xyn = (cols, rows, n) as pyNSID stores it")
    axis: str | None = Field(None, description="dataset or key of the spectral axis (n,); none: channel index")
    axis_name: str = Field("channel", description="name of the spectral axis, e.g. voltage or energy_loss")
    axis_unit: str = Field("", description="unit of the spectral axis, e.g. V or eV")
    unit: str = Field("a.u.", description="unit of the recorded values")
    image: str | None = Field(None, description="dataset or key of an overview image (rows, cols); none: computed from the cube")
    overview: Literal["loop_area", "mean", "std", "first"] = Field(
        "mean", description="map computed from the cube when no image is given")
    x: str | None = Field(None, description="dataset or key of the x coordinates (cols,), giving the pixel size (units from its 'units' attribute, metres when absent)")
    pixel_nm: float | None = Field(None, gt=0, description="pixel size, nm (overrides x; default 1)")
    dwell_s: float = Field(0.01, gt=0, description="recorded dwell per spectrum, s (charged to the clock)")
    overhead_s: float = Field(0.0, ge=0, description="instrument seconds per acquisition besides dwell")
    latency_s: float = Field(0.0, ge=0, description="real seconds slept per acquisition (simulated latency)")
    time_budget_s: float | None = Field(None, gt=0, description="instrument time budget, s (none: unlimited)")
    max_acquisitions: int | None = Field(None, ge=1, description="acquisition budget, spectra (none: unlimited)")


def loop_area_map(cube: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Area enclosed by each closed curve (axis, cube[..., k]) over the last dimension (shoelace
    formula), shape cube.shape[:-1]; units: axis unit x value unit."""
    x = np.asarray(axis, dtype=float)
    y = np.asarray(cube, dtype=float)
    return 0.5 * np.abs(y @ np.roll(x, -1) - np.roll(y, -1, axis=-1) @ x)


def _read(path: Path, names: dict[str, str | None]) -> dict[str, tuple[np.ndarray, dict[str, Any]] | None]:
    """Arrays (and HDF5 attributes) named by `names` in an HDF5 or npz file; DataError naming
    the file and the missing dataset otherwise."""
    if not path.is_file():
        raise DataError(f"playback file not found: {path}")
    out: dict[str, tuple[np.ndarray, dict[str, Any]] | None] = dict.fromkeys(names)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as store:
            for role, key in names.items():
                if key is not None:
                    if key not in store.files:
                        raise DataError(f"{path}: no key {key!r} ({role}); keys: {', '.join(store.files)}")
                    out[role] = (np.asarray(store[key]), {})
        return out
    import h5py

    try:
        with h5py.File(path, "r") as store:
            for role, key in names.items():
                if key is not None:
                    if key not in store or not isinstance(store[key], h5py.Dataset):
                        raise DataError(f"{path}: no dataset {key!r} ({role})")
                    out[role] = (np.asarray(store[key][()]), dict(store[key].attrs))
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 or npz file: {err}") from None
    return out


def _units_to_nm(attrs: dict[str, Any]) -> float:
    units = attrs.get("units", "m")
    units = (units.decode() if isinstance(units, bytes) else str(units)).strip().lower()
    if units not in _LENGTH_TO_NM:
        raise DataError(f"unknown length unit {units!r} of the x coordinates; give pixel_nm")
    return _LENGTH_TO_NM[units]


class CubePlayback(InstrumentBase):
    """Plays back a hyperspectral cube.

    cube: (rows, cols, n) recorded values. axis: (n,) spectral axis. image: (rows, cols)
    overview image. pixel_nm: grid spacing, nm; the grid origin is (0, 0) nm. channel: what
    `image` shows. Other arguments as in `InstrumentBase`.
    """

    def __init__(self, cube: np.ndarray, axis: np.ndarray, image: np.ndarray, pixel_nm: float, *,
                 axis_name: str = "channel", axis_unit: str = "", unit: str = "a.u.", channel: str = "image",
                 dwell_s: float = 0.01, overhead_s: float = 0.0, latency_s: float = 0.0,
                 budget: Budget = Budget()) -> None:
        cube = np.asarray(cube, dtype=np.float64)
        if cube.ndim != 3:
            raise DataError(f"a playback cube must have 3 dimensions (rows, cols, n), got shape {cube.shape}")
        if np.asarray(axis).shape != (cube.shape[2],):
            raise DataError(f"spectral axis has shape {np.asarray(axis).shape}, expected ({cube.shape[2]},)")
        if np.asarray(image).shape != cube.shape[:2]:
            raise DataError(f"overview image has shape {np.asarray(image).shape}, expected {cube.shape[:2]}")
        info = InstrumentInfo(kind="playback", geometry=Geometry(cube.shape[:2], float(pixel_nm)), axis_name=axis_name,
                              axis_unit=axis_unit, unit=unit, channels=cube.shape[2], dwell_range_s=(dwell_s, dwell_s),
                              default_dwell_s=dwell_s, budget=budget)
        super().__init__(info, latency_s=latency_s, overhead_s=overhead_s)
        self.cube = cube
        self._axis = np.asarray(axis, dtype=np.float64)
        self._axis.setflags(write=False)
        self._image = np.asarray(image, dtype=np.float32)
        self.channel = channel

    @property
    def axis(self) -> np.ndarray:
        """(n,) recorded spectral axis."""
        return self._axis

    def _scan(self, t_s: float) -> np.ndarray:
        return self._image.copy()

    def _measure(self, x_nm: float, y_nm: float, dwell_s: float, t_s: float) -> tuple[np.ndarray, dict[str, Any]]:
        col, row = self._info.geometry.nearest_pixel(x_nm, y_nm)
        return self.cube[int(row), int(col)].copy(), {"row": int(row), "col": int(col)}


def read_playback(options: PlaybackOptions) -> CubePlayback:
    """A `CubePlayback` from a file as described by `options`."""
    o = options
    path = Path(o.path)
    data = _read(path, {"cube": o.cube, "axis": o.axis, "image": o.image, "x": o.x})
    cube = data["cube"][0]
    if cube.ndim != 3:
        raise DataError(f"{path}: {o.cube!r} has shape {cube.shape}, expected a 3-D cube")
    if o.dims == "xyn":
        cube = cube.transpose(1, 0, 2)
    axis = data["axis"][0].astype(float) if data["axis"] else np.arange(cube.shape[2], dtype=float)
    if data["image"] is not None:
        image, channel = data["image"][0], o.image.rsplit("/", 1)[-1]
    elif o.overview == "loop_area":
        image, channel = loop_area_map(cube, axis), "loop_area"
    else:
        image = {"mean": lambda c: c.mean(axis=2), "std": lambda c: c.std(axis=2), "first": lambda c: c[..., 0]}[o.overview](cube)
        channel = o.overview
    pixel_nm = o.pixel_nm
    if pixel_nm is None and data["x"] is not None:
        x, attrs = data["x"]
        step = np.diff(np.asarray(x, dtype=float))
        if len(step) == 0 or not np.all(step > 0):
            raise DataError(f"{path}: x coordinates {o.x!r} must increase; give pixel_nm")
        pixel_nm = float(np.median(step)) * _units_to_nm(attrs)
    return CubePlayback(cube, axis, image, pixel_nm or 1.0, axis_name=o.axis_name, axis_unit=o.axis_unit, unit=o.unit,
                        channel=channel, dwell_s=o.dwell_s, overhead_s=o.overhead_s, latency_s=o.latency_s,
                        budget=Budget(time_s=o.time_budget_s, acquisitions=o.max_acquisitions))


BEPS_OPTIONS = dict(cube="Channel_000/generic/generic", dims="xyn", axis="Channel_000/generic/Voltage",
                    axis_name="voltage", axis_unit="V", unit="a.u.", x="Channel_000/generic/X", overview="loop_area")


def beps_playback(path: str | Path, **options: Any) -> CubePlayback:
    """Playback of a pyNSID band-excitation file such as ``data/beps_pto_50x50.h5``: loops over
    the voltage axis (V), overview = loop-area map, pixel size from the X coordinates (nm).
    `options` override `PlaybackOptions` fields."""
    return read_playback(PlaybackOptions(path=str(path), **{**BEPS_OPTIONS, **options}))


@register_instrument("playback", PlaybackOptions)
def playback(**options: Any) -> CubePlayback:
    """Playback of recorded data: a hyperspectral cube (HDF5 or npz) answers acquisitions at its
    nearest grid point; the overview is a stored image or a map computed from the cube."""
    return read_playback(PlaybackOptions(**options))
