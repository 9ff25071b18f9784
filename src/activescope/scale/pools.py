"""The `shards` pool source: a sharded pool on disk (`activescope featurize` makes one), ranked
shard by shard in this process, or by Ray actors with `ray: true`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..engine.registry import register_source
from ..engine.shards import ShardedPool, open_sharded_pool


class ShardsOptions(BaseModel):
    """Options of the `shards` source."""

    model_config = ConfigDict(extra="forbid")
    path: Path = Field(description="folder of the sharded pool (holding manifest.json)")
    ray: bool = Field(False, description="predict and shortlist on Ray actors that keep the shards in memory")
    ray_address: str | None = Field(None, description="existing Ray cluster (default: a local Ray)")
    workers: int = Field(2, ge=1, description="Ray actors (each holds n / workers rows)")


@register_source("shards", ShardsOptions)
def shards_pool(path: Path, ray: bool = False, ray_address: str | None = None, workers: int = 2) -> ShardedPool:
    """The sharded pool at `path`; with `ray`, its selection runs on Ray actors."""
    pool = open_sharded_pool(Path(path))
    if ray or ray_address:
        from .actors import RayShards

        pool.X.executor = RayShards(pool.X, workers, ray_address)
    return pool
