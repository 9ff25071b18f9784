"""`activescope twin serve` (the `twin_app` typer command) in a real subprocess, and the
documentation standards of the instruments package."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from activescope.instruments.cli import twin_app
from activescope.instruments.client import RemoteInstrument
from activescope.instruments.protocol import InstrumentError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_twin_serve_serves_the_configured_twin_with_a_token_file(tmp_path):
    config = tmp_path / "twin.yaml"
    config.write_text("instrument: {kind: twin, size: 40, channels: 128, latency_s: 0.0}\n")
    token_file, port = tmp_path / "twin.token", _free_port()
    command = [sys.executable, "-c", "from activescope.instruments.cli import twin_app; twin_app()", "serve",
               "--config", str(config), "--seed", "2", "--port", str(port), "--token-file", str(token_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60.0
        while not token_file.exists() or not token_file.read_text().strip():
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.1)
        assert token_file.stat().st_mode & 0o077 == 0  # readable by its owner only
        remote = RemoteInstrument(f"http://127.0.0.1:{port}", token_file.read_text().strip(), timeout_s=2.0,
                                  retries=40, backoff_s=0.1, backoff_max_s=0.5)
        info = remote.describe()
        assert info.kind == "twin" and info.channels == 128 and info.geometry.shape == (40, 40)
        assert remote.acquire(0.5, 0.5).values.shape == (128,)
        remote.close()
        with pytest.raises(InstrumentError, match="401"):
            RemoteInstrument(f"http://127.0.0.1:{port}", "wrong", retries=0).state()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("args, words", [
    (["serve", "--host", "0.0.0.0"], "loopback only"),
    (["serve", "--config", "missing.yaml"], "cannot read"),
])
def test_twin_serve_refuses_bad_input_with_one_line(args, words):
    result = CliRunner().invoke(twin_app, args)
    assert result.exit_code != 0 and words in str(result.exception)
