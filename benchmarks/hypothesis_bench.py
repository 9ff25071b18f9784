"""Hypothesis-learning benchmarks behind BENCHMARKS.md (issue #9).

    python benchmarks/hypothesis_bench.py synthetic --dims 1 --seeds 20        # known truth
    python benchmarks/hypothesis_bench.py qm9 --runs 5 --steps 200             # published QM9 protocol (MAP)
    python benchmarks/hypothesis_bench.py fit-timing --n 500                   # MAP and NUTS fits (wall and CPU s, load)
    python benchmarks/hypothesis_bench.py fit-timing --data kink --inference nuts --nuts-kernel map

`qm9`: x = (TPSA, MolLogP) from RDKit (the rdkit2d featuriser, raw units), y = enthalpy H298
(Hartree; the laws describe y / 100 so that the published priors E ~ Normal(-4, 2) and
s ~ Gamma(2, 0.05) apply), hypotheses H1-H3 of the paper, 300 random initial molecules, then
`--steps` single-molecule rounds chosen by maximum variance of the hypothesis picked by
epsilon-greedy (epsilon 0.4) after 10 warm-up rounds, reward = median-uncertainty drop.
Prints one JSON line per run and a summary; writes them to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

QM9_HYPOTHESES = {
    "H1": "E * (1 + (x0 / s)**2)",
    "H2": "E * (1 + (x0 / s)**2 + x1**2)",
    "H3": "E * (1 + x1 / (1 + x0))",
}
PUBLISHED = {"H1": 0.109, "H2": 0.225, "H3": -0.434}


def qm9_pool(subset: int | None, seed: int = 0):
    """QM9 pool with raw TPSA (x0, square angstrom) and MolLogP (x1) features and its labels."""
    from activescope.chem.features import Molecules, Rdkit2dFeatures, raw_block
    from activescope.chem.qm9 import data_version, load_qm9
    from activescope.chem.sources import _digest
    from activescope.engine.pool import Pool

    table = load_qm9(subset, seed)
    molecules = Molecules(ids=table.ids, smiles=table.smiles, data_key={"data": data_version(), "rows": _digest(table.ids)})
    values, valid, names = raw_block(molecules, Rdkit2dFeatures())
    columns = [names.index("TPSA"), names.index("MolLogP")]
    frame = pd.DataFrame(values[:, columns].astype(np.float64), columns=["x0", "x1"])
    frame["H298"] = table.labels["Enthalphy_298K_au"].to_numpy()
    frame["id"] = table.ids
    frame = frame[valid & np.isfinite(frame[["x0", "x1"]]).all(axis=1).to_numpy()]
    return Pool.from_frame(frame, features=["x0", "x1"], labels=["H298"], id_column="id")


def qm9_spec(seed: int, steps: int, inference: str, law_uncertainty: bool = False) -> dict:
    law_options = {"priors": None, "target_scale": 100.0, "inference": inference, "fit_iters": 100, "warm_iters": 20,
                   "law_uncertainty": law_uncertainty}  # fmt: skip
    candidates = {}
    for name, law in QM9_HYPOTHESES.items():
        priors = {"E": "Normal(-4, 2)"} | ({"s": "Gamma(2, 0.05)"} if "s" in law else {})
        candidates[name] = {"kind": "hypothesis", "law": law} | law_options | {"priors": priors}
    return {
        "name": "qm9-hypothesis-learning",
        "seed": seed,
        "target": {"column": "H298", "goal": "maximize"},
        "model": {"kind": "select", "candidates": candidates, "policy": "epsilon_greedy", "epsilon": 0.4, "warmup": 10},
        "acquisition": {"kind": "max_variance", "q": 1},
        "initial": {"n": 300, "method": "random"},
        "stop": {"budget": 300 + steps},
    }


def run_qm9(args: argparse.Namespace) -> None:
    from activescope.engine.campaign import Campaign

    pool = qm9_pool(args.subset)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "qm9_runs.jsonl"
    results = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {r["seed"] for r in results}  # finished runs are kept: a stopped benchmark resumes
    for seed in range(args.runs):
        if seed in done:
            continue
        t0 = time.perf_counter()
        with Campaign.create(None, qm9_spec(seed, args.steps, args.inference, args.law_uncertainty), pool=pool) as campaign:
            campaign.run(progress=args.progress)
            records = campaign.store.rounds()["record"].dropna().tolist()
        final = records[-1]
        row = {"seed": seed, "pool": len(pool), "steps": args.steps, "inference": args.inference,
               "law_uncertainty": args.law_uncertainty,
               "seconds": round(time.perf_counter() - t0, 1), "average_reward": final["average_reward"],
               "counts": final["counts"], "posteriors": final["posteriors"]}  # fmt: skip
        results.append(row)
        print(json.dumps(row), flush=True)
        log.write_text("".join(json.dumps(r) + "\n" for r in results))
    mean = {h: float(np.mean([r["average_reward"][h] for r in results])) for h in QM9_HYPOTHESES}
    best = [max(r["average_reward"], key=r["average_reward"].get) for r in results]
    print(json.dumps({"mean_final_reward": mean, "published": PUBLISHED, "preferred": best}))


def run_synthetic(args: argparse.Namespace) -> None:
    from activescope.hypotheses.synthetic import (
        phase_transition_problem,
        run_hypothesis_learning,
    )

    wins = 0
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        problem = phase_transition_problem(args.dims, seed, law_uncertainty=args.law_uncertainty)
        winner, average = run_hypothesis_learning(problem, seed, reward=args.reward)
        wins += winner == problem.truth
        print(json.dumps({"seed": seed, "winner": winner, "average_reward": average}), flush=True)
    print(json.dumps({"dims": args.dims, "reward": args.reward, "law_uncertainty": args.law_uncertainty,
                      "truth_wins": wins, "runs": args.seeds,
                      "seconds": round(time.perf_counter() - t0, 1)}))  # fmt: skip


def run_fit_timing(args: argparse.Namespace) -> None:
    from activescope.models.hypothesis import HypothesisSurrogate

    if args.data == "qm9":
        pool = qm9_pool(args.subset)
        rows = np.random.default_rng(0).choice(len(pool), size=args.n, replace=False)
        X, y, X_pool = pool.X[rows], pool.labels["H298"].to_numpy()[rows], pool.X
        options = {"law": QM9_HYPOTHESES["H2"], "priors": {"E": "Normal(-4, 2)", "s": "Gamma(2, 0.05)"}, "target_scale": 100.0}
    else:  # the known-truth kink law of `synthetic`, 500 noisy points
        rng = np.random.default_rng(0)
        X, X_pool = rng.uniform(0, 10, size=(args.n, 1)), rng.uniform(0, 10, size=(args.subset, 1))
        y = 0.5 * np.minimum(X[:, 0], 6.0) + rng.normal(0, 0.3, args.n)
        options = {"law": "a * minimum(x, t)", "priors": {"a": "Normal(0, 1)", "t": "Uniform(0, 10)"}, "descriptors": ["x"]}
    for inference in args.inference:
        model = HypothesisSurrogate(**options, inference=inference, fit_iters=100, warm_iters=20, nuts_kernel=args.nuts_kernel)
        times, cpu_times = [], []
        load_before = os.getloadavg()[0]
        for repeat in range(args.repeats if inference == "map" or args.nuts_kernel == "map" else 1):
            t0, c0 = time.perf_counter(), time.process_time()
            model.fit(X, y)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        t0 = time.perf_counter()
        model.predict(X_pool)
        predict_s = time.perf_counter() - t0
        warm = times[1:] or times  # the first fit is fresh (and compiles NUTS); the rest warm-start
        print(json.dumps({"inference": inference, "n": args.n, "fit_s": [round(t, 3) for t in times],
                          "fit_cpu_s": [round(t, 3) for t in cpu_times],
                          "warm_fit_s_median_min": [round(float(np.median(warm)), 3), round(min(warm), 3)],
                          "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                          "predict_pool_s": round(predict_s, 2), "pool": len(X_pool), "data": args.data,
                          "hyperparameters": model.hyperparameters()}), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    synthetic = sub.add_parser("synthetic", help="known-truth phase-transition check")
    synthetic.add_argument("--dims", type=int, default=1, choices=[1, 2])
    synthetic.add_argument("--seeds", type=int, default=20)
    synthetic.add_argument("--reward", default="uncertainty", choices=["uncertainty", "log_likelihood"])
    synthetic.add_argument("--law-uncertainty", action="store_true", help="Laplace law-parameter variance in predictions")
    qm9 = sub.add_parser("qm9", help="published QM9 enthalpy protocol")
    qm9.add_argument("--runs", type=int, default=5)
    qm9.add_argument("--steps", type=int, default=200)
    qm9.add_argument("--subset", type=int, default=None, help="random QM9 subset as the pool (default: all)")
    qm9.add_argument("--inference", default="map", choices=["map", "nuts"])
    qm9.add_argument("--law-uncertainty", action="store_true", help="MAP: Laplace law-parameter variance in predictions")
    qm9.add_argument("--progress", action="store_true")
    qm9.add_argument("--out", type=Path, default=Path("bench-out/hypothesis"))
    timing = sub.add_parser("fit-timing", help="time one structured-GP fit")
    timing.add_argument("--n", type=int, default=500)
    timing.add_argument("--subset", type=int, default=20000)
    timing.add_argument("--repeats", type=int, default=5)
    timing.add_argument("--inference", action="append", default=None, choices=["map", "nuts"])
    timing.add_argument("--nuts-kernel", default="sample", choices=["sample", "map"])
    timing.add_argument("--data", default="qm9", choices=["qm9", "kink"], help="QM9 H2 law, or the 1-D kink law")
    args = parser.parse_args()
    if args.command == "fit-timing" and not args.inference:
        args.inference = ["map", "nuts"]
    {"synthetic": run_synthetic, "qm9": run_qm9, "fit-timing": run_fit_timing}[args.command](args)


if __name__ == "__main__":
    main()
