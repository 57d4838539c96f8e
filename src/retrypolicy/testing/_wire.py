"""What goes on the wire when a reply plays: JSON and SSE bodies, status lines, headers.

A :class:`~retrypolicy.testing.Reply` writes its response through a :class:`Wire`
(the fake server's connection handler), so the replies never touch a socket and
the server never knows one kind of reply from another.
"""

from __future__ import annotations

import itertools
import json as _json
from collections.abc import Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Final, Protocol

__all__ = ["Wire"]

EVENT_STREAM: Final = "text/event-stream; charset=utf-8"
JSON: Final = "application/json"
TEXT: Final = "text/plain; charset=utf-8"
FRAME_HEAD: Final = b"event: message\ndata: "
LARGE_DELTA: Final = 64 * 1024
FILLER: Final = (b"lorem ipsum dolor sit amet " * (LARGE_DELTA // 27 + 1))[:LARGE_DELTA]


class Wire(Protocol):
    """What a reply writes its response through: one connection, one request."""

    response_id: str
    """``resp_<n>``: the id a response body carries."""

    @property
    def stopping(self) -> bool:
        """Whether the server is stopping: a long reply ends early."""
        ...

    def send_full(
        self, status: int, content_type: str, body: bytes, headers: Sequence[tuple[str, str]]
    ) -> None:
        """A complete response with a Content-Length."""
        ...

    def start_stream(
        self, status: int, content_type: str, headers: Sequence[tuple[str, str]]
    ) -> None:
        """Status line and headers of a body sent piecemeal (chunked on HTTP/1.1)."""
        ...

    def send_chunk(self, data: bytes) -> None:
        """Part of a body started with :meth:`start_stream`."""
        ...

    def send_event(self, event: Mapping[str, object]) -> int:
        """One SSE frame as one chunk; returns its size in bytes."""
        ...

    def end_stream(self) -> None:
        """End a body started with :meth:`start_stream` normally."""
        ...

    def hang_up(self) -> None:
        """Close cleanly (FIN) once the reply returns, whatever was sent so far."""
        ...

    def reset(self) -> None:
        """Reset the connection now (RST)."""
        ...

    def pause(self, seconds: float) -> bool:
        """Wait *seconds*; ``False`` as soon as the server stops or the client leaves."""
        ...


def dumps(value: object, *, strict: bool = False) -> str:
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=not strict)


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def merge(
    defaults: Sequence[tuple[str, str]], overrides: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """*defaults* minus any header that *overrides* names, then *overrides*."""
    named = {name.lower() for name, _ in overrides}
    return [h for h in defaults if h[0].lower() not in named] + list(overrides)


def frame(event: Mapping[str, object]) -> bytes:
    return FRAME_HEAD + dumps(event).encode() + b"\n\n"


def delta_text(index: int) -> str:
    return f"chunk {index}. "


def sequence_numbers(*, skip: bool) -> Iterator[int]:
    yield 0
    yield from itertools.count(2 if skip else 1)
