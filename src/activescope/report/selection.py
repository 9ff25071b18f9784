"""The report's "Model selection" section, for runs whose surrogate chooses among candidates each
round (`model: {kind: select}`, e.g. hypothesis learning, or `model: {kind: auto}`, strategy
selection): average reward and choice per round, the cross-validation scores of every candidate
at each round that computed them, and the candidates' latest posterior summaries, all read from
the rounds' records."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import html as markup


def selection_records(rounds: pd.DataFrame) -> pd.DataFrame:
    """Rounds whose record holds a selection (round, record), in round order."""
    if "record" not in rounds:
        return pd.DataFrame(columns=["round", "record"])
    keep = rounds["record"].map(lambda r: isinstance(r, dict) and "average_reward" in r)
    return rounds.loc[keep, ["round", "record"]].reset_index(drop=True)


def rewards_figure(records: pd.DataFrame) -> Figure:
    """Average reward per candidate against round (left) and which candidate chose each round's
    batch (right); warm-up rounds are shaded."""
    names = list(records["record"].iloc[0]["average_reward"])
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    rounds = records["round"].to_numpy()
    for name in names:
        left.plot(rounds, [r["average_reward"][name] for r in records["record"]], marker=".", label=name)
    chosen = np.array([names.index(r["choice"]) for r in records["record"]])
    right.scatter(rounds, chosen, s=12, c=chosen, cmap="tab10", vmin=0, vmax=9)
    right.set_yticks(range(len(names)), names)
    warmup = rounds[[r.get("phase") == "warmup" for r in records["record"]]]
    validated = rounds[[r.get("phase") == "cross-validation" for r in records["record"]]]
    for ax in (left, right):
        if len(warmup):
            ax.axvspan(warmup.min() - 0.5, warmup.max() + 0.5, color="0.9", zorder=0)
        for round_ in validated:
            ax.axvline(round_, color="0.75", lw=0.8, ls=":", zorder=0)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    cv = len(validated) > 0
    left.set_ylabel("latest CV rank correlation" if cv else "average reward")
    left.set_title("Cross-validated score (dotted: re-evaluated)" if cv else "Average reward (shaded: warm-up)")
    left.legend(fontsize=8)
    right.set_title("Candidate chosen each round")
    return fig


def cross_validation_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per round that cross-validated the candidates: round, measured points' rank
    correlation per candidate (out-of-fold, measured data only) and the candidate chosen."""
    rows = [{"round": int(round_), **{k: round(float(v), 3) for k, v in record["cv_spearman"].items()}, "chosen": record["choice"]}
            for round_, record in zip(records["round"], records["record"]) if record.get("cv_spearman")]  # fmt: skip
    return pd.DataFrame(rows)


def posterior_table(records: pd.DataFrame) -> pd.DataFrame:
    """Latest posterior summary of every candidate's parameters: one row per parameter."""
    rows = []
    for candidate, parameters in records["record"].iloc[-1].get("posteriors", {}).items():
        for name, stats in parameters.items():
            rows.append({"candidate": candidate, "parameter": name} | {k: float(v) for k, v in stats.items()})
    return pd.DataFrame(rows)


def section(rounds: pd.DataFrame, save: Callable[[str, Figure, str], str]) -> str:
    """HTML of the section (empty string when no round records a selection)."""
    records = selection_records(rounds)
    if records.empty:
        return ""
    last = records["record"].iloc[-1]
    counts = ", ".join(f"{name}: {n}" for name, n in last["counts"].items())
    body = save("selection", rewards_figure(records),
                f"Rewards and choices per round. Last choice: {last['choice']}; rewarded fits per candidate: {counts}.")  # fmt: skip
    scores = cross_validation_table(records)
    if not scores.empty:
        body += markup.note("Cross-validated Spearman correlation of each candidate (feature block : surrogate) on the "
                            "measured points only, at every round that re-evaluated them, and the candidate chosen.")
        body += markup.table(scores)
    table = posterior_table(records)
    if not table.empty:
        body += markup.note("Posterior summaries of the candidates' parameters after the last round.") + markup.table(table)
    return body
