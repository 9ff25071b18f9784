"""The `probe_grid` pool source: candidate probe positions on an instrument's overview image.

Candidates lie on a grid over the overview (every `step`-th pixel; step 1 = every pixel). Each
candidate's features are the image patch (`window` x `window` pixels) centred on it, flattened:
the structure around a position, which a deep-kernel model learns to relate to the spectrum
measured there. Patches are cut with a strided view of the reflect-padded image (no copy per
candidate), so border positions are candidates too.

Pool rows: ids ``x{col}_y{row}`` (overview pixel indices), features ``p{i}_{j}`` (patch row i,
column j), info columns ``x_nm``, ``y_nm`` (the position to acquire at), ``col``, ``row``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from activescope.engine.errors import SpecError
from activescope.engine.pool import Pool
from activescope.engine.registry import register_source

from .drift import set_reference
from .protocol import Instrument, Overview


class ProbeGridOptions(BaseModel):
    """Options of the `probe_grid` pool source (the spec's `data:` section)."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(1, ge=1, description="grid step, overview pixels (1 = every pixel)")
    window: int = Field(9, ge=1, le=127, description="side of the square patch around each position, pixels (odd)")
    normalize: Literal["image", "patch"] = Field(
        "image", description="image: standardise the whole overview (patches keep their contrast); patch: standardise each patch")

    @field_validator("window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"window must be odd so that a patch is centred on its position, got {value}")
        return value


def patches(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, window: int) -> np.ndarray:
    """(n, window * window) float32 patches of `image` centred on pixels (rows[k], cols[k])
    (reflect padding at the borders)."""
    half = window // 2
    padded = np.pad(np.asarray(image, dtype=np.float32), half, mode="reflect")
    view = np.lib.stride_tricks.sliding_window_view(padded, (window, window))
    return view[rows, cols].reshape(len(rows), window * window)


def probe_grid_pool(overview: Overview, step: int = 1, window: int = 9, normalize: str = "image") -> Pool:
    """The candidate pool of probe positions on `overview` (see the module docstring)."""
    image = np.asarray(overview.image, dtype=np.float32)
    h, w = image.shape
    if window > min(h, w):
        raise SpecError(f"data.window: {window} pixels is larger than the {h} x {w} overview")
    row, col = (a.ravel() for a in np.meshgrid(np.arange(0, h, step), np.arange(0, w, step), indexing="ij"))
    if normalize == "image":
        image = (image - image.mean()) / max(float(image.std()), 1e-12)
    X = patches(image, row, col, window)
    if normalize == "patch":
        X = (X - X.mean(axis=1, keepdims=True)) / np.maximum(X.std(axis=1, keepdims=True), 1e-12)
    x_nm, y_nm = overview.geometry.to_nm(col, row)
    ids = np.char.add(np.char.add("x", col.astype(str)), np.char.add("_y", row.astype(str)))
    names = [f"p{i}_{j}" for i in range(window) for j in range(window)]
    info = pd.DataFrame({"x_nm": x_nm, "y_nm": y_nm, "col": col, "row": row})
    return Pool(ids=ids, X=np.ascontiguousarray(X, dtype=np.float32), info=info, feature_names=names,
                feature_kinds={"patch": slice(0, window * window)})


@register_source("probe_grid", ProbeGridOptions)
def probe_grid(step: int = 1, window: int = 9, normalize: str = "image", instrument: Instrument | None = None) -> Pool:
    """Probe positions on the instrument's overview image (a grid, or every pixel) with image
    patches around them as features; the overview becomes the drift-correction reference."""
    if instrument is None:
        raise SpecError("data.source probe_grid takes its candidates from an instrument: add an instrument: section to the spec")
    overview = instrument.overview()
    set_reference(instrument, overview)
    return probe_grid_pool(overview, step=step, window=window, normalize=normalize)


def positions(pool: Pool, ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x_nm, y_nm) arrays of the pool rows with `ids` (a pool from `probe_grid`)."""
    rows = pool.index_of(ids)
    return pool.info["x_nm"].to_numpy()[rows], pool.info["y_nm"].to_numpy()[rows]
