"""The transport failures a rule can match on: outcomes without an HTTP status.

Why a module of its own: the classification rules and the table of well-known
transport exceptions both speak in these terms; neither should import the other
for them (the rules load that table lazily, so it would close a cycle).
"""

from __future__ import annotations

import enum

__all__ = ["Failure"]


class Failure(enum.StrEnum):
    """Outcomes without an HTTP status that a rule can match on."""

    CONNECTION = "connection"
    """The request never left: DNS, refused, connect timeout, TLS handshake."""
    TIMEOUT = "timeout"
    """The request was (maybe) sent, then no complete response: read timeout, reset."""
    INCOMPLETE_STREAM = "incomplete_stream"
    """An event stream ended with neither its completion event nor an error event."""
    STREAM_ERROR = "stream_error"
    """An event stream carried an error event without a usable code (no code, a code that
    is not a string or number, data that is not JSON): a failure, never a success."""
