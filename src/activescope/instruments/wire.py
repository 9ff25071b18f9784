"""The HTTP wire format shared by the instrument server and its client.

- Arrays travel as the bytes of a ``.npy`` file (``application/octet-stream``), never as JSON
  lists; scalar metadata travels as compact JSON in the ``X-Activescope-Meta`` header and the
  SHA-256 of the body in ``X-Activescope-Sha256``, so a damaged payload is detected and fetched
  again.
- Requests carry ``Authorization: Bearer <token>``.
- Errors are JSON ``{"error": "<one line>", "code": "<code>"}``; `ERRORS` maps codes to the
  exceptions the client raises, so remote and local back ends fail the same way.

Endpoints (all under ``/v1``): ``GET info``, ``GET state`` (JSON), ``POST overview`` and
``POST acquire`` (JSON body with a ``request_id``; npy response).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np

from activescope.engine.errors import ActivescopeError

from .protocol import BudgetExhausted, InstrumentError, InvalidSettings, OutOfField

META_HEADER = "X-Activescope-Meta"
CHECKSUM_HEADER = "X-Activescope-Sha256"
OCTET_STREAM = "application/octet-stream"

# error code -> (HTTP status, exception the client raises)
ERRORS: dict[str, tuple[int, type[InstrumentError]]] = {
    "out_of_field": (422, OutOfField),
    "invalid_settings": (422, InvalidSettings),
    "invalid_request": (422, InvalidSettings),
    "budget_exhausted": (409, BudgetExhausted),
    "request_id_reused": (409, InstrumentError),
    "instrument_error": (409, InstrumentError),
    "unauthorized": (401, InstrumentError),
    "not_found": (404, InstrumentError),
    "internal_error": (500, InstrumentError),
}


class CorruptPayload(ValueError):
    """A response body does not match its checksum or is not a valid .npy array."""


def error_code(err: ActivescopeError) -> str:
    """The wire code of a refusal (the most specific class of `err` in `ERRORS`)."""
    for code in ("out_of_field", "invalid_settings", "budget_exhausted"):
        if isinstance(err, ERRORS[code][1]):
            return code
    return "instrument_error"


def encode_array(array: np.ndarray) -> bytes:
    """The .npy bytes of `array` (no pickled objects)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def checksum(body: bytes) -> str:
    """Hex SHA-256 of a body."""
    return hashlib.sha256(body).hexdigest()


def decode_array(body: bytes, expected_checksum: str | None) -> np.ndarray:
    """The array in .npy `body`; CorruptPayload when the checksum differs or the bytes are not a
    valid .npy file."""
    if expected_checksum is None or checksum(body) != expected_checksum:
        raise CorruptPayload("response body does not match its checksum")
    try:
        return np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise CorruptPayload(f"response body is not a .npy array: {err}") from None
