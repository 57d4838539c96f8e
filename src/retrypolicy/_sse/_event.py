"""The decoder's value: one dispatched event, and the default line limit.

Why a module of its own: the exact decoder, its fast paths and the monitor all speak
in these terms, and none of them should have to import another to name an event.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["DEFAULT_MAX_LINE_BYTES", "SSEEvent"]

DEFAULT_MAX_LINE_BYTES: Final = 1024 * 1024
"""The longest line :class:`SSEDecoder` accepts by default (UTF-8 bytes)."""


@attrs.frozen
class SSEEvent:
    """One dispatched event, immutable so it can be shared, logged and compared safely.

    ``id`` is the stream's last event ID at dispatch (WHATWG: it persists across
    events until the server sets another), ``None`` if the server never sent one.
    ``retry`` is the reconnection time (ms) given in this event's own block, if any;
    :attr:`SSEDecoder.retry` keeps the latest one of the whole stream.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
