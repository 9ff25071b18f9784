"""Strategy selection on every QM9 target (issue #12): `auto` against the MolPAL-recipe
re-implementation (`rf-ucb-morgan`) and random sampling's exact expectation.

Each of the 12 numeric QM9 properties is run in its natural goal direction with the headline
protocol (50 random initial molecules, rounds of 10) on one pool holding the physics, rdkit2d
and Morgan-count blocks, so both strategies see the same molecules; `rf-ucb-morgan` uses only the
Morgan columns (`columns: morgan`), which is the same model as the bench strategy's Morgan-only
pool. Targets run one after another through `activescope.bench.run_bench` (one call per strategy,
each strategy's runs in `<out>/<target>/results-<strategy>.csv`); `summary.csv`, `summary.md` and
`summary.png` are rewritten after every call, so a stopped run keeps what finished, and a rerun
resumes the unfinished campaigns.

    python benchmarks/auto_bench.py --seeds 3 --out bench-out/auto                    # full pool, 500
    python benchmarks/auto_bench.py --subset 20000 --budget 200 --out bench-out/auto-20k
    python benchmarks/auto_bench.py --targets Dipole_debye,HOMO_au --strategies auto   # a part
    python benchmarks/auto_bench.py --source solubility --initial 20 --q 5 --budget 70 --out bench-out/auto-sol

`--source solubility` is RDKit's aqueous solubility set shipped with activescope (1,282 molecules,
log S maximised; rdkit2d + Morgan blocks, no 3-D physics descriptors).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from activescope.bench import headline_spec, run_bench
from activescope.chem.qm9 import QM9_GOALS
from activescope.engine.metrics import random_recall_expectation, top_fraction_k
from activescope.engine.pool import build_pool
from activescope.engine.spec import parse_spec

TARGETS = QM9_GOALS
"""The 12 numeric QM9 properties and their natural goals (`chem.qm9.QM9_GOALS`)."""

SOLUBILITY_TARGETS = {"logS": "maximize"}
"""The solubility pool's label (log S in mol/L; the most soluble molecules are sought)."""

FEATURES = [{"kind": "physics"}, {"kind": "rdkit2d"}, {"kind": "morgan", "radius": 2, "n_bits": 2048}]
STRATEGIES: dict[str, dict] = {
    "auto": {"model": {"kind": "auto"}, "acquisition": {"kind": "ucb", "beta": 2.0}},
    "rf-ucb-morgan": {"model": {"kind": "rf", "max_depth": 8, "columns": "morgan"}, "acquisition": {"kind": "ucb", "beta": 2.0}},
}


def summarise(out: Path) -> pd.DataFrame:
    """One row per (target, strategy) from every finished target folder, plus the exact random
    expectation per target; writes summary.csv, summary.md and summary.png."""
    rows = []
    for target in [*TARGETS, *SOLUBILITY_TARGETS]:
        parts = sorted((out / target).glob("results-*.csv"))
        if not parts:
            continue
        results = pd.concat([pd.read_csv(part) for part in parts], ignore_index=True)
        meta = pd.read_json(out / target / "meta.json", typ="series")
        for name, runs in results.groupby("strategy", sort=False):
            rows.append({"target": target, "goal": meta["goal"], "strategy": name, "seeds": len(runs),
                         "top1pct": runs["top1pct_recall"].mean(), "top1pct_sd": runs["top1pct_recall"].std(ddof=1),
                         "top100": runs["top100_recall"].mean(), "top100_sd": runs["top100_recall"].std(ddof=1),
                         "median_round_s": runs["median_round_s"].median()})  # fmt: skip
        rows.append({"target": target, "goal": meta["goal"], "strategy": "random (exact)", "seeds": 0,
                     "top1pct": meta["random_top1pct"], "top100": meta["random_top100"]})  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(summary_markdown(table), encoding="utf-8")
    summary_figure(table, out / "summary.png")
    return table


def summary_markdown(table: pd.DataFrame) -> str:
    """Targets as rows, strategies as columns: top-1 % recall (top-100 recall), mean ± sd."""
    lines = ["| target | goal | auto top-1% | rf-ucb-morgan top-1% | random top-1% | auto top-100 | rf-ucb-morgan top-100 | auto / recipe | auto s/round |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for target, part in table.groupby("target", sort=False):
        by = part.set_index("strategy")

        def cell(name: str, column: str) -> str:
            if name not in by.index:
                return "–"
            sd = by.loc[name].get(f"{column}_sd", np.nan)
            return f"{by.loc[name, column]:.3f}" + (f" ± {sd:.3f}" if np.isfinite(sd) else "")

        ratio = "–"
        if {"auto", "rf-ucb-morgan"} <= set(by.index) and by.loc["rf-ucb-morgan", "top1pct"] > 0:
            ratio = f"{by.loc['auto', 'top1pct'] / by.loc['rf-ucb-morgan', 'top1pct']:.2f}"
        seconds = f"{by.loc['auto', 'median_round_s']:.2f}" if "auto" in by.index else "–"
        lines.append(f"| {target} | {part['goal'].iloc[0]} | {cell('auto', 'top1pct')} | {cell('rf-ucb-morgan', 'top1pct')} | "
                     f"{cell('random (exact)', 'top1pct')} | {cell('auto', 'top100')} | {cell('rf-ucb-morgan', 'top100')} | {ratio} | {seconds} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def summary_figure(table: pd.DataFrame, path: Path) -> None:
    """Grouped bars of top-1 % recall per target (mean ± sd over seeds) for every strategy."""
    from matplotlib.figure import Figure

    targets = list(dict.fromkeys(table["target"]))
    strategies = list(dict.fromkeys(table["strategy"]))
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(strategies)
    for k, name in enumerate(strategies):
        part = table[table["strategy"] == name].set_index("target").reindex(targets)
        ax.bar(np.arange(len(targets)) + k * width, part["top1pct"], width, yerr=part.get("top1pct_sd"), label=name, capsize=2)
    ax.set_xticks(np.arange(len(targets)) + 0.4 - width / 2, [t.replace("_", " ") for t in targets], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("top-1 % recall")
    ax.set_title("Top-1 % recall per QM9 target (mean ± sd over seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=None, help="random QM9 subset size (default: full pool)")
    parser.add_argument("--budget", type=int, default=None, help="measurements per run (default 500)")
    parser.add_argument("--source", choices=["qm9", "solubility"], default="qm9", help="pool source")
    parser.add_argument("--initial", type=int, default=None, help="random initial measurements (default 50)")
    parser.add_argument("--q", type=int, default=None, help="batch size per round (default 10)")
    parser.add_argument("--targets", default=None, help="comma-separated label columns (default: every one of the source)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated: auto, rf-ucb-morgan")
    parser.add_argument("--out", type=Path, default=Path("bench-out/auto"))
    args = parser.parse_args()

    base = headline_spec().model_dump(mode="json")
    goals = TARGETS if args.source == "qm9" else SOLUBILITY_TARGETS
    features = FEATURES if args.source == "qm9" else FEATURES[1:]
    base["data"] = {"source": args.source, "features": features} | ({"subset": args.subset} if args.subset else {})
    if args.budget is not None:
        base["stop"]["budget"] = args.budget
    if args.initial is not None:
        base["initial"]["n"] = args.initial
    if args.q is not None:
        base["acquisition"]["q"] = args.q
    pool = build_pool(**base["data"])
    strategies = {name: STRATEGIES[name] for name in args.strategies.split(",")}
    for target in (args.targets or ",".join(goals)).split(","):
        goal = goals[target]
        spec = parse_spec({**base, "name": f"auto-bench-{target}", "target": {"column": target, "goal": goal}}, origin="auto bench")
        folder = args.out / target
        folder.mkdir(parents=True, exist_ok=True)
        values = pool.labels[target].to_numpy(float)
        budget, k = spec.stop.budget, top_fraction_k(len(values))
        pd.Series({"goal": goal, "pool": len(values), "budget": budget,
                   "random_top1pct": random_recall_expectation(values, k, budget, goal)[-1],
                   "random_top100": random_recall_expectation(values, 100, budget, goal)[-1]}).to_json(folder / "meta.json")  # fmt: skip
        for name, overrides in strategies.items():  # one call per strategy: results-<name>.csv keeps each
            results = run_bench(spec, {name: overrides}, list(range(args.seeds)), folder, progress=False, pool=pool)
            results.to_csv(folder / f"results-{name}.csv", index=False)
            summarise(args.out)
        print(f"{target} done (pid {os.getpid()})", flush=True)
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
