"""Latent spaces for molecules (issue #11), numbers in BENCHMARKS.md.

    python benchmarks/latent_bench.py train   --out bench-out/latent [--subset N] [--epochs 20] [--batch-size B]
    python benchmarks/latent_bench.py compare --out bench-out/latent [--vae FILE] [--subset N] [--batch-size B] \
        [--targets dipole gap] [--seeds 0 1 2] [--budget 500]
    python benchmarks/latent_bench.py summarise --out bench-out/latent

`train` times the SELFIES VAE (examples/qm9_latent.yaml's architecture) on QM9: wall and process
CPU seconds per epoch (CPU seconds / threads is what the epoch costs on an otherwise idle machine
with that many cores), held-out reconstruction and prior-sample validity; writes train.json and
vae.safetensors. `compare` runs `latent compare` (examples/qm9_latent.yaml with the given
targets, seeds, budget and pool; the VAE from --vae, else trained by the first target's study
and reused) once per target and writes compare_<target>/ and compare.md: per strategy, mean ± sd
over seeds of recall after the budget, k-NN R² from the 2-D latent, σ–|error| Spearman and the
exclusion measures. `summarise` rebuilds compare.md from every compare_<target>/scores.csv below
--out, pooling studies run in parallel processes (one seed each) per target.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from activescope.chem.latent.spec import LatentSpec
from activescope.chem.latent.study import load_pool, run_compare, train_vae

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "qm9_latent.yaml"


def _spec(args: argparse.Namespace, **changes: dict) -> LatentSpec:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["data"] = {**document.get("data", {}), "subset": args.subset}
    for section, values in changes.items():
        document[section] = {**document.get(section, {}), **values}
    return LatentSpec.model_validate(document)


def train(args: argparse.Namespace) -> None:
    spec = _spec(args, vae={"epochs": args.epochs, "batch_size": args.batch_size})
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_pool(spec)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stamps = [cpu0]

    def log(line: str) -> None:
        stamps.append(time.process_time())
        print(f"{line}; load {os.getloadavg()[0]:.1f}", flush=True)

    _, metrics = train_vae(spec, data, args.out, log)
    cpu = np.diff(stamps)
    result = {"molecules": len(data.pool), "threads": torch.get_num_threads(), "load_before": args.load_before,
              "load_after": os.getloadavg()[0], "wall_seconds_total": time.perf_counter() - wall0,
              "cpu_seconds_total": time.process_time() - cpu0, "median_epoch_wall_s": metrics["seconds_per_epoch"],
              "median_epoch_cpu_s": float(np.median(cpu)), **{k: v for k, v in metrics.items() if k != "history"}}
    result["idle_estimate_total_s"] = result["median_epoch_cpu_s"] / result["threads"] * metrics["epochs"]
    (args.out / "train.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def compare(args: argparse.Namespace) -> None:
    vae = args.vae
    for target in args.targets:
        spec = _spec(args, vae={"path": str(vae) if vae else None, "batch_size": args.batch_size},
                     campaign={"seeds": args.seeds, "budget": args.budget}, analysis={"candidates": 0})
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"target": target}), "name": f"bench-{target}"})
        out = args.out / f"compare_{target}"
        t0 = time.perf_counter()
        run_compare(spec, out, progress=False)
        (out / "timing.json").write_text(json.dumps({"seconds": time.perf_counter() - t0, "load": os.getloadavg()[0]}))
        vae = vae or out / "vae.safetensors"
    summarise(args)


def summarise(args: argparse.Namespace) -> None:
    """compare.md from every compare_<target>/scores.csv under --out (runs split over processes
    by seed are pooled per target)."""
    lines = []
    found = sorted(args.out.glob("**/compare_*/scores.csv"))
    for target in sorted({path.parent.name.removeprefix("compare_") for path in found}):
        paths = [p for p in found if p.parent.name == f"compare_{target}"]
        scores = pd.concat([pd.read_csv(p) for p in paths])
        metrics = json.loads((paths[0].parent / "metrics.json").read_text())
        k = metrics["top_k"]
        columns = [f"top{k}_recall", "top1pct_recall", "knn_r2", "sigma_error_spearman", "model_r2",
                   "exclusion_regions", "exclusion_empty_fraction", "exclusion_largest_empty_radius"]
        grouped = scores.groupby("strategy")[columns]
        mean, sd = grouped.mean(), grouped.std()
        seconds = [json.loads((p.parent / "timing.json").read_text()) for p in paths if (p.parent / "timing.json").exists()]
        walls = ", ".join(f"{t['seconds']:.0f} s (load {t['load']:.1f})" for t in seconds)
        lines.append(f"\n{metrics['target']} ({metrics['goal']}), pool {metrics['pool_molecules']:,}: seeds "
                     f"{sorted(scores['seed'].unique().tolist())}, {metrics['budget']} measurements; study wall times {walls}\n")
        lines.append("| strategy | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for strategy in mean.index:
            cells = [f"{mean.loc[strategy, c]:.3f} ± {sd.loc[strategy, c]:.3f}" for c in columns]
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += _partial_recall(args, [d for d in args.out.glob("**/compare_*") if not (d / "scores.csv").exists()])
    (args.out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _partial_recall(args: argparse.Namespace, studies: list[Path]) -> list[str]:
    """For studies stopped before they finished: top-k recall of each campaign at the largest
    measurement count that every campaign of the target reached, from the run records."""
    from activescope.engine.metrics import recall_curve
    from activescope.engine.store import Store

    lines = []
    for target in sorted({d.name.removeprefix("compare_") for d in studies}):
        spec = _spec(args, vae={"path": str(args.vae) if args.vae else None})
        data = load_pool(spec.model_copy(update={"data": spec.data.model_copy(update={"target": target})}))
        runs = {}
        for run in sorted(r for d in studies if d.name == f"compare_{target}" for r in (d / "runs").glob("*-seed*")):
            store = Store.open(run)
            runs[run.name] = store.training_data()[1]
            store.close()
        n = min(len(v) for v in runs.values())
        lines.append(f"\n{target}, stopped before the end: top-100 recall after the first {n} measurements of every campaign\n")
        lines += ["| campaign | measurements made | top-100 recall at n |", "|---|---|---|"]
        lines += [f"| {name} | {len(v)} | {recall_curve(v[:n], data.y, 100, spec.data.goal)[-1]:.3f} |" for name, v in runs.items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["train", "compare", "summarise"])
    parser.add_argument("--out", type=Path, default=Path("bench-out/latent"))
    parser.add_argument("--subset", type=int, default=None, help="QM9 molecules (default: all)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="VAE batch (default: the spec's, ~100 steps per epoch)")
    parser.add_argument("--vae", type=Path, default=None)
    parser.add_argument("--targets", nargs="+", default=["dipole", "gap"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.load_before = os.getloadavg()[0]
    {"train": train, "compare": compare, "summarise": summarise}[args.step](args)


if __name__ == "__main__":
    main()
