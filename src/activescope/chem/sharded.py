"""Featurizing a SMILES file of millions of rows into a sharded pool (`engine.shards`).

The file (CSV with a header, one molecule per line, no line breaks inside fields) is cut into
shards of `shard_rows` lines by one streaming pass over its bytes (`plan.json`: the byte range
of every shard, the columns, the label columns). Each shard is then read, featurized and written
by a worker on its own (worker processes by default, Ray tasks with the Ray mapper); a killed run
re-run with the same arguments keeps its finished shards and computes only the others.

Fingerprint (`morgan`) and RDKit 2-D (`rdkit2d`) blocks are supported; 2-D descriptors are
standardised over the whole pool from the shards' sums, as `featurize` does in memory. Invalid
SMILES are skipped. Numeric columns other than the SMILES and id columns become labels.
"""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from ..engine.errors import DataError, SpecError
from ..engine.registry import format_validation_error
from ..engine.shards import Mapper, ShardData, ShardedPool, build_shards, write_shard
from .features import (
    RDKIT2D_DESCRIPTORS,
    FeatureConfig,
    MorganFeatures,
    Rdkit2dFeatures,
    as_config_dicts,
    morgan_counts,
    rdkit2d_descriptors,
)

PLAN = "plan.json"
BLOCK_BYTES = 1 << 26  # bytes read per step while planning (64 MiB)
_CONFIGS = TypeAdapter(list[FeatureConfig])


def plan_shards(path: Path, shard_rows: int, smiles_column: str, id_column: str | None) -> dict[str, Any]:
    """Byte offsets of every shard's first line (and the file end), the header's columns and the
    label columns (numeric in the first rows), from one pass over the file in 64 MiB blocks."""
    with open(path, "rb") as handle:
        header = handle.readline()
        columns = pd.read_csv(io.BytesIO(header)).columns.tolist()
        sample = pd.read_csv(path, nrows=1000)
        starts, position, line = [len(header)], len(header), 0
        while block := handle.read(BLOCK_BYTES):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + position + 1  # byte after each newline
            lines = line + np.arange(1, ends.size + 1)
            starts += ends[lines % shard_rows == 0].tolist()
            line += ends.size
            position += len(block)
    if position > starts[-1]:
        starts.append(position)
    missing = [c for c in (smiles_column, id_column) if c is not None and c not in columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} (columns: {', '.join(columns)})")
    labels = [c for c in columns if c not in (smiles_column, id_column) and pd.api.types.is_numeric_dtype(sample[c])]
    return {"file": str(Path(path).resolve()), "bytes": position, "shard_rows": shard_rows, "offsets": starts,
            "columns": columns, "labels": labels, "smiles_column": smiles_column, "id_column": id_column}  # fmt: skip


def _blocks(smiles: np.ndarray, configs: list[Any]) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, dict]:
    """Features of every molecule (float32, NaN allowed), the rows all blocks could handle, names,
    standardise flags and block bounds."""
    values, valid, names, flags, kinds, start = [], np.ones(len(smiles), bool), [], [], {}, 0
    for config in configs:
        if isinstance(config, MorganFeatures):
            block, ok = morgan_counts(smiles, config.radius, config.n_bits)
            block_names = [f"bit_{i}" for i in range(config.n_bits)]
        elif isinstance(config, Rdkit2dFeatures):
            block, ok = rdkit2d_descriptors(smiles)
            block_names = list(RDKIT2D_DESCRIPTORS)
        else:
            raise DataError(f"features: {config.kind!r} is not available for sharded pools (use morgan and/or rdkit2d)")
        kind = config.kind if config.kind not in kinds else f"{config.kind}_{len(kinds)}"
        kinds[kind] = (start, start + block.shape[1])
        values.append(block.astype(np.float32))
        valid &= ok
        names += [f"{kind}:{name}" for name in block_names]
        flags.append(np.full(block.shape[1], isinstance(config, Rdkit2dFeatures)))
        start += block.shape[1]
    return np.hstack(values), valid, names, np.concatenate(flags), kinds


def featurize_shard(root: Path, plan: dict[str, Any], features: list[dict[str, Any]], index: int) -> None:
    """Read shard `index`'s lines of the planned file, featurize them and write the shard."""
    start, stop = plan["offsets"][index], plan["offsets"][index + 1]
    with open(plan["file"], "rb") as handle:
        handle.seek(start)
        text = handle.read(stop - start)
    frame = pd.read_csv(io.BytesIO(text), header=None, names=plan["columns"], dtype={plan["smiles_column"]: str})
    first_row = index * plan["shard_rows"]
    ids = frame[plan["id_column"]].astype(str).to_numpy() if plan["id_column"] else np.arange(first_row, first_row + len(frame)).astype(str)
    smiles = frame[plan["smiles_column"]].fillna("").str.strip().to_numpy()
    X, valid, names, flags, kinds = _blocks(smiles, _CONFIGS.validate_python(features))
    labels = frame[plan["labels"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    write_shard(root, index, ShardData(ids[valid], X[valid], labels[valid], names, plan["labels"], flags, kinds))


def featurize_file(
    path: Path,
    out: Path,
    features: list[Any] | None = None,
    shard_rows: int = 100_000,
    smiles_column: str = "smiles",
    id_column: str | None = None,
    mapper: Mapper | None = None,
    progress: bool = True,
) -> ShardedPool:
    """Featurize the SMILES file at `path` into the sharded pool folder `out` (default features:
    Morgan counts, radius 2, 2048 bits) and open it. Re-running after a kill, with the same
    arguments, keeps the finished shards; other arguments than the plan's are refused."""
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise DataError(f"SMILES file not found: {path}")
    try:
        configs = [c.model_dump() for c in _CONFIGS.validate_python(as_config_dicts(features or ["morgan"]))]
    except ValidationError as err:
        raise SpecError(f"features.{format_validation_error(err)}") from None
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / PLAN
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        asked = {"file": str(path.resolve()), "bytes": path.stat().st_size, "shard_rows": shard_rows, "features": configs,
                 "smiles_column": smiles_column, "id_column": id_column}  # fmt: skip
        changed = [k for k, v in asked.items() if plan.get(k) != v]
        if changed:
            raise DataError(f"{out} holds shards made with other settings ({', '.join(changed)}); use another folder")
    else:
        plan = plan_shards(path, shard_rows, smiles_column, id_column) | {"features": configs}
        (out / f"{PLAN}.tmp").write_text(json.dumps(plan))
        (out / f"{PLAN}.tmp").replace(plan_path)
    make = partial(featurize_shard, out, plan, configs)
    return build_shards(out, len(plan["offsets"]) - 1, make, mapper, progress)
