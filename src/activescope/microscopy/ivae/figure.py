"""The latent-space figure: every atom as a point in (z0, z1), coloured by a label, with example
patches drawn at their latent positions (loads matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # noqa: E402

N_EXAMPLES = 12
"""Example patches drawn on the map (the atoms nearest to evenly spread latent points)."""


def example_rows(z: np.ndarray, n: int = N_EXAMPLES, seed: int = 0) -> np.ndarray:
    """Indices of up to `n` atoms spread over the latent map (farthest-point sampling)."""
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(z)))]
    distance = np.linalg.norm(z - z[chosen[0]], axis=1)
    for _ in range(min(n, len(z)) - 1):
        chosen.append(int(distance.argmax()))
        distance = np.minimum(distance, np.linalg.norm(z - z[chosen[-1]], axis=1))
    return np.array(chosen)


def latent_figure(z: np.ndarray, labels: np.ndarray, patches: np.ndarray, path: str | Path, title: str = "",
                  label_name: str = "type", image: np.ndarray | None = None, xy: np.ndarray | None = None) -> Path:
    """Write a PNG: the latent map (z (n, >=2)) coloured by `labels`, with example `patches`;
    with `image` and atom positions `xy` (n, 2) a second panel shows the atoms on the frame
    coloured by z0."""
    panels = 2 if image is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 6), squeeze=False)
    ax = axes[0, 0]
    values = np.unique(labels)
    for index, value in enumerate(values):
        rows = labels == value
        ax.scatter(z[rows, 0], z[rows, 1], s=6, alpha=0.6, color=plt.cm.tab10(index % 10), label=f"{value} ({rows.sum()})")
    for row in example_rows(z[:, :2]):
        box = AnnotationBbox(OffsetImage(patches[row], cmap="gray", zoom=1.6), (z[row, 0], z[row, 1]), frameon=True, pad=0.1)
        ax.add_artist(box)
    ax.set(xlabel="z0", ylabel="z1", title=title or "latent space")
    ax.legend(title=label_name, fontsize=8, markerscale=2, loc="best")
    if image is not None and xy is not None:
        right = axes[0, 1]
        right.imshow(image, cmap="gray")
        points = right.scatter(xy[:, 0], xy[:, 1], c=z[:, 0], s=8, cmap="coolwarm")
        fig.colorbar(points, ax=right, label="z0", shrink=0.8)
        right.set(title="atoms coloured by z0", xticks=[], yticks=[])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
