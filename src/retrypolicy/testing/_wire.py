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
MODEL: Final = "auto"
"""The ``model`` every response object names."""
MESSAGE_ID: Final = "msg_0"
"""The id of a response's one output message, the ``item_id`` of its deltas."""
CREATED_AT: Final = 1_767_225_600
"""Every response's ``created_at`` (2026-01-01T00:00:00Z)."""
# The message id and created_at are the same in every response, as the text is: two
# replies of one kind differ only in their response ids (resp_<n>), so tests can compare
# bodies byte for byte once those are blanked.


class Wire(Protocol):
    """What a reply writes its response through: one connection, one request."""

    response_id: str
    """``resp_<n>``: the id a response body carries."""

    @property
    def stopping(self) -> bool:
        """Whether the server is stopping: a long reply ends early."""

    def send_full(
        self, status: int, content_type: str, body: bytes, headers: Sequence[tuple[str, str]]
    ) -> None:
        """A complete response with a Content-Length."""

    def start_stream(
        self, status: int, content_type: str, headers: Sequence[tuple[str, str]]
    ) -> None:
        """Status line and headers of a body sent piecemeal (chunked on HTTP/1.1)."""

    def send_chunk(self, data: bytes, deltas: int = 0) -> None:
        """Part of a body started with :meth:`start_stream`; *deltas*: the text deltas it
        carries, counted for the request's outcome as :meth:`send_event` counts them."""

    def send_event(self, event: Mapping[str, object]) -> int:
        """One SSE frame as one chunk; returns its size in bytes."""

    def end_stream(self) -> None:
        """End a body started with :meth:`start_stream` normally."""

    def hang_up(self) -> None:
        """Close cleanly (FIN) once the reply returns, whatever was sent so far."""

    def reset(self) -> None:
        """Reset the connection now (RST)."""

    def pause(self, seconds: float) -> bool:
        """Wait *seconds*; ``False`` as soon as the server stops or the client leaves."""


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


def response_object(
    response_id: str,
    *,
    status: str,
    text: str | None,
    **extra: object,
) -> dict[str, object]:
    """A full Responses API ``Response`` object, as the openai SDK validates it strictly.

    *text* ``None`` gives an empty ``output`` (a response still in progress); a string
    gives one completed assistant message holding it as an ``output_text`` part. The
    top-level ``output_text`` (the SDK computes it from ``output``; raw-HTTP callers read
    it here) and *extra* are additions the SDK keeps as extra fields.
    """
    output: list[object] = []
    if text is not None:
        part = {"type": "output_text", "text": text, "annotations": []}
        output.append(
            {
                "type": "message",
                "id": MESSAGE_ID,
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    body: dict[str, object] = {
        "id": response_id,
        "object": "response",
        "created_at": CREATED_AT,
        "status": status,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
    }
    if text is not None:
        body["output_text"] = text
    body.update(extra)
    return body


def delta_event(sequence_number: int, delta: str) -> dict[str, object]:
    """A ``response.output_text.delta`` event: ``type`` and ``sequence_number`` first,
    the layout the stream monitor reads cheaply."""
    return {
        "type": "response.output_text.delta",
        "sequence_number": sequence_number,
        "item_id": MESSAGE_ID,
        "output_index": 0,
        "content_index": 0,
        "logprobs": [],
        "delta": delta,
    }


def delta_head(sequence_number: int) -> bytes:
    """A :func:`delta_event` frame up to the opening quote of its ``delta`` value."""
    event = delta_event(sequence_number, "")
    return frame(event)[: -len(b'""}\n\n')] + b'"'
