"""The instrument server over real HTTP on loopback: authentication, validation, idempotent
request ids, fault injection and restarts, with RemoteInstrument as the client."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest

from activescope.engine.errors import ActivescopeError, SpecError
from activescope.engine.registry import INSTRUMENTS
from activescope.instruments.client import RemoteInstrument
from activescope.instruments.faults import Faults
from activescope.instruments.protocol import InstrumentError, InstrumentUnavailable, OutOfField
from activescope.instruments.server import ServerThread, check_loopback
from activescope.instruments.wire import CHECKSUM_HEADER, META_HEADER, checksum, decode_array

GOOD = {"x_nm": 0.5, "y_nm": 0.6, "request_id": "req-000001"}


@pytest.fixture(scope="module")
def shared(small_twin, token):
    """One twin served for the tests that must not change it (refused requests)."""
    twin = small_twin()
    with ServerThread(twin, token) as server:
        yield twin, server


def _post(url: str, path: str, token: str | None, json=None, content: bytes | None = None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if content is not None:
        headers["content-type"] = "application/json"
    return httpx.post(f"{url}/v1/{path}", headers=headers, trust_env=False, json=json, content=content)


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer test-token-012345678", "Basic test-token-0123456789",
                                    "test-token-0123456789"])
def test_requests_without_the_right_token_get_401_and_change_nothing(shared, header):
    twin, server = shared
    headers = {} if header is None else {"Authorization": header}
    for method, path, body in [("POST", "acquire", GOOD), ("POST", "overview", {"request_id": "o1"}),
                               ("GET", "state", None), ("GET", "info", None), ("GET", "nowhere", None)]:
        r = httpx.request(method, f"{server.url}/v1/{path}", json=body, headers=headers, trust_env=False)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["code"] == "unauthorized"
    state = twin.state()
    assert state.acquisitions == 0 and state.elapsed_s == 0.0 and state.dose_e == 0.0
    with pytest.raises(InstrumentError, match="401"):
        RemoteInstrument(server.url, "not-the-token", retries=0).acquire(0.5, 0.5)
    assert twin.state().acquisitions == 0


@pytest.mark.parametrize("body, status, code, words", [
    ({**GOOD, "x_nm": 50.0}, 422, "out_of_field", "outside the field of view"),
    ({**GOOD, "y_nm": -3.0}, 422, "out_of_field", "outside the field of view"),
    ({**GOOD, "dwell_s": 0.0}, 422, "invalid_settings", "dwell_s"),
    ({**GOOD, "dwell_s": -1.0}, 422, "invalid_settings", "dwell_s"),
    ({**GOOD, "dwell_s": 1e9}, 422, "invalid_settings", "dwell_s"),
    ({**GOOD, "x_nm": "0.5"}, 422, "invalid_request", "x_nm"),
    ({**GOOD, "x_nm": [0.5]}, 422, "invalid_request", "x_nm"),
    ({**GOOD, "x_nm": True}, 422, "invalid_request", "x_nm"),
    ({**GOOD, "dwell_s": "long"}, 422, "invalid_request", "dwell_s"),
    ({"x_nm": 0.5, "request_id": "r-1"}, 422, "invalid_request", "y_nm"),
    ({**GOOD, "request_id": "has space"}, 422, "invalid_request", "request_id"),
    ({**GOOD, "request_id": "x" * 200}, 422, "invalid_request", "request_id"),
    ({**GOOD, "extra": 1}, 422, "invalid_request", "unknown field"),
    ([1, 2], 422, "invalid_request", "body"),
    ("just a string", 422, "invalid_request", "body"),
])
def test_bad_requests_get_a_4xx_one_line_message_and_measure_nothing(shared, token, body, status, code, words):
    twin, server = shared
    r = _post(server.url, "acquire", token, json=body)
    assert r.status_code == status, r.text
    answer = r.json()
    assert answer["code"] == code and words in answer["error"] and "\n" not in answer["error"]
    assert twin.state().acquisitions == 0
    assert httpx.get(f"{server.url}/v1/state", headers={"Authorization": f"Bearer {token}"}, trust_env=False).status_code == 200


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00", b'{"x_nm": NaN, "y_nm": 1, "request_id": "a"}',
                                     b'{"x_nm": 1e999, "y_nm": 1, "request_id": "a"}'])
def test_malformed_bodies_never_crash_the_server(shared, token, content):
    twin, server = shared
    r = _post(server.url, "acquire", token, content=content)
    assert 400 <= r.status_code < 500 and "\n" not in r.json()["error"]
    assert httpx.get(f"{server.url}/v1/nowhere", headers={"Authorization": f"Bearer {token}"}, trust_env=False).status_code == 404
    assert twin.state().acquisitions == 0


def test_a_repeated_request_id_returns_the_stored_answer_without_measuring(small_twin, serve, token):
    twin = small_twin()
    server = serve(twin)
    first = _post(server.url, "acquire", token, json=GOOD)
    second = _post(server.url, "acquire", token, json=GOOD)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert twin.state().acquisitions == 1
    raw = decode_array(first.content, first.headers[CHECKSUM_HEADER])
    assert raw.shape == (2, 256) and first.headers["content-type"] == "application/octet-stream"
    assert first.headers[CHECKSUM_HEADER] == checksum(first.content) and "x_nm" in first.headers[META_HEADER]
    reused = _post(server.url, "acquire", token, json={**GOOD, "x_nm": 0.7})
    assert reused.status_code == 409 and reused.json()["code"] == "request_id_reused"
    assert twin.state().acquisitions == 1


def test_the_client_maps_server_refusals_to_local_exceptions(small_twin, serve, token):
    server = serve(small_twin())
    remote = RemoteInstrument(server.url, token, retries=0)
    with pytest.raises(OutOfField, match="instrument server: position"):
        remote.acquire(10.0, 0.5)
    remote.close()


def test_under_fault_injection_nothing_is_lost_or_measured_twice(small_twin, serve, token):
    served, reference = small_twin(), small_twin()
    faults = Faults(drop_every=3, delay_every=5, delay_s=0.3, corrupt_every=4)
    server = serve(served, faults=faults)
    remote = RemoteInstrument(server.url, token, timeout_s=0.2, retries=4, backoff_s=0.01)
    rng = np.random.default_rng(1)
    points = rng.uniform(0.0, 1.15, (16, 2))
    got = [remote.acquire(x, y) for x, y in points]
    want = [reference.acquire(x, y) for x, y in points]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.values, w.values)
        np.testing.assert_array_equal(g.axis, w.axis)
    assert served.state().acquisitions == len(points)
    np.testing.assert_array_equal(remote.overview().image, reference.overview().image)
    remote.close()


def test_a_corrupt_payload_is_detected(small_twin, serve, token):
    twin = small_twin()
    server = serve(twin, faults=Faults(corrupt_every=1))
    remote = RemoteInstrument(server.url, token, retries=1, backoff_s=0.0)
    with pytest.raises(InstrumentUnavailable, match="checksum"):
        remote.acquire(0.5, 0.5)
    assert twin.state().acquisitions == 1  # the retry was answered from the store
    remote.close()


def test_the_client_reconnects_after_a_server_restart(small_twin, token):
    twin = small_twin()
    first = ServerThread(twin, token).start()
    remote = RemoteInstrument(first.url, token, timeout_s=2.0, retries=8, backoff_s=0.05, backoff_max_s=0.4)
    remote.acquire(0.5, 0.5)
    port = first.port
    first.stop()
    second = ServerThread(twin, token, port=port)
    restart = threading.Timer(0.3, second.start)
    restart.start()
    try:
        spectrum = remote.acquire(0.6, 0.6)
        assert spectrum.values.size == 256
        assert twin.state().acquisitions == 2
    finally:
        restart.join()
        second.stop()
        remote.close()


def test_an_unreachable_server_raises_a_retryable_oserror(token):
    with ServerThread(object(), token) as server:  # bind a free port, then release it
        url = server.url
    remote = RemoteInstrument(url, token, timeout_s=0.5, retries=2, backoff_s=0.01)
    with pytest.raises(InstrumentUnavailable) as err:
        remote.state()
    assert isinstance(err.value, OSError) and "3 attempts" in str(err.value)


def test_the_server_listens_on_loopback_only_and_needs_a_token(small_twin):
    for host in ("127.0.0.1", "::1", "localhost"):
        check_loopback(host)
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(ActivescopeError, match="loopback"):
            check_loopback(host)
    with pytest.raises(ActivescopeError, match="token"):
        ServerThread(small_twin(), "")


def test_the_remote_instrument_is_registered_and_reads_its_token(small_twin, serve, token, tmp_path, monkeypatch):
    server = serve(small_twin())
    monkeypatch.setenv("ACTIVESCOPE_TWIN_TOKEN", token)
    remote = INSTRUMENTS.build("remote", {"url": server.url}, section="instrument")
    assert remote.describe().kind == "twin"
    remote.close()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    monkeypatch.delenv("ACTIVESCOPE_TWIN_TOKEN")
    remote = INSTRUMENTS.build("remote", {"url": server.url, "token_file": str(token_file)}, section="instrument")
    assert remote.state().acquisitions == 0
    remote.close()
    with pytest.raises(SpecError, match="ACTIVESCOPE_TWIN_TOKEN"):
        INSTRUMENTS.build("remote", {"url": server.url}, section="instrument")
    with pytest.raises(SpecError, match="instrument.token_file"):
        INSTRUMENTS.build("remote", {"url": server.url, "token_file": str(tmp_path / "missing")}, section="instrument")
