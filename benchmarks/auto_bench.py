"""Strategy selection on every QM9 target (issue #12): `auto` against the MolPAL-recipe
re-implementation (`rf-ucb-morgan`) and random sampling's exact expectation.

Each of the 12 numeric QM9 properties is run in its natural goal direction with the headline
protocol (50 random initial molecules, rounds of 10) on one pool holding the physics, rdkit2d
and Morgan-count blocks, so both strategies see the same molecules; `rf-ucb-morgan` uses only the
Morgan columns (`columns: morgan`), which is the same model as the bench strategy's Morgan-only
pool. `auto-top` and `auto-blend` are `auto` with the top-focused selection criteria (`criterion:
cv_top`, `cv_blend`); `auto-ensemble` predicts with the mixture of the 3 best candidates whenever
it cross-validates better than the best alone (`ensemble: 3`). Targets run one after another through `activescope.bench.run_bench` (one call
per strategy, each strategy's runs in `<out>/<target>/results-<strategy>.csv`); the cross-target
`summary.csv`, `summary.md` and `summary.png` (`report.targets.write_target_summary`, as for
`activescope bench --targets`) are rewritten after every call from every results file under
`<out>`, with `choices.{csv,md}` (which candidates drove each target's batches), so a stopped run keeps what finished, several processes may share `<out>`, and a rerun
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
from activescope.engine.pool import build_pool
from activescope.engine.spec import parse_spec
from activescope.engine.store import Store
from activescope.report.targets import write_target_summary

TARGETS = QM9_GOALS
"""The 12 numeric QM9 properties and their natural goals (`chem.qm9.QM9_GOALS`)."""

SOLUBILITY_TARGETS = {"logS": "maximize"}
"""The solubility pool's label (log S in mol/L; the most soluble molecules are sought)."""

FEATURES = [{"kind": "physics"}, {"kind": "rdkit2d"}, {"kind": "morgan", "radius": 2, "n_bits": 2048}]
STRATEGIES: dict[str, dict] = {
    "auto": {"model": {"kind": "auto"}, "acquisition": {"kind": "ucb", "beta": 2.0}},
    "auto-top": {"model": {"kind": "auto", "criterion": "cv_top"}, "acquisition": {"kind": "ucb", "beta": 2.0}},
    "auto-blend": {"model": {"kind": "auto", "criterion": "cv_blend"}, "acquisition": {"kind": "ucb", "beta": 2.0}},
    "auto-ensemble": {"model": {"kind": "auto", "ensemble": 3}, "acquisition": {"kind": "ucb", "beta": 2.0}},
    "rf-ucb-morgan": {"model": {"kind": "rf", "max_depth": 8, "columns": "morgan"}, "acquisition": {"kind": "ucb", "beta": 2.0}},
}


def summarise(out: Path, goals: dict[str, str], truths: dict[str, np.ndarray]) -> pd.DataFrame:
    """Every finished run under `out` (each target's results-<strategy>.csv) summarised across
    targets by `report.targets.write_target_summary`: summary.csv, summary.md and summary.png."""
    parts = [pd.read_csv(part).assign(target=target) for target in goals for part in sorted((out / target).glob("results-*.csv"))]
    if not parts:
        return pd.DataFrame()
    results = pd.concat(parts, ignore_index=True)
    done = {t: goals[t] for t in goals if t in set(results["target"])}
    return write_target_summary(results, done, truths, out)


def write_choices(out: Path, goals: dict[str, str]) -> pd.DataFrame:
    """How often each candidate drove a batch, per target and selecting strategy, summed over the
    finished seeds under `out` (from the rounds' records): `choices.csv` and `choices.md`. A
    round predicted by an ensemble (`ensemble: k`) counts under its members joined by "+"."""
    rows = []
    for target in goals:
        for run_dir in sorted((out / target).glob("*/seed*")):
            with Store.open(run_dir) as store:
                records = store.rounds()["record"].dropna()
            for record in records:
                if "choice" in record:
                    rows.append({"target": target, "strategy": run_dir.parent.name, "seed": run_dir.name,
                                 "predicting": "+".join(record.get("predicting", [record["choice"]]))})  # fmt: skip
    if not rows:
        return pd.DataFrame()
    counts = pd.DataFrame(rows).groupby(["target", "strategy"]).agg(
        seeds=("seed", "nunique"), rounds=("predicting", "size"),
        predicting=("predicting", lambda names: ", ".join(f"{n} {c}" for n, c in names.value_counts().items())),
    ).reset_index()
    counts.to_csv(out / "choices.csv", index=False)
    lines = ["| target | strategy | seeds | modelled rounds | predicting (rounds) |", "|---|---|---|---|---|"]
    lines += [f"| {r.target} | {r.strategy} | {r.seeds} | {r.rounds} | {r.predicting} |" for r in counts.itertuples()]
    (out / "choices.md").write_text("\n".join(lines) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=None, help="random QM9 subset size (default: full pool)")
    parser.add_argument("--budget", type=int, default=None, help="measurements per run (default 500)")
    parser.add_argument("--source", choices=["qm9", "solubility"], default="qm9", help="pool source")
    parser.add_argument("--initial", type=int, default=None, help="random initial measurements (default 50)")
    parser.add_argument("--q", type=int, default=None, help="batch size per round (default 10)")
    parser.add_argument("--targets", default=None, help="comma-separated label columns (default: every one of the source)")
    parser.add_argument("--strategies", default="auto,rf-ucb-morgan", help=f"comma-separated, of: {', '.join(STRATEGIES)}")
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
    truths = {target: pool.labels[target].to_numpy(float) for target in goals}
    for target in (args.targets or ",".join(goals)).split(","):
        goal = goals[target]
        spec = parse_spec({**base, "name": f"auto-bench-{target}", "target": {"column": target, "goal": goal}}, origin="auto bench")
        folder = args.out / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, overrides in strategies.items():  # one call per strategy: results-<name>.csv keeps each
            results = run_bench(spec, {name: overrides}, list(range(args.seeds)), folder, progress=False, pool=pool)
            results.to_csv(folder / f"results-{name}.csv", index=False)
            summarise(args.out, goals, truths)
        write_choices(args.out, goals)
        print(f"{target} done (pid {os.getpid()})", flush=True)
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
