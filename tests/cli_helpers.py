"""Helpers shared by the command-line tests (on pytest's `pythonpath`, so test files import it)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner, Result

from activescope.cli import app

runner = CliRunner()


def invoke(*args: object) -> Result:
    """Run `activescope ARGS...` in-process through its real entry point."""
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2 and exactly one line `error: ...` on stderr mentioning every fragment."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def dump_db(run_dir: Path) -> list:
    """Every row of a run record's tables, to check that a failed command changed nothing."""
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        return [db.execute(f"SELECT * FROM {t}").fetchall() for t in ("meta", "rounds", "selections", "measurements")]
