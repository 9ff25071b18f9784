"""Figures of a causal study (matplotlib; graphs laid out by networkx, no system graphviz)."""

from __future__ import annotations

import io

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .discovery import CausalGraph

MIN_DRAWN_WEIGHT = 0.05
"""Edges weaker than this (standardised) are not drawn, so the picture shows the structure."""


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _layout(names: list[str]) -> dict[str, np.ndarray]:
    """The target in the centre, the descriptors on a circle around it."""
    angles = np.linspace(0, 2 * np.pi, len(names) - 1, endpoint=False)
    positions = {name: np.array([np.cos(a), np.sin(a)]) for name, a in zip(names[:-1], angles)}
    positions[names[-1]] = np.zeros(2)
    return positions


def draw_graph(ax, graph: CausalGraph, title: str) -> None:
    """Draw a causal graph on `ax`: arrows cause → effect, width ∝ |weight|, red positive, blue negative."""
    edges = graph.edges()
    edges = edges[edges["weight"].abs() >= MIN_DRAWN_WEIGHT]
    g = nx.DiGraph()
    g.add_nodes_from(graph.names)
    g.add_weighted_edges_from(edges[["cause", "effect", "weight"]].itertuples(index=False))
    positions = _layout(graph.names)
    weights = np.array([g.edges[e]["weight"] for e in g.edges]) if g.number_of_edges() else np.zeros(0)
    node_colours = ["#f3c969" if n == graph.target else "#cfe0f3" for n in g.nodes]
    nx.draw_networkx_nodes(g, positions, ax=ax, node_color=node_colours, node_size=1100, edgecolors="#555")
    nx.draw_networkx_labels(g, positions, ax=ax, font_size=7)
    nx.draw_networkx_edges(g, positions, ax=ax, width=0.5 + 3 * np.minimum(np.abs(weights), 1.5),
                           edge_color=np.where(weights > 0, "#c0392b", "#2e6fb7").tolist(), arrows=True,
                           arrowsize=12, node_size=1100, connectionstyle="arc3,rad=0.08")
    ax.margins(0.12)
    ax.set_title(f"{title} ({graph.n_samples:,} molecules, {len(edges)} edges ≥ {MIN_DRAWN_WEIGHT})", fontsize=10)
    ax.set_axis_off()


def graphs_figure(graphs: list[tuple[CausalGraph, str]]) -> Figure:
    """One panel per (graph, title), side by side."""
    fig = Figure(figsize=(6.2 * len(graphs), 6))
    for ax, (graph, title) in zip(fig.subplots(1, len(graphs), squeeze=False)[0], graphs):
        draw_graph(ax, graph, title)
    return fig


def loss_curves_figure(curves: pd.DataFrame, threshold: float) -> Figure:
    """Graph loss against subset size: the active selection and each random-growth seed (thin) with
    their mean (dashed), and the stopping threshold."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    randoms = curves[curves["method"] == "random"]
    for _, run in randoms.groupby("seed"):
        ax.plot(run["size"], run["graph_loss"], color="#999", lw=0.7, alpha=0.7)
    if len(randoms):
        mean = randoms.groupby("size")["graph_loss"].mean()
        ax.plot(mean.index, mean.to_numpy(), color="#555", ls="--", label=f"random growth (mean of {randoms['seed'].nunique()} seeds)")
    active = curves[curves["method"] == "active"]
    for k, (seed, run) in enumerate(active.groupby("seed")):
        label = (f"active (seed {seed})" if active["seed"].nunique() == 1 else f"active ({active['seed'].nunique()} seeds)") if k == 0 else None
        ax.plot(run["size"], run["graph_loss"], color="#c0392b", lw=1.5, marker="o", ms=2.5, label=label)
    ax.axhline(threshold, color="#2e7d32", lw=1, ls=":", label=f"threshold {threshold:g}")
    ax.set_xlabel("subset size (molecules)")
    ax.set_ylabel("graph loss (relative spectral distance)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def effects_figure(table: pd.DataFrame, target: str) -> Figure:
    """Standardised total effect of each causal feature on the target (bars)."""
    fig = Figure(figsize=(7, 0.35 * len(table) + 1.2))
    ax = fig.subplots()
    effect = table["total_effect_std"].to_numpy()
    ax.barh(table["feature"], effect, color=np.where(effect > 0, "#c0392b", "#2e6fb7"))
    ax.invert_yaxis()
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_xlabel(f"total effect on {target} (standard deviations per standard deviation)")
    return fig


def molecules_svg(smiles: list[str], legends: list[str], per_row: int = 5) -> str:
    """An SVG grid of 2D structure drawings (RDKit) with a legend under each."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    mols = [Chem.MolFromSmiles(s) for s in smiles]
    keep = [i for i, m in enumerate(mols) if m is not None]
    return Draw.MolsToGridImage([mols[i] for i in keep], molsPerRow=per_row, subImgSize=(200, 160),
                                legends=[legends[i] for i in keep], useSVG=True)
