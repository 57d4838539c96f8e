"""Secrets never leave through us: API keys and bearer tokens are masked at the source.

Everything that may end up in a log line, an exception message or a ``repr``
(error bodies, URLs, header values) passes through :func:`redact` first.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["error_text", "has_secret", "redact", "redact_data", "redact_headers"]

_SECRET_RE: Final = re.compile(
    r"(?P<key>eugpt_)[A-Za-z0-9._~+/=-]+"
    r"|(?P<bearer>\b(?:[Bb]earer|BEARER)\s+)[A-Za-z0-9._~+/=-]+"
)
REDACTED: Final = "[redacted]"
_SECRET_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"}
)


def _mask(m: re.Match[str]) -> str:
    return (m.group("key") or m.group("bearer")) + REDACTED


def has_secret(text: str) -> bool:
    """True if *text* may hold a key or token: the cheap test :func:`redact` starts with."""
    return "eugpt_" in text or "earer" in text or "EARER" in text


def redact(text: str) -> str:
    """*text* with every ``eugpt_…`` key and ``Bearer …`` token replaced by ``[redacted]``."""
    if "eugpt_" not in text and "earer" not in text and "EARER" not in text:
        return text  # the common case costs three substring scans
    return _SECRET_RE.sub(_mask, text)


def error_text(exc: BaseException, limit: int) -> str:
    """``Type: message`` of *exc*, redacted, cut to *limit* characters. Never raises: an
    exception whose ``str()`` fails (a broken ``__str__``) reads ``<str() failed>``, so
    describing a failure never replaces it with another one."""
    try:
        said = str(exc)
    except Exception:  # noqa: BLE001 - any exception's text, a hostile one's included
        said = "<str() failed>"
    return redact(f"{type(exc).__name__}: {said}")[:limit]


_MAX_DEPTH: Final = 32
_MAX_NODES: Final = 20_000


def redact_data(value: Any) -> Any:
    """*value* (decoded JSON: dicts, lists, strings...) with every string, keys included,
    redacted. Returns *value* itself when nothing needed redacting. Never raises: beyond
    32 levels or 20,000 nodes a container is replaced by ``"[redacted]"`` (it cannot be
    vouched for)."""
    budget = [_MAX_NODES]
    return _redact_value(value, 0, budget)


def _redact_value(value: Any, depth: int, budget: list[int]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if not isinstance(value, dict | list | tuple):
        return value
    budget[0] -= len(value) + 1
    if depth >= _MAX_DEPTH or budget[0] < 0:
        return REDACTED
    changed = False
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            k2 = _redact_value(k, depth + 1, budget)
            v2 = _redact_value(v, depth + 1, budget)
            changed = changed or k2 is not k or v2 is not v
            out[k2] = v2
        return out if changed else value
    items = [_redact_value(v, depth + 1, budget) for v in value]
    if not any(a is not b for a, b in zip(items, value, strict=True)):
        return value
    return items if isinstance(value, list) else tuple(items)


def redact_headers(headers: object) -> dict[str, str]:
    """A loggable copy of *headers*: credential headers masked, other values redacted."""
    out: dict[str, str] = {}
    try:
        items: Any = headers.items() if hasattr(headers, "items") else headers
        for key, value in items:
            k = key.decode("latin-1") if isinstance(key, bytes) else str(key)
            v = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            out[k] = REDACTED if k.lower() in _SECRET_HEADERS else redact(v)
    except (TypeError, ValueError, AttributeError):
        return out
    return out
