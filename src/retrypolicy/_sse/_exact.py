"""The exact decoder: the WHATWG event-stream algorithm, one line at a time.

Why a module of its own: this is the decoder every faster path must equal. It keeps the
state machine (line ends split anywhere, BOM, comments, fields, dispatch, limits) and
processes the complete lines of decoded text one by one; :mod:`._frames` only replaces
that last step with pattern passes over runs of ordinary frames, and :mod:`._bytes` keeps
long lines as bytes. The differential tests hold both to this one.
"""

from __future__ import annotations

import codecs
from typing import Any, Final

from ._event import DEFAULT_MAX_LINE_BYTES, SSEEvent
from ._raw import LazyData, utf8_len

__all__ = ["ExactDecoder"]

_MAX_RETRY_DIGITS: Final = 15
"""``retry`` values with more significant digits (over 30,000 years in ms) are ignored."""


class ExactDecoder:
    """Incremental WHATWG event-stream decoder: bytes in, :class:`SSEEvent` s out.

    Why a decoder of our own: the adapters see raw byte chunks from three
    transport libraries and must watch every streamed body cheaply, without
    depending on any of them (``httpx-sse`` needs httpx). This class is the
    plain algorithm; :class:`~._frames.SSEDecoder` is the same decoder with its
    fast path, and must behave exactly like it.

    Parsing remote data never raises. Memory is bounded: a line longer than
    *max_line_bytes* (UTF-8 bytes of the decoded line, equal to the wire length for
    valid UTF-8) is discarded without being buffered whole, and so is the data of an
    event that grows beyond *max_event_bytes* (default: four times *max_line_bytes*).
    Either way the event the oversized part belonged to is **dropped, not dispatched
    truncated** — silently losing part of an event's data would be worse than losing
    the event — and :attr:`overflowed` becomes true for good.

    At end of stream (:meth:`close`) an event not terminated by a blank line is
    discarded, as WHATWG requires; :attr:`pending` tells whether that happened, so a
    caller can tell a stream cut mid-event from one cut between events.
    """

    __slots__ = (
        "_closed",
        "_data",
        "_data_bytes",
        "_decoder",
        "_dirty",
        "_event",
        "_last_id",
        "_lazy_bytes",
        "_max_event",
        "_max_line",
        "_overflowed",
        "_poisoned",
        "_quarter",
        "_reconnect",
        "_retry",
        "_skip_lf",
        "_skipping",
        "_start",
        "_tail",
        "_tail_bytes",
    )

    def __init__(
        self,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        *,
        max_event_bytes: int | None = None,
    ) -> None:
        if max_event_bytes is None:
            max_event_bytes = 4 * max_line_bytes
        for name, value in (
            ("max_line_bytes", max_line_bytes),
            ("max_event_bytes", max_event_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name} must be a positive int, got {value!r}"
                raise ValueError(msg)
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        # A character is at most 4 UTF-8 bytes (U+FFFD standing for bad input: 3), so a
        # line of at most max_line_bytes // 4 characters is within the limit without
        # measuring it.
        self._quarter = max_line_bytes // 4
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._start = True  # the stream's first character (a BOM?) is still to come
        self._skip_lf = False  # the previous text ended with CR: a leading LF is its CRLF
        self._tail: list[str] = []  # the partial line after the last line end
        self._tail_bytes = 0
        self._skipping = False  # inside an overlong line: drop text up to its line end
        self._data: list[str | LazyData] = []  # LazyData only via the bytes path
        self._data_bytes = 0
        self._event = ""
        self._retry: int | None = None
        self._last_id: str | None = None
        self._reconnect: int | None = None
        self._dirty = False  # a field line was seen since the last blank line
        self._poisoned = False  # the current event lost a line to the limits: drop it
        self._overflowed = False
        self._closed = False
        self._lazy_bytes = False  # _data_bytes counts a LazyData's bytes, not its UTF-8

    @property
    def overflowed(self) -> bool:
        """True once any line or event exceeded the limits and was discarded."""
        return self._overflowed

    @property
    def pending(self) -> bool:
        """True if the bytes received so far end inside an event (a cut stream, at EOF)."""
        return bool(self._dirty or self._tail or self._skipping or self._decoder.getstate()[0])

    @property
    def last_event_id(self) -> str | None:
        """The stream's last event ID (``None`` until the server sends an ``id``)."""
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The latest reconnection time (ms) the server sent, if any."""
        return self._reconnect

    @property
    def closed(self) -> bool:
        """True after :meth:`close`; later feeds are ignored."""
        return self._closed

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode *chunk*; return the events it completed (often none, often several)."""
        out: list[SSEEvent] = []
        if not self._closed and chunk:
            self._feed_text(self._decoder.decode(chunk), out, pairs=False)
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: flush, and discard an unterminated event (see :attr:`pending`)."""
        return self._close([], pairs=False)

    # _feed_pairs / _close_pairs are feed / close for StreamMonitor, which needs only the
    # event type and data of each event: they return (event, data) tuples, sparing the
    # construction of an SSEEvent per event (most of the decoder's cost on small frames).
    # The parsing is shared; *pairs* only selects what the dispatch points append.

    def _feed_pairs(self, chunk: bytes) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self._closed and chunk:
            self._feed_text(self._decoder.decode(chunk), out, pairs=True)
        return out

    def _close_pairs(self) -> list[tuple[str, str]]:
        return self._close([], pairs=True)

    def _close(self, out: list[Any], *, pairs: bool) -> list[Any]:
        if not self._closed:
            self._closed = True
            # Flushing can only add U+FFFD for a truncated character to the partial line;
            # a partial line is never a complete event, so this adds nothing in practice.
            self._feed_text(self._decoder.decode(b"", True), out, pairs=pairs)
        return out

    def _feed_text(self, text: str, out: list[Any], *, pairs: bool) -> None:
        """Process decoded *text*: complete lines now, the partial last line into the tail.

        Every character is searched for a line end once, when it arrives: the tail holds
        only pieces already known to contain none, so a long line delivered over many
        chunks costs one ``find`` per chunk and one ``join`` when its end arrives, and
        neither the tail nor the text after the last line end is ever scanned by the
        frame patterns (they look only at complete lines).
        """
        if not text:
            return
        if self._start:
            self._start = False
            if text[0] == "\ufeff":
                text = text[1:]
                if not text:
                    return
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return
        if "\r" in text:
            # Normalise to LF. A CR ending this text already ends its line; remember
            # it, so an LF starting the next text is not taken for a blank line.
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        first_lf = text.find("\n")
        if first_lf < 0:
            self._grow_tail(text)
            return
        last_lf = text.rfind("\n")
        pos = 0
        if self._skipping:
            self._skipping = False
            pos = first_lf + 1
        elif self._tail:
            # The partial line ends here: assemble it without searching it again.
            self._tail.append(text[:first_lf])
            line = "".join(self._tail)
            self._tail = []
            self._tail_bytes = 0
            self._line(line, out, pairs=pairs)
            pos = first_lf + 1
        if pos <= last_lf:
            self._run(text, pos, last_lf + 1, out, pairs=pairs)
        if last_lf + 1 < len(text):
            self._grow_tail(text[last_lf + 1 :])

    def _grow_tail(self, text: str) -> None:
        if self._skipping:
            return
        self._tail.append(text)
        self._tail_bytes += utf8_len(text)
        if self._tail_bytes > self._max_line:
            self._tail = []
            self._tail_bytes = 0
            self._skipping = True
            self._overflow()

    def _overflow(self) -> None:
        self._overflowed = True
        self._poisoned = True
        self._dirty = True
        self._data = []
        self._data_bytes = 0
        self._lazy_bytes = False

    def _run(self, text: str, pos: int, end: int, out: list[Any], *, pairs: bool) -> None:
        """Process the complete lines of ``text[pos:end]`` (``text[end - 1]`` is a LF), one
        at a time: the step :class:`~._frames.SSEDecoder` replaces with pattern passes."""
        while pos < end:
            lf = text.find("\n", pos, end)
            self._line(text[pos:lf], out, pairs=pairs)
            pos = lf + 1

    def _line(self, line: str, out: list[Any], *, pairs: bool) -> None:
        if not line:
            self._dispatch(out, pairs=pairs)
            return
        if len(line) > self._quarter and utf8_len(line) > self._max_line:
            self._overflow()
            return
        if line[0] == ":":
            return
        self._dirty = True
        colon = line.find(":")
        if colon < 0:
            name, value = line, ""
        else:
            name = line[:colon]
            value = line[colon + 2 :] if line[colon + 1 : colon + 2] == " " else line[colon + 1 :]
        if name == "data":
            if self._poisoned:
                return
            if self._lazy_bytes:  # the first data line was held as bytes: count its UTF-8
                self._lazy_bytes = False
                self._data_bytes = utf8_len(str(self._data[0]))
            self._data_bytes += utf8_len(value) + (1 if self._data else 0)
            if self._data_bytes > self._max_event:
                self._overflow()
                return
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            digits = value.lstrip("0")
            if len(digits) <= _MAX_RETRY_DIGITS:
                self._retry = self._reconnect = int(digits or "0")

    def _dispatch(self, out: list[Any], *, pairs: bool) -> None:
        if self._data and not self._poisoned:
            data = self._data[0] if len(self._data) == 1 else "\n".join(map(str, self._data))
            event = self._event or "message"
            if not isinstance(data, str):  # one long data line held as bytes (_bytes.py)
                data = self._deferred(event, data, pairs=pairs)
            out.append(
                (event, data) if pairs else SSEEvent(event, data, self._last_id, self._retry)
            )
        self._data = []
        self._data_bytes = 0
        self._lazy_bytes = False
        self._event = ""
        self._retry = None
        self._dirty = False
        self._poisoned = False

    def _deferred(self, event: str, data: LazyData, *, pairs: bool) -> str:
        """The text to dispatch for data held as bytes (only the bytes path holds any)."""
        return str(data)
