"""Chemistry pool sources: QM9 and a user CSV of SMILES, registered for the spec's data section."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from rdkit import Chem

from ..engine.errors import DataError
from ..engine.pool import Pool
from ..engine.registry import register_source
from .features import FeatureConfig, Molecules, PhysicsFeatures, Rdkit2dFeatures, as_config_dicts, featurize
from .qm9 import data_version, load_qm9

log = logging.getLogger("activescope.chem")
_CONFIGS = TypeAdapter(list[FeatureConfig])


class _FeatureOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[FeatureConfig] = Field(
        default_factory=lambda: [PhysicsFeatures(), Rdkit2dFeatures()],
        min_length=1,
        description="featurizers, e.g. [physics, rdkit2d, {kind: morgan, radius: 2, n_bits: 2048}]",
    )

    _shorthand = field_validator("features", mode="before")(as_config_dicts)


class QM9Options(_FeatureOptions):
    """Options of the `qm9` source."""

    subset: int | None = Field(None, ge=1, description="use a random subset of this many molecules")
    subset_seed: int = Field(0, description="seed of the subset draw")


class CsvOptions(_FeatureOptions):
    """Options of the `csv` source: a user's pool of SMILES with optional label columns."""

    path: Path = Field(description="CSV file of candidates (relative paths are resolved from the working directory)")
    smiles_column: str = Field("smiles", description="column holding the SMILES strings")
    id_column: str | None = Field(None, description="column of unique ids (default: row numbers)")
    strict: bool = Field(False, description="fail on any invalid SMILES instead of skipping it")


@register_source("qm9", QM9Options)
def qm9_pool(features: list[dict[str, Any]], subset: int | None = None, subset_seed: int = 0) -> Pool:
    """QM9 molecules with every numeric property (and alias) as labels and SMILES as info."""
    table = load_qm9(subset, subset_seed)
    molecules = Molecules(
        ids=table.ids,
        smiles=table.smiles,
        data_key={"data": data_version(), "rows": _digest(table.ids)},
        atomic_numbers=table.atomic_numbers,
        positions=table.positions,
    )
    matrix = featurize(molecules, _CONFIGS.validate_python(features))
    return Pool(
        ids=table.ids[matrix.rows],
        X=matrix.X,
        labels=table.labels.iloc[matrix.rows].reset_index(drop=True),
        info=pd.DataFrame({"smiles": table.smiles[matrix.rows]}),
        feature_names=matrix.names,
        feature_kinds=matrix.kinds,
    )


@register_source("csv", CsvOptions)
def csv_pool(
    path: Path,
    features: list[dict[str, Any]],
    smiles_column: str = "smiles",
    id_column: str | None = None,
    strict: bool = False,
) -> Pool:
    """A pool from a CSV of SMILES; the other numeric columns become labels.

    Invalid SMILES are skipped and reported (DataError with strict=True or if none is valid).
    """
    frame = _read_csv(Path(path))
    for column in (smiles_column, id_column):
        if column is not None and column not in frame.columns:
            raise DataError(f"{path}: no column {column!r} (columns: {', '.join(map(str, frame.columns))})")
    ids = frame[id_column].astype(str).to_numpy() if id_column else np.arange(len(frame)).astype(str)
    if len(set(ids.tolist())) != len(ids):
        raise DataError(f"{path}: column {id_column!r} has duplicate ids")
    smiles = frame[smiles_column].fillna("").astype(str).str.strip().to_numpy()
    parsed = np.array([bool(s) and Chem.MolFromSmiles(s) is not None for s in smiles], dtype=bool)
    if not parsed.any():
        raise DataError(f"{path}: no valid SMILES in column {smiles_column!r}")
    if not parsed.all():
        bad = ", ".join(ids[~parsed][:5])
        if strict:
            raise DataError(f"{path}: {(~parsed).sum()} invalid SMILES (first ids: {bad})")
        log.warning("%s: skipped %d invalid SMILES (first ids: %s)", path, (~parsed).sum(), bad)
    keep = np.flatnonzero(parsed)
    molecules = Molecules(ids=ids[keep], smiles=smiles[keep], data_key={"data": "smiles", "rows": _digest(smiles[keep])})
    matrix = featurize(molecules, _CONFIGS.validate_python(features))
    rows = keep[matrix.rows]
    label_columns = [
        c for c in frame.columns if c not in (smiles_column, id_column) and pd.api.types.is_numeric_dtype(frame[c])
    ]
    return Pool(
        ids=ids[rows],
        X=matrix.X,
        labels=frame[label_columns].iloc[rows].reset_index(drop=True).astype(np.float64),
        info=pd.DataFrame({"smiles": smiles[rows]}),
        feature_names=matrix.names,
        feature_kinds=matrix.kinds,
    )


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"pool file not found: {path}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None


def _digest(strings: np.ndarray) -> str:
    """Content hash of a string array (which molecules, in which order) for cache keys."""
    return hashlib.sha256("\n".join(strings.tolist()).encode()).hexdigest()[:16]
