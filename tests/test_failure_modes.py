"""Failure modes a new user runs into: each ends in one line `error: ...`, exit code 2, and
nothing already recorded is lost or changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, dump_db, invoke

from activescope.engine.campaign import Campaign
from activescope.engine.spec import parse_spec

ENTRY = [sys.executable, "-c", "from activescope.cli import app; app()"]


def _spawn(*args: object) -> subprocess.Popen:
    return subprocess.Popen([*ENTRY, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0, poll: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not condition():
        time.sleep(poll)
    assert proc.poll() is None, f"the run ended too early: {proc.stderr.read().decode()}"


def test_kill_right_after_the_run_directory_appears_leaves_a_resumable_run(tmp_path, spec_dict, write_spec):
    spec_path = write_spec(spec_dict)
    for trial in range(3):
        run_dir = tmp_path / f"run{trial}"
        proc = _spawn("run", spec_path, "--run-dir", run_dir, "--no-report", "--no-progress")
        _wait_for(lambda: (run_dir / "run.sqlite").exists(), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        resumed = invoke("resume", run_dir, "--no-report", "--no-progress")
        assert resumed.exit_code == 0, resumed.output
        assert "60 measured" in resumed.output


def test_a_second_process_on_a_running_campaign_is_refused(tmp_path, spec_dict, write_spec):
    spec_dict.update(oracle={"kind": "dataset", "delay_s": 0.05}, stop={"budget": 60})
    run_dir = tmp_path / "run"
    proc = _spawn("run", write_spec(spec_dict), "--run-dir", run_dir, "--no-report", "--no-progress")
    try:
        _wait_for(lambda: (run_dir / "run.lock").exists() and (run_dir / "run.lock").read_text().strip(), proc, poll=0.01)
        before = dump_db(run_dir)[3]
        second = invoke("resume", run_dir, "--no-report", "--no-progress")
        assert_user_error(second, f"run is in use by PID {proc.pid}")
        assert_user_error(invoke("suggest", run_dir), "in use")
        assert set(before) <= set(dump_db(run_dir)[3])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    resumed = invoke("resume", run_dir, "--no-report", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    ids = [row[0] for row in dump_db(run_dir)[3]]
    assert len(ids) == len(set(ids)) == 60


@pytest.mark.parametrize("model", [{"kind": "gp", "fit_iters": 30, "warm_iters": 5}, {"kind": "dkl", "hidden": [16], "fit_iters": 20, "warm_iters": 5}])
def test_a_resumed_warm_starting_model_selects_exactly_as_an_uninterrupted_one(tmp_path, spec_dict, small_pool, model):
    spec_dict.update(model=model, initial={"n": 10}, acquisition={"kind": "ucb", "q": 5}, stop={"budget": 40})
    spec = parse_spec(spec_dict)
    with Campaign.create(tmp_path / "straight", spec, small_pool) as straight:
        straight.run(progress=False)
        expected = straight.store.selections()[["round", "id"]]
    interrupted = Campaign.create(tmp_path / "interrupted", spec, small_pool)
    for _ in range(3):
        interrupted.step()
    interrupted._select(interrupted.store.n_rounds())  # killed with a batch pending
    interrupted.close()
    for _ in range(2):  # resumed twice: once mid-batch, once between rounds
        with Campaign.open(tmp_path / "interrupted", pool=small_pool) as resumed:
            resumed.step()
            resumed.step()
    with Campaign.open(tmp_path / "interrupted", pool=small_pool) as resumed:
        resumed.run(progress=False)
        got = resumed.store.selections()[["round", "id"]]
    assert got.equals(expected)


def test_binary_spec_file(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(bytes(range(256)) * 4)
    assert_user_error(invoke("run", spec, "--run-dir", tmp_path / "r"), "not a UTF-8 text file")
    assert not (tmp_path / "r").exists()


def test_run_directory_that_cannot_be_made(tmp_path, spec_dict, write_spec):
    spec_path = write_spec(spec_dict)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert_user_error(invoke("run", spec_path, "--run-dir", a_file), "is a file")
    assert_user_error(invoke("run", spec_path, "--run-dir", a_file / "run"), "cannot create run directory")
    assert_user_error(invoke("run", spec_path, "--run-dir", "/proc/activescope-run"), "cannot create run directory")
    assert a_file.read_text() == "keep me"


def test_damaged_record_is_reported_and_left_untouched(finished_run):
    db = finished_run / "run.sqlite"
    damaged = bytearray(db.read_bytes())
    damaged[4096:-4096] = os.urandom(len(damaged) - 8192)  # every page but the header and the last
    db.write_bytes(bytes(damaged))
    for command in (["resume", finished_run, "--no-report"], ["report", finished_run], ["suggest", finished_run]):
        assert_user_error(invoke(*command), str(db))
        assert db.read_bytes() == damaged


def test_empty_record_is_reported_and_never_written(finished_run):
    db = finished_run / "run.sqlite"
    db.write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    assert_user_error(invoke("resume", finished_run, "--no-report"), "is empty")
    assert db.stat().st_size == 0 and not Path(f"{db}-wal").exists()


@pytest.fixture
def asktell_run(tmp_path, spec_dict, write_spec) -> tuple[Path, Path]:
    """An ask/tell run with its first suggestion file (20 ids awaiting results)."""
    spec_dict["oracle"] = {"kind": "asktell"}
    run_dir = tmp_path / "lab"
    result = invoke("run", write_spec(spec_dict), "--run-dir", run_dir, "--no-report", "--no-progress")
    assert result.exit_code == 0, result.output
    return run_dir, run_dir / "artifacts" / "suggest_round_0.csv"


def test_results_file_with_only_a_header(asktell_run, tmp_path):
    run_dir, _ = asktell_run
    header_only = tmp_path / "results.csv"
    header_only.write_text("id,value\n")
    before = dump_db(run_dir)
    assert_user_error(invoke("tell", run_dir, header_only), "no results")
    assert dump_db(run_dir) == before


def test_ragged_row_is_named_by_its_line(asktell_run, tmp_path):
    run_dir, suggestion = asktell_run
    ids = [line.split(",")[0] for line in suggestion.read_text().splitlines()[1:3]]
    ragged = tmp_path / "results.csv"
    ragged.write_text(f"id,value\n{ids[0]},1.5\n{ids[1]},2.5,3.5\n")
    before = dump_db(run_dir)
    assert_user_error(invoke("tell", run_dir, ragged), "line 3 has 3 field(s), the header has 2")
    assert dump_db(run_dir) == before


def test_partial_batch_says_how_many_results_are_awaited(asktell_run, tmp_path):
    run_dir, suggestion = asktell_run
    ids = [line.split(",")[0] for line in suggestion.read_text().splitlines()[1:]]
    part = tmp_path / "part.csv"
    part.write_text("id,value\n" + "".join(f"{k},{i}.0\n" for i, k in enumerate(ids[:5])))
    result = invoke("tell", run_dir, part)
    assert result.exit_code == 0, result.output
    assert "recorded 5 result(s)" in result.output
    assert f"15 result(s) of this batch still awaited: {ids[5]}" in result.output
    rest = tmp_path / "rest.csv"
    rest.write_text("id,value\n" + "".join(f"{k},{i}.0\n" for i, k in enumerate(ids[5:])))
    result = invoke("tell", run_dir, rest)
    assert result.exit_code == 0 and "suggestions:" in result.output, result.output
