"""Scale-out on Ray: benchmark grids as Ray tasks (`grid`), and shard-by-shard prediction of
on-disk pools by Ray actors that keep their shard in memory (`actors`).

Ray is optional: nothing here is imported unless `--ray` (or `ray=True`) asks for it, and every
module imports `ray` inside its functions only.
"""
