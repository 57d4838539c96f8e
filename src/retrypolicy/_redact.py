"""Secrets never leave through us: API keys and bearer tokens are masked at the source.

Everything that may end up in a log line, an exception message or a ``repr``
(error bodies, URLs, header values) passes through :func:`redact` first.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["redact", "redact_headers"]

_SECRET_RE: Final = re.compile(
    r"(?P<key>eugpt_)[A-Za-z0-9._~+/=-]+"
    r"|(?P<bearer>\b[Bb]earer\s+)[A-Za-z0-9._~+/=-]+"
)
REDACTED: Final = "[redacted]"
_SECRET_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"}
)


def _mask(m: re.Match[str]) -> str:
    return (m.group("key") or m.group("bearer")) + REDACTED


def redact(text: str) -> str:
    """*text* with every ``eugpt_…`` key and ``Bearer …`` token replaced by ``[redacted]``."""
    if "eugpt_" not in text and "earer" not in text:
        return text  # the common case costs two substring scans
    return _SECRET_RE.sub(_mask, text)


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
