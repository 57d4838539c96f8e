"""Best-effort parsing of an error response body into :class:`ErrorInfo`.

The spec: non-2xx responses carry ``{"detail": ..., "error": {...}}`` — but
some 5xx paths return plain text, ``error`` may be a bare string (which is
then the code), and any body may be empty, binary, truncated or hostile. So
:func:`parse_error` reads a bounded prefix, never raises, and always returns.
"""

from __future__ import annotations

import http
import json
import re
from typing import Any, Final

import attrs

from ._backoff import header_value
from ._redact import has_secret, redact, redact_data

__all__ = ["MAX_PARSE_BYTES", "ErrorInfo", "parse_error"]

MAX_PARSE_BYTES: Final = 64 * 1024
"""Only this much of a body is ever decoded or parsed."""
MAX_EXCERPT: Final = 512
"""``ErrorInfo.raw`` and messages keep at most this many characters."""
_REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-eugpt-request-id")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
"""A lone UTF-16 surrogate: a JSON ``\\ud800`` escape decodes to one, and an error holding
it could not be printed or logged as UTF-8 (``UnicodeEncodeError``): it becomes U+FFFD."""
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _excerpt(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_EXCERPT else text[:MAX_EXCERPT] + "…"


def _clean(value: Any) -> Any:
    """A text field, redacted (anything else is kept as given)."""
    return redact(value) if isinstance(value, str) else value


@attrs.frozen(slots=False)  # a dict class: attrs' frozen __init__ is ~30% faster without slots
class ErrorInfo:
    """What an error response said, as far as it could be understood.

    ``raw`` is a bounded, redacted excerpt of the body; ``detail`` is the
    envelope's ``detail`` (string, object or list) when there was one.

    Redacted at the source: whoever builds one, every string it holds (``code``,
    ``type``, ``message``, ``request_id``, ``raw``, and every string of ``detail``,
    dict keys included) has its API keys and bearer tokens masked.
    """

    status: int | None
    code: str | None = attrs.field(default=None, converter=_clean)
    type: str | None = attrs.field(default=None, converter=_clean)
    message: str | None = attrs.field(default=None, converter=_clean)
    detail: Any = attrs.field(default=None, repr=False, converter=redact_data)
    request_id: str | None = attrs.field(default=None, converter=_clean)
    raw: str | None = attrs.field(default=None, repr=False, converter=_clean)


_new: Final = object.__new__
_set: Final = object.__setattr__


def _info(  # noqa: PLR0917 - ErrorInfo's fields, in order: the parser's hot path
    status: int | None,
    code: str | None,
    etype: str | None,
    message: str | None,
    detail: Any,
    request_id: str | None,
    raw: str | None = None,
) -> ErrorInfo:
    """An ErrorInfo from values :func:`parse_error` has already redacted, skipping the
    converters (the parser redacts once, on the whole body, only when it holds a secret).
    As fast as attrs' own ``__init__`` without converters."""
    info: ErrorInfo = _new(ErrorInfo)
    _set(
        info,
        "__dict__",
        {
            "status": status,
            "code": code,
            "type": etype,
            "message": message,
            "detail": detail,
            "request_id": request_id,
            "raw": raw,
        },
    )
    return info


def parse_error(status: int | None, body: bytes | str | None, headers: object = None) -> ErrorInfo:
    """Parse an error response. Never raises; reads at most :data:`MAX_PARSE_BYTES`.

    Check the status first (the caller has), then look for ``detail`` / ``error``.
    """
    try:
        return _parse(status, body, headers)
    except Exception:  # noqa: BLE001 - a parser of remote data must never raise
        return ErrorInfo(status if isinstance(status, int) else None)


def _request_id(headers: object) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = header_value(headers, name)
        if value is not None:
            return _excerpt(redact(value[:MAX_EXCERPT]))
    return None


def _parse(status: int | None, body: bytes | str | None, headers: object) -> ErrorInfo:
    request_id = None if headers is None else _request_id(headers)
    if type(body) is bytes or isinstance(body, bytes | bytearray | memoryview):
        size = len(body)
        raw_bytes = bytes(body if size <= MAX_PARSE_BYTES else body[:MAX_PARSE_BYTES])
        if b"\x00" in raw_bytes:
            return _info(status, None, None, f"<{size} bytes of binary data>", None, request_id)
        text = raw_bytes.decode("utf-8", "replace").strip().removeprefix("\ufeff").lstrip()
    elif isinstance(body, str):
        text = body[:MAX_PARSE_BYTES].strip().removeprefix("\ufeff").lstrip()
    else:
        text = ""
    if not text:
        return _info(status, None, None, _phrase(status), None, request_id)
    secret = has_secret(text)
    clean = redact(text) if secret else text
    excerpt = clean if len(clean) <= MAX_EXCERPT else clean[:MAX_EXCERPT] + "…"
    if text[0] == "{":
        # JSON escapes can hide a secret from the text (``eugpt\u005f…``) or split one
        # (``eugpt_ab\/cd``): then the decoded strings are redacted instead of the text
        escaped = "\\u" in text or (secret and "\\" in text)
        try:
            data = json.loads(text if escaped else clean)
        except (ValueError, RecursionError):
            data = None
        if escaped and type(data) is dict and _SURROGATE_ESCAPE.search(text):
            # a lone surrogate escape: decode the envelope again without it (pairs are
            # one character by now, so only lone halves are replaced)
            again = _SURROGATE.sub("\ufffd", json.dumps(data, ensure_ascii=False))
            data = json.loads(again)
        if type(data) is dict:
            if escaped:
                redacted = redact_data(data)
                if redacted is not data:
                    data = redacted
                    excerpt = _excerpt(json.dumps(data, ensure_ascii=False)) or ""
            return _from_envelope(status, data, excerpt, request_id)
    return _info(status, None, None, excerpt, None, request_id, excerpt)


def _from_envelope(
    status: int | None, data: dict[str, Any], excerpt: str, request_id: str | None
) -> ErrorInfo:
    detail = data.get("detail")
    error = data.get("error")
    code = etype = message = None
    if type(error) is dict:
        code = _bounded(error.get("code"))
        etype = _bounded(error.get("type"))
        message = _bounded(error.get("message"))
    elif type(error) is str:
        code = _bounded(error)
    elif data.get("type") == "error":
        # an SSE error event's data: code and message at the top level
        code = _bounded(data.get("code"))
        message = _bounded(data.get("message"))
    if message is None:
        message = _bounded(_detail_message(detail)) or _phrase(status)
    return _info(status, code, etype, message, detail, request_id, excerpt)


def _bounded(value: object) -> str | None:
    """A string (or number) from remote data as a bounded string; anything else is None."""
    if type(value) is str:
        return value if len(value) <= MAX_EXCERPT else value[:MAX_EXCERPT] + "…"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return _bounded(str(value))
    return None


def _detail_message(detail: object) -> str | None:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        return _bounded(detail.get("message")) or _bounded(detail.get("msg"))
    if isinstance(detail, list):  # e.g. validation errors: [{"loc": ..., "msg": ...}, ...]
        msgs = [
            m for item in detail[:5] if isinstance(item, dict) and (m := _bounded(item.get("msg")))
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
