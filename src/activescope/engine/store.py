"""The run record: a run directory holding `run.sqlite`, `spec.yaml` and `artifacts/`.

Every change is one SQLite transaction (WAL journal, synchronous=FULL), so a run killed at any
instant leaves a consistent record: a round is either absent, open with its batch `pending`, or
finished with every selection `measured` or `failed`. The campaign resumes from that state.

A run directory is built under a temporary name and renamed into place, so a kill during
creation leaves either no run or a whole one. A process that changes a run holds an exclusive
lock (`run.lock`, an advisory `flock` released by the kernel when the process dies), so two
processes never measure the same batch. A store without a directory (`Store.memory`) keeps the
same record in memory, for notebooks.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import shutil
import sqlite3
import tempfile
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from .errors import RunStateError
from .oracle import Measurement
from .spec import CampaignSpec, parse_spec

DB_NAME = "run.sqlite"
LOCK_NAME = "run.lock"
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
    hyperparameters TEXT NOT NULL DEFAULT '{}',
    model_state BLOB,
    record TEXT
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
CREATE TABLE IF NOT EXISTS steering (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('next', 'acquisition')),
    payload TEXT NOT NULL,
    applied_round INTEGER
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
    """A campaign's run directory and its SQLite record (create with `create`, reopen with `open`,
    or keep in memory with `memory`)."""

    def __init__(self, run_dir: Path | None, conn: sqlite3.Connection, lock: Path | None = None) -> None:
        self.run_dir = run_dir
        self._conn = conn
        self._lock = lock
        self.goal = self.meta()["goal"]

    # -- opening ---------------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path | str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @staticmethod
    def _initialise(conn: sqlite3.Connection, spec: CampaignSpec) -> None:
        spec_yaml = spec.to_yaml()
        meta = {
            "run_id": uuid.uuid4().hex,
            "spec": spec_yaml,
            "spec_digest": spec.digest(),
            "goal": spec.target.goal,
            "created": _now(),
            "activescope_version": version("activescope"),
        }
        conn.execute("BEGIN IMMEDIATE")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")

    @classmethod
    def exists(cls, run_dir: str | Path) -> bool:
        """Whether `run_dir` holds a run record file (it may still be damaged: `open` checks)."""
        return (Path(run_dir) / DB_NAME).is_file()

    @classmethod
    def memory(cls, spec: CampaignSpec) -> "Store":
        """A run record kept in memory (no directory, no artifacts): for notebooks and tests."""
        conn = cls._connect(":memory:")
        cls._initialise(conn, spec)
        return cls(None, conn)

    @classmethod
    def create(cls, run_dir: str | Path, spec: CampaignSpec) -> "Store":
        """Make a new run directory for `spec`, atomically, and hold its lock.

        Refuses a path that already holds a run, a file, or a non-empty directory, and a parent
        that cannot be written, each with a one-line RunStateError.
        """
        run_dir = Path(run_dir)
        if cls.exists(run_dir):
            raise RunStateError(f"{run_dir} already holds a run; use `activescope resume {run_dir}`")
        if run_dir.exists() and not run_dir.is_dir():
            raise RunStateError(f"{run_dir} is a file, not a run directory")
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise RunStateError(f"{run_dir} is a non-empty directory without a run record; choose another run directory")
        parent = run_dir.absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.creating-", dir=parent))
            umask = os.umask(0)
            os.umask(umask)
            staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a run directory is not
        except OSError as err:
            raise RunStateError(f"cannot create run directory {run_dir}: {err.strerror or err}") from None
        try:
            (staging / ARTIFACTS).mkdir()
            (staging / SPEC_NAME).write_text(spec.to_yaml())
            conn = cls._connect(staging / DB_NAME)
            cls._initialise(conn, spec)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            if run_dir.is_dir():
                run_dir.rmdir()  # an empty directory the user made; rename needs the name free
            os.rename(staging, run_dir)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise RunStateError(f"cannot create run directory {run_dir}: {err.strerror or err}") from None
        return cls.open(run_dir, lock=True)

    @classmethod
    def open(cls, run_dir: str | Path, lock: bool = False) -> "Store":
        """Reopen an existing run directory. With `lock`, hold its exclusive lock (every process
        that records measurements does); a run locked by another process is refused with a
        RunStateError naming that process. The record is checked first, read-only, so a
        damaged file is reported and never written to."""
        run_dir = Path(run_dir)
        path = run_dir / DB_NAME
        if not cls.exists(run_dir):
            raise RunStateError(f"no run record ({DB_NAME}) in {run_dir}")
        _check_record(path)
        held = _acquire_lock(run_dir) if lock else None
        try:
            conn = cls._connect(path)
            if lock:
                _upgrade_schema(conn)
            return cls(run_dir, conn, held)
        except (sqlite3.DatabaseError, KeyError) as err:
            if held is not None:
                _release_lock(held)
            raise RunStateError(f"{path} is not a valid run record: {err}") from None

    def close(self) -> None:
        """Close the record and release the run's lock."""
        self._conn.close()
        if self._lock is not None:
            _release_lock(self._lock)
            self._lock = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        """Directory for files a run writes (suggestions, reports); in-memory stores have none."""
        if self.run_dir is None:
            raise RunStateError("an in-memory run has no artifacts directory; create the campaign with a run directory")
        return self.run_dir / ARTIFACTS

    def meta(self) -> dict[str, str]:
        """The run's metadata: spec (YAML), spec_digest, goal, created (ISO UTC), activescope_version."""
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    @property
    def run_id(self) -> str:
        """A random id given to the run when it was created (for records made before run ids
        existed: one derived from the creation time and the spec digest)."""
        meta = self.meta()
        return meta.get("run_id") or f"{meta['spec_digest']}-{meta['created']}".replace("+", "_").replace(":", "-")

    @property
    def spec_digest(self) -> str:
        """Hash of the spec the run was created with (see `CampaignSpec.digest`)."""
        return self.meta()["spec_digest"]

    def spec(self) -> CampaignSpec:
        """The campaign spec this run was created with (validated again)."""
        import yaml

        origin = str(self.run_dir / SPEC_NAME) if self.run_dir is not None else "spec"
        return parse_spec(yaml.safe_load(self.meta()["spec"]), origin=origin)

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
        model_state: bytes | None = None,
        steering: Sequence[int] = (),
        record: dict | None = None,
    ) -> None:
        """Record a selected batch as `pending` (one transaction), before anything is measured.

        mean/variance are the surrogate's posterior in target units; acquisition is the score.
        timings may hold fit_s, predict_s and select_s (seconds). model_state is what a
        warm-starting surrogate needs to fit the next round exactly as it would have in-process.
        steering: ids of the operator's instructions this round applied (marked in the same
        transaction, so a resumed run replays them exactly). record: the surrogate's own JSON
        record of the round (`round_record()`, e.g. a selecting surrogate's choice and rewards).
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
                "INSERT INTO rounds (round, started, n_selected, fit_s, predict_s, select_s, hyperparameters,"
                " model_state, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    round_,
                    _now(),
                    n,
                    timings.get("fit_s"),
                    timings.get("predict_s"),
                    timings.get("select_s"),
                    json.dumps(hyperparameters or {}),
                    model_state,
                    None if record is None else json.dumps(record),
                ),
            )
            db.executemany(
                "INSERT INTO selections (round, id, position, mean, variance, acquisition) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany("UPDATE steering SET applied_round = ? WHERE id = ?", [(round_, k) for k in steering])

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

    def steer(self, kind: str, payload: object) -> int:
        """Record an operator's instruction for the coming rounds (one transaction; needs no
        lock, so it can be given while a campaign runs): kind "next" (payload: ids to measure
        next) or "acquisition" (payload: acquisition options to use from the next round on).
        Returns the instruction's id."""
        _upgrade_schema(self._conn)
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO steering (created, kind, payload) VALUES (?, ?, ?)", (_now(), kind, json.dumps(payload))
            )
        return int(cursor.lastrowid)

    def steering(self) -> pd.DataFrame:
        """Every instruction: id, created, kind, payload (decoded), applied_round (None while
        waiting for the next round)."""
        df = pd.read_sql_query("SELECT * FROM steering ORDER BY id", self._conn)
        df["payload"] = df["payload"].map(json.loads)
        return df

    def set_paused(self, paused: bool) -> None:
        """Ask a running campaign to stop after the round it is in (or clear that request)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('paused', ?)", ("1" if paused else "0",))

    def paused(self) -> bool:
        """Whether an operator has paused the run."""
        return self.meta().get("paused") == "1"

    def last_model_state(self) -> bytes | None:
        """The surrogate state stored with the latest round that has one (None if none has)."""
        row = self._conn.execute(
            "SELECT model_state FROM rounds WHERE model_state IS NOT NULL ORDER BY round DESC LIMIT 1"
        ).fetchone()
        return None if row is None else bytes(row[0])

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
        in seconds (fit_s, predict_s, select_s, measure_s, total_s), best value so far,
        hyperparameters (dict) and record (the surrogate's round record, dict, or None)."""
        df = pd.read_sql_query("SELECT * FROM rounds ORDER BY round", self._conn).drop(columns="model_state")
        df["hyperparameters"] = df["hyperparameters"].map(json.loads)
        records = df["record"] if "record" in df else pd.Series([None] * len(df), dtype=object)  # older records
        df["record"] = records.map(lambda text: json.loads(text) if isinstance(text, str) else None)
        return df


def _check_record(path: Path) -> None:
    """Refuse, without writing to it, a file that is not an intact run record."""
    if path.stat().st_size == 0:
        raise RunStateError(f"{path} is empty (a run killed while being created?); delete its directory and start again")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise RunStateError(f"{path} is not a valid run record: {err}") from None
    if problems != ["ok"]:
        raise RunStateError(f"{path} is damaged ({problems[0]}); restore it from a backup")
    missing = {"meta", "rounds", "selections", "measurements"} - tables
    if missing:
        raise RunStateError(f"{path} is not a run record: table(s) {', '.join(sorted(missing))} missing")


_HELD: dict[Path, list[int]] = {}
"""Locks this process holds: resolved run directory -> [file descriptor, open stores]. A run
opened twice in one process (a notebook re-running a cell) shares the lock."""


def _acquire_lock(run_dir: Path) -> Path:
    """Take the run's exclusive lock (non-blocking), write our PID into it, and return the key
    `_release_lock` takes."""
    key = run_dir.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RunStateError(f"cannot lock {run_dir}: {err.strerror or err}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            raise RunStateError(f"{run_dir}: run is in use by PID {holder}; wait for it to finish or stop it") from None
        raise RunStateError(f"cannot lock {run_dir}: {err.strerror or err}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]
    return key


def _release_lock(key: Path) -> None:
    held = _HELD[key]
    held[1] -= 1
    if held[1] == 0:
        os.close(held[0])
        del _HELD[key]


def _upgrade_schema(conn: sqlite3.Connection) -> None:
    """Add tables and columns introduced after a run was created (records from older versions)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(rounds)")}
    if "model_state" not in columns:
        conn.execute("ALTER TABLE rounds ADD COLUMN model_state BLOB")
    if "record" not in columns:
        conn.execute("ALTER TABLE rounds ADD COLUMN record TEXT")
    steering = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS steering") :]
    conn.execute(steering.rstrip().rstrip(";"))
