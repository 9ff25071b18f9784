"""Active causal learning benchmarks (issue #10), numbers in BENCHMARKS.md.

    OMP_NUM_THREADS=1 python benchmarks/causal_bench.py --out bench-out/causal [--seeds 5] [--quick]

1. DirectLiNGAM speed: 10 variables (9 causal features + dipole) × 1,000 QM9 molecules, median
   of 5 fits; the `lingam` import; full-pool discovery over all descriptors.
2. A whole active-causal run (`causal select` with examples/qm9_causal.yaml: discovery,
   selection, 5 random-growth baselines, R²) timed end to end, then `causal intervene`.
3. Active selection for every seed against random growth: loss curves, smallest subset reaching
   the threshold, R² of the random forest (causal features → dipole), intervention success rates.
Writes results.json, curves.csv, success.csv and loss_curves.png under --out and prints, per
method and loss threshold, how many runs reach it and at which subset size (`--summarise` reprints
that table from an earlier run's curves.csv).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import yaml

from activescope.chem.causal import figures
from activescope.chem.causal.data import load_causal_data
from activescope.chem.causal.discovery import learn_graph
from activescope.chem.causal.selection import smallest_size_reaching
from activescope.chem.causal.spec import parse_causal_spec
from activescope.chem.causal.study import run_intervene, run_select

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "qm9_causal.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/causal"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a 3,000-molecule pool and 10 rounds (minutes)")
    parser.add_argument("--summarise", action="store_true", help="only (re)write reach.csv from an earlier run's curves.csv")
    args = parser.parse_args()
    if args.summarise:
        print(reach_table(pd.read_csv(args.out / "curves.csv")).to_string(index=False))
        return
    raw = yaml.safe_load(EXAMPLE.read_text())
    if args.quick:
        raw["data"].update(pool_size=3000, design_size=3000)
        raw["selection"].update(max_rounds=10)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}

    start = time.perf_counter()
    import lingam  # noqa: F401  (timed: DirectLiNGAM's first use pays it)

    results["lingam_import_s"] = time.perf_counter() - start
    spec = parse_causal_spec(raw, origin=str(EXAMPLE))
    start = time.perf_counter()
    data = load_causal_data(spec.data)
    results["data_load_s"] = time.perf_counter() - start
    results["pool_molecules"], results["design_molecules"] = len(data.pool), len(data.design)

    names = [*data.descriptors, data.target]
    start = time.perf_counter()
    everything = learn_graph(pd.concat([pd.DataFrame(data.pool.X), pd.Series(data.pool.y)], axis=1).to_numpy(), names)
    results["discovery_all_descriptors_s"] = time.perf_counter() - start
    effects = everything.effects_on_target().abs().sort_values(ascending=False)
    ten = [*effects.index[:9]]
    sample = pd.DataFrame(data.pool.X[:1000, data.columns(ten)]).assign(y=data.pool.y[:1000]).to_numpy()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        learn_graph(sample, [*ten, data.target])
        times.append(time.perf_counter() - start)
    results["lingam_10x1000_median_s"] = statistics.median(times)
    print(json.dumps(results, indent=1), flush=True)

    curves, success, per_seed = [], [], []
    for seed in range(args.seeds):
        seed_spec = parse_causal_spec({**raw, "seed": seed, "selection": {**raw["selection"], "compare_seeds": args.seeds if seed == 0 else 0}})
        run_dir = args.out / f"seed{seed}"
        start = time.perf_counter()
        run_select(seed_spec, run_dir, progress=False, data=data if seed else None)
        select_s = time.perf_counter() - start
        start = time.perf_counter()
        run_intervene(run_dir)
        intervene_s = time.perf_counter() - start
        summary = json.loads((run_dir / "artifacts" / "summary.json").read_text())
        per_seed.append({"seed": seed, "select_s": select_s, "intervene_s": intervene_s, **summary})
        curves.append(pd.read_csv(run_dir / "artifacts" / "curves.csv"))
        success.append(pd.read_csv(run_dir / "artifacts" / "success.csv").assign(seed=seed))
        print(json.dumps(per_seed[-1]), flush=True)
    results["seeds"] = per_seed
    table = pd.concat(curves, ignore_index=True)
    table.to_csv(args.out / "curves.csv", index=False)
    rates = pd.concat(success, ignore_index=True)
    rates.to_csv(args.out / "success.csv", index=False)
    results["success_rate_mean"] = rates.groupby("method")["success_rate"].agg(["mean", "std"]).to_dict()
    (args.out / "loss_curves.png").write_bytes(figures.png(figures.loss_curves_figure(table, spec.selection.loss_threshold)))
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(reach_table(table).to_string(index=False))
    print(json.dumps({k: v for k, v in results.items() if k != "seeds"}, indent=1))


def reach_table(curves: pd.DataFrame, thresholds: tuple[float, ...] = (0.1, 0.075, 0.06, 0.05)) -> pd.DataFrame:
    """Per method and threshold: how many runs reach it within the budget, and the median and
    range of the smallest subset that does; also the mean loss at the largest common size."""
    rows = []
    for method, runs in curves.groupby("method"):
        sizes = {t: [smallest_size_reaching(run, t) for _, run in runs.groupby("seed")] for t in thresholds}
        for threshold, found in sizes.items():
            reached = [v for v in found if v == v]
            rows.append({"method": method, "threshold": threshold, "runs_reaching": f"{len(reached)}/{len(found)}",
                         "median_size": statistics.median(reached) if reached else None,
                         "sizes": " ".join(str(int(v)) if v == v else "-" for v in found)})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
