"""The QM9 strategy benchmark behind BENCHMARKS.md.

Runs the headline protocol (full QM9 pool, 50 random initial molecules, 45 rounds of 10 = 500
measurements, Dipole_debye maximised) over `activescope.bench.default_strategies()`, or a
scaled-down version of it for small machines:

    python benchmarks/qm9_bench.py --seeds 3 --out bench-out                  # headline
    python benchmarks/qm9_bench.py --subset 20000 --budget 200 --strategy default --strategy random

Writes results.csv, curves.csv, results.md and bench.png to --out and prints results.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from activescope.bench import default_strategies, headline_spec, run_bench
from activescope.engine.spec import parse_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per strategy (default 3)")
    parser.add_argument("--strategy", action="append", choices=list(default_strategies()), help="repeat; default all")
    parser.add_argument("--subset", type=int, default=None, help="random QM9 subset size (default: full pool)")
    parser.add_argument("--budget", type=int, default=None, help="measurements per run (default 500)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()

    spec = headline_spec().model_dump(mode="json")
    if args.subset is not None:
        spec["data"]["subset"] = args.subset
    if args.budget is not None:
        spec["stop"]["budget"] = args.budget
    matrix = default_strategies()
    strategies = {name: matrix[name] for name in args.strategy} if args.strategy else matrix
    run_bench(parse_spec(spec, origin="qm9 benchmark"), strategies, list(range(args.seeds)), args.out)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
