"""Kill -9 a real `activescope run` mid-round, resume it, and check nothing is lost or repeated."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

from activescope.cli import app

ENTRY = [sys.executable, "-c", "from activescope.cli import app; app()"]


def _batch(db: sqlite3.Connection, round_: int) -> list[str]:
    return [r[0] for r in db.execute("SELECT id FROM selections WHERE round = ? ORDER BY position", (round_,))]


def _state(db_path: Path) -> tuple[int, bool]:
    """(finished rounds, whether a batch is pending) as another process sees the record."""
    if not db_path.exists():
        return 0, False
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            finished = db.execute("SELECT COUNT(*) FROM rounds WHERE finished IS NOT NULL").fetchone()[0]
            pending = db.execute("SELECT COUNT(*) FROM selections WHERE status = 'pending'").fetchone()[0]
        return finished, pending > 0
    except sqlite3.OperationalError:  # schema not created yet
        return 0, False


def test_kill_during_a_pending_batch_then_resume(tmp_path, spec_dict, small_pool):
    spec_dict.update(oracle={"kind": "dataset", "delay_s": 0.08}, stop={"budget": 80})
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    run_dir = tmp_path / "run"
    db_path = run_dir / "run.sqlite"

    proc = subprocess.Popen([*ENTRY, "run", str(spec_path), "--run-dir", str(run_dir), "--no-report", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        finished, pending = _state(db_path)
        if finished >= 2 and pending:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    with sqlite3.connect(db_path) as db:
        killed_round, = db.execute("SELECT MAX(round) FROM rounds").fetchone()
        pending_batch = _batch(db, killed_round)
        assert db.execute("SELECT finished FROM rounds WHERE round = ?", (killed_round,)).fetchone()[0] is None

    resumed = CliRunner().invoke(app, ["resume", str(run_dir), "--no-report", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output

    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT id, value FROM measurements").fetchall()
        after = _batch(db, killed_round)
        unfinished = db.execute("SELECT COUNT(*) FROM rounds WHERE finished IS NULL").fetchone()[0]
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == 80 and unfinished == 0
    assert after == pending_batch
    truth = small_pool.labels["Dipole_debye"].to_numpy()[small_pool.index_of(ids)]
    assert [r[1] for r in rows] == truth.tolist()
