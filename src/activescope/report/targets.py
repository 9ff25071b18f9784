"""The cross-target summary of a multi-target benchmark grid (`activescope bench --targets`,
`benchmarks/auto_bench.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..engine.metrics import random_recall_expectation, top_fraction_k
from .figures import RANDOM_COLOR, figure_png


def target_summary(results: pd.DataFrame, goals: dict[str, str], truths: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per target and strategy: seeds, mean and sd over seeds of the top-100 and top-1%
    recalls, the exact random expectation of both at the strategy's budget, the median of the runs'
    median seconds per round (when the runs have it) and the total seconds.

    results: one row per run with target, strategy, n_measured, top100_recall, top1pct_recall,
    total_s (median_round_s optional). goals and truths: per target, its goal and every candidate's
    known value.
    """
    rows = []
    for (target, name), runs in results.groupby(["target", "strategy"], sort=False):
        truth, goal = truths[target], goals[target]
        budget = int(runs["n_measured"].max())
        k = top_fraction_k(int(np.isfinite(truth).sum()))
        rows.append({
            "target": target, "goal": goal, "strategy": name, "seeds": len(runs),
            "top100_recall": runs["top100_recall"].mean(), "top100_sd": runs["top100_recall"].std(ddof=1),
            "top1pct_recall": runs["top1pct_recall"].mean(), "top1pct_sd": runs["top1pct_recall"].std(ddof=1),
            "random_top100_recall": random_recall_expectation(truth, min(100, len(truth)), budget, goal)[-1],
            "random_top1pct_recall": random_recall_expectation(truth, k, budget, goal)[-1],
            "median_round_s": runs["median_round_s"].median() if "median_round_s" in runs else np.nan,
            "total_s": runs["total_s"].sum(),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _mean_sd(mean: float, sd: float) -> str:
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if np.isfinite(sd) else "")


def summary_markdown(summary: pd.DataFrame, goals: dict[str, str]) -> str:
    """Two tables: top-1% recall as strategies x targets (means, a mean column where a strategy ran
    every target, the random row),
    then one row per target and strategy with mean ± sd of both recalls, seeds and s/round."""
    targets = [t for t in goals if t in set(summary["target"])]
    table = summary.pivot(index="strategy", columns="target", values="top1pct_recall").loc[summary["strategy"].unique(), targets]
    random_row = summary.groupby("target", sort=False)["random_top1pct_recall"].first()[targets]
    lines = [
        "# Benchmark across targets: top-1% recall (mean over seeds)",
        "",
        "| strategy | " + " | ".join(f"{t} ({goals[t][:3]})" for t in targets) + " | mean |",
        "|---|" + "---|" * (len(targets) + 1),
    ]
    for name, values in table.iterrows():
        cells = " | ".join("–" if np.isnan(v) else f"{v:.3f}" for v in values)
        mean = "–" if values.isna().any() else f"{values.mean():.3f}"  # a mean over the targets run by all
        lines.append(f"| {name} | {cells} | {mean} |")
    lines.append("| random (exact expectation) | " + " | ".join(f"{v:.3f}" for v in random_row) + f" | {random_row.mean():.3f} |")
    lines += ["", "## Per target (mean ± sd over seeds)", "",
              "| target (goal) | strategy | seeds | top-1% recall | top-100 recall | median s/round |", "|---|---|---|---|---|---|"]  # fmt: skip
    for target in targets:
        part = summary[summary["target"] == target]
        for row in part.itertuples():
            seconds = f"{row.median_round_s:.2f}" if np.isfinite(row.median_round_s) else "–"
            lines.append(f"| {target} ({goals[target][:3]}) | {row.strategy} | {row.seeds} | {_mean_sd(row.top1pct_recall, row.top1pct_sd)} | "
                         f"{_mean_sd(row.top100_recall, row.top100_sd)} | {seconds} |")  # fmt: skip
        first = part.iloc[0]
        lines.append(f"| {target} ({goals[target][:3]}) | random (exact expectation) | – | {first.random_top1pct_recall:.3f} | "
                     f"{first.random_top100_recall:.3f} | – |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_target_summary(
    results: pd.DataFrame, goals: dict[str, str], truths: dict[str, np.ndarray], out_dir: Path
) -> pd.DataFrame:
    """Write summary.csv (`target_summary`), summary.md (`summary_markdown`) and summary.png
    (`target_summary_figure`) to `out_dir`; return the summary table. Targets appear in the order
    of `goals`; a strategy missing on a target is left blank."""
    summary = target_summary(results, goals, truths)
    summary.to_csv(out_dir / "summary.csv", index=False)
    (out_dir / "summary.md").write_text(summary_markdown(summary, goals), encoding="utf-8")
    (out_dir / "summary.png").write_bytes(figure_png(target_summary_figure(summary, goals)))
    return summary


def target_summary_figure(summary: pd.DataFrame, goals: dict[str, str]) -> Figure:
    """Grouped bars: top-1% recall per target (groups) and strategy (bars), mean ± sd over seeds;
    random's exact expectation as ticks."""
    targets = [t for t in goals if t in set(summary["target"])]
    strategies = list(summary["strategy"].unique())
    random_row = summary.groupby("target", sort=False)["random_top1pct_recall"].first()[targets]
    fig = Figure(figsize=(max(6.0, 1.1 * len(targets) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(strategies)
    x = np.arange(len(targets))
    for i, name in enumerate(strategies):
        part = summary[summary["strategy"] == name].set_index("target").reindex(targets)
        ax.bar(x + (i - (len(strategies) - 1) / 2) * width, part["top1pct_recall"].to_numpy(), width,
               yerr=part["top1pct_sd"].fillna(0).to_numpy(), capsize=2, label=name)  # fmt: skip
    ax.scatter(x, random_row.to_numpy(), marker="_", s=400, color=RANDOM_COLOR, label="random (exact expectation)", zorder=3)
    ax.set_xticks(x, [f"{t} ({goals[t][:3]})" for t in targets], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("top-1% recall (mean ± sd over seeds)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig
