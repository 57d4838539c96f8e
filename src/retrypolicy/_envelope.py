"""Best-effort parsing of an error response body into :class:`ErrorInfo`.

The spec: non-2xx responses carry ``{"detail": ..., "error": {...}}`` — but
some 5xx paths return plain text, ``error`` may be a bare string (which is
then the code), and any body may be empty, binary, truncated or hostile. So
:func:`parse_error` reads a bounded prefix, never raises, and always returns.
"""

from __future__ import annotations

import http
import json
from typing import Any, Final

import attrs

from ._backoff import header_value
from ._redact import redact

__all__ = ["MAX_PARSE_BYTES", "ErrorInfo", "parse_error"]

MAX_PARSE_BYTES: Final = 64 * 1024
"""Only this much of a body is ever decoded or parsed."""
MAX_EXCERPT: Final = 512
"""``ErrorInfo.raw`` and messages keep at most this many characters."""
_REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-eugpt-request-id")


def _excerpt(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_EXCERPT else text[:MAX_EXCERPT] + "…"


@attrs.frozen
class ErrorInfo:
    """What an error response said, as far as it could be understood.

    ``raw`` is a bounded, redacted excerpt of the body; ``detail`` is the
    envelope's ``detail`` (string, object or list) when there was one.
    """

    status: int | None
    code: str | None = None
    type: str | None = None
    message: str | None = None
    detail: Any = attrs.field(default=None, repr=False)
    request_id: str | None = None
    raw: str | None = attrs.field(default=None, repr=False)


def parse_error(status: int | None, body: bytes | str | None, headers: object = None) -> ErrorInfo:
    """Parse an error response. Never raises; reads at most :data:`MAX_PARSE_BYTES`.

    Check the status first (the caller has), then look for ``detail`` / ``error``.
    """
    try:
        return _parse(status, body, headers)
    except Exception:  # noqa: BLE001 - a parser of remote data must never raise
        return ErrorInfo(status=status if isinstance(status, int) else None)


def _parse(status: int | None, body: bytes | str | None, headers: object) -> ErrorInfo:
    request_id = None
    if headers is not None:
        for name in _REQUEST_ID_HEADERS:
            request_id = header_value(headers, name)
            if request_id is not None:
                request_id = _excerpt(redact(request_id[:MAX_EXCERPT]))
                break
    if isinstance(body, bytes | bytearray | memoryview):
        raw_bytes = bytes(body[:MAX_PARSE_BYTES])
        if b"\x00" in raw_bytes:
            return ErrorInfo(
                status=status,
                message=f"<{len(body)} bytes of binary data>",
                request_id=request_id,
            )
        text = raw_bytes.decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body[:MAX_PARSE_BYTES]
    else:
        text = ""
    text = redact(text.strip())
    if not text:
        return ErrorInfo(status=status, message=_phrase(status), request_id=request_id)
    if text[0] == "{":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            return _from_envelope(status, data, text, request_id)
    return ErrorInfo(
        status=status, message=_excerpt(text), request_id=request_id, raw=_excerpt(text)
    )


def _from_envelope(
    status: int | None, data: dict[str, Any], text: str, request_id: str | None
) -> ErrorInfo:
    detail = data.get("detail")
    error = data.get("error")
    code = etype = message = None
    if isinstance(error, str):
        code = error
    elif isinstance(error, dict):
        code = _str_or_none(error.get("code"))
        etype = _str_or_none(error.get("type"))
        message = _str_or_none(error.get("message"))
    elif "type" in data and data.get("type") == "error":
        # an SSE error event's data: code and message at the top level
        code = _str_or_none(data.get("code"))
        message = _str_or_none(data.get("message"))
    if message is None:
        message = _detail_message(detail)
    return ErrorInfo(
        status=status,
        code=_excerpt(code),
        type=_excerpt(etype),
        message=_excerpt(message) or _phrase(status),
        detail=detail,
        request_id=request_id,
        raw=_excerpt(text),
    )


def _str_or_none(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _detail_message(detail: object) -> str | None:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        return _str_or_none(detail.get("message")) or _str_or_none(detail.get("msg"))
    if isinstance(detail, list):  # e.g. validation errors: [{"loc": ..., "msg": ...}, ...]
        msgs = [
            m
            for item in detail[:5]
            if isinstance(item, dict) and (m := _str_or_none(item.get("msg")))
        ]
        return "; ".join(msgs) or None
    return None


def _phrase(status: int | None) -> str | None:
    if status is None:
        return None
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return None
