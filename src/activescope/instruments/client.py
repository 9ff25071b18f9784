"""`RemoteInstrument`: the instrument protocol over HTTP, talking to `server` (httpx).

Campaign code is identical in-process and remote: the client raises the same exceptions as a
local back end (OutOfField, InvalidSettings, BudgetExhausted) from the server's error codes.

Reliability: a dropped or refused connection, a timeout, a 502/503/504 answer or a payload that
fails its checksum is retried with exponential backoff (`backoff_s`, doubling, at most
`backoff_max_s`) up to `retries` times, then `InstrumentUnavailable` (an OSError: the campaign
records a failed measurement and retries it later). Every measuring request carries one
request id for all its retries, and the server answers a repeated id from its store, so a retry
never measures twice.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from activescope.engine.errors import SpecError
from activescope.engine.registry import register_instrument

from .protocol import (Geometry, InstrumentError, InstrumentInfo, InstrumentState, InstrumentUnavailable, InvalidSettings,
                       OutOfField, Overview, Settings, Spectrum)
from .wire import CHECKSUM_HEADER, ERRORS, META_HEADER, OCTET_STREAM, CorruptPayload, decode_array

RETRY_STATUS = {502, 503, 504}


class RemoteInstrument:
    """An instrument served by `activescope twin serve` (or `server.ServerThread`).

    url: server base URL, e.g. http://127.0.0.1:8765. token: the server's shared secret.
    timeout_s: seconds to wait for connect and for each answer. retries: extra attempts after a
    failed one. backoff_s, backoff_max_s: first and longest wait between attempts, seconds.
    """

    def __init__(self, url: str, token: str, timeout_s: float = 10.0, retries: int = 5, backoff_s: float = 0.05,
                 backoff_max_s: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._http = httpx.Client(base_url=f"{self.url}/v1", headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout_s, trust_env=False)
        self._info: InstrumentInfo | None = None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The server's answer: parsed JSON, or (array, metadata) for an npy body. Retries
        transport failures, 502/503/504 and corrupt npy payloads; 4xx and 500 raise the matching
        exception at once."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)))
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as err:
                last = err
                continue
            if response.status_code in RETRY_STATUS:
                last = InstrumentUnavailable(f"HTTP {response.status_code}")
                continue
            if response.status_code >= 400:
                raise self._refusal(response)
            if response.headers.get("content-type") != OCTET_STREAM:
                return response.json()
            try:
                return decode_array(response.content, response.headers.get(CHECKSUM_HEADER)), json.loads(response.headers[META_HEADER])
            except (CorruptPayload, KeyError, ValueError) as err:
                last = err
        raise InstrumentUnavailable(f"{self.url}: no valid answer to {method} /v1/{path} after {self.retries + 1} "
                                    f"attempts; last: {type(last).__name__}: {last}")

    @staticmethod
    def _refusal(response: httpx.Response) -> InstrumentError:
        """The exception matching an error answer's code, with the server's one-line message."""
        try:
            data = response.json()
            code, message = str(data["code"]), str(data["error"])
        except (ValueError, KeyError, TypeError):
            code, message = "", response.text[:200]
        if response.status_code == 401:
            return InstrumentError("the instrument server refused the token (401)")
        return ERRORS.get(code, (0, InstrumentError))[1](f"instrument server: {message}")

    def describe(self) -> InstrumentInfo:
        """What the served instrument is and accepts (asked once, then cached)."""
        if self._info is None:
            self._info = InstrumentInfo.from_dict(self._call("GET", "info"))
        return self._info

    def overview(self) -> Overview:
        """Scan the field of view on the server."""
        image, meta = self._call("POST", "overview", {"request_id": uuid.uuid4().hex})
        geometry = Geometry(tuple(meta["shape"]), float(meta["pixel_nm"]), tuple(meta["origin_nm"]),
                            float(meta.get("reach_nm", 0.0)))
        return Overview(image=image, geometry=geometry, channel=meta["channel"], unit=meta["unit"],
                        elapsed_s=float(meta["elapsed_s"]), scan_s=float(meta["scan_s"]))

    def acquire(
        self, x_nm: float, y_nm: float, settings: Settings | None = None, request_id: str | None = None
    ) -> Spectrum:
        """Measure one spectrum at (x_nm, y_nm) nm; one request id (`request_id`, or a fresh
        random one) for all retries, so the server measures it once. Non-finite numbers (which
        JSON cannot carry) are refused here, the rest is validated by the server."""
        if not all(math.isfinite(v) for v in (x_nm, y_nm)):
            raise OutOfField(f"position must be finite numbers, got ({x_nm}, {y_nm})")
        if settings is not None and settings.dwell_s is not None and not math.isfinite(settings.dwell_s):
            raise InvalidSettings(f"dwell_s must be a finite number, got {settings.dwell_s}")
        body = {"x_nm": x_nm, "y_nm": y_nm, "dwell_s": None if settings is None else settings.dwell_s,
                "request_id": request_id or uuid.uuid4().hex}
        raw, meta = self._call("POST", "acquire", body)
        raw = np.asarray(raw, dtype=np.float64)
        return Spectrum(values=raw[1], axis=raw[0], axis_name=meta["axis_name"], axis_unit=meta["axis_unit"],
                        unit=meta["unit"], x_nm=float(meta["x_nm"]), y_nm=float(meta["y_nm"]),
                        dwell_s=float(meta["dwell_s"]), elapsed_s=float(meta["elapsed_s"]), metadata=meta["metadata"])

    def state(self) -> InstrumentState:
        """The served instrument's state."""
        return InstrumentState.from_dict(self._call("GET", "state"))

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()


class RemoteOptions(BaseModel):
    """Options of a remote instrument (the `instrument:` section with `kind: remote`). The token
    is never written in the spec: it comes from a file or an environment variable."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field("http://127.0.0.1:8765", description="base URL of the instrument server")
    token_file: str | None = Field(None, description="file holding the server's token (first line)")
    token_env: str = Field("ACTIVESCOPE_TWIN_TOKEN", description="environment variable holding the token when no token_file is given")
    timeout_s: float = Field(30.0, gt=0, description="seconds to wait for connect and for each answer")
    retries: int = Field(5, ge=0, description="extra attempts after a dropped connection, timeout or corrupt answer")
    backoff_s: float = Field(0.05, ge=0, description="first wait between attempts, s (doubles each time)")
    backoff_max_s: float = Field(2.0, ge=0, description="longest wait between attempts, s")


def read_token(token_file: str | None, token_env: str) -> str:
    """The server token from `token_file` (first line) or the environment variable `token_env`;
    SpecError when neither holds one."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text().splitlines()[0].strip() if Path(token_file).stat().st_size else ""
        except OSError as err:
            raise SpecError(f"instrument.token_file: cannot read {token_file}: {err.strerror}") from None
    else:
        token = os.environ.get(token_env, "").strip()
    if not token:
        raise SpecError(f"instrument: no server token: set {token_env} or give token_file")
    return token


@register_instrument("remote", RemoteOptions)
def remote(url: str, token_file: str | None, token_env: str, timeout_s: float, retries: int, backoff_s: float,
           backoff_max_s: float) -> RemoteInstrument:
    """An instrument served over HTTP (`activescope twin serve` or a vendor bridge), with retries
    and idempotent request ids."""
    return RemoteInstrument(url, read_token(token_file, token_env), timeout_s=timeout_s, retries=retries,
                            backoff_s=backoff_s, backoff_max_s=backoff_max_s)
