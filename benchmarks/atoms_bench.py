"""Atom-finding benchmarks (same as `activescope bench atoms`).

Usage: python benchmarks/atoms_bench.py [--quick] [--out DIR] [--threads N]
"""

import argparse
from pathlib import Path

from activescope.microscopy.bench import run_benchmarks

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--out", type=Path, default=Path("bench-atoms"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    args = parser.parse_args()
    print(run_benchmarks(args.out, quick=args.quick, threads=args.threads))
