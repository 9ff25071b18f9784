"""Results a lab sends back: reading a results CSV strictly and checking told values, so that a
bad file or call records nothing and names what is wrong."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError


def read_results_csv(path: Path) -> tuple[list[str], list[str]]:
    """The id and value columns of a results CSV, read strictly: a missing column, a row with
    the wrong number of fields or an unreadable file is a DataError naming the line."""
    if not path.is_file():
        raise DataError(f"results file not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read CSV: {err}") from None
    if not rows:
        raise DataError(f"{path}: the file is empty; expected a header with columns id, value")
    header = [name.strip() for name in rows[0]]
    missing = [c for c in ("id", "value") if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected columns id, value")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} field(s), the header has {len(header)}")
    if len(rows) == 1:
        raise DataError(f"{path}: no results (the file has a header but no rows)")
    id_at, value_at = header.index("id"), header.index("value")
    return [row[id_at] for row in rows[1:]], [row[value_at] for row in rows[1:]]


def check_told(ids: pd.Series, values: np.ndarray, pending: set[str], known: set[str]) -> None:
    """Raise DataError naming the offending ids of a set of results (nothing is recorded)."""

    def named(bad) -> str:
        bad = list(dict.fromkeys(bad))
        return ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")

    unknown = [k for k in ids if k not in known]
    if unknown:
        raise DataError(f"unknown id(s) {named(unknown)}")
    foreign = [k for k in ids if k not in pending]
    if foreign:
        raise DataError(f"id(s) {named(foreign)} are not awaiting results in this round")
    duplicated = ids[ids.duplicated()].tolist()
    if duplicated:
        raise DataError(f"duplicate id(s) {named(duplicated)}")
    bad_values = ids[~np.isfinite(values)].tolist()
    if bad_values:
        raise DataError(f"missing, NaN or infinite value(s) for id(s) {named(bad_values)}")
