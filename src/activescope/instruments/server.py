"""Serve any instrument over HTTP on loopback (FastAPI + uvicorn): `activescope twin serve`.

`create_app(instrument, token)` builds the application; `ServerThread` runs it in a background
thread (notebooks, tests, an in-process twin); `serve(...)` runs it in the foreground. The wire
format (npy bodies, metadata and checksum headers, error codes) is described in `wire`.

Guarantees:

- **Authentication**: every request, whatever its path, needs ``Authorization: Bearer <token>``;
  the comparison is constant-time (`hmac.compare_digest`) and a refused request gets 401 before
  any route runs, so it changes nothing.
- **Validation**: malformed JSON, wrong types, unknown fields, non-finite numbers, positions
  outside the field of view and dwell times outside the instrument's range get a 4xx answer with
  a one-line message; no request crashes the server.
- **Idempotency**: measuring requests carry a ``request_id``; the answer is stored (the last
  `remember` ids) and a repeated id gets the stored answer without measuring again, so a client
  may retry after a dropped connection. Reusing an id for a different request is refused (409).
- **Serialisation**: one instrument call at a time (instruments are not thread-safe);
  `latency_s` simulates network and controller latency per request.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from activescope.engine.errors import ActivescopeError

from .faults import FaultInjector, Faults
from .protocol import Instrument, InstrumentError, Settings
from .wire import CHECKSUM_HEADER, ERRORS, META_HEADER, OCTET_STREAM, checksum, encode_array, error_code

REQUEST_ID = r"^[A-Za-z0-9_.:-]{1,128}$"


class AcquireRequest(BaseModel):
    """Body of ``POST /v1/acquire``: position (nm), optional dwell (s) and an idempotency id."""

    model_config = ConfigDict(extra="forbid", strict=True)

    x_nm: float = Field(allow_inf_nan=False, description="probe x position, nm")
    y_nm: float = Field(allow_inf_nan=False, description="probe y position, nm")
    dwell_s: float | None = Field(None, allow_inf_nan=False, description="dwell, s (none: the instrument's default)")
    request_id: str = Field(pattern=REQUEST_ID, description="client-chosen id; a repeated id returns the stored answer")


class OverviewRequest(BaseModel):
    """Body of ``POST /v1/overview``: an idempotency id."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(pattern=REQUEST_ID, description="client-chosen id; a repeated id returns the stored answer")


class _RequestIdReused(InstrumentError):
    """A request id arrived again with different parameters."""


class TokenGate:
    """ASGI middleware: 401 for any HTTP request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            supplied = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(supplied, self._expected):
                response = JSONResponse({"error": "missing or wrong token", "code": "unauthorized"}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Service:
    """The instrument behind a lock, with the store of answered request ids."""

    def __init__(self, instrument: Instrument, remember: int) -> None:
        self.instrument = instrument
        self.lock = threading.Lock()
        self._answers: OrderedDict[str, tuple[tuple[Any, ...], tuple[bytes, dict[str, str]]]] = OrderedDict()
        self._remember = remember

    def once(self, request_id: str, fingerprint: tuple[Any, ...], action: Callable[[], tuple[bytes, dict[str, str]]]) -> tuple[bytes, dict[str, str]]:
        """The stored answer to `request_id`, or `action()`'s (then stored); one at a time."""
        with self.lock:
            stored = self._answers.get(request_id)
            if stored is not None:
                if stored[0] != fingerprint:
                    raise _RequestIdReused(f"request id {request_id!r} was already used for a different request")
                self._answers.move_to_end(request_id)
                return stored[1]
            answer = action()
            self._answers[request_id] = (fingerprint, answer)
            while len(self._answers) > self._remember:
                self._answers.popitem(last=False)
            return answer


def _array_response(array: Any, meta: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = encode_array(array)
    return body, {META_HEADER: json.dumps(meta, separators=(",", ":"), default=float), CHECKSUM_HEADER: checksum(body)}


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def create_app(instrument: Instrument, token: str, latency_s: float = 0.0, remember: int = 10_000) -> FastAPI:
    """The HTTP application serving `instrument` (see the module docstring).

    token: the shared secret every request must present (non-empty). latency_s: seconds slept
    per request before it is served (simulated latency). remember: how many answered request ids
    are kept for idempotent retries.
    """
    if not token:
        raise ActivescopeError("the instrument server needs a non-empty token")
    app = FastAPI(title="activescope instrument", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TokenGate, token=token)
    service = _Service(instrument, remember)

    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": _one_line(message), "code": code}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = () if first.get("type") == "json_invalid" else first.get("loc", ())
        where = ".".join(str(p) for p in loc if p != "body") or "body"
        message = "unknown field" if first.get("type") == "extra_forbidden" else first.get("msg", "invalid request")
        return error(422, "invalid_request", f"{where}: {message}")

    @app.exception_handler(ActivescopeError)
    async def refused(request: Request, exc: ActivescopeError) -> JSONResponse:
        code = "request_id_reused" if isinstance(exc, _RequestIdReused) else error_code(exc)
        return error(ERRORS[code][0], code, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, "not_found" if exc.status_code == 404 else "invalid_request", str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return error(500, "internal_error", f"internal error: {type(exc).__name__}: {exc}")

    def pause() -> None:
        if latency_s > 0:
            time.sleep(latency_s)

    @app.get("/v1/info")
    def info() -> dict[str, Any]:
        """What the instrument is and accepts."""
        pause()
        return instrument.describe().to_dict()

    @app.get("/v1/state")
    def state() -> dict[str, Any]:
        """Position, drift estimate, dose, clock and acquisitions so far."""
        pause()
        with service.lock:
            return instrument.state().to_dict()

    @app.post("/v1/overview")
    def overview(body: OverviewRequest) -> Response:
        """Scan the field of view: the image as npy, geometry in the metadata header."""
        pause()

        def scan() -> tuple[bytes, dict[str, str]]:
            o = instrument.overview()
            g = o.geometry
            return _array_response(o.image, {"shape": g.shape, "pixel_nm": g.pixel_nm, "origin_nm": g.origin_nm, "reach_nm": g.reach_nm,
                                             "channel": o.channel, "unit": o.unit, "elapsed_s": o.elapsed_s,
                                             "scan_s": o.scan_s})

        content, headers = service.once(body.request_id, ("overview",), scan)
        return Response(content=content, media_type=OCTET_STREAM, headers=headers)

    @app.post("/v1/acquire")
    def acquire(body: AcquireRequest) -> Response:
        """One spectrum: (2, n) [axis; values] as npy, the rest in the metadata header."""
        pause()

        def measure() -> tuple[bytes, dict[str, str]]:
            s = instrument.acquire(body.x_nm, body.y_nm, Settings(dwell_s=body.dwell_s))
            return _array_response(s.as_raw(), {
                "axis_name": s.axis_name, "axis_unit": s.axis_unit, "unit": s.unit, "x_nm": s.x_nm, "y_nm": s.y_nm,
                "dwell_s": s.dwell_s, "elapsed_s": s.elapsed_s, "metadata": s.metadata})

        fingerprint = ("acquire", body.x_nm, body.y_nm, body.dwell_s)
        content, headers = service.once(body.request_id, fingerprint, measure)
        return Response(content=content, media_type=OCTET_STREAM, headers=headers)

    return app


def check_loopback(host: str) -> None:
    """Raise ActivescopeError unless `host` is a loopback address (the server is not meant to be
    reachable from other machines)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ActivescopeError(f"the instrument server listens on loopback only (127.0.0.1, ::1 or localhost), got {host!r}")


def _asgi(instrument: Instrument, token: str, latency_s: float, faults: Faults | None) -> ASGIApp:
    app = create_app(instrument, token, latency_s=latency_s)
    return FaultInjector(app, faults) if faults is not None and faults.active else app


class ServerThread:
    """Serve `instrument` in a background thread on loopback; use as a context manager.

    port: 0 picks a free port (read it from `port` or `url` once started). latency_s, faults:
    as in `serve`.
    """

    def __init__(self, instrument: Instrument, token: str, host: str = "127.0.0.1", port: int = 0,
                 latency_s: float = 0.0, faults: Faults | None = None) -> None:
        check_loopback(host)
        config = uvicorn.Config(_asgi(instrument, token, latency_s, faults), host=host, port=port,
                                log_level="critical", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="activescope-instrument-server", daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. http://127.0.0.1:41234."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> "ServerThread":
        """Start serving; returns once the socket accepts connections (ActivescopeError after
        `timeout_s` seconds)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ActivescopeError(f"the instrument server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join(timeout=10.0)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(instrument: Instrument, token: str, host: str = "127.0.0.1", port: int = 8765, latency_s: float = 0.0,
          faults: Faults | None = None) -> None:
    """Serve `instrument` in the foreground until interrupted (Ctrl-C).

    token: shared secret of every request. host: a loopback address. port: TCP port. latency_s:
    seconds slept per request. faults: misbehave on purpose (reliability testing, see `faults`).
    """
    check_loopback(host)
    uvicorn.run(_asgi(instrument, token, latency_s, faults), host=host, port=port, log_level="info", access_log=False)
