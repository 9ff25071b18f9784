"""Report figures: pure functions from arrays to matplotlib Figures.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`, rendered by Agg), so
nothing here touches pyplot's global state and reports render headless. Axis labels carry the
target column name, which for QM9 already names the unit (e.g. Dipole_debye).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import norm

from ..engine.metrics import ROUND_PHASES, Goal, best_so_far, random_best_expectation, random_recall_expectation, recall_curve

CAMPAIGN_COLOR = "#1f5fa8"
RANDOM_COLOR = "#888888"


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _mark_initial_design(ax, n_initial: int) -> None:
    if n_initial > 0:
        ax.axvline(n_initial, color="k", lw=0.8, ls=":", label=f"end of initial design ({n_initial})")


def _mark_ideal_recall(ax, k: int, n: int) -> None:
    """The best any strategy can do: every measurement a new top-k member, min(1, i/k)."""
    if n >= 1:
        count = np.arange(1, n + 1)
        ax.plot(count, np.minimum(1.0, count / k), color="k", lw=0.8, ls=(0, (1, 3)), label="ideal (every pick a hit)")


def best_so_far_figure(
    values_in_order: np.ndarray, all_values: np.ndarray | None, goal: Goal, target: str, n_initial: int = 0
) -> Figure:
    """Best measured value against measurement count, with the exact random expectation when the
    pool's true values are known and a dashed line at the pool's true best."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    count = np.arange(1, len(values_in_order) + 1)
    ax.plot(count, best_so_far(values_in_order, goal), color=CAMPAIGN_COLOR, lw=2, label="campaign")
    if all_values is not None:
        ax.plot(count, random_best_expectation(all_values, len(count), goal), color=RANDOM_COLOR, lw=1.5,
                label="random sampling (exact expectation)")
        pool_best = np.nanmax(all_values) if goal == "maximize" else np.nanmin(all_values)
        ax.axhline(pool_best, color="k", lw=0.8, ls="--", label=f"pool best ({pool_best:.4g})")
    _mark_initial_design(ax, n_initial)
    ax.set_xlabel("measurements")
    ax.set_ylabel(f"best {target} so far")
    ax.set_title(f"Best so far ({goal})")
    ax.legend(loc="lower right" if goal == "maximize" else "upper right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def recall_figure(
    values_in_order: np.ndarray, all_values: np.ndarray, goal: Goal, ks: dict[str, int], n_initial: int = 0
) -> Figure:
    """Top-k recall against measurement count, one panel per k (label → k), each with the exact
    random-sampling expectation."""
    fig = Figure(figsize=(5.0 * len(ks), 4.0), layout="constrained")
    axes = fig.subplots(1, len(ks), squeeze=False)[0]
    count = np.arange(1, len(values_in_order) + 1)
    for ax, (label, k) in zip(axes, ks.items()):
        ax.plot(count, recall_curve(values_in_order, all_values, k, goal), color=CAMPAIGN_COLOR, lw=2,
                label="campaign")
        ax.plot(count, random_recall_expectation(all_values, k, len(count), goal), color=RANDOM_COLOR, lw=1.5,
                label="random sampling (exact expectation)")
        _mark_ideal_recall(ax, k, len(count))
        _style_recall_axes(ax, n_initial, "recall", f"{label} recall (k = {k:,})")
    return fig


def parity_figure(y_true: np.ndarray, mean: np.ndarray, variance: np.ndarray, stats: dict[str, float], target: str) -> Figure:
    """Left: predicted vs true values with ±2σ bars on a readable subsample; right: calibration,
    the observed fraction of true values inside the central p-interval of the predicted Gaussian."""
    fig = Figure(figsize=(10.0, 4.4), layout="constrained")
    ax, cal = fig.subplots(1, 2)
    sd = np.sqrt(np.clip(variance, 0, None))
    ax.scatter(y_true, mean, s=5, alpha=0.35, color=CAMPAIGN_COLOR, lw=0, label="unmeasured candidates")
    shown = np.random.default_rng(0).permutation(len(y_true))[:150]
    ax.errorbar(y_true[shown], mean[shown], yerr=2 * sd[shown], fmt="none", ecolor=CAMPAIGN_COLOR, alpha=0.3,
                lw=0.6, label="±2σ (150 shown)")
    lo, hi = np.nanmin([y_true.min(), mean.min()]), np.nanmax([y_true.max(), mean.max()])
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="y = x")
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(f"R² = {stats['r2']:.3f}   MAE = {stats['mae']:.3g}   n = {len(y_true):,}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    nominal = np.linspace(0.0, 0.99, 100)
    z = np.abs(mean - y_true) / np.where(sd > 0, sd, np.finfo(float).tiny)
    observed = (z[None, :] <= norm.ppf(0.5 + nominal / 2)[:, None]).mean(axis=1)
    cal.plot(nominal, observed, color=CAMPAIGN_COLOR, lw=2, label="model")
    cal.plot([0, 1], [0, 1], color="k", lw=0.8, label="perfectly calibrated")
    cal.set_xlabel("nominal coverage of central interval")
    cal.set_ylabel("observed coverage")
    cal.set_title(f"Calibration: {stats['coverage_2sd']:.1%} within ±2σ (ideal 95.4%)")
    cal.legend(loc="upper left", fontsize=8)
    cal.grid(alpha=0.3)
    return fig


def latent_figure(
    latent: np.ndarray, colour: np.ndarray, sd: np.ndarray, measured: np.ndarray, colour_label: str
) -> Figure:
    """2-D latent map: left coloured by `colour` (the target), right by predictive σ; measured
    points are outlined in both panels. Colour scales span the 1st–99th percentile so that a few
    extreme values do not wash out the map."""
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, label, cmap in ((axes[0], colour, colour_label, "viridis"),
                                    (axes[1], sd, "predictive σ", "magma")):
        order = np.argsort(values)
        low, high = np.nanpercentile(values, [1, 99])
        points = ax.scatter(latent[order, 0], latent[order, 1], c=values[order], s=6, cmap=cmap, lw=0,
                            vmin=low, vmax=high)
        ax.scatter(latent[measured, 0], latent[measured, 1], s=22, facecolors="none", edgecolors="red", lw=0.8,
                   label="measured")
        fig.colorbar(points, ax=ax, label=f"{label} (1–99th percentile)", extend="both")
        ax.set_xlabel("latent 1")
        ax.set_ylabel("latent 2")
        ax.legend(loc="best", fontsize=8)
    axes[0].set_title(f"Latent space coloured by {colour_label}")
    axes[1].set_title("Predictive uncertainty")
    return fig


ORDER_CMAP = "plasma"
MAX_NUMBERED = 30  # path figures number every point up to this many, then every k-th (about this many)


def _order_scatter(fig: Figure, ax, x: np.ndarray, y: np.ndarray, ok: np.ndarray, numbered: bool = True) -> None:
    """A measurement path on `ax`: a thin line through (x, y) in order, the points coloured by
    order (with a colorbar), failed measurements as red crosses, and order numbers."""
    order = np.arange(1, len(x) + 1)
    alpha = 0.7 if len(x) <= 2 * MAX_NUMBERED else 0.3  # long paths: a faint line, the colours tell the order
    ax.plot(x, y, color="white", lw=1.6, alpha=alpha, zorder=2)
    ax.plot(x, y, color="k", lw=0.6, alpha=alpha, zorder=2)
    points = ax.scatter(x[ok], y[ok], c=order[ok], cmap=ORDER_CMAP, vmin=1, vmax=max(len(x), 2), s=36,
                        edgecolors="k", linewidths=0.5, zorder=3, label="measured")
    if (~ok).any():
        ax.scatter(x[~ok], y[~ok], marker="x", color="red", s=40, zorder=3, label="failed")
    fig.colorbar(points, ax=ax, label="measurement order (1 = first)", shrink=0.85)
    if numbered:
        every = max(1, int(np.ceil(len(x) / MAX_NUMBERED)))
        for k in range(0, len(x), every):
            ax.annotate(str(k + 1), (x[k], y[k]), xytext=(3, 3), textcoords="offset points", fontsize=6.5,
                        color="k", zorder=4, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.6})


def measurement_path_figure(
    x_nm: np.ndarray, y_nm: np.ndarray, ok: np.ndarray, extent_nm: tuple[float, float, float, float],
    image: np.ndarray | None = None, image_label: str = "overview", highlight: dict[str, int] | None = None,
) -> Figure:
    """The measured probe positions (nm) in the order taken, over the overview `image` (rows
    downwards, spanning `extent_nm` = (x_min, x_max, y_min, y_max)) or a blank field of view.
    `highlight` maps a label (e.g. "B1") to the index of a point to mark with a star."""
    fig = Figure(figsize=(7.8, 6.6), layout="constrained")
    ax = fig.add_subplot()
    x_min, x_max, y_min, y_max = extent_nm
    if image is not None:
        low, high = np.nanpercentile(image, [1, 99])
        shown = ax.imshow(image, cmap="gray", extent=(x_min, x_max, y_max, y_min), origin="upper", interpolation="nearest",
                          vmin=low, vmax=high)
        fig.colorbar(shown, ax=ax, label=f"{image_label}, 1–99th percentile", shrink=0.85, pad=0.01, extend="both")
    else:
        ax.set_facecolor("#f2f2f2")
        ax.set_xlim(x_min, x_max)
        ax.set_ylim(y_max, y_min)
    _order_scatter(fig, ax, np.asarray(x_nm, float), np.asarray(y_nm, float), np.asarray(ok, bool))
    for label, k in (highlight or {}).items():
        ax.scatter([x_nm[k]], [y_nm[k]], marker="*", s=320, color="#00e5ff", edgecolors="k", linewidths=0.8, zorder=5)
        ax.annotate(label, (x_nm[k], y_nm[k]), xytext=(7, -12), textcoords="offset points", fontsize=8.5, color="k",
                    fontweight="bold", zorder=6, bbox={"boxstyle": "round,pad=0.15", "fc": "#00e5ff", "ec": "k", "lw": 0.5})
    ax.set_aspect("equal")
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(f"Measurement path in real space ({len(x_nm)} measurements)")
    return fig


def latent_path_figure(latent_candidates: np.ndarray, latent_path: np.ndarray, ok: np.ndarray) -> Figure:
    """The measurement path in a 2-D latent space: candidates as grey dots, the measured points
    in the order taken (coloured and numbered by order)."""
    fig = Figure(figsize=(7.2, 6.0), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(latent_candidates[:, 0], latent_candidates[:, 1], s=4, color="#bbbbbb", lw=0, label="candidates")
    _order_scatter(fig, ax, latent_path[:, 0], latent_path[:, 1], np.asarray(ok, bool))
    ax.set_xlabel("latent 1")
    ax.set_ylabel("latent 2")
    ax.set_title(f"Measurement path in the latent space ({len(latent_path)} measurements)")
    ax.legend(loc="best", fontsize=8)
    return fig


def _on_grid(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """`values` at positions (x, y) as an image (rows = y) with its extent, when the positions
    fill a regular grid (each grid point exactly once); else None."""
    xs, ys = np.unique(x), np.unique(y)
    if xs.size < 2 or ys.size < 2 or xs.size * ys.size != x.size:
        return None
    dx, dy = np.diff(xs), np.diff(ys)
    if not (np.allclose(dx, dx[0]) and np.allclose(dy, dy[0])):
        return None
    grid = np.full((ys.size, xs.size), np.nan)
    grid[np.searchsorted(ys, y), np.searchsorted(xs, x)] = values
    if np.isnan(grid).any():
        return None
    return grid, (xs[0] - dx[0] / 2, xs[-1] + dx[0] / 2, ys[0] - dy[0] / 2, ys[-1] + dy[0] / 2)


def property_maps_figure(
    x_nm: np.ndarray, y_nm: np.ndarray, mean: np.ndarray, sd: np.ndarray, measured: np.ndarray, target: str
) -> Figure:
    """Predicted `target` (left) and its predictive standard deviation (right) at every candidate
    position (nm), as images when the candidates fill a grid (scatter otherwise); measured
    positions are marked with small open circles."""
    fig = Figure(figsize=(12.0, 5.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, label, cmap in ((axes[0], mean, f"predicted {target}", "viridis"),
                                    (axes[1], sd, f"predictive σ of {target}", "magma")):
        gridded = _on_grid(x_nm, y_nm, values)
        low, high = np.nanpercentile(values, [1, 99])
        if gridded is not None:
            image, (x0, x1, y0, y1) = gridded
            shown = ax.imshow(image, cmap=cmap, extent=(x0, x1, y1, y0), origin="upper", interpolation="nearest",
                              vmin=low, vmax=high)
        else:
            shown = ax.scatter(x_nm, y_nm, c=values, cmap=cmap, s=12, lw=0, vmin=low, vmax=high)
            ax.invert_yaxis()
        ax.scatter(x_nm[measured], y_nm[measured], s=14, facecolors="none", edgecolors="white", linewidths=0.8,
                   label="measured")
        fig.colorbar(shown, ax=ax, label=f"{label} (1–99th percentile)", shrink=0.9, extend="both")
        ax.set_aspect("equal")
        ax.set_xlabel("x (nm)")
        ax.set_ylabel("y (nm)")
        ax.legend(loc="upper right", fontsize=8, facecolor="#777777", labelcolor="white", framealpha=0.8)
    axes[0].set_title(f"Predicted {target} ({len(x_nm):,} candidate positions)")
    axes[1].set_title("Predictive uncertainty")
    return fig


def spectra_figure(groups: dict[str, list[tuple[str, np.ndarray]]], axis_label: str, value_label: str) -> Figure:
    """Raw spectra (or curves), one panel per group (e.g. "best 3", "first 3"): each entry is a
    legend label and a (2, n) [axis; values] array."""
    fig = Figure(figsize=(5.6 * max(len(groups), 1), 4.2), layout="constrained")
    axes = fig.subplots(1, max(len(groups), 1), squeeze=False)[0]
    for ax, (title, curves) in zip(axes, groups.items()):
        for label, raw in curves:
            ax.plot(raw[0], raw[1], lw=1.2, marker="." if raw.shape[1] <= 100 else None, ms=3, label=label)
        ax.set_xlabel(axis_label)
        ax.set_ylabel(value_label)
        ax.set_title(title)
        ax.legend(loc="best", fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def timings_figure(rounds: pd.DataFrame) -> Figure:
    """Wall seconds per round, stacked by phase (fit, predict, select, measure)."""
    fig = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    bottom = np.zeros(len(rounds))
    for phase in ROUND_PHASES:
        if phase in rounds:
            seconds = rounds[phase].fillna(0).to_numpy(dtype=float)
            ax.bar(rounds["round"], seconds, bottom=bottom, label=phase.removesuffix("_s"), width=0.8)
            bottom += seconds
    ax.set_xlabel("round")
    ax.set_ylabel("time (s)")
    ax.set_title("Time per round")
    ax.legend(fontsize=8, ncols=4)
    ax.grid(alpha=0.3, axis="y")
    return fig


def strategy_recall_figure(
    curves: dict[str, dict[str, np.ndarray]],
    random_curves: dict[str, np.ndarray],
    n_initial: int,
    ks: dict[str, int] | None = None,
) -> Figure:
    """Benchmark comparison, one panel per recall measure (e.g. "top-100"): mean recall over seeds
    per strategy with a ±1 sd band, against the exact random expectation.

    curves maps measure → strategy → (seeds, measurements) array; random_curves maps measure →
    expected recall per measurement count; ks (measure → k), when given, adds the ideal curve.
    """
    fig = Figure(figsize=(5.5 * len(curves), 4.2), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (measure, by_strategy) in zip(axes, curves.items()):
        for strategy, runs in by_strategy.items():
            count = np.arange(1, runs.shape[1] + 1)
            mean, sd = runs.mean(axis=0), runs.std(axis=0)
            (line,) = ax.plot(count, mean, lw=1.8, label=f"{strategy} ({runs.shape[0]} seeds)")
            ax.fill_between(count, mean - sd, mean + sd, color=line.get_color(), alpha=0.15, lw=0)
        baseline = random_curves[measure]
        ax.plot(np.arange(1, baseline.size + 1), baseline, color=RANDOM_COLOR, ls="--", lw=1.5,
                label="random (exact expectation)")
        if ks and measure in ks:
            _mark_ideal_recall(ax, ks[measure], baseline.size)
        _style_recall_axes(ax, n_initial, "recall (mean ± sd over seeds)", f"{measure} recall")
    return fig


def _style_recall_axes(ax, n_initial: int, ylabel: str, title: str) -> None:
    """Shared look of recall panels: initial-design marker, [0, 1] axis, labels, legend, grid."""
    _mark_initial_design(ax, n_initial)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("measurements")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)


def molecule_svg(smiles: str, width: int = 200, height: int = 140) -> str | None:
    """Inline SVG drawing of a molecule (no XML header), or None when the SMILES does not parse.

    Chemistry-specific: reports call it only when the pool carries a `smiles` info column.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem.Draw import rdMolDraw2D

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) else None
    if mol is None:
        return None
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    drawer.drawOptions().clearBackground = False
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    return svg[svg.index("<svg") :]
