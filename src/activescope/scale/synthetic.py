"""A synthetic pool of any size with a known objective, for scale tests and benchmarks.

Row i of shard s holds d standard-normal features drawn from a generator seeded (seed, s), so
any shard can be (re)made on its own; the label `objective` is a known smooth function of the
first four features, sin(3 x0) + x1 x2 - 0.5 x3^2 (maximised near x0 = pi/6, x3 = 0, x1 = x2
large), and the other features are noise the model must learn to ignore. Ids are `c<row>`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ..engine.shards import Mapper, ShardData, ShardedPool, build_shards, write_shard


def objective(X: np.ndarray) -> np.ndarray:
    """The known objective of feature rows X (n, d >= 4)."""
    return np.sin(3 * X[:, 0]) + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] ** 2


def synthetic_shard(root: Path, rows: int, n_features: int, seed: int, shard: int) -> None:
    """Make and write shard `shard` (rows x n_features) of the synthetic pool under `root`."""
    rng = np.random.default_rng([seed, shard])
    X = rng.standard_normal((rows, n_features), dtype=np.float32)
    start = shard * rows
    write_shard(root, shard, ShardData(
        ids=np.char.add("c", np.arange(start, start + rows).astype(str)),
        X=X,
        labels=objective(X).astype(np.float64)[:, None],
        feature_names=[f"x{j}" for j in range(n_features)],
        label_names=["objective"],
        standardise=np.zeros(n_features, bool),
        feature_kinds={"synthetic": (0, n_features)},
    ))  # fmt: skip


def synthetic_pool(root: Path, n_rows: int, shard_rows: int, n_features: int = 16, seed: int = 0,
                   mapper: Mapper | None = None, progress: bool = False) -> ShardedPool:  # fmt: skip
    """Build (or finish building) the synthetic pool of n_rows (a multiple of shard_rows)."""
    if n_rows % shard_rows:
        raise ValueError(f"n_rows {n_rows} is not a multiple of shard_rows {shard_rows}")
    make = partial(synthetic_shard, Path(root), shard_rows, n_features, seed)
    return build_shards(Path(root), n_rows // shard_rows, make, mapper, progress)
