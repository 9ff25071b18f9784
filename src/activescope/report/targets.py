"""The cross-target summary of a multi-target benchmark grid (`activescope bench --targets`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..engine.metrics import random_recall_expectation, top_fraction_k
from .figures import RANDOM_COLOR, figure_png


def write_target_summary(
    results: pd.DataFrame, goals: dict[str, str], truths: dict[str, np.ndarray], out_dir: Path
) -> pd.DataFrame:
    """Write summary.csv (per target and strategy: mean recalls over seeds, the exact random
    expectation of the top-1% recall, total seconds), summary.md (top-1% recall, strategies x
    targets, with a mean column) and summary.png to `out_dir`; return the summary table.

    results: one row per run with target, strategy, n_measured, top100_recall, top1pct_recall,
    total_s. goals and truths: per target, its goal and every candidate's known value.
    """
    rows = []
    for (target, name), runs in results.groupby(["target", "strategy"], sort=False):
        truth, goal = truths[target], goals[target]
        k = top_fraction_k(int(np.isfinite(truth).sum()))
        rows.append({
            "target": target, "goal": goal, "strategy": name, "seeds": len(runs),
            "top100_recall": runs["top100_recall"].mean(), "top1pct_recall": runs["top1pct_recall"].mean(),
            "random_top1pct_recall": random_recall_expectation(truth, k, int(runs["n_measured"].max()), goal)[-1],
            "total_s": runs["total_s"].sum(),
        })  # fmt: skip
    summary = pd.DataFrame(rows)
    summary.to_csv(out_dir / "summary.csv", index=False)
    targets = list(goals)
    table = summary.pivot(index="strategy", columns="target", values="top1pct_recall").loc[summary["strategy"].unique(), targets]
    random_row = summary.groupby("target", sort=False)["random_top1pct_recall"].first()[targets]
    lines = [
        "# Benchmark across targets: top-1% recall (mean over seeds)",
        "",
        "| strategy | " + " | ".join(f"{t} ({goals[t][:3]})" for t in targets) + " | mean |",
        "|---|" + "---|" * (len(targets) + 1),
    ]
    for name, values in table.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {values.mean():.3f} |")
    lines.append("| random (exact expectation) | " + " | ".join(f"{v:.3f}" for v in random_row) + f" | {random_row.mean():.3f} |")
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "summary.png").write_bytes(figure_png(target_summary_figure(table, random_row)))
    return summary


def target_summary_figure(table: pd.DataFrame, random_row: pd.Series) -> Figure:
    """Grouped bars: top-1% recall per target (groups) and strategy (bars); random as ticks."""
    fig = Figure(figsize=(max(6.0, 1.1 * table.shape[1] + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(table)
    x = np.arange(table.shape[1])
    for i, (name, values) in enumerate(table.iterrows()):
        ax.bar(x + (i - (len(table) - 1) / 2) * width, values.to_numpy(), width, label=name)
    ax.scatter(x, random_row.to_numpy(), marker="_", s=400, color=RANDOM_COLOR, label="random (exact expectation)", zorder=3)
    ax.set_xticks(x, table.columns, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("top-1% recall (mean over seeds)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig
