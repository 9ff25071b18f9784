"""Overlay figure: an image in grey with the found atoms drawn as coloured markers per class.

Uses a bare matplotlib ``Figure`` (Agg canvas) so it never touches the global pyplot state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from activescope.engine.errors import DataError


def save_overlay(image: np.ndarray, atoms: pd.DataFrame, path: str | Path,
                 classes: Sequence[str] | None = None, uncertainty: str | np.ndarray | None = None,
                 title: str | None = None, marker_px: float = 4.0, dpi: int = 150) -> Path:
    """Write a PNG of ``image`` with one marker per atom, coloured by class, plus a legend.

    ``atoms`` needs x, y (pixels) and optionally ``cls``; ``classes`` names the class indices
    (index 0 = background). ``uncertainty`` (a column name or per-atom array) scales marker
    area from ``marker_px`` (certain) to 3x that (most uncertain) and is shown in the legend.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise DataError(f"overlay needs a 2-D image, got shape {image.shape}")
    missing = {"x", "y"} - set(atoms.columns)
    if missing:
        raise DataError(f"atom table lacks column(s) {', '.join(sorted(missing))}")
    cls = atoms["cls"].to_numpy(int) if "cls" in atoms else np.ones(len(atoms), int)
    size = np.full(len(atoms), marker_px**2)
    if uncertainty is not None:
        values = np.asarray(atoms[uncertainty] if isinstance(uncertainty, str) else uncertainty,
                            dtype=float)
        if values.shape != (len(atoms),):
            raise DataError(f"need one uncertainty per atom ({len(atoms)}), got {values.shape}")
        span = np.ptp(values) if len(values) else 0.0
        scaled = (values - values.min()) / span if span > 0 else np.zeros_like(values)
        size = (marker_px * (1.0 + 2.0 * scaled)) ** 2

    height, width = image.shape
    fig = Figure(figsize=(6.0, 6.0 * height / width + 0.4))
    ax = fig.subplots()
    low, high = np.percentile(image, [0.5, 99.5])
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    palette = colormaps["tab10"]
    for k in np.unique(cls):
        here = cls == k
        name = classes[k] if classes is not None and 0 <= k < len(classes) else f"class {k}"
        ax.scatter(atoms["x"].to_numpy()[here], atoms["y"].to_numpy()[here], s=size[here],
                   facecolors="none", edgecolors=[palette(int(k) % 10)], linewidths=1.0,
                   label=f"{name} ({int(here.sum())})")
    if len(atoms):
        legend_title = "marker size = uncertainty" if uncertainty is not None else None
        legend = ax.legend(loc="upper right", fontsize=7, title=legend_title, title_fontsize=7,
                           framealpha=0.8)
        for handle in legend.legend_handles:
            handle.set_sizes([marker_px**2 * 2.0])
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
