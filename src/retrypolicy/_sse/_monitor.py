"""The verdict on an EU GPT response stream, reached while it is read.

Why: a ``200`` stream is a success only when its last event is ``response.completed``;
an ``error`` event or a sequence gap is a failure at once, and a stream cut short is one
at its end. The monitor answers that incrementally, as a :class:`StreamProblem` or
``None``, feeding the bytes path of the decoder and reading events cheaply.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from .._redact import redact
from .._rules import Failure
from ._bytes import LazyDecoder
from ._event import DEFAULT_MAX_LINE_BYTES
from ._head import HEAD_COMPACT, loads, read_slow

__all__ = ["StreamMonitor", "StreamProblem"]

_MAX_MESSAGE: Final = 512
"""A :class:`StreamProblem` message quotes at most this many characters of the server's text."""


@attrs.frozen
class StreamProblem:
    """Why a stream cannot be taken as a success, in the terms the policy classifies.

    ``code`` is the error event's top-level ``code`` (``None`` for an incomplete or
    corrupted stream, or an error event without a usable code); ``failure`` is
    :attr:`Failure.INCOMPLETE_STREAM` for an incomplete or corrupted stream,
    :attr:`Failure.STREAM_ERROR` for an error event without a usable code, and
    ``None`` for an error event with a code (the code decides), so the pair feeds
    ``policy.classify(code=..., failure=...)`` directly and never classifies as a
    success. ``message`` and ``code`` are redacted (API keys, bearer tokens) here,
    whoever builds the problem.
    """

    code: str | None = attrs.field(converter=attrs.converters.optional(redact))
    message: str = attrs.field(converter=redact)
    failure: Failure | None
    events_seen: int

    @classmethod
    def incomplete(cls, message: str, events_seen: int) -> StreamProblem:
        """A stream that cannot be taken as complete: :attr:`Failure.INCOMPLETE_STREAM`."""
        return cls(None, message, Failure.INCOMPLETE_STREAM, events_seen)


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _printable(text: str) -> str:
    """*text* with each lone surrogate (a ``"\\ud800"`` escape in the JSON) as U+FFFD, so
    that printing or logging the problem never raises ``UnicodeEncodeError``."""
    return _SURROGATE.sub("\ufffd", text)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _excerpt(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def _plural(n: int) -> str:
    return f"{n} event" if n == 1 else f"{n} events"


class StreamMonitor:
    """Judges an EU GPT response stream while it is read, without buffering it.

    Why incremental: a stream guard must raise as soon as the stream goes wrong
    (an ``error`` event, a ``sequence_number`` gap) and must know at the end whether
    the last event was the completion event — all without keeping the stream.

    The rules (from the spec): every frame is ``event: message`` and the kind is the
    JSON ``type`` of its data; a frame whose SSE ``event`` field is itself the error
    type counts as an error too. An error event is a problem at once, carrying its
    top-level ``code`` and ``message``. ``sequence_number`` must grow by exactly one
    from event to event (events without one are not checked; the first can be
    anything); a jump or repeat is a corrupted stream. Other types are ignored.

    Decisions beyond the spec:

    * **After the completion event** only an error event still counts (the spec
      judges by the last event, and an error is the server declaring failure);
      anything else is ignored, sequence numbers included — the completion event
      carries the whole response, and a retry would only buy a second one, since
      the API does not honour idempotency keys. Trailing partial data after it is
      likewise ignored.
    * **An oversized line** (see :class:`~._frames.SSEDecoder`) before completion is a
      problem (:attr:`Failure.INCOMPLETE_STREAM`): the monitor cannot vouch for an
      event it could not read.
    * Duplicate JSON keys are not considered (RFC 8259 leaves them undefined), and
      keys are assumed not to be written with ``\\u`` escapes; type *values* with
      escapes are parsed properly.
    """

    __slots__ = (
        "_completed",
        "_completed_type",
        "_decoder",
        "_error_type",
        "_fast",
        "_finished",
        "_max_line",
        "_seq",
        "events_seen",
        "last_type",
        "problem",
        "problem_data",
    )

    def __init__(
        self,
        completed_type: str = "response.completed",
        error_type: str = "error",
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._completed_type = completed_type
        self._error_type = error_type
        self._decoder = LazyDecoder(max_line_bytes, error_type)
        self._max_line = max_line_bytes
        self._completed = False
        self.events_seen = 0
        """Events dispatched by the decoder so far (every type, ignored ones too)."""
        self.last_type: str | None = None
        """JSON ``type`` of the last event that counted for the verdict."""
        self._seq: int | None = None
        self.problem: StreamProblem | None = None
        """The problem found so far, if any."""
        self.problem_data: str | None = None
        """The ``data`` of the event that was the problem (an error event, a sequence gap);
        None when the problem is not one event (an overlong line, the end of the stream)."""
        self._finished = False
        self._fast = True  # long lines as bytes (_feed_lazy); False: as text (_feed_pairs)

    @property
    def completed(self) -> bool:
        """True once the completion event arrived (and no problem was seen)."""
        return self._completed and self.problem is None

    def feed(self, chunk: bytes) -> StreamProblem | None:
        """Decode *chunk*; return the stream's problem as soon as there is one."""
        if self.problem is not None or self._finished:
            return self.problem
        decoder = self._decoder
        events = decoder._feed_lazy(chunk) if self._fast else decoder._feed_pairs(chunk)
        if events:
            self._inspect(events)
        if self.problem is None and decoder.overflowed and not self._completed:
            self.problem = StreamProblem.incomplete(
                f"an event line longer than {self._max_line} bytes was discarded "
                f"after {_plural(self.events_seen)}: the stream cannot be verified",
                self.events_seen,
            )
        return self.problem

    def finish(self) -> StreamProblem | None:
        """End of stream: ``None`` if it completed, else the problem. Idempotent."""
        if self._finished or self.problem is not None:
            return self.problem
        events = self._decoder._close_pairs()
        if events:
            self._inspect(events)
        self._finished = True
        if self.problem is not None or self._completed:
            return self.problem
        n = self.events_seen
        where = "mid-event " if self._decoder.pending else ""
        last = f" (last event type: {self.last_type})" if self.last_type else ""
        self.problem = StreamProblem.incomplete(
            f"stream ended {where}after {_plural(n)} without {self._completed_type}{last}", n
        )
        return self.problem

    def _inspect(self, events: list[tuple[str, str]]) -> None:
        # The hot loop of every streamed response: state lives in locals and is
        # written back once; a problem ends the loop.
        error_type = self._error_type
        completed_type = self._completed_type
        compact = HEAD_COMPACT.match
        seen = self.events_seen
        prev = self._seq
        last_type = self.last_type
        completed = self._completed
        problem: StreamProblem | None = None
        for name, data in events:
            seen += 1
            m = compact(data)
            if m is not None:
                etype, seq_text = m.groups()
                seq: int | None = int(seq_text)
            else:
                etype, seq = read_slow(data)
            if error_type in (etype, name):
                last_type = error_type
                problem = self._error(data, seen)
                self.problem_data = data
                break
            if completed:
                continue  # after completion only an error counts
            if seq is not None:
                if prev is not None and seq != prev + 1:
                    problem = StreamProblem.incomplete(
                        f"sequence_number jumped from {prev} to {seq}: corrupted stream", seen
                    )
                    self.problem_data = data
                    break
                prev = seq
            if etype is not None:
                last_type = etype
                completed = etype == completed_type
        self.events_seen = seen
        self._seq = prev
        self._completed = completed
        self.last_type = last_type
        self.problem = problem

    def _error(self, data: str, seen: int) -> StreamProblem:
        obj = loads(data)
        code = message = None
        if isinstance(obj, dict):
            code = _text(obj.get("code"))
            message = _text(obj.get("message"))
            nested = obj.get("error")
            if isinstance(nested, dict):
                code = code or _text(nested.get("code"))
                message = message or _text(nested.get("message"))
            elif code is None:
                code = _text(nested)
        if code is not None and not code.strip():
            code = None  # an empty code is no code
        if code is not None:
            code = _printable(code)  # "\ud800" in the JSON: printing the error must not raise
        if message is not None:
            message = _printable(message)
        if message is None:
            message = (
                f"{self._error_type} event {code}"
                if code is not None
                else f"{self._error_type} event: {_excerpt(data)}"
            )
        # redact before cutting (a cut key must not slip past the pattern); the window
        # keeps the redaction of a huge message bounded
        message = _excerpt(redact(message[: 4 * _MAX_MESSAGE]))
        if code is None:  # no usable code: still a failure (stream_error), never a success
            return StreamProblem(None, message, Failure.STREAM_ERROR, seen)
        return StreamProblem(_excerpt(redact(code[: 4 * _MAX_MESSAGE])), message, None, seen)
