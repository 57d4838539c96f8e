"""The monitor's bytes path: a long line is kept as the raw chunks it arrives in.

Why: a 64 KiB ``data:`` line read in network pieces would be decoded, joined and sliced
in full although the monitor needs only its type and sequence number. Here such a line
is searched for its end and nothing else, becomes a :class:`~._raw.LazyData`, and is
dispatched as its :func:`~._head.stand_in`. Only :class:`~._monitor.StreamMonitor` uses
it; a differential test holds its verdicts to the exact decoder's.
"""

from __future__ import annotations

from typing import Any, Final

from ._frames import SSEDecoder
from ._head import stand_in
from ._raw import LazyData, utf8_len, window

__all__ = ["LazyDecoder"]

# The monitor's bytes-level path (LazyDecoder._feed_lazy): a partial line at least
# _RAW_MIN bytes long after a chunk's last line end is held as the raw chunks it arrives
# in, searched only for its line end, never decoded or joined; a long data line becomes a
# LazyData, of which the monitor decodes HEAD_WINDOW bytes at the start and
# SEQ_LAST_WINDOW bytes at the end (and the whole only if those do not settle it).
_RAW_MIN: Final = 1024
# What comes between two such lines in EU GPT frames: the blank line ending one frame and
# the event line of the next (in one chunk, or the event line alone at a chunk's start).
_NEXT_FRAME: Final = b"\nevent: message\n"
_EVENT_LINE: Final = b"event: message\n"
_SHORTCUTS: Final = (_NEXT_FRAME, _EVENT_LINE)


class LazyDecoder(SSEDecoder):
    """:class:`~._frames.SSEDecoder` with a bytes path for long lines, for the monitor.

    Why a subclass: only :class:`~._monitor.StreamMonitor` feeds it (through
    :meth:`_feed_lazy`), and it needs (event, data) pairs in which a long data line may
    be a stand-in that reads as the data would (see :func:`~._head.stand_in`); the
    public decoder never holds bytes. *error_type* is the monitor's error type: the
    stand-in of an error event's data is always the data itself.
    """

    __slots__ = ("_lazy_error", "_no_raw", "_raw", "_raw_len", "_raw_max", "_raw_start")

    def __init__(self, max_line_bytes: int, error_type: str) -> None:
        super().__init__(max_line_bytes)
        # the partial line as raw chunks, valid UTF-8, from _raw[0][_raw_start:] (the
        # tail is then empty and the text decoder between characters); _no_raw: the
        # current line went back to text, let it end as text.
        self._raw: list[bytes] = []
        self._raw_start = 0
        self._raw_len = 0
        self._no_raw = False
        self._raw_max = max_line_bytes // 3  # a raw line this long decodes within the limit
        self._lazy_error = error_type

    @property
    def pending(self) -> bool:  # ExactDecoder.pending, a raw partial line included
        return bool(self._raw) or super().pending

    def _feed_lazy(self, chunk: bytes) -> list[tuple[str, str]]:
        """:meth:`_feed_pairs`, except that a long line is handled as bytes.

        A partial line of at least :data:`_RAW_MIN` bytes after a chunk's last line end is
        kept as the raw chunks it arrives in, which are only searched for the line end,
        as long as its decoded UTF-8 could not exceed the line limit (at most a third of
        it: a byte decodes to at most three); a long ``data:`` line then becomes a
        :class:`LazyData`, dispatched as its :func:`~._head.stand_in`, which the monitor reads
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
        self._tail_bytes = utf8_len(text)
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
            name = window(pieces, start, stop, 0, 6)
        if name.startswith(b"data:") and not (self._data or self._poisoned):
            # the event's first data line (others go the way of _line)
            self._dirty = True
            skip = 6 if name[5:6] == b" " else 5
            data = LazyData(pieces, start, stop, skip, size - skip)
            if 3 * data.size <= self._max_event:
                self._data_bytes = data.size  # at most its UTF-8 length: see _line
                self._lazy_bytes = True
            else:
                self._data_bytes = utf8_len(str(data))
                if self._data_bytes > self._max_event:
                    self._overflow()
                    return
            self._data.append(data)
            return
        line = window(pieces, start, stop, 0, size).decode("utf-8", "replace")
        self._line(line, out, pairs=True)

    def _deferred(self, event: str, data: LazyData, *, pairs: bool) -> str:
        """A long data line held as bytes: for the monitor, its stand-in."""
        return stand_in(event, data, self._lazy_error) if pairs else str(data)
