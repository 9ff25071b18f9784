"""The latent comparison's self-contained HTML report (report.html, figures also as PNG files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...engine.metrics import random_recall_expectation
from ...report import figures, html
from . import analysis
from .spec import LatentSpec

LABELS = {"gp_vae": "GP on VAE latent", "dkl": "DKL on SELFIES one-hot"}


def _save(out: Path, name: str, fig: Figure, caption: str) -> str:
    data = figures.figure_png(fig)
    (out / f"{name}.png").write_bytes(data)
    return html.image(data, name, caption)


def _scatter(fig: Figure, ax, coords: np.ndarray, values: np.ndarray, measured: np.ndarray, label: str, cmap: str) -> None:
    order = np.argsort(values)
    low, high = np.nanpercentile(values, [1, 99])
    points = ax.scatter(coords[order, 0], coords[order, 1], c=values[order], s=4, cmap=cmap, lw=0, vmin=low, vmax=high)
    ax.scatter(coords[measured, 0], coords[measured, 1], s=14, facecolors="none", edgecolors="red", lw=0.6, label="measured")
    fig.colorbar(points, ax=ax, label=f"{label} (1–99th pct)", extend="both")
    ax.set_xlabel("latent 1")
    ax.set_ylabel("latent 2")


def maps_figure(maps: dict, target: str) -> Figure:
    """Side by side, VAE latent and final DKL latent: coloured by the target (top) and by the
    model's predictive σ (bottom); measured molecules outlined in red."""
    fig = Figure(figsize=(11.0, 9.0), layout="constrained")
    axes = fig.subplots(2, 2)
    for column, strategy in enumerate(("gp_vae", "dkl")):
        m = maps[strategy]
        _scatter(fig, axes[0, column], m["coords"], m["y"], m["measured"], target, "viridis")
        _scatter(fig, axes[1, column], m["coords"], m["sd"], m["measured"], "predictive σ", "magma")
        axes[0, column].set_title(f"{LABELS[strategy]}: {target}")
        axes[1, column].set_title(f"{LABELS[strategy]}: predictive σ")
    axes[0, 0].legend(loc="best", fontsize=8)
    return fig


def snapshots_figure(snapshots: dict, y_sample: np.ndarray, target: str, radius: float, grid: int) -> Figure:
    """The DKL latent after each drawn round's fit: sample coloured by the target, training
    molecules black, exclusion regions (empty areas inside the measured hull) shaded blue."""
    rounds = sorted({int(k.split("_")[0].removeprefix("round")) for k in snapshots})
    columns = min(3, len(rounds))
    rows = int(np.ceil(len(rounds) / columns))
    fig = Figure(figsize=(4.2 * columns, 3.9 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False).ravel())
    low, high = np.nanpercentile(y_sample, [1, 99])
    for ax, r in zip(axes, rounds):
        sample, train = snapshots[f"round{r}_sample"], snapshots[f"round{r}_train"]
        coords = np.vstack([sample, train])
        unit = analysis.unit_square(coords)
        measured = np.arange(len(sample), len(coords))
        holes = analysis.empty_mask(coords, measured, radius, grid)
        ax.imshow(np.where(holes.T, 1.0, np.nan), origin="lower", extent=(0, 1, 0, 1), cmap="Blues", vmin=0, vmax=1.5, alpha=0.6)
        ax.scatter(unit[: len(sample), 0], unit[: len(sample), 1], c=y_sample, s=3, lw=0, cmap="viridis", vmin=low, vmax=high)
        ax.scatter(unit[len(sample):, 0], unit[len(sample):, 1], s=6, c="black", lw=0)
        ax.set_title(f"after fit on {len(train)} measurements")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(rounds):]:
        ax.set_visible(False)
    fig.suptitle(f"DKL latent over rounds (unit square; colour: {target}; blue: exclusion regions)")
    return fig


def exclusion_figure(table: pd.DataFrame) -> Figure:
    """Largest empty radius, empty fraction of the measured hull and region count per round."""
    fig = Figure(figsize=(11.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    x = table["measurements_fitted"]
    for ax, column, label in zip(axes, ("largest_empty_radius", "empty_fraction", "regions"),
                                 ("largest empty radius (unit square)", "empty fraction of the hull", "exclusion regions")):
        ax.plot(x, table[column], marker="o", lw=1.5)
        ax.set_xlabel("measurements the model was fitted on")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    return fig


def vae_figure(history: list[dict]) -> Figure:
    """VAE training: negative ELBO and KL per epoch, held-out token accuracy."""
    frame = pd.DataFrame(history)
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(frame["epoch"], frame["loss"], marker="o", label="loss (nats / molecule)")
    left.plot(frame["epoch"], frame["kl"], marker="o", label="KL (nats)")
    left.set_xlabel("epoch")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    if "val_token_accuracy" in frame:
        right.plot(frame["epoch"], frame["val_token_accuracy"], marker="o", color="C2")
    right.set_xlabel("epoch")
    right.set_ylabel("held-out token accuracy")
    right.grid(alpha=0.3)
    return fig


def _summary_table(scores: pd.DataFrame) -> str:
    columns = [c for c in scores.columns if c not in ("seed",)]
    grouped = scores[columns].groupby("strategy", sort=False)
    mean, sd = grouped.mean(), grouped.std()
    rows = []
    for column in mean.columns:
        row = {"measure": column}
        for strategy in mean.index:
            value, spread = mean.loc[strategy, column], sd.loc[strategy, column]
            row[LABELS[strategy]] = f"{value:.3g}" + ("" if np.isnan(spread) else f" ± {spread:.2g}")
        rows.append(row)
    return html.table(pd.DataFrame(rows))


def write_report(out: Path, spec: LatentSpec, metrics: dict, scores: pd.DataFrame, curves: pd.DataFrame,
                 snapshot_table: pd.DataFrame, maps: dict, candidates: pd.DataFrame | None,
                 y_pool: np.ndarray, y_sample: np.ndarray) -> Path:
    """Write out/report.html from the study's results and return its path."""
    target, k, c = metrics["target"], metrics["top_k"], spec.campaign
    a = spec.analysis
    runs = {LABELS[s]: np.stack([g.sort_values("n")["recall"].to_numpy() for _, g in curves[curves["strategy"] == s].groupby("seed")])
            for s in ("gp_vae", "dkl")}
    measure = f"top-{k}"
    recall_fig = figures.strategy_recall_figure({measure: runs}, {measure: random_recall_expectation(y_pool, k, c.budget, spec.data.goal)},
                                                c.initial, ks={measure: k})
    vae = metrics["vae"]
    vae_rows = {key: value for key, value in vae.items() if key != "history" and value is not None}
    sections = [
        ("summary", "Summary", html.note(
            f"{metrics['pool_molecules']:,} QM9 molecules as one-hot SELFIES ({metrics['selfies_length']} tokens × "
            f"{metrics['alphabet_size']} symbols); {spec.data.goal} {target}; {len(c.seeds)} seed(s), {c.budget} measurements "
            f"each ({c.initial} random, then batches of {c.q}, acquisition {c.acquisition}). Scores are mean ± sd over seeds, "
            f"on {metrics['sample_molecules']:,} sampled molecules minus the measured ones: k-NN R² of {target} from the 2-D "
            f"latent (k={a.knn_k}, {a.knn_test_fraction:.0%} held out), Spearman between σ and |error|, exclusion measures "
            "of the final latent (see below).") + _summary_table(scores)),
        ("curves", "Learning curves", _save(out, "recall", recall_fig, f"Top-{k} recall against measurements, mean ± sd over seeds.")),
        ("maps", "Latent maps", _save(out, "latent_maps", maps_figure(maps, target),
                                       "First seed, models fitted on all measurements. Left: the VAE latent (trained without labels); "
                                       "right: the DKL latent (trained on the measured property).")),
    ]
    if "snapshots" in maps and len(snapshot_table):
        sections.append(("exclusion", "DKL latent over rounds and exclusion regions", html.note(
            "A grid point of the unit-square latent is inside when it lies in the convex hull of the measured molecules, and "
            f"empty when no molecule lies within {a.empty_radius:g}; an exclusion region is a connected empty area of at least "
            f"{analysis.MIN_REGION_POINTS} grid points ({a.grid}² grid). The largest empty radius is that of the largest "
            "molecule-free disc centred inside the hull.")
            + _save(out, "snapshots", snapshots_figure(maps["snapshots"], y_sample, target, a.empty_radius, a.grid), "DKL latent snapshots.")
            + _save(out, "exclusion", exclusion_figure(snapshot_table), "Exclusion measures per round (first seed).")
            + html.table(snapshot_table)))
    vae_body = html.key_value_table(vae_rows)
    if vae.get("history"):
        vae_body += _save(out, "vae_training", vae_figure(vae["history"]), "VAE training per epoch.")
    sections.append(("vae", "VAE", html.note(
        "Token accuracy: non-padding positions decoded right from the posterior mean of held-out molecules; molecule accuracy: "
        "whole SELFIES right. Prior samples: standard-normal latent draws decoded greedily; valid = RDKit parses the SMILES, "
        "novel = valid, distinct and not in the pool (canonical SMILES).") + vae_body))
    if candidates is not None:
        counts = metrics["candidates"]
        top = candidates[candidates["novel"]].head(12).copy()
        top["molecule"] = [figures.molecule_svg(s) for s in top["smiles"]]
        sections.append(("candidates", "Decoded candidates", html.note(
            f"{counts['decoded']} latent grid points of highest UCB under the GP on the VAE latent, decoded to SELFIES: "
            f"{counts['valid']} valid, {counts['unique_valid']} distinct, {counts['novel_unique']} novel, "
            f"{counts['novel_above_threshold']} novel and predicted beyond the pool's top-{k} threshold "
            f"({counts['threshold']:.4g}); the prediction is the GP's at each molecule's own re-encoded latent point.")
            + html.table(top[["molecule", "smiles", "predicted", "predicted_sd"]], raw_html_columns=["molecule"])))
    path = out / "report.html"
    path.write_text(html.page(f"Latent spaces: {spec.name}", f"VAE vs DKL latent for {target} on QM9", sections))
    return path
