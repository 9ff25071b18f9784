"""Deliberate misbehaviour of the instrument server, for reliability testing.

`FaultInjector` wraps the server's ASGI application and, counting only measuring requests
(``POST .../acquire`` and ``POST .../overview``), spoils every N-th one *after* the instrument
has answered, which is the hard case for a client: the measurement happened, the answer is lost.

- drop: the response headers and half of the body are sent, then the connection is cut;
- delay: the response is held back `delay_s` seconds (a client with a shorter timeout retries);
- corrupt: bytes of the body are flipped while the checksum header is kept.

A client that retries with the same request id gets the stored answer, so a run under faults
loses and repeats nothing. `activescope twin serve --drop-every 5 ...` turns it on.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class Faults:
    """Which measuring requests misbehave: every `drop_every`-th, `delay_every`-th and
    `corrupt_every`-th (0 = never); `delay_s`: how long a delayed answer is held, seconds."""

    drop_every: int = 0
    delay_every: int = 0
    delay_s: float = 1.0
    corrupt_every: int = 0

    @property
    def active(self) -> bool:
        """Whether any fault is switched on."""
        return bool(self.drop_every or self.delay_every or self.corrupt_every)


class ConnectionCut(Exception):
    """Raised to make the server close a connection in the middle of a response."""


def _due(every: int, n: int) -> bool:
    return every > 0 and n % every == 0


class FaultInjector:
    """ASGI middleware applying `faults` to measuring requests (see the module docstring)."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults
        self._count = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not path.endswith(("/acquire", "/overview")):
            await self.app(scope, receive, send)
            return
        n = next(self._count)
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)
        start = next(m for m in messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        ok = start["status"] == 200
        if ok and _due(self.faults.delay_every, n):
            await asyncio.sleep(self.faults.delay_s)
        if ok and _due(self.faults.drop_every, n):
            await send(start)
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise ConnectionCut(f"fault injection: connection cut after request {n}")
        if ok and _due(self.faults.corrupt_every, n):
            body = _flip(body)
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _flip(body: bytes) -> bytes:
    """`body` with every byte of its second half inverted (length kept)."""
    half = len(body) // 2
    return body[:half] + (np.frombuffer(body[half:], dtype=np.uint8) ^ 0xFF).tobytes()
