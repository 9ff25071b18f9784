"""Shard-by-shard selection on Ray: actors that keep their shards in memory.

`RayShards(features, workers)` starts `workers` actors; each loads a contiguous group of shards
once and keeps it. Every round the fitted model is put in the object store once (`ray.put`)
and each actor predicts and scores its shards and returns its best k rows; the driver merges
the actors' shortlists as they arrive (`engine.shards.merge_shortlists`, independent of arrival
order), so the result equals the serial shard loop. Memory: the driver holds one shortlist per
actor; each actor holds n / workers rows of features.

An actor that dies (a killed worker, a lost node) is restarted by Ray, reloads its shards from
disk and the interrupted call is retried (`max_restarts`, `max_task_retries`), so the round
completes with the same result.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..engine.acquisition import Acquisition
from ..engine.shards import ShardedArray, Shortlist, merge_shortlists, shortlist_shard
from .grid import init_ray


class ShardHolder:
    """Keeps shards `shards` of the pool in `root` in memory and shortlists them on request."""

    def __init__(self, features: ShardedArray, shards: list[int]) -> None:
        self.features = features
        self.data = {i: features.shard(i) for i in shards}

    def pid(self) -> int:
        """This actor's process id (answered once its shards are loaded)."""
        return os.getpid()

    def shortlist(self, model: Any, available: dict[int, np.ndarray], acquisition: Acquisition, best: float, k: int,
                  rngs: dict[int, np.random.Generator]) -> Shortlist:  # fmt: skip
        """The best k available rows over this actor's shards (`available[i]`: shard i's mask)."""
        parts = [
            shortlist_shard(self.data[i], self.features.bounds(i).start, mask, model, acquisition, best, k, rngs[i])
            for i, mask in available.items()
        ]
        return merge_shortlists(parts, k)


class RayShards:
    """A `engine.shards.ShardExecutor` over Ray actors (one CPU each) holding the shards."""

    def __init__(self, features: ShardedArray, workers: int = 2, address: str | None = None, max_restarts: int = 3) -> None:
        import ray

        init_ray(address)
        holder = ray.remote(num_cpus=1, max_restarts=max_restarts, max_task_retries=max_restarts)(ShardHolder)
        groups = [g.tolist() for g in np.array_split(np.arange(features.n_shards), min(workers, features.n_shards))]
        self.groups = groups
        self.actors = [holder.remote(features, group) for group in groups]
        ray.get([actor.pid.remote() for actor in self.actors])  # shards loaded: fail here, not mid-round

    def shortlist(self, features: ShardedArray, model: Any, available: np.ndarray, acquisition: Acquisition,
                  best: float, k: int, rngs: list[np.random.Generator]) -> Shortlist:  # fmt: skip
        import ray

        model_ref = ray.put(model)  # broadcast once per round
        pending = []
        for actor, group in zip(self.actors, self.groups):
            masks = {i: available[features.bounds(i)] for i in group if available[features.bounds(i)].any()}
            if masks:
                pending.append(actor.shortlist.remote(model_ref, masks, acquisition, best, k, {i: rngs[i] for i in masks}))
        running: Shortlist = (np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            running = merge_shortlists([running, ray.get(done[0])], k)
        return running
