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
    joined = [(round_, names.index(name)) for round_, r in zip(rounds, records["record"])
              for name in r.get("predicting", [])[1:]]  # fmt: skip
    if joined:  # ensemble members beside the chosen candidate: hollow markers
        right.scatter(*zip(*joined), s=16, facecolors="none", edgecolors="0.3", linewidths=0.8, label="in the ensemble")
        right.legend(fontsize=8)
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
    left.set_ylabel(f"latest {criterion(records)} score" if cv else "average reward")
    left.set_title("Cross-validated score (dotted: re-evaluated)" if cv else "Average reward (shaded: warm-up)")
    left.legend(fontsize=8)
    right.set_title("Candidate chosen each round")
    return fig


CRITERIA = {
    "cv_spearman": "Spearman rank correlation of the out-of-fold predictions with the measured values",
    "cv_top": "fraction of the measured top found among the top out-of-fold predictions",
    "cv_blend": "mean of the out-of-fold Spearman correlation and the recall of the measured top",
}
"""What each cross-validated criterion of `engine.select` scores, for the report's note."""


def cross_validation_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per round that cross-validated the candidates: round, each candidate's score under
    the criterion that chose (out-of-fold, measured data only), the candidate chosen and, for runs
    with `ensemble: k`, the score of the k best candidates' mixture and who predicts."""
    rows = []
    for round_, record in zip(records["round"], records["record"]):
        if record.get("phase") != "cross-validation":
            continue
        row = {"round": int(round_), **{k: round(float(v), 3) for k, v in record["rewards"].items()}, "chosen": record["choice"]}
        if "ensemble" in record:
            row |= {"ensemble": round(float(record["ensemble"]["score"]), 3), "predicting": " + ".join(record["predicting"])}
        rows.append(row)
    return pd.DataFrame(rows)


def criterion(records: pd.DataFrame) -> str | None:
    """The cross-validated criterion of the run's choices (`cv_spearman` for records that predate
    the `criterion` entry), or None when no round cross-validated."""
    validated = [r for r in records["record"] if r.get("phase") == "cross-validation"]
    return validated[-1].get("criterion", "cv_spearman") if validated else None


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
        name = criterion(records)
        body += markup.note(f"Cross-validated score ({name}: {CRITERIA[name]}) of each candidate (surrogate : feature "
                            "block) on the measured points only, at every round that re-evaluated them, and the candidate chosen.")
        body += markup.table(scores)
    table = posterior_table(records)
    if not table.empty:
        body += markup.note("Posterior summaries of the candidates' parameters after the last round.") + markup.table(table)
    return body
