"""Predicting the full QM9 pool every round (issue #12, item 4): the Tanimoto GP and the random
forest on the Morgan-count block, each fitted once on measured molecules, then the whole
130,831-molecule pool predicted from the representation cached at the first call
(`models._pool_cache`: the GP's sparse count levels, the forest's sparse rows), against the
general path (the kernel on each batch, the trees on dense rows) on a copy of the first rows,
scaled up to the pool; also the split of one cached GP prediction into its sparse product,
Tanimoto ratio, mean and variance products.

    python benchmarks/pool_predict_speed.py --train 450 --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from activescope.engine.pool import build_pool
from activescope.models import _pool_cache, kernels
from activescope.models._torch import row_batches
from activescope.models.ensemble import RandomForestSurrogate
from activescope.models.gp import GPSurrogate

MORGAN = [{"kind": "morgan", "radius": 2, "n_bits": 2048}]


def seconds(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=450, help="measured molecules the GP is fitted on")
    parser.add_argument("--target", default="HOMO_au")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--general-rows", type=int, default=32_768, help="rows timed on the general path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pool = build_pool(source="qm9", features=MORGAN)
    X, y = pool.X, pool.labels[args.target].to_numpy(float)
    rows = np.random.default_rng(0).choice(len(X), args.train, replace=False)
    model = GPSurrogate(kernel="tanimoto", fit_iters=30)
    fit_s, _ = seconds(lambda: model.fit(X[rows], y[rows]))
    first_s, (mean, variance) = seconds(lambda: model.predict(X))
    later = [seconds(lambda: model.predict(X))[0] for _ in range(3)]
    print(f"pool {X.shape}, {args.train} measured, {args.threads} thread(s)")
    print(f"fit (30 Adam steps): {fit_s:.2f} s")
    print(f"predict the pool, first call (builds the levels): {first_s:.2f} s; later calls: {', '.join(f'{s:.2f}' for s in later)} s")

    levels = kernels.pool_count_levels(X, model.batch_rows)
    cache = model._cache
    train = cache.train_latent.numpy()
    train_levels = levels.train_indicators(train)
    train_totals = torch.as_tensor(train.sum(axis=1), dtype=torch.float32)
    split = dict.fromkeys(["sparse product", "Tanimoto ratio", "mean", "variance"], 0.0)
    for batch, batch_rows in enumerate(row_batches(len(X), model.batch_rows)):
        t0 = time.perf_counter()
        intersection = levels.batches[batch] @ train_levels
        t1 = time.perf_counter()
        total = torch.as_tensor(levels.totals[batch_rows], dtype=torch.float32).unsqueeze(-1) + train_totals
        cross = kernels.tanimoto_from_intersection(intersection, total)
        t2 = time.perf_counter()
        cross.double() @ cache.mean_weights
        t3 = time.perf_counter()
        (cross @ cache.root_inverse_f32).square().sum(-1)
        t4 = time.perf_counter()
        for name, spent in zip(split, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            split[name] += spent
    print("split of one cached prediction: " + ", ".join(f"{name} {spent:.2f} s" for name, spent in split.items()))

    forest = RandomForestSurrogate(max_features=0.2).fit(X[rows], y[rows])  # auto's rf on a wide block
    forest_first_s, (forest_mean, _) = seconds(lambda: forest.predict(X))
    forest_later = [seconds(lambda: forest.predict(X))[0] for _ in range(2)]
    print(f"random forest (100 trees, a fifth of the columns per split), predict the pool, first call (builds the "
          f"sparse rows): {forest_first_s:.2f} s; later calls: {', '.join(f'{s:.2f}' for s in forest_later)} s")

    copy = np.array(X[: args.general_rows])
    _pool_cache.POOL_CACHE_MIN_ROWS = len(X) + 1  # no block is cached from here on: the general paths
    general_s, (general_mean, general_variance) = seconds(lambda: model.predict(copy))
    print(f"Tanimoto GP, general path, {len(copy)} rows: {general_s:.2f} s -> {general_s * len(X) / len(copy):.1f} s for the pool")
    print(f"largest difference: mean {np.abs(general_mean - mean[: len(copy)]).max():.2e}, "
          f"variance {np.abs(general_variance - variance[: len(copy)]).max() / variance.max():.2e} (relative)")
    dense_s, (dense_mean, _) = seconds(lambda: forest.predict(copy))
    print(f"random forest on dense rows, {len(copy)} rows: {dense_s:.2f} s -> {dense_s * len(X) / len(copy):.1f} s for the pool; "
          f"same means: {np.array_equal(dense_mean, forest_mean[: len(copy)])}")


if __name__ == "__main__":
    main()
