"""Scale-out benchmarks behind BENCHMARKS.md "Scale-out on Ray (issue #13)".

    python benchmarks/scale_bench.py featurize --molecules 50000     # molecules/s, serial / processes / Ray
    python benchmarks/scale_bench.py rounds --rows 1000000 10000000  # s per round + peak memory, serial / Ray 1, 2
    python benchmarks/scale_bench.py grid                           # 12-run benchmark grid, serial / Ray 1, 2

Every measurement runs in a fresh subprocess (its own Ray, its own peak RSS) and prints one JSON
line; `--out` keeps the pools and run folders (default: a temporary folder, deleted).

Pools of millions use the synthetic pool of `activescope.scale.synthetic` (16 standard-normal
features, known objective sin(3 x0) + x1 x2 - 0.5 x3^2): no set of millions of real molecules
is available offline here, and featurizing one would take hours on 2 cores. Featurization
throughput is measured on real molecules (QM9's SMILES).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUND_SPEC = {
    "name": "scale-rounds", "seed": 0, "target": {"column": "objective", "goal": "maximize"},
    "model": {"kind": "rf"}, "acquisition": {"kind": "ucb", "beta": 2.0, "q": 10},
    "initial": {"n": 50, "method": "random"}, "stop": {"budget": 70},
}  # fmt: skip
"""The default surrogate and acquisition (the qm9-dipole preset: 100-tree random forest, UCB,
batches of 10) on the synthetic pool: random initial design, then two modelled rounds
(`--budget 60`: one)."""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(kind: str, **options) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    out = subprocess.run([sys.executable, __file__, "_one", kind, json.dumps(options)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_featurize(smiles: str, out: str, mode: str, workers: int) -> dict:
    from activescope.chem.sharded import featurize_file
    from activescope.engine.shards import process_mapper

    mapper = process_mapper(workers)
    if mode == "ray":
        from activescope.scale.grid import init_ray, ray_mapper

        init_ray(num_cpus=workers)
        mapper = ray_mapper()
    t0 = time.perf_counter()
    pool = featurize_file(smiles, out, ["morgan"], shard_rows=5000, id_column="id", mapper=mapper, progress=False)
    seconds = time.perf_counter() - t0
    return {"mode": mode, "workers": workers, "molecules": len(pool), "seconds": seconds,
            "per_s": len(pool) / seconds, "per_s_per_core": len(pool) / seconds / workers}  # fmt: skip


def one_rounds(pool_dir: str, mode: str, workers: int, budget: int) -> dict:
    from activescope.engine.campaign import Campaign
    from activescope.engine.shards import open_sharded_pool
    from activescope.engine.spec import parse_spec

    pool = open_sharded_pool(Path(pool_dir))
    setup = 0.0
    if mode == "ray":
        from activescope.scale.actors import RayShards
        from activescope.scale.grid import init_ray

        t0 = time.perf_counter()
        init_ray(num_cpus=workers)
        pool.X.executor = RayShards(pool.X, workers)
        setup = time.perf_counter() - t0
    campaign = Campaign.create(None, parse_spec(ROUND_SPEC | {"stop": {"budget": budget}}), pool)
    cpu_s = []  # driver CPU seconds per step: what a round costs the driver, whatever the machine's load
    while True:
        c0 = time.process_time()
        more = campaign.step()
        cpu_s.append(time.process_time() - c0)
        if not more:
            break
    rounds = campaign.store.rounds()
    modelled = rounds[rounds["round"] > 0]
    round_s = (modelled["fit_s"] + modelled["predict_s"] + modelled["select_s"]).tolist()
    return {"mode": mode, "workers": workers, "rows": len(pool), "round_s": round_s, "driver_cpu_s": cpu_s[1:-1], "setup_s": setup,
            "driver_peak_mb": _peak_mb(), "best": float(campaign.store.measurements()["value"].max())}  # fmt: skip


def _import_models(_: int) -> None:
    import activescope.models.ensemble  # noqa: F401
    import activescope.models.gp  # noqa: F401  (torch, gpytorch: what every grid task imports first)

    time.sleep(1.0)


def one_grid(out: str, mode: str, workers: int, warm: bool) -> dict:
    from activescope.bench import bench_main, serial_runner

    runner = serial_runner
    if mode == "ray":
        from activescope.scale.grid import init_ray, ray_mapper, ray_runner

        init_ray(num_cpus=workers)
        if warm:  # start the workers and import the model code before the clock starts
            list(ray_mapper()(_import_models, list(range(2 * workers))))
        runner = ray_runner()
    from activescope.engine.pool import build_pool
    from activescope.engine.spec import load_spec

    spec = Path(out).parent / "grid.yaml"
    build_pool(**load_spec(spec).model_dump(mode="json")["data"])  # features into the cache, outside the timing
    t0 = time.perf_counter()
    bench_main(spec, ["default", "gp-ucb", "random"], 2, Path(out), targets=["Dipole_debye", "HOMO_LUMO_gap_au:minimize"],
               runner=runner)  # fmt: skip
    seconds = time.perf_counter() - t0
    summary = (Path(out) / "summary.csv").read_text()
    return {"mode": mode, "workers": workers, "warm": warm, "runs": 12, "seconds": seconds, "summary": summary}


GRID_SPEC = """name: scale-grid
seed: 0
data: {source: qm9, subset: 5000, features: [physics]}
target: {column: Dipole_debye, goal: maximize}
model: {kind: rf}
acquisition: {kind: ucb, beta: 2.0, q: 10}
initial: {n: 50, method: random}
stop: {budget: BUDGET}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["featurize", "rounds", "grid", "_one"])
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--molecules", type=int, default=50_000)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--budget", type=int, default=None, help="measurements per campaign (rounds: 70, grid: 100)")
    parser.add_argument("--warm", action="store_true", help="grid: start Ray workers and import model code before timing")
    parser.add_argument("--modes", nargs="+", default=None, help="e.g. serial:1 ray:1 ray:2 (featurize: processes:N)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "_one":
        kind, options = args.rest
        print(json.dumps(globals()[f"one_{kind}"](**json.loads(options))))
        return
    # Ray starts its workers 15 nice levels below the driver; on a shared machine that starves
    # them against other jobs, so every mode here runs at the driver's own priority.
    os.environ.setdefault("RAY_worker_niceness", "0")
    modes = [(m.split(":")[0], int(m.split(":")[1])) for m in args.modes or []]
    work = args.out or Path(tempfile.mkdtemp(prefix="scale-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"load": os.getloadavg(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}))
    try:
        if args.what == "featurize":
            from activescope.chem.qm9 import load_qm9

            table = load_qm9(args.molecules if args.molecules < 130_831 else None)
            smiles = work / "smiles.csv"
            smiles.write_text("id,smiles\n" + "\n".join(f"{i},{s}" for i, s in zip(table.ids, table.smiles)) + "\n")
            for mode, workers in modes or [("processes", 1), ("processes", 2), ("ray", 1), ("ray", 2)]:
                target = work / f"features-{mode}-{workers}"
                print(json.dumps(_child("featurize", smiles=str(smiles), out=str(target), mode=mode, workers=workers)))
                shutil.rmtree(target)
        elif args.what == "rounds":
            from activescope.scale.synthetic import synthetic_pool

            for rows in args.rows:
                pool_dir = work / f"synthetic-{rows}"
                t0 = time.perf_counter()
                synthetic_pool(pool_dir, rows, 100_000, n_features=16)
                print(json.dumps({"rows": rows, "build_s": time.perf_counter() - t0}))
                for mode, workers in modes or [("serial", 1), ("ray", 1), ("ray", 2)]:
                    print(json.dumps(_child("rounds", pool_dir=str(pool_dir), mode=mode, workers=workers, budget=args.budget or 70)))
        elif args.what == "grid":
            (work / "grid.yaml").write_text(GRID_SPEC.replace("BUDGET", str(args.budget or 100)))
            for mode, workers in modes or [("serial", 1), ("ray", 1), ("ray", 2)]:
                print(json.dumps(_child("grid", out=str(work / f"grid-{mode}-{workers}"), mode=mode, workers=workers, warm=args.warm)))
    finally:
        print(json.dumps({"load_after": os.getloadavg()}))
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
