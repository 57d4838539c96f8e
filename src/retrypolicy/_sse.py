"""Server-sent events: an incremental decoder and the verdict on an EU GPT stream.

Why this exists: a ``200`` stream is not a success. The spec says a response
stream succeeded only when its *last* event is ``response.completed``; a
failure after streaming began arrives as an ``error`` event, and a dropped
connection leaves a stream with neither. The adapters therefore have to watch
every byte of every streamed body, so the watcher sits on the hot path of each
streamed response and must cost little more than reading the bytes.

Two layers:

* :class:`SSEDecoder` turns byte chunks into :class:`SSEEvent` s following the
  WHATWG event-stream rules (LF / CR / CRLF line ends, one leading BOM skipped,
  comments, ``event`` / ``data`` / ``id`` / ``retry`` fields, events without
  data not dispatched, an unterminated event discarded at end of stream). Chunk
  boundaries may fall anywhere, including inside a CRLF or a UTF-8 character.
  Speed comes from doing the per-byte work in C: the chunk is decoded once by
  an incremental UTF-8 decoder; a chunk of identically shaped frames (EU GPT's
  ``event: message`` + one ``data:`` line + blank line) is extracted by one
  ``findall`` and verified by a length sum; other runs of ordinary frames
  (any ``event:`` name) take one regular-expression pass to find and one to
  extract; only unusual lines go through the per-line state machine. These
  patterns only ever see complete lines: the text after a chunk's last line end
  is set aside, and a line arriving over many chunks (a 64 KiB ``data:`` line in
  network reads of a few KiB) is searched for its end once, piece by piece as
  it arrives, and joined once when the end comes.
* :class:`StreamMonitor` wraps a decoder and answers "did this stream succeed?"
  incrementally, as :class:`StreamProblem` or ``None``. It does not
  ``json.loads`` every event: the ``type`` and ``sequence_number`` of ordinary
  frames are read by an anchored regular expression that only accepts them as
  top-level keys, and only error events (and frames the cheap path cannot read
  soundly) are parsed. It takes (event, data) pairs from the decoder rather than
  :class:`SSEEvent` objects it would throw away, and it has the decoder keep a long
  line (a 64 KiB ``data:`` line over many reads) as the raw chunks it arrives in,
  searched only for its end: of a long data line it decodes a small window at each
  end, and the whole only for an error event or data those windows cannot settle.

Neither ever raises on remote data, and both keep memory bounded: a line longer
than ``max_line_bytes`` (or an event whose data exceeds ``max_event_bytes``) is
discarded together with the event it belongs to, and the decoder remembers that
it happened (:attr:`SSEDecoder.overflowed`) so the monitor can refuse to vouch
for a stream it could not fully read.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, Final

import attrs

from ._redact import redact
from ._rules import Failure

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "SSEDecoder",
    "SSEEvent",
    "StreamMonitor",
    "StreamProblem",
    "bytes_before_event",
]

DEFAULT_MAX_LINE_BYTES: Final = 1024 * 1024
"""The longest line :class:`SSEDecoder` accepts by default (UTF-8 bytes)."""

_MAX_MESSAGE: Final = 512
"""A :class:`StreamProblem` message quotes at most this many characters of the server's text."""

_MAX_RETRY_DIGITS: Final = 15
"""``retry`` values with more significant digits (over 30,000 years in ms) are ignored."""

# The decoder's fast paths work on text whose line ends are all "\n".
#
# An ordinary frame: an optional ``event:`` line, exactly one ``data:`` line, a blank
# line. _FRAMES finds where a run of them ends (no captures, so it is cheap); _FRAME
# then extracts (event, data) of each frame in that run.
_FRAME: Final = re.compile(r"(?:event: ?([^\n]*)\n)?data: ?([^\n]*)\n\n")
# _FRAMES uses possessive quantifiers: a line ends at its first LF whatever the optional
# space, so giving characters back can never help, and a partial last frame is rejected
# after one scan instead of being scanned again for each way to backtrack.
_FRAMES: Final = re.compile(r"(?:(?:event: ?+[^\n]*+\n)?data: ?+[^\n]*+\n\n)*")
# The two shapes real servers send every frame in (EU GPT uses the first). Each has
# a fixed prefix, so a run of them is checked by length alone (see SSEDecoder._exact).
_EVENT_PREFIX: Final = "event: message\ndata: "
_DATA_PREFIX: Final = "data: "
_EXACT_EVENT: Final = re.compile(r"event: message\ndata: ([^\n]*)\n\n")
_EXACT_DATA: Final = re.compile(r"data: ([^\n]*)\n\n")
_EXACT_PREFIXES: Final = (_EVENT_PREFIX, _DATA_PREFIX)

# The monitor's cheap reading of an event's data, sound for valid JSON:
# ``{"type":"<no escapes>"`` at the very start of the data is the first member of the
# top-level object, so the type read there is the top-level type, whatever strings or
# nested objects follow (a delta *containing* ``"type":"error"`` has it escaped or
# nested, never first). An immediately following ``"sequence_number":<int>`` ended by
# ``,`` or ``}`` is the second top-level member. Digits are [0-9] (``\d`` would admit
# non-ASCII digits), at most 18, so int() is cheap and never hits the int-string limit.
# _HEAD_COMPACT, tried first, is the layout of every EU GPT frame (compact encoder, type
# then sequence number), so a match always yields both; _HEAD (see _read_slow) allows
# JSON whitespace, which is exactly these four characters (``\s`` would admit more),
# and a missing sequence number.
_WS: Final = r"[ \t\n\r]*"
_HEAD_COMPACT: Final = re.compile(r'\{"type":"([^"\\]*)","sequence_number":(-?[0-9]{1,18})(?=[,}])')
_HEAD: Final = re.compile(
    rf'{_WS}\{{{_WS}"type"{_WS}:{_WS}"([^"\\]*)"'
    rf'(?:{_WS},{_WS}"sequence_number"{_WS}:{_WS}(-?[0-9]{{1,18}})(?={_WS}[,}}]))?'
)
# ``,"sequence_number":<int>}`` ending the data is the last member of the top-level
# object: the final ``}`` of a JSON object text closes the top level, and the text
# right before it cannot be inside a string (the string would never be closed).
_SEQ_LAST: Final = re.compile(
    rf',{_WS}"sequence_number"{_WS}:{_WS}(-?[0-9]{{1,18}}){_WS}\}}{_WS}\Z'
)
_SEQ_LAST_WINDOW: Final = 96
_SEQ_KEY: Final = '"sequence_number"'
_SEQ_KEY_BYTES: Final = _SEQ_KEY.encode()
# Whether _HEAD, having matched a type without a sequence number in a window of the data,
# would also find none in the whole data: the next non-whitespace character is not a comma,
# or the comma is followed by a complete 17-character member name that is not
# ``"sequence_number"`` (in the window, so the window's end cannot have cut it short).
_NO_SEQ: Final = re.compile(rf"{_WS}(?:[^ \t\n\r,]|,{_WS}(?!{_SEQ_KEY})[^ \t\n\r].{{16}})", re.S)

# The monitor's bytes-level path (SSEDecoder._feed_lazy): a partial line at least
# _RAW_MIN bytes long after a chunk's last line end is held as the raw chunks it arrives
# in, searched only for its line end, never decoded or joined; a long data line becomes a
# _LazyData, of which the monitor decodes _HEAD_WINDOW bytes at the start and
# _SEQ_LAST_WINDOW bytes at the end (and the whole only if those do not settle it).
_RAW_MIN: Final = 1024
_HEAD_WINDOW: Final = 256
# What comes between two such lines in EU GPT frames: the blank line ending one frame and
# the event line of the next (in one chunk, or the event line alone at a chunk's start).
_NEXT_FRAME: Final = b"\nevent: message\n"
_EVENT_LINE: Final = b"event: message\n"
_SHORTCUTS: Final = (_NEXT_FRAME, _EVENT_LINE)


def _utf8_len(text: str) -> int:
    """Length of *text* in UTF-8 (``isascii`` is O(1) in CPython, so ASCII costs nothing)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _window(pieces: list[bytes], start: int, stop: int, lo: int, hi: int) -> bytes:
    """Bytes *lo* to *hi* of ``pieces[0][start:] + pieces[1] + ... + pieces[-1][:stop]``."""
    out = []
    pos = 0  # where the current piece's part begins in the whole
    last = len(pieces) - 1
    for k, piece in enumerate(pieces):
        a = start if k == 0 else 0
        size = (stop if k == last else len(piece)) - a
        if pos + size > lo:
            out.append(piece[a + max(0, lo - pos) : a + min(size, hi - pos)])
        pos += size
        if pos >= hi:
            break
    return out[0] if len(out) == 1 else b"".join(out)


class _LazyData:
    """The value of one long ``data:`` line, still in the byte chunks it arrived in.

    Made only by :meth:`SSEDecoder._feed_lazy`, whose raw chunks are valid UTF-8 (ASCII,
    or text the decoder had already decoded, encoded back), so the bytes decode to exactly
    the text the decoder would have produced; ``str()`` gives that text.
    """

    __slots__ = ("_pieces", "_skip", "_start", "_stop", "size")

    def __init__(self, pieces: list[bytes], start: int, stop: int, skip: int, size: int) -> None:
        self._pieces = pieces
        self._start = start  # the line begins at pieces[0][start]
        self._stop = stop  # and ends at pieces[-1][stop]
        self._skip = skip  # the value begins *skip* bytes into the line
        self.size = size  # length of the value in bytes

    def head(self) -> str:
        """The first :data:`_HEAD_WINDOW` bytes, decoded (a cut character becomes U+FFFD)."""
        skip = self._skip
        piece = self._pieces[0]
        at = self._start + skip
        if len(self._pieces) > 1 and at + _HEAD_WINDOW <= len(piece):
            raw = piece[at : at + _HEAD_WINDOW]
        else:
            raw = _window(self._pieces, self._start, self._stop, skip, skip + _HEAD_WINDOW)
        return raw.decode("utf-8", "replace")

    def tail(self) -> str:
        """The last :data:`_SEQ_LAST_WINDOW` bytes, decoded (a cut character becomes U+FFFD)."""
        end = self._skip + self.size
        lo = max(self._skip, end - _SEQ_LAST_WINDOW)
        return _window(self._pieces, self._start, self._stop, lo, end).decode("utf-8", "replace")

    def contains(self, needle: bytes) -> bool:
        """Whether the value contains *needle* (ASCII, at most 32 bytes)."""
        pieces = self._pieces
        last = len(pieces) - 1
        pos = 0
        skip = self._skip
        for k, piece in enumerate(pieces):
            a = self._start if k == 0 else 0
            b = self._stop if k == last else len(piece)
            if piece.find(needle, a + skip if k == 0 else a, b) >= 0:
                return True
            pos += b - a
            if k < last:
                lo = max(skip, pos - len(needle) + 1)
                if needle in _window(pieces, self._start, self._stop, lo, pos + len(needle) - 1):
                    return True
        return False

    def __str__(self) -> str:
        whole = _window(self._pieces, self._start, self._stop, self._skip, self._skip + self.size)
        return whole.decode("utf-8", "replace")


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


class SSEDecoder:
    """Incremental WHATWG event-stream decoder: bytes in, :class:`SSEEvent` s out.

    Why a decoder of our own: the adapters see raw byte chunks from three
    transport libraries and must watch every streamed body cheaply, without
    depending on any of them (``httpx-sse`` needs httpx).

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
        "_lazy_error",
        "_max_event",
        "_max_line",
        "_no_raw",
        "_overflowed",
        "_poisoned",
        "_quarter",
        "_raw",
        "_raw_len",
        "_raw_max",
        "_raw_start",
        "_reconnect",
        "_retry",
        "_skip_lf",
        "_skipping",
        "_start",
        "_tail",
        "_tail_bytes",
        "_window",
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
        # measuring it; the fast path only looks at windows that small.
        self._quarter = max_line_bytes // 4
        self._window = min(max_line_bytes, max_event_bytes) // 4
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._start = True  # the stream's first character (a BOM?) is still to come
        self._skip_lf = False  # the previous text ended with CR: a leading LF is its CRLF
        self._tail: list[str] = []  # the partial line after the last line end
        self._tail_bytes = 0
        self._skipping = False  # inside an overlong line: drop text up to its line end
        self._data: list[str | _LazyData] = []  # _LazyData only via _feed_lazy
        self._data_bytes = 0
        self._event = ""
        self._retry: int | None = None
        self._last_id: str | None = None
        self._reconnect: int | None = None
        self._dirty = False  # a field line was seen since the last blank line
        self._poisoned = False  # the current event lost a line to the limits: drop it
        self._overflowed = False
        self._closed = False
        # _feed_lazy only: the partial line as raw chunks, valid UTF-8, from
        # _raw[0][_raw_start:] (the tail is then empty and the text decoder between
        # characters); _no_raw: the current line went back to text, let it end as text.
        self._raw: list[bytes] = []
        self._raw_start = 0
        self._raw_len = 0
        self._no_raw = False
        self._raw_max = max_line_bytes // 3  # a raw line this long decodes within the limit
        self._lazy_bytes = False  # _data_bytes counts a _LazyData's bytes, not its UTF-8
        self._lazy_error = "error"  # the monitor's error type, for _stand_in

    @property
    def overflowed(self) -> bool:
        """True once any line or event exceeded the limits and was discarded."""
        return self._overflowed

    @property
    def pending(self) -> bool:
        """True if the bytes received so far end inside an event (a cut stream, at EOF)."""
        return bool(
            self._dirty or self._tail or self._raw or self._skipping or self._decoder.getstate()[0]
        )

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
        out: list[SSEEvent] = []
        self._close(out, pairs=False)
        return out

    # -- internals ---------------------------------------------------------------

    # _feed_pairs / _close_pairs are feed / close for StreamMonitor, which needs only the
    # event type and data of each event: they return (event, data) tuples, sparing the
    # construction of an SSEEvent per event (most of the decoder's cost on small frames).
    # The parsing is shared; *pairs* only selects what the dispatch points append.

    def _feed_pairs(self, chunk: bytes) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self._closed and chunk:
            self._feed_text(self._decoder.decode(chunk), out, pairs=True)
        return out

    def _feed_lazy(self, chunk: bytes) -> list[tuple[str, str]]:
        """:meth:`_feed_pairs`, except that a long line is handled as bytes.

        A partial line of at least :data:`_RAW_MIN` bytes after a chunk's last line end is
        kept as the raw chunks it arrives in, which are only searched for the line end,
        as long as its decoded UTF-8 could not exceed the line limit (at most a third of
        it: a byte decodes to at most three); a long ``data:`` line then becomes a
        :class:`_LazyData`, dispatched as its :func:`_stand_in`, which the monitor reads
        exactly as it would have read the data. Everything else (short lines, the text of
        a chunk up to its last line end, a long line of another field, a line that grows
        too long) goes the way of :meth:`_feed_pairs`, and the raw bytes of a line decode
        as one to the text the incremental decoder would have made of them, so events,
        limits and verdicts are those of _feed_pairs.
        """
        out: list[tuple[str, str]] = []
        if self._closed or not chunk:
            return out
        if chunk.__class__ is not bytes:
            chunk = bytes(chunk)  # a buffer the caller may reuse is not kept, but copied
        has_cr = b"\r" in chunk
        start = 0
        if self._raw:
            end = chunk.find(b"\n")
            if has_cr:
                cr = chunk.find(b"\r")
                if end < 0 or cr < end:
                    end = cr
            if end < 0:
                size = self._raw_len + len(chunk)
                if size <= self._raw_max:
                    # the line goes on (the common case: kept without a copy)
                    self._raw.append(chunk)
                    self._raw_len = size
                    return out
                self._unraw()
            elif self._raw_len + end <= self._raw_max:
                self._raw_end(chunk, end, out)
                start = end + 1
                if start >= len(chunk) - 1:
                    if start < len(chunk):  # one more byte: a line end (a frame's last)?
                        if chunk[start] != 10:  # not an LF
                            self._lazy_rest(chunk, start, has_cr, out)
                        elif self._skip_lf:  # the LF of a CRLF
                            self._skip_lf = False
                        else:  # a blank line: what _feed_text would do
                            self._dispatch(out, pairs=True)
                    return out
            else:
                self._unraw()
        self._lazy_rest(chunk, start, has_cr, out)
        return out

    def _raw_end(self, chunk: bytes, end: int, out: list[Any]) -> None:
        """The raw partial line ends at ``chunk[end]`` (a CR or LF): process it."""
        pieces = self._raw
        size = self._raw_len + end
        self._raw = []
        self._raw_len = 0
        if end:
            pieces.append(chunk)
            stop = end
        else:
            stop = len(pieces[-1])
        self._raw_line(pieces, self._raw_start, stop, size, out)
        # the line end is a CR: an LF right after it belongs to it (see _feed_text)
        self._skip_lf = chunk[end : end + 1] == b"\r"

    def _unraw(self) -> None:
        """Hand the raw partial line to the text path, for good (until its end).

        The decoder then holds what it would hold had it decoded the bytes as they came,
        and the tail is their text: nothing was lost to the limit meanwhile (a third).
        """
        text = self._decoder.decode(b"".join(self._raw)[self._raw_start :])
        self._tail = [text] if text else []
        self._tail_bytes = _utf8_len(text)
        self._raw = []
        self._raw_len = 0
        self._no_raw = True

    def _lazy_rest(self, chunk: bytes, start: int, has_cr: bool, out: list[Any]) -> None:
        """_feed_lazy for ``chunk[start:]``, not inside a raw line."""
        size = len(chunk)
        last = chunk.rfind(b"\n", start)
        if has_cr:
            last = max(last, chunk.rfind(b"\r", start))
        if last >= 0:
            rest = size - last - 1
            if _RAW_MIN <= rest <= self._raw_max:
                head = chunk[start : last + 1]
                if (
                    head in _SHORTCUTS
                    and not (self._tail or self._skipping or self._start or self._skip_lf)
                    and not self._decoder.getstate()[0]
                ):
                    # a fresh line (no partial line, CR, BOM or undecoded byte before it):
                    # what _feed_text would do for the lines of _NEXT_FRAME or _EVENT_LINE
                    if head == _NEXT_FRAME:
                        self._dispatch(out, pairs=True)
                    self._event = "message"
                    self._dirty = True
                else:
                    self._feed_text(self._decoder.decode(head), out, pairs=True)
                # the text ended with a line end: the decoder holds nothing, the tail is
                # empty and no line is being skipped
                if not (self._tail or self._skipping or self._closed):
                    self._raw = [chunk]
                    self._raw_start = last + 1
                    self._raw_len = rest
                    self._skip_lf = False  # the next byte is not a line end
                    self._no_raw = False
                    return
                start = last + 1
        elif (
            not (self._no_raw or self._start or self._skipping)
            and self._tail_bytes + size - start <= self._raw_max
            and not self._decoder.getstate()[0]
        ):
            # the line goes on: continue it as bytes (the text so far becomes bytes again:
            # decoded text encodes back to bytes that decode to it, of its UTF-8 length)
            if self._tail:
                self._raw = ["".join(self._tail).encode("utf-8", "surrogatepass"), chunk]
                self._raw_start = 0
            else:
                self._raw = [chunk]
                self._raw_start = start
            self._raw_len = self._tail_bytes + size - start
            self._tail = []
            self._tail_bytes = 0
            self._skip_lf = False  # the chunk has no line end
            return
        self._feed_text(self._decoder.decode(chunk[start:] if start else chunk), out, pairs=True)
        if last >= 0:
            self._no_raw = False  # a new line began

    def _raw_line(
        self, pieces: list[bytes], start: int, stop: int, size: int, out: list[Any]
    ) -> None:
        """:meth:`_line` for a complete raw line of *size* bytes (at most max_line / 3)."""
        first = pieces[0]
        if len(pieces) > 1 and start + 6 <= len(first):
            name = first[start : start + 6]
        else:
            name = _window(pieces, start, stop, 0, 6)
        if name.startswith(b"data:") and not (self._data or self._poisoned):
            # the event's first data line (others go the way of _line)
            self._dirty = True
            skip = 6 if name[5:6] == b" " else 5
            data = _LazyData(pieces, start, stop, skip, size - skip)
            if 3 * data.size <= self._max_event:
                self._data_bytes = data.size  # at most its UTF-8 length: see _line
                self._lazy_bytes = True
            else:
                self._data_bytes = _utf8_len(str(data))
                if self._data_bytes > self._max_event:
                    self._overflow()
                    return
            self._data.append(data)
            return
        line = _window(pieces, start, stop, 0, size).decode("utf-8", "replace")
        self._line(line, out, pairs=True)

    def _close_pairs(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self._close(out, pairs=True)
        return out

    def _close(self, out: list[Any], *, pairs: bool) -> None:
        if self._closed:
            return
        self._closed = True
        # Flushing can only add U+FFFD for a truncated character to the partial line;
        # a partial line is never a complete event, so this adds nothing in practice.
        self._feed_text(self._decoder.decode(b"", True), out, pairs=pairs)

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
        self._tail_bytes += _utf8_len(text)
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
        """Process the complete lines of ``text[pos:end]`` (``text[end - 1]`` is a LF)."""
        window = self._window
        frames_end = _FRAMES.match
        exact = True  # the uniform-run path is given up for this text once it fails
        while pos < end:
            if not self._dirty:
                # Between events: take the longest run of frames in one go.
                if exact and text.startswith(_EXACT_PREFIXES, pos):
                    start = pos
                    pos = self._exact(text, pos, min(end, pos + window), out, pairs=pairs)
                    if pos > start:
                        continue  # the window may have cut the run: try the next one
                    exact = False  # a failure costs a scan: at most one per text
                run_end = frames_end(text, pos, min(end, pos + window)).end()  # type: ignore[union-attr] # the pattern matches the empty string
                if run_end > pos:
                    found = _FRAME.findall(text, pos, run_end)
                    if pairs:
                        out.extend([(e or "message", d) for e, d in found])
                    else:
                        lid = self._last_id
                        out.extend([SSEEvent(e or "message", d, lid, None) for e, d in found])
                    pos = run_end
                    if pos == end:
                        return
            lf = text.find("\n", pos, end)
            self._line(text[pos:lf], out, pairs=pairs)
            pos = lf + 1

    def _exact(self, text: str, pos: int, stop: int, out: list[Any], *, pairs: bool) -> int:
        """Dispatch a run of identically shaped frames in ``text[pos:stop]``; return its end.

        *pos* starts with one of _EXACT_PREFIXES, which sets the shape. One ``findall``
        pass and a length sum: the matches do not overlap, so if their lengths add up to
        the length of the region they tile it exactly, frame by frame, which is what
        line-by-line parsing from a clean state would have seen.
        """
        stop = text.rfind("\n\n", pos, stop)
        if stop < 0:
            return pos
        stop += 2
        if text.startswith(_EVENT_PREFIX, pos):
            found = _EXACT_EVENT.findall(text, pos, stop)
            overhead = len(_EVENT_PREFIX) + 2
        else:
            found = _EXACT_DATA.findall(text, pos, stop)
            overhead = len(_DATA_PREFIX) + 2
        if sum(map(len, found)) + overhead * len(found) != stop - pos:
            return pos
        if pairs:
            out.extend(zip(["message"] * len(found), found, strict=True))
        else:
            lid = self._last_id
            out.extend([SSEEvent("message", d, lid, None) for d in found])
        return stop

    def _line(self, line: str, out: list[Any], *, pairs: bool) -> None:
        if not line:
            self._dispatch(out, pairs=pairs)
            return
        if len(line) > self._quarter and _utf8_len(line) > self._max_line:
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
                self._data_bytes = _utf8_len(str(self._data[0]))
            self._data_bytes += _utf8_len(value) + (1 if self._data else 0)
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
            if not isinstance(data, str):  # one long data line held as bytes (_feed_lazy)
                data = _stand_in(event, data, self._lazy_error) if pairs else str(data)
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


def _redacted_code(value: str | None) -> str | None:
    return None if value is None else redact(value)


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

    code: str | None = attrs.field(converter=_redacted_code)
    message: str = attrs.field(converter=redact)
    failure: Failure | None
    events_seen: int


def _loads(data: str) -> Any:
    try:
        return json.loads(data)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError: remote data never raises
        return None


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
    * **An oversized line** (see :class:`SSEDecoder`) before completion is a
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
        "_events",
        "_fast",
        "_finished",
        "_last_type",
        "_max_line",
        "_problem",
        "_problem_data",
        "_seq",
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
        self._decoder = SSEDecoder(max_line_bytes)
        self._decoder._lazy_error = error_type
        self._max_line = max_line_bytes
        self._completed = False
        self._events = 0
        self._last_type: str | None = None
        self._seq: int | None = None
        self._problem: StreamProblem | None = None
        self._problem_data: str | None = None
        self._finished = False
        self._fast = True  # long lines as bytes (_feed_lazy); False: as text (_feed_pairs)

    @property
    def completed(self) -> bool:
        """True once the completion event arrived (and no problem was seen)."""
        return self._completed and self._problem is None

    @property
    def events_seen(self) -> int:
        """Events dispatched by the decoder so far (every type, ignored ones too)."""
        return self._events

    @property
    def last_type(self) -> str | None:
        """JSON ``type`` of the last event that counted for the verdict."""
        return self._last_type

    @property
    def problem(self) -> StreamProblem | None:
        """The problem found so far, if any."""
        return self._problem

    @property
    def problem_data(self) -> str | None:
        """The ``data`` of the event that was the problem (an error event, a sequence gap);
        None when the problem is not one event (an overlong line, the end of the stream)."""
        return self._problem_data

    def feed(self, chunk: bytes) -> StreamProblem | None:
        """Decode *chunk*; return the stream's problem as soon as there is one."""
        if self._problem is not None or self._finished:
            return self._problem
        decoder = self._decoder
        events = decoder._feed_lazy(chunk) if self._fast else decoder._feed_pairs(chunk)
        if events:
            self._inspect(events)
        if self._problem is None and decoder.overflowed and not self._completed:
            self._problem = StreamProblem(
                code=None,
                message=(
                    f"an event line longer than {self._max_line} bytes was discarded "
                    f"after {_plural(self._events)}: the stream cannot be verified"
                ),
                failure=Failure.INCOMPLETE_STREAM,
                events_seen=self._events,
            )
        return self._problem

    def finish(self) -> StreamProblem | None:
        """End of stream: ``None`` if it completed, else the problem. Idempotent."""
        if self._finished or self._problem is not None:
            return self._problem
        events = self._decoder._close_pairs()
        if events:
            self._inspect(events)
        self._finished = True
        if self._problem is not None or self._completed:
            return self._problem
        n = self._events
        where = "mid-event " if self._decoder.pending else ""
        last = f" (last event type: {self._last_type})" if self._last_type else ""
        self._problem = StreamProblem(
            code=None,
            message=(
                f"stream ended {where}after {_plural(n)} without {self._completed_type}{last}"
            ),
            failure=Failure.INCOMPLETE_STREAM,
            events_seen=n,
        )
        return self._problem

    # -- internals ---------------------------------------------------------------

    def _inspect(self, events: list[tuple[str, str]]) -> None:
        # The hot loop of every streamed response: state lives in locals and is
        # written back once; a problem ends the loop.
        error_type = self._error_type
        completed_type = self._completed_type
        compact = _HEAD_COMPACT.match
        seen = self._events
        prev = self._seq
        last_type = self._last_type
        completed = self._completed
        problem: StreamProblem | None = None
        for name, data in events:
            seen += 1
            m = compact(data)
            if m is not None:
                etype, seq_text = m.groups()
                seq: int | None = int(seq_text)
            else:
                etype, seq = _read_slow(data)
            if error_type in (etype, name):
                last_type = error_type
                problem = self._error(data, seen)
                self._problem_data = data
                break
            if completed:
                continue  # after completion only an error counts
            if seq is not None:
                if prev is not None and seq != prev + 1:
                    problem = StreamProblem(
                        code=None,
                        message=f"sequence_number jumped from {prev} to {seq}: corrupted stream",
                        failure=Failure.INCOMPLETE_STREAM,
                        events_seen=seen,
                    )
                    self._problem_data = data
                    break
                prev = seq
            if etype is not None:
                last_type = etype
                completed = etype == completed_type
        self._events = seen
        self._seq = prev
        self._completed = completed
        self._last_type = last_type
        self._problem = problem

    def _error(self, data: str, seen: int) -> StreamProblem:
        obj = _loads(data)
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
        if message is None:
            message = (
                f"{self._error_type} event {code}"
                if code is not None
                else f"{self._error_type} event: {_excerpt(data)}"
            )
        # redact before cutting (a cut key must not slip past the pattern); the window
        # keeps the redaction of a huge message bounded
        message = _excerpt(redact(message[: 4 * _MAX_MESSAGE]))
        if code is None:
            # no usable code: still a failure (stream_error), never a success
            return StreamProblem(
                code=None, message=message, failure=Failure.STREAM_ERROR, events_seen=seen
            )
        return StreamProblem(
            code=_excerpt(redact(code[: 4 * _MAX_MESSAGE])),
            message=message,
            failure=None,
            events_seen=seen,
        )


def _read_slow(data: str) -> tuple[str | None, int | None]:
    """The event's top-level ``type`` and ``sequence_number`` when the compact pattern
    did not match: whitespace, or no sequence number or not second, or no type first.
    Parses the JSON only as the last resort."""
    m = _HEAD.match(data)  # also matches wherever _HEAD_COMPACT's type part would
    if m is not None:
        etype, seq_text = m.groups()
        if seq_text is not None:
            return etype, int(seq_text)
        if _SEQ_KEY not in data:
            return etype, None
        at_end = _SEQ_LAST.search(data, max(0, len(data) - _SEQ_LAST_WINDOW))
        if at_end is not None:
            return etype, int(at_end.group(1))
        return etype, _seq_of(_loads(data))
    obj = _loads(data)
    if not isinstance(obj, dict):
        return None, None  # not a JSON object: no type, no sequence number
    etype = obj.get("type")
    return (etype if isinstance(etype, str) else None), _seq_of(obj)


def _stand_in(name: str, data: _LazyData, error_type: str) -> str:
    """What StreamMonitor._inspect is given for *data*: a short text it reads exactly as it
    would read the data (same type, same sequence number, not an error), or, when a window
    at the start (and one at the end) of the data cannot settle that, the data itself.

    Sound by the same arguments as _read_slow: a match of _HEAD_COMPACT or _HEAD (with a
    sequence number) inside the head window is the match on the whole data; _NO_SEQ makes
    sure the window's end did not cut off a sequence number; _SEQ_LAST only ever matches
    ASCII, so the last _SEQ_LAST_WINDOW bytes hold exactly the matches the last
    _SEQ_LAST_WINDOW characters do.
    """
    if name != error_type:
        head = data.head()
        m = _HEAD_COMPACT.match(head)
        if m is not None:
            if m[1] != error_type:
                return m[0] + "}"
        else:
            m = _HEAD.match(head)
            if m is not None and m[1] != error_type:
                etype, seq_text = m.groups()
                if seq_text is None and _NO_SEQ.match(head, m.end()):
                    if not data.contains(_SEQ_KEY_BYTES):
                        return f'{{"type":"{etype}"}}'
                    at_end = _SEQ_LAST.search(data.tail())
                    if at_end is not None:
                        seq_text = at_end[1]
                if seq_text is not None:
                    return f'{{"type":"{etype}","sequence_number":{seq_text}}}'
    return str(data)


def _seq_of(obj: Any) -> int | None:
    if isinstance(obj, dict):
        seq = obj.get("sequence_number")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return None
