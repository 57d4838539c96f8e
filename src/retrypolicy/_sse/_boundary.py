"""Where a failing frame begins in the bytes a guard is about to hand on.

Why a module of its own: it works on raw bytes, after the monitor has spoken, and
needs nothing of the decoder.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["bytes_before_event"]

_BLANK_LINE: Final = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
"""A line end followed by another: the end of a frame (CRLF is one line end)."""


def bytes_before_event(chunk: bytes, data: str, previous: bytes = b"") -> bytes:
    """The bytes of *chunk* that come before the frame whose data is *data*.

    Why: a guard must hand its caller everything up to a failing event, and never the
    event itself (the caller's own parser would act on it). *chunk* is the chunk in
    which the event was dispatched, *previous* the chunk before it (a frame boundary
    may straddle the two). When the frame cannot be found in *chunk* — it began in an
    earlier chunk, or its data spans several lines — no event before it ends in
    *chunk* either, except in that rare multi-line case, so the answer is ``b""``:
    never part of the failing frame. Bounded: one search and one scan of *chunk*.
    """
    needle = data.encode("utf-8", "surrogatepass")
    pos = chunk.find(needle) if needle else -1
    while pos >= 0:
        for prefix in (b"data: ", b"data:"):
            start = pos - len(prefix)
            if (
                start >= 0
                and chunk.startswith(prefix, start)
                and (start == 0 or chunk[start - 1] in b"\r\n")
            ):
                tail = previous[-2:]
                head = tail + chunk[:start]
                end = -1
                for m in _BLANK_LINE.finditer(head):
                    end = m.end()
                return chunk[: end - len(tail)] if end > len(tail) else b""
        pos = chunk.find(needle, pos + 1)
    return b""
