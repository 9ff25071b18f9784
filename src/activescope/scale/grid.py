"""Ray tasks: benchmark grids (every (target, strategy, seed) campaign one task) and a mapper
for shard-parallel work such as featurization.

Each task runs (or resumes) its campaign in its own run directory, exactly as the serial runner
does, so results are the same for the same seeds and a re-run skips finished runs and resumes
unfinished ones. Pools are built once on the driver and put in the object store once (workers
read their features without copying). A worker that dies mid-run is retried by Ray
(`max_retries`); the retry resumes the run from its record, so nothing is lost or repeated. On
an existing cluster (`address`) the run directories must lie on a file system every node sees.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..bench import GridRun, Runner, RunResult, campaign_run
from ..engine.pool import Pool
from ..engine.shards import Mapper


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at `address` ("auto" for the local node's), or start a local
    one with `num_cpus` CPUs (default: all); does nothing when Ray is already initialised."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )


def ray_runner(address: str | None = None, num_cpus: int | None = None, max_retries: int = 3) -> Runner:
    """A `bench.Runner` that runs each grid run as a Ray task (1 CPU each) and yields runs as
    they finish; `max_retries` re-runs (resumes) a run whose worker died."""

    def run(runs: list[GridRun], pool_for: Callable[[dict[str, Any]], Pool]) -> Iterator[tuple[int, RunResult]]:
        import ray

        init_ray(address, num_cpus)
        task = ray.remote(num_cpus=1, max_retries=max_retries)(campaign_run)
        pools: dict[str, Any] = {}
        futures = {}
        for i, grid_run in enumerate(runs):
            key = json.dumps(grid_run.spec["data"], sort_keys=True)
            if key not in pools:
                pools[key] = ray.put(pool_for(grid_run.spec["data"]))
            futures[task.remote(pools[key], grid_run.spec, grid_run.run_dir)] = i
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield futures[done[0]], ray.get(done[0])

    return run


def _call(function: Callable[[int], Any], item: int) -> None:
    function(item)


def ray_mapper(address: str | None = None, num_cpus: int | None = None, max_retries: int = 3) -> Mapper:
    """An `engine.shards.Mapper` running each call as a Ray task (1 CPU; retried when its
    worker dies), e.g. one shard of a sharded featurization per task."""

    def run(function: Callable[[int], Any], items: list[int]) -> Iterator[int]:
        import ray

        init_ray(address, num_cpus)
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_call)
        function_ref = ray.put(function)
        futures = {task.remote(function_ref, item): item for item in items}
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done[0])
            yield futures[done[0]]

    return run
