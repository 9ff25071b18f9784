"""Reliability of automated experiments against a served instrument (issue 7, item 6), with real
processes: `activescope twin serve` serving the BEPS playback on a free loopback port, and
`activescope run` / `activescope resume` as the campaign client.

- the campaign client killed (SIGKILL) mid-batch with a slow instrument, then resumed;
- the server killed (SIGKILL) mid-run and started again on the same port with the same token;
- fault injection (dropped, delayed and corrupt answers) during a whole campaign;
- hostile requests (no token, wrong token, malformed, out of range) while a campaign runs, and a
  campaign whose token is wrong.

"Nothing lost or repeated" is checked three ways each time: the run record (every id once, each
spectrum recorded before an interruption still there byte for byte), the recorded data against
the ground truth (the BEPS cube at each position; ids and values equal to an uninterrupted local
run of the same spec) and the server's own count of acquisitions (`GET /v1/state`).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from cli_helpers import dump_db, invoke

from activescope.engine.campaign import Campaign
from activescope.engine.scalarizers import build_scalarizer
from activescope.engine.store import Store
from activescope.instruments.playback import beps_playback

ROOT = Path(__file__).resolve().parents[2]
BEPS = ROOT / "data" / "beps_pto_50x50.h5"
ENTRY = [sys.executable, "-c", "from activescope.cli import app; app()"]
TOKEN = "reliability-token-0123456789"
BEPS_SECTION = {"kind": "playback", "path": str(BEPS), "cube": "Channel_000/generic/generic", "dims": "xyn",
                "axis": "Channel_000/generic/Voltage", "axis_name": "voltage", "axis_unit": "V",
                "x": "Channel_000/generic/X", "overview": "mean"}
BUDGET = 25
WAIT_S = 120.0  # generous deadline for anything to happen on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedTwin:
    """`activescope twin serve` (BEPS playback) in a subprocess on a fixed loopback port."""

    def __init__(self, tmp: Path, *options: object) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_file = tmp / "twin.token"
        self.token_file.write_text(TOKEN + "\n")
        self.config = tmp / "instrument.yaml"
        self.config.write_text(yaml.safe_dump(BEPS_SECTION))
        self.options = [str(o) for o in options]
        self.process: subprocess.Popen | None = None
        self.log = tmp / "server.log"

    def start(self) -> "ServedTwin":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*ENTRY, "twin", "serve", "--config", self.config, "--port", str(self.port), "--token-file",
                 self.token_file, *self.options], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while True:
            assert self.process.poll() is None, f"server exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, "server did not start"
            try:
                if self.get("info").status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, the request in flight is cut."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def get(self, path: str, token: str | None = TOKEN) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{self.url}/v1/{path}", headers=headers, trust_env=False, timeout=30.0)

    def state(self) -> dict:
        response = self.get("state")
        assert response.status_code == 200, response.text
        return response.json()

    def settled_state(self) -> dict:
        """The state once no request is being served any more (two equal readings in a row;
        each reading waits for the server's latency and for the instrument lock)."""
        previous = self.state()
        while True:
            current = self.state()
            if current == previous:
                return current
            previous = current


@pytest.fixture
def served(tmp_path: Path) -> Iterator:
    """`served(*options)`: a started `ServedTwin`; every one is stopped at teardown."""
    made: list[ServedTwin] = []

    def start(*options: object) -> ServedTwin:
        (tmp_path / f"server{len(made)}").mkdir()
        server = ServedTwin(tmp_path / f"server{len(made)}", *options).start()
        made.append(server)
        return server

    yield start
    for server in made:
        server.stop()


def _spec(instrument: dict, **oracle: object) -> dict:
    """A short BEPS experiment: 100 candidates (every 5th grid point), random forest, UCB,
    10 initial + 3 rounds of 5."""
    return {"name": "beps-reliability", "seed": 0, "instrument": instrument,
            "data": {"source": "probe_grid", "step": 5, "window": 3},
            "target": {"column": "loop_area", "goal": "maximize"}, "model": {"kind": "rf"},
            "acquisition": {"kind": "ucb", "q": 5}, "initial": {"n": 10},
            "oracle": {"kind": "instrument", "scalarizer": "loop_area", **oracle}, "stop": {"budget": BUDGET}}


def _remote(server: ServedTwin, **options: object) -> dict:
    return {"kind": "remote", "url": server.url, "token_file": str(server.token_file), "backoff_s": 0.02, **options}


_REFERENCES: dict[tuple, list[tuple[str, float]]] = {}


def _reference(**oracle: object) -> list[tuple[str, float]]:
    """(id, value) in measurement order of the same campaign run uninterrupted, in process, on
    the local playback (cached per oracle options)."""
    key = tuple(sorted(oracle.items()))
    if key not in _REFERENCES:
        with Campaign.create(None, _spec(BEPS_SECTION, **oracle)) as campaign:
            campaign.run(progress=False)
            m = campaign.store.measurements()
            _REFERENCES[key] = list(zip(m["id"], m["value"].astype(float)))
    return _REFERENCES[key]


def _write_spec(tmp: Path, spec: dict) -> Path:
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _rows(db_path: Path) -> dict[str, tuple]:
    """id -> (round, value, raw bytes, error, attempts, measured_at) as another process sees
    the record; empty before the schema exists."""
    if not db_path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
            rows = db.execute("SELECT id, round, value, raw, error, attempts, measured_at FROM measurements").fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return {}
    return {r[0]: r[1:] for r in rows}


def _open_batch(db_path: Path) -> tuple[int, list[str], list[str]] | None:
    """(round, measured ids, pending ids) of the unfinished round, if any."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
            row = db.execute("SELECT round FROM rounds WHERE finished IS NULL").fetchone()
            if row is None:
                return None
            sel = db.execute("SELECT id, status FROM selections WHERE round = ? ORDER BY position", row).fetchall()
    except sqlite3.OperationalError:
        return None
    return row[0], [k for k, s in sel if s != "pending"], [k for k, s in sel if s == "pending"]


def _wait_mid_batch(db_path: Path, process: subprocess.Popen, min_round: int = 1, min_done: int = 2) -> tuple[int, list[str], list[str]]:
    """Wait until the campaign is inside round >= min_round with >= min_done of its batch
    recorded and some still pending; returns that batch."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the campaign ended before the interruption: {process.stderr.read().decode()}"
        batch = _open_batch(db_path) if db_path.exists() else None
        if batch is not None and batch[0] >= min_round and len(batch[1]) >= min_done and batch[2]:
            return batch
        time.sleep(0.01)
    raise AssertionError("the campaign never reached the middle of a batch")


def _run_process(spec_path: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([*ENTRY, "run", str(spec_path), "--run-dir", str(run_dir), "--no-report", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _check_complete(run_dir: Path, reference: list[tuple[str, float]], before: dict[str, tuple] | None = None) -> None:
    """The finished record: every id once, all measured, nothing left pending, ids and values
    equal to the uninterrupted reference, each spectrum the BEPS loop at its position, and the
    rows recorded before an interruption unchanged."""
    rows = _rows(run_dir / "run.sqlite")
    with Store.open(run_dir) as store:
        m = store.measurements()
        assert store.open_round() is None
        assert (store.selections()["status"] == "measured").all()
    assert m["id"].is_unique and len(m) == BUDGET and (m["status"] == "measured").all()
    assert list(zip(m["id"], m["value"].astype(float))) == reference
    cube = beps_playback(BEPS)
    area = build_scalarizer("loop_area")
    with Store.open(run_dir) as store:
        for k in m["id"]:
            col, row = (int(part[1:]) for part in k.split("_"))
            raw = store.raw(k)
            np.testing.assert_array_equal(raw, np.vstack([cube.axis, cube.cube[row, col]]))
            assert rows[k][1] == area(raw)
    for k, row in (before or {}).items():
        assert rows[k] == row, f"measurement {k} changed after the interruption"


def test_a_client_killed_mid_batch_resumes_with_nothing_lost_or_repeated(tmp_path, served):
    server = served("--latency-s", 0.25)  # a slow instrument: every request takes >= 0.25 s
    run_dir = tmp_path / "run"
    db_path = run_dir / "run.sqlite"
    client = _run_process(_write_spec(tmp_path, _spec(_remote(server))), run_dir)
    round_, done, pending = _wait_mid_batch(db_path, client)
    os.kill(client.pid, signal.SIGKILL)
    client.wait()

    before = _rows(db_path)
    batch = _open_batch(db_path)
    assert batch is not None and batch[0] == round_ and batch[2], "the kill did not land mid-batch"
    in_flight = batch[2][0]  # the next position the killed client was acquiring (or about to)
    assert len(before) == sum(1 for r in before.values() if r[0] < round_) + len(batch[1])
    state = server.settled_state()
    # the server measured every recorded spectrum, plus at most the one whose answer the kill cut off
    assert state["acquisitions"] in (len(before), len(before) + 1)
    if state["acquisitions"] == len(before) + 1:
        col, row = (int(part[1:]) for part in in_flight.split("_"))
        geometry = beps_playback(BEPS).describe().geometry
        assert tuple(state["position_nm"]) == pytest.approx(tuple(map(float, geometry.to_nm(col, row))))
    after_kill = state["acquisitions"]

    resumed = invoke("resume", run_dir, "--no-report", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    _check_complete(run_dir, _reference(), before)
    # request ids survive the restart (run id, candidate, attempt): the spectrum the killed client
    # was waiting for is answered from the server's record, so every position is measured once
    assert after_kill <= BUDGET and server.state()["acquisitions"] == BUDGET


def test_a_server_killed_and_restarted_mid_run_lets_the_campaign_complete(tmp_path, served):
    server = served("--latency-s", 0.2)
    run_dir = tmp_path / "run"
    db_path = run_dir / "run.sqlite"
    # the client keeps retrying for ~20 s: long enough for a fresh server process to start
    spec = _spec(_remote(server, retries=40, backoff_s=0.05, backoff_max_s=0.5))
    client = _run_process(_write_spec(tmp_path, spec), run_dir)
    _wait_mid_batch(db_path, client)
    server.kill()

    # with the server gone nothing more can be recorded: wait until the client has recorded
    # every answer it got before the kill (the count stays put for a second)
    before, stable_since = _rows(db_path), time.monotonic()
    while time.monotonic() - stable_since < 1.0:
        time.sleep(0.1)
        now = _rows(db_path)
        if now != before:
            before, stable_since = now, time.monotonic()
    assert client.poll() is None, "the client gave up while the server was down"
    assert len(before) < BUDGET

    server.start()  # same port, same token file, a fresh instrument (its count starts at 0)
    assert client.wait(timeout=WAIT_S) == 0, client.stderr.read().decode()
    _check_complete(run_dir, _reference(), before)
    # the restarted server measured exactly what was not recorded before the kill, once each
    assert server.state()["acquisitions"] == BUDGET - len(before)


def test_a_campaign_against_a_faulty_server_completes_with_nothing_lost_or_duplicated(tmp_path, served):
    # every 3rd measuring request loses its answer mid-body, every 4th is answered after the
    # client's timeout, every 5th has its body corrupted; overviews (drift correction every 5
    # spectra) count as measuring requests too
    server = served("--drop-every", 3, "--delay-every", 4, "--delay-s", 1.0, "--corrupt-every", 5)
    run_dir = tmp_path / "run"
    spec = _spec(_remote(server, timeout_s=0.4, retries=8), drift_every=5)
    result = invoke("run", _write_spec(tmp_path, spec), "--run-dir", run_dir, "--no-report", "--no-progress")
    assert result.exit_code == 0, result.output
    _check_complete(run_dir, _reference(drift_every=5))
    with Store.open(run_dir) as store:
        assert (store.measurements()["attempts"] == 1).all()  # the client's retries hid every fault
    assert server.state()["acquisitions"] == BUDGET
    faults = [line for line in server.log.read_text().splitlines() if "fault injection" in line]
    assert faults, "no fault was injected"


HOSTILE = [
    # (method, path, token, json body, raw body)
    ("POST", "acquire", None, {"x_nm": 100.0, "y_nm": 100.0, "request_id": "no-token"}, None),
    ("POST", "acquire", "wrong-token", {"x_nm": 100.0, "y_nm": 100.0, "request_id": "bad-token"}, None),
    ("POST", "overview", None, {"request_id": "no-token-overview"}, None),
    ("GET", "state", "Bearer-less", None, None),
    ("POST", "acquire", TOKEN, {"x_nm": -1e6, "y_nm": 100.0, "request_id": "far-away"}, None),
    ("POST", "acquire", TOKEN, {"x_nm": 1e308, "y_nm": 1e308, "request_id": "huge"}, None),
    ("POST", "acquire", TOKEN, {"x_nm": 100.0, "y_nm": 100.0, "dwell_s": 1e9, "request_id": "long-dwell"}, None),
    ("POST", "acquire", TOKEN, {"x_nm": "100", "y_nm": 100.0, "request_id": "string"}, None),
    ("POST", "acquire", TOKEN, {"x_nm": {"$gt": 0}, "y_nm": None, "request_id": "nested"}, None),
    ("POST", "acquire", TOKEN, None, b'{"x_nm": Infinity, "y_nm": 1, "request_id": "inf"}'),
    ("POST", "acquire", TOKEN, None, b"[" * 50_000 + b"]" * 50_000),
    ("POST", "acquire", TOKEN, None, b'{"x_nm": 1, "y_nm": 1, "request_id": "' + b"r" * 1_000_000 + b'"}'),
    ("POST", "acquire", TOKEN, None, b"\x00\x01\x02 not json at all"),
    ("POST", "overview", TOKEN, {"request_id": "../../etc/passwd"}, None),
    ("GET", "acquire", TOKEN, None, None),
    ("DELETE", "state", TOKEN, None, None),
    ("POST", "../v1/acquire", TOKEN, {"x_nm": 100.0}, None),
]


def _hostile(url: str, method: str, path: str, token: str | None, body: object, content: bytes | None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": token if token == "Bearer-less" else f"Bearer {token}"}
    if content is not None:
        headers["content-type"] = "application/json"
    return httpx.request(method, f"{url}/v1/{path}", json=body, content=content, headers=headers, trust_env=False,
                         timeout=30.0)


def test_hostile_requests_during_a_campaign_change_nothing_and_never_crash_the_server(tmp_path, served):
    server = served("--latency-s", 0.05)
    run_dir = tmp_path / "run"
    client = _run_process(_write_spec(tmp_path, _spec(_remote(server))), run_dir)
    answers: list[tuple[tuple, int, str]] = []
    stop = threading.Event()

    def attack() -> None:
        while not stop.is_set():
            for request in HOSTILE:
                r = _hostile(server.url, *request)
                answers.append((request[:3], r.status_code, r.text))

    attacker = threading.Thread(target=attack)
    attacker.start()
    try:
        assert client.wait(timeout=WAIT_S) == 0, client.stderr.read().decode()
    finally:
        stop.set()
        attacker.join()

    assert len(answers) >= len(HOSTILE)
    for (method, path, token), status, text in answers:
        if token != TOKEN:
            assert status == 401, (method, path, status, text)
        else:
            assert 400 <= status < 500, (method, path, status, text[:200])
        assert "\n" not in text
    _check_complete(run_dir, _reference())
    assert server.process.poll() is None
    state = server.state()
    assert state["acquisitions"] == BUDGET  # no hostile request measured anything
    ok = httpx.post(f"{server.url}/v1/acquire", json={"x_nm": 100.0, "y_nm": 100.0, "request_id": "after"},
                    headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False)
    assert ok.status_code == 200 and server.state()["acquisitions"] == BUDGET + 1


def test_a_campaign_with_a_wrong_token_is_refused_and_changes_nothing(tmp_path, served):
    server = served()
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    spec_path = _write_spec(tmp_path, _spec({**_remote(server), "token_file": str(wrong)}))
    refused = invoke("run", spec_path, "--run-dir", tmp_path / "refused", "--no-report", "--no-progress")
    assert refused.exit_code == 2 and "401" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "refused").exists()
    assert server.settled_state()["acquisitions"] == 0 and server.state()["elapsed_s"] == 0.0

    # a run half done with the right token; the token file then goes wrong: resume is refused
    # and neither the record nor the instrument changes
    run_dir = tmp_path / "run"
    with Campaign.create(run_dir, _spec(_remote(server))) as campaign:
        campaign.step()  # round 0: the initial design
    state = server.state()
    record = dump_db(run_dir)
    server.token_file.write_text("rotated-token\n")  # the client reads the changed file
    for _ in range(2):
        resumed = invoke("resume", run_dir, "--no-report", "--no-progress")
        assert resumed.exit_code == 2 and "refused the token (401)" in resumed.stderr
    assert dump_db(run_dir) == record
    assert server.state() == state and state["acquisitions"] == 10
    server.token_file.write_text(TOKEN + "\n")
    resumed = invoke("resume", run_dir, "--no-report", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    _check_complete(run_dir, _reference())
    assert server.state()["acquisitions"] == BUDGET

