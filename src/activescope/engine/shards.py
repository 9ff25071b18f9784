"""Pools larger than memory: features, ids and labels in on-disk shards, read a shard at a time.

A sharded pool is a folder. Each shard is a sub-folder `shard-00000/` of plain NumPy files:
`X.npy` (rows, d) float32 features as the featurizer made them; `ids.npy` (rows,) UTF-8 bytes;
`ids_sorted.npy` and `id_order.npy` (the ids sorted, and the rows in that order: id lookups are
binary searches on memory-mapped files); `labels.npy` (rows, L) float64 known values; and
`meta.json` (row count, names, per-column count / sum / sum of squares). A shard is written to a
temporary folder and renamed when complete, so a killed writer leaves only whole shards and a
re-run computes only the missing ones. `manifest.json`, written last, holds the row offsets of
the shards and the pool-wide standardisation (center, scale) of the columns the featurizer
flagged, from the shards' sums; rows are scaled as they are read (NaN reads as 0). All labels
are concatenated into one memory-mapped `labels.npy` so label columns stay pandas columns.

Why memory-mapped NumPy and not zarr or Parquet: rows are read by position (a batch, the
shortlist) and whole shards are read as one float32 block, which `.npy` does with no decoding
and no extra dependency; each shard is written by one worker (no concurrent writes to shared
chunks, which zarr would have to coordinate), and the format is readable by anything with NumPy.

During selection (`ShardedArray.shortlist`) each shard is predicted and scored on its own and
only its best k rows are kept (a streaming top-k merge), so memory holds one shard and the
shortlist, whatever the pool size. The executor doing this is serial here; `activescope.scale`
plugs in Ray actors that keep shards in memory.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .acquisition import Acquisition, top_k
from .errors import DataError
from .pool import Pool

MANIFEST = "manifest.json"
FORMAT = "activescope-shards"
Shortlist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(pool rows, shortlist scores, posterior means, variances) of a shortlist, best first."""


@dataclass
class ShardData:
    """One shard as a producer (featurizer, generator) makes it.

    ids: (rows,) unique string ids. X: (rows, d) float32 features (NaN allowed in standardised
    columns). labels: (rows, L) known values. standardise: (d,) bool, columns to scale to zero
    mean and unit variance over the whole pool. feature_kinds: block name -> [start, stop).
    """

    ids: np.ndarray
    X: np.ndarray
    labels: np.ndarray
    feature_names: list[str]
    label_names: list[str]
    standardise: np.ndarray
    feature_kinds: dict[str, tuple[int, int]]


def shard_dir(root: Path, index: int) -> Path:
    """Folder of shard `index`."""
    return Path(root) / f"shard-{index:05d}"


def write_shard(root: Path, index: int, data: ShardData) -> None:
    """Write one shard atomically (temporary folder, then rename); a shard already there is kept."""
    final = shard_dir(root, index)
    tmp = Path(root) / f".tmp-{index:05d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = np.char.encode(np.asarray(data.ids, dtype=str), "utf-8")
    order = np.argsort(ids, kind="stable")
    X = np.ascontiguousarray(data.X, dtype=np.float32)
    for name, array in (("X", X), ("ids", ids), ("ids_sorted", ids[order]), ("id_order", order),
                        ("labels", np.asarray(data.labels, dtype=np.float64).reshape(len(ids), -1))):  # fmt: skip
        np.save(tmp / f"{name}.npy", array)
    finite = np.isfinite(X)
    clean = np.where(finite, X, 0.0).astype(np.float64)
    meta = {
        "rows": len(ids), "feature_names": list(data.feature_names), "label_names": list(data.label_names),
        "standardise": np.asarray(data.standardise, bool).tolist(), "feature_kinds": data.feature_kinds,
        "count": finite.sum(axis=0).tolist(), "sum": clean.sum(axis=0).tolist(), "sumsq": (clean**2).sum(axis=0).tolist(),
    }  # fmt: skip
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(tmp, final)
    except OSError:  # another writer finished this shard first
        shutil.rmtree(tmp, ignore_errors=True)


def finished_shards(root: Path) -> set[int]:
    """Indices of the shards written completely under `root`."""
    return {int(p.name[6:]) for p in Path(root).glob("shard-*") if (p / "meta.json").is_file()}


Mapper = Callable[[Callable[[int], Any], list[int]], Iterator[int]]
"""mapper(function, items) calls function(item) for every item (anywhere) and yields each item
as its call finishes."""


def process_mapper(workers: int | None = None) -> Mapper:
    """A `Mapper` over `workers` forked processes (default: all cores; in-process for one)."""

    def run(function: Callable[[int], Any], items: list[int]) -> Iterator[int]:
        n = min(len(items), workers or os.cpu_count() or 1)
        if n <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            for item in items:
                function(item)
                yield item
            return
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {pool.submit(function, item): item for item in items}
            for future in as_completed(futures):
                future.result()
                yield futures[future]

    return run


def build_shards(
    root: Path, n_shards: int, make_shard: Callable[[int], Any], mapper: Mapper | None = None, progress: bool = True
) -> "ShardedPool":
    """Run `make_shard(i)` (which calls `write_shard(root, i, ...)`) for every shard not yet
    finished, write the manifest and open the pool. Re-running after a kill keeps finished shards."""
    from .progress import progress_bar

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    todo = sorted(set(range(n_shards)) - finished_shards(root))
    with progress_bar(progress) as bar:
        task = bar.add_task("shards", total=n_shards, completed=n_shards - len(todo))
        for _ in (mapper or process_mapper())(make_shard, todo):
            bar.advance(task)
    write_manifest(root, n_shards)
    return open_sharded_pool(root)


def write_manifest(root: Path, n_shards: int) -> None:
    """Offsets, names and the pool-wide standardisation of the finished shards; all labels in
    one `labels.npy`. Raises DataError when a shard is missing."""
    missing = sorted(set(range(n_shards)) - finished_shards(root))
    if missing:
        raise DataError(f"{root}: shard(s) {missing[:5]} are not finished")
    metas = [json.loads((shard_dir(root, i) / "meta.json").read_text()) for i in range(n_shards)]
    offsets = np.concatenate([[0], np.cumsum([m["rows"] for m in metas])]).astype(np.int64)
    count, total, squares = (np.sum([m[key] for m in metas], axis=0) for key in ("count", "sum", "sumsq"))
    mean = total / np.maximum(count, 1)
    std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))
    flagged = np.asarray(metas[0]["standardise"], bool)
    center = np.where(flagged, mean, 0.0)
    scale = np.where(flagged & (std > 1e-12), std, 1.0)
    label_names = metas[0]["label_names"]
    if label_names:
        labels = np.lib.format.open_memmap(root / "labels.npy.tmp", mode="w+", dtype=np.float64,
                                           shape=(int(offsets[-1]), len(label_names)))  # fmt: skip
        for i in range(n_shards):
            labels[offsets[i] : offsets[i + 1]] = np.load(shard_dir(root, i) / "labels.npy")
        labels.flush()
        del labels
        os.replace(root / "labels.npy.tmp", root / "labels.npy")
    manifest = {
        "format": FORMAT, "version": 1, "offsets": offsets.tolist(), "feature_names": metas[0]["feature_names"],
        "feature_kinds": metas[0]["feature_kinds"], "label_names": label_names,
        "center": center.tolist(), "scale": scale.tolist(),
    }  # fmt: skip
    (root / f"{MANIFEST}.tmp").write_text(json.dumps(manifest))
    os.replace(root / f"{MANIFEST}.tmp", root / MANIFEST)


class _Sharded:
    """Rows spread over shard files: positions -> (shard, local row) and gathering."""

    def __init__(self, root: Path, offsets: np.ndarray) -> None:
        self.root = Path(root)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return len(self.offsets) - 1

    def bounds(self, shard: int) -> slice:
        """Pool rows of `shard`."""
        return slice(int(self.offsets[shard]), int(self.offsets[shard + 1]))

    def _positions(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            raise TypeError("sharded data are indexed by rows only (e.g. X[rows])")
        if isinstance(key, slice):
            return np.arange(*key.indices(len(self)))
        rows = np.asarray(key)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return np.where(rows < 0, rows + len(self), rows)

    def _gather(self, rows: np.ndarray, read: Callable[[int, np.ndarray], np.ndarray], out: np.ndarray) -> np.ndarray:
        """Fill `out` with read(shard, local rows) for the shards the rows fall in."""
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for shard in np.unique(shard_of):
            take = shard_of == shard
            out[take] = read(int(shard), rows[take] - self.offsets[shard])
        return out


class ShardedText(_Sharded):
    """(n,) strings (ids) stored as UTF-8 bytes per shard; `column[rows]` decodes those rows."""

    shape: tuple[int]

    def __init__(self, root: Path, offsets: np.ndarray, name: str = "ids") -> None:
        super().__init__(root, offsets)
        self.name = name
        self.shape = (len(self),)

    def _file(self, shard: int) -> np.ndarray:
        return np.load(shard_dir(self.root, shard) / f"{self.name}.npy", mmap_mode="r")

    def __getitem__(self, key: Any) -> np.ndarray | str:
        if isinstance(key, (int, np.integer)):
            return str(self[np.array([key])][0])
        rows = self._positions(key)
        raw = self._gather(rows, lambda s, local: self._file(s)[local], np.empty(rows.size, dtype=object))
        return np.char.decode(raw.astype(bytes), "utf-8") if rows.size else np.empty(0, dtype=str)

    def tolist(self) -> list[str]:
        """Every string (materialises the whole column; avoid on large pools)."""
        return self[:].tolist()


class ShardExecutor(Protocol):
    """Runs `shortlist_shard` over every shard of `features` and merges the results."""

    def shortlist(self, features: "ShardedArray", model: Any, available: np.ndarray, acquisition: Acquisition,
                  best: float, k: int, rngs: list[np.random.Generator]) -> Shortlist:  # fmt: skip
        """The best k available rows of the pool (shard i scored with rngs[i])."""


class ShardedArray(_Sharded):
    """(n, d) float32 features in shards: `X[rows]` reads rows, `shard(i)` a whole shard (flagged
    columns standardised, NaN as 0), `shortlist(...)` ranks the pool shard by shard."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, root: Path, offsets: np.ndarray, center: Sequence[float], scale: Sequence[float]) -> None:
        super().__init__(root, offsets)
        self.center = np.asarray(center, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)
        self.shape = (len(self), len(self.center))
        self.executor: ShardExecutor = SerialShards()

    def _scaled(self, raw: np.ndarray) -> np.ndarray:
        out = np.subtract(raw, self.center, dtype=np.float32)
        out /= self.scale
        return np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def _file(self, shard: int, mmap: bool = True) -> np.ndarray:
        return np.load(shard_dir(self.root, shard) / "X.npy", mmap_mode="r" if mmap else None)

    def shard(self, index: int) -> np.ndarray:
        """Shard `index`'s rows, read into memory."""
        return self._scaled(self._file(index, mmap=False))

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        rows = self._positions(key)
        out = np.empty((rows.size, self.shape[1]), dtype=np.float32)
        return self._gather(rows, lambda s, local: self._scaled(self._file(s)[local]), out)

    def shortlist(self, model: Any, available: np.ndarray, acquisition: Acquisition, best: float, k: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """The k available rows with the best shortlist scores, best first (equal scores in row
        order, as `top_k` orders them in memory): (rows, mean, variance). Shard i scores with
        its own generator, spawned from `rng` without drawing from it."""
        rows, _, mean, variance = self.executor.shortlist(self, model, available, acquisition, best, k, rng.spawn(self.n_shards))
        return rows, mean, variance


def shortlist_shard(X: np.ndarray, offset: int, available: np.ndarray, model: Any, acquisition: Acquisition,
                    best: float, k: int, rng: np.random.Generator) -> Shortlist:  # fmt: skip
    """One shard's best k available rows (pool positions = offset + local row)."""
    local = np.flatnonzero(available)
    if not local.size:
        return np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0)
    mean, variance = model.predict(X if local.size == len(X) else X[local])
    mean, variance = np.asarray(mean), np.asarray(variance)
    scores = np.asarray(acquisition.shortlist_score(mean, variance, best, rng), dtype=np.float64)
    top = top_k(scores, k)
    return local[top] + offset, scores[top], mean[top], variance[top]


def merge_shortlists(parts: Iterable[Shortlist], k: int) -> Shortlist:
    """The best k of several shortlists (higher score first, then lower row): the result does not
    depend on the order the parts arrive in."""
    rows, scores, mean, variance = (np.concatenate(column) for column in zip(*parts))
    order = np.lexsort((rows, -np.where(np.isnan(scores), -np.inf, scores)))[:k]
    return rows[order], scores[order], mean[order], variance[order]


class SerialShards:
    """Shards one after the other in this process, one shard in memory at a time."""

    def shortlist(self, features: ShardedArray, model: Any, available: np.ndarray, acquisition: Acquisition,
                  best: float, k: int, rngs: list[np.random.Generator]) -> Shortlist:  # fmt: skip
        """The best k available rows, reading and predicting one shard at a time."""
        running: Shortlist = (np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0))
        for i in range(features.n_shards):
            window = features.bounds(i)
            if available[window].any():
                part = shortlist_shard(features.shard(i), window.start, available[window], model, acquisition, best, k, rngs[i])
                running = merge_shortlists([running, part], k)
        return running


@dataclass
class ShardedPool(Pool):
    """A `Pool` whose features (`ShardedArray`), ids (`ShardedText`) and labels (memory-mapped)
    stay on disk; open one with `open_sharded_pool`. It has no info columns."""

    def __post_init__(self) -> None:
        if self.X.shape[0] != len(self.ids):
            raise ValueError(f"X has {self.X.shape[0]} rows but there are {len(self.ids)} ids")

    def _lookup(self, ids: Sequence[Any]) -> np.ndarray:
        """Row of each id, -1 where the pool has none (binary search in every shard's sorted ids)."""
        keys = np.char.encode(np.asarray([str(k) for k in ids], dtype=str), "utf-8") if len(ids) else np.empty(0, "S1")
        out = np.full(len(keys), -1, dtype=np.int64)
        for shard in range(self.X.n_shards):
            folder = shard_dir(self.X.root, shard)
            ordered = np.load(folder / "ids_sorted.npy", mmap_mode="r")
            if not len(ordered):
                continue
            at = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
            hit = ordered[at] == keys
            out[hit] = np.load(folder / "id_order.npy", mmap_mode="r")[at[hit]] + self.X.offsets[shard]
        return out

    def index_of(self, ids: Sequence[Any]) -> np.ndarray:
        """Row positions of the given ids; raises KeyError naming the first unknown id."""
        rows = self._lookup(ids)
        if (rows < 0).any():
            raise KeyError(str(list(ids)[int(np.argmax(rows < 0))]))
        return rows

    def known(self, ids: Sequence[Any]) -> set[str]:
        """Those of `ids` that are candidates of this pool."""
        return {str(k) for k, row in zip(ids, self._lookup(ids)) if row >= 0}


def open_sharded_pool(root: Path) -> ShardedPool:
    """The sharded pool in folder `root` (DataError when it has no finished manifest)."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        raise DataError(f"{root}: not a finished sharded pool (no readable {MANIFEST}); run `activescope featurize`") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{root}/{MANIFEST}: not an activescope sharded pool")
    offsets = np.asarray(manifest["offsets"], dtype=np.int64)
    labels = pd.DataFrame()
    if manifest["label_names"]:
        labels = pd.DataFrame(np.load(root / "labels.npy", mmap_mode="r"), columns=manifest["label_names"], copy=False)
    return ShardedPool(
        ids=ShardedText(root, offsets),
        X=ShardedArray(root, offsets, manifest["center"], manifest["scale"]),
        labels=labels,
        feature_names=manifest["feature_names"],
        feature_kinds={name: slice(*bounds) for name, bounds in manifest["feature_kinds"].items()},
    )
