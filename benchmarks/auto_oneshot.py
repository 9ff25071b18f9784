"""Why `auto` misses on some QM9 targets: the candidates' means against their UCB scores (issue #12).

Each `auto` candidate is fitted on the same random measured molecules of the full QM9 pool; the
whole pool is then ranked once by the candidate's mean, by its UCB (beta = 2, what the campaigns
use) and by a UCB whose variance is recalibrated by cross-validation (scaled by the mean squared
out-of-fold z-score on the measured molecules). Printed: the fraction of each ranking's best
`--picks` that lie in the pool's true top 1 %, and the calibration factor. A candidate whose mean
ranks well but whose UCB does not spends its batches on its own uncertainty, not on the top.

    python benchmarks/auto_oneshot.py --targets Polarizability_bohr3,HOMO_LUMO_gap_au,HOMO_au --seeds 2
"""

from __future__ import annotations

import argparse

import numpy as np

from activescope.chem.qm9 import QM9_GOALS
from activescope.engine.pool import build_pool
from activescope.engine.registry import MODELS

FEATURES = [{"kind": "physics"}, {"kind": "rdkit2d"}, {"kind": "morgan", "radius": 2, "n_bits": 2048}]
CANDIDATES = {
    "rf:physics": {"kind": "rf", "columns": "physics"},
    "rf:rdkit2d": {"kind": "rf", "columns": "rdkit2d"},
    "gp:rdkit2d": {"kind": "gp", "columns": "rdkit2d", "fit_iters": 30},
    "tanimoto:morgan": {"kind": "gp", "kernel": "tanimoto", "columns": "morgan", "fit_iters": 30},
}
FOLDS = 3


def build(name: str, feature_kinds: dict[str, slice]):
    section = dict(CANDIDATES[name])
    model = MODELS.build(section.pop("kind"), section, section=name)
    model.use_feature_blocks(feature_kinds)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="Polarizability_bohr3,HOMO_LUMO_gap_au,HOMO_au")
    parser.add_argument("--measured", type=int, default=450, help="random measured molecules")
    parser.add_argument("--picks", type=int, default=500, help="size of the ranked shortlist that is scored")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--beta", type=float, default=2.0)
    args = parser.parse_args()

    pool = build_pool(source="qm9", features=FEATURES)
    print(f"| target | seed | candidate | top 1 % in best {args.picks} by mean | by UCB | by calibrated UCB | calibration |")
    print("|---|---|---|---|---|---|---|")
    for target in args.targets.split(","):
        y = pool.labels[target].to_numpy(float) * (1 if QM9_GOALS[target] == "maximize" else -1)
        top = np.argsort(-y)[: round(0.01 * len(y))]
        for seed in range(args.seeds):
            rows = np.random.default_rng(seed).choice(len(y), args.measured, replace=False)
            folds = np.arange(args.measured) % FOLDS
            for name in CANDIDATES:
                held_mean, held_variance = np.empty(args.measured), np.empty(args.measured)
                for fold in range(FOLDS):
                    test = folds == fold
                    model = build(name, pool.feature_kinds).fit(pool.X[rows[~test]], y[rows[~test]])
                    held_mean[test], held_variance[test] = model.predict(pool.X[rows[test]])
                calibration = float(np.mean((y[rows] - held_mean) ** 2 / np.maximum(held_variance, 1e-12)))
                mean, variance = build(name, pool.feature_kinds).fit(pool.X[rows], y[rows]).predict(pool.X)

                def share(score: np.ndarray) -> float:
                    return float(np.isin(np.argsort(-score)[: args.picks], top).mean())

                ucb = mean + np.sqrt(args.beta * variance)
                calibrated = mean + np.sqrt(args.beta * calibration * variance)
                print(f"| {target} | {seed} | {name} | {share(mean):.2f} | {share(ucb):.2f} | {share(calibrated):.2f} | {calibration:.2f} |", flush=True)


if __name__ == "__main__":
    main()
