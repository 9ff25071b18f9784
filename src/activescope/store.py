"""The run record: a run directory holding `run.sqlite`, `spec.yaml` and `artifacts/`.

Every change is one SQLite transaction (WAL journal, synchronous=FULL), so a run killed at any
instant leaves a consistent record: a round is either absent, open with its batch `pending`, or
finished with every selection `measured` or `failed`. The campaign resumes from that state.
"""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from . import __version__
from .errors import RunStateError
from .oracle import Measurement
from .spec import CampaignSpec, parse_spec

DB_NAME = "run.sqlite"
SPEC_NAME = "spec.yaml"
ARTIFACTS = "artifacts"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    n_selected INTEGER NOT NULL,
    best REAL,
    fit_s REAL, predict_s REAL, select_s REAL, measure_s REAL, total_s REAL,
    hyperparameters TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS selections (
    round INTEGER NOT NULL REFERENCES rounds(round),
    id TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL,
    mean REAL, variance REAL, acquisition REAL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'measured', 'failed')),
    PRIMARY KEY (round, position)
);
CREATE TABLE IF NOT EXISTS measurements (
    id TEXT PRIMARY KEY REFERENCES selections(id),
    round INTEGER NOT NULL REFERENCES rounds(round),
    value REAL, raw BLOB, error TEXT,
    attempts INTEGER NOT NULL,
    measured_at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _pack(raw: np.ndarray | None) -> bytes | None:
    """Raw signals are stored as .npy bytes (float64, shape kept)."""
    if raw is None:
        return None
    buf = io.BytesIO()
    np.save(buf, np.asarray(raw, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def _finite_or_none(x: float | None) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


class Store:
    """A campaign's run directory and its SQLite record (create with `create`, reopen with `open`)."""

    def __init__(self, run_dir: Path, conn: sqlite3.Connection) -> None:
        self.run_dir = run_dir
        self._conn = conn
        self.goal = self.meta()["goal"]

    # -- opening ---------------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @classmethod
    def exists(cls, run_dir: str | Path) -> bool:
        return (Path(run_dir) / DB_NAME).is_file()

    @classmethod
    def create(cls, run_dir: str | Path, spec: CampaignSpec) -> "Store":
        """Make a new run directory for `spec`; refuses a directory that already holds a run."""
        run_dir = Path(run_dir)
        if cls.exists(run_dir):
            raise RunStateError(f"{run_dir} already holds a run; use `activescope resume {run_dir}`")
        (run_dir / ARTIFACTS).mkdir(parents=True, exist_ok=True)
        spec_yaml = spec.to_yaml()
        (run_dir / SPEC_NAME).write_text(spec_yaml)
        conn = cls._connect(run_dir / DB_NAME)
        meta = {
            "spec": spec_yaml,
            "spec_digest": spec.digest(),
            "goal": spec.target.goal,
            "created": _now(),
            "activescope_version": __version__,
        }
        conn.execute("BEGIN IMMEDIATE")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
        return cls(run_dir, conn)

    @classmethod
    def open(cls, run_dir: str | Path) -> "Store":
        """Reopen an existing run directory."""
        run_dir = Path(run_dir)
        if not cls.exists(run_dir):
            raise RunStateError(f"no run record ({DB_NAME}) in {run_dir}")
        try:
            conn = cls._connect(run_dir / DB_NAME)
            return cls(run_dir, conn)
        except (sqlite3.DatabaseError, KeyError) as err:
            raise RunStateError(f"{run_dir / DB_NAME} is not a valid run record: {err}") from None

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- metadata --------------------------------------------------------------------------------

    @property
    def artifacts(self) -> Path:
        return self.run_dir / ARTIFACTS

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    @property
    def spec_digest(self) -> str:
        return self.meta()["spec_digest"]

    def spec(self) -> CampaignSpec:
        """The campaign spec this run was created with (validated again)."""
        import yaml

        return parse_spec(yaml.safe_load(self.meta()["spec"]), origin=str(self.run_dir / SPEC_NAME))

    # -- writing ---------------------------------------------------------------------------------

    def start_round(
        self,
        round_: int,
        ids: Sequence[str],
        mean: np.ndarray | None = None,
        variance: np.ndarray | None = None,
        acquisition: np.ndarray | None = None,
        timings: dict[str, float] | None = None,
        hyperparameters: dict[str, float] | None = None,
    ) -> None:
        """Record a selected batch as `pending` (one transaction), before anything is measured.

        mean/variance are the surrogate's posterior in target units; acquisition is the score.
        timings may hold fit_s, predict_s and select_s (seconds).
        """
        n = len(ids)
        columns = [
            np.full(n, np.nan) if a is None else np.asarray(a, dtype=float) for a in (mean, variance, acquisition)
        ]
        timings = timings or {}
        rows = [
            (round_, str(k), pos, *(_finite_or_none(c[pos]) for c in columns)) for pos, k in enumerate(ids)
        ]
        with self._transaction() as db:
            db.execute(
                "INSERT INTO rounds (round, started, n_selected, fit_s, predict_s, select_s, hyperparameters)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    round_,
                    _now(),
                    n,
                    timings.get("fit_s"),
                    timings.get("predict_s"),
                    timings.get("select_s"),
                    json.dumps(hyperparameters or {}),
                ),
            )
            db.executemany(
                "INSERT INTO selections (round, id, position, mean, variance, acquisition) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def record(
        self,
        round_: int,
        measurements: Sequence[Measurement],
        attempts: Sequence[int],
        measure_s: float | None = None,
    ) -> bool:
        """Record measurements of pending ids of `round_` and, once none is left pending, finish
        the round (one transaction). Returns whether the round is finished."""
        now = _now()
        rows = [
            (m.id, round_, m.value if m.ok else None, _pack(m.raw), None if m.ok else (m.error or "no value"), a, now)
            for m, a in zip(measurements, attempts, strict=True)
        ]
        with self._transaction() as db:
            db.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany(
                "UPDATE selections SET status = ? WHERE id = ? AND round = ? AND status = 'pending'",
                [("measured" if m.ok else "failed", m.id, round_) for m in measurements],
            )
            left = db.execute(
                "SELECT COUNT(*) FROM selections WHERE round = ? AND status = 'pending'", (round_,)
            ).fetchone()[0]
            if left == 0:
                self._finish(db, round_, now, measure_s)
        return left == 0

    def _finish(self, db: sqlite3.Connection, round_: int, now: str, measure_s: float | None) -> None:
        """Close a round: best value so far, and total_s = model time (fit, predict, select) plus
        the wall time from recording the batch to its last result."""
        best_of = "MAX" if self.goal == "maximize" else "MIN"
        best = db.execute(f"SELECT {best_of}(value) FROM measurements").fetchone()[0]
        started, model_s = db.execute(
            "SELECT started, COALESCE(fit_s, 0) + COALESCE(predict_s, 0) + COALESCE(select_s, 0)"
            " FROM rounds WHERE round = ?",
            (round_,),
        ).fetchone()
        db.execute(
            "UPDATE rounds SET finished = ?, best = ?, measure_s = COALESCE(?, measure_s), total_s = ? WHERE round = ?",
            (now, best, measure_s, model_s + _seconds_between(started, now), round_),
        )

    # -- reading ---------------------------------------------------------------------------------

    def open_round(self) -> tuple[int, list[str]] | None:
        """The unfinished round and its still-pending ids (in selection order), if any."""
        row = self._conn.execute("SELECT round FROM rounds WHERE finished IS NULL ORDER BY round LIMIT 1").fetchone()
        if row is None:
            return None
        ids = self._conn.execute(
            "SELECT id FROM selections WHERE round = ? AND status = 'pending' ORDER BY position", (row[0],)
        ).fetchall()
        return row[0], [r[0] for r in ids]

    def n_rounds(self) -> int:
        """Rounds started so far (round numbers are 0, 1, ...; round 0 is the initial design)."""
        return self._conn.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]

    def selected_ids(self) -> list[str]:
        """Every id ever selected (pending, measured or failed): never selected again."""
        return [r[0] for r in self._conn.execute("SELECT id FROM selections ORDER BY round, position")]

    def training_data(self) -> tuple[list[str], np.ndarray]:
        """Ids and values of the successful measurements, in the order they were selected."""
        rows = self._conn.execute(
            "SELECT m.id, m.value FROM measurements m JOIN selections s USING (id)"
            " WHERE m.value IS NOT NULL ORDER BY s.round, s.position"
        ).fetchall()
        return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=float)

    def raw(self, id_: str) -> np.ndarray | None:
        """The raw signal recorded for a measurement, if the oracle returned one."""
        row = self._conn.execute("SELECT raw FROM measurements WHERE id = ?", (id_,)).fetchone()
        if row is None or row[0] is None:
            return None
        return np.load(io.BytesIO(row[0]), allow_pickle=False)

    def measurements(self) -> pd.DataFrame:
        """One row per measured or failed candidate, in selection order: round, position, id,
        value (NaN if failed), mean, variance, acquisition, status, error, attempts, measured_at."""
        return pd.read_sql_query(
            "SELECT s.round, s.position, s.id, m.value, s.mean, s.variance, s.acquisition, s.status,"
            " m.error, m.attempts, m.measured_at"
            " FROM selections s JOIN measurements m USING (id) ORDER BY s.round, s.position",
            self._conn,
        ).astype({"value": float, "mean": float, "variance": float, "acquisition": float})

    def selections(self) -> pd.DataFrame:
        """Every selection, pending ones included."""
        return pd.read_sql_query("SELECT * FROM selections ORDER BY round, position", self._conn)

    def rounds(self) -> pd.DataFrame:
        """One row per round: started (when its batch was recorded) and finished (ISO UTC), timings
        in seconds (fit_s, predict_s, select_s, measure_s, total_s), best value so far and
        hyperparameters (dict)."""
        df = pd.read_sql_query("SELECT * FROM rounds ORDER BY round", self._conn)
        df["hyperparameters"] = df["hyperparameters"].map(json.loads)
        return df
