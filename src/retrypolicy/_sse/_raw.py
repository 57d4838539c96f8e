"""A long ``data:`` line still in the byte chunks it arrived in, and byte-size helpers.

Why: the monitor's bytes path (:mod:`._bytes`) keeps a 64 KiB data line as the network
reads it came in, and the head reading (:mod:`._head`) looks at small windows of it; both
need the value, and neither should import the other for it. The exact decoder only ever
sees it as deferred data it can turn into text.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HEAD_WINDOW", "SEQ_LAST_WINDOW", "LazyData", "utf8_len", "window"]

HEAD_WINDOW: Final = 256
"""Bytes of a long data line decoded to read its head (type, sequence number)."""

SEQ_LAST_WINDOW: Final = 96
"""Bytes (ASCII characters) at the end of the data searched for a last ``sequence_number``."""


def utf8_len(text: str) -> int:
    """Length of *text* in UTF-8 (``isascii`` is O(1) in CPython, so ASCII costs nothing)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def window(pieces: list[bytes], start: int, stop: int, lo: int, hi: int) -> bytes:
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


class LazyData:
    """The value of one long ``data:`` line, still in the byte chunks it arrived in.

    Made only by :meth:`~._bytes.LazyDecoder._feed_lazy`, whose raw chunks are valid UTF-8 (ASCII,
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
        """The first :data:`HEAD_WINDOW` bytes, decoded (a cut character becomes U+FFFD)."""
        skip = self._skip
        piece = self._pieces[0]
        at = self._start + skip
        if len(self._pieces) > 1 and at + HEAD_WINDOW <= len(piece):
            raw = piece[at : at + HEAD_WINDOW]
        else:
            raw = window(self._pieces, self._start, self._stop, skip, skip + HEAD_WINDOW)
        return raw.decode("utf-8", "replace")

    def tail(self) -> str:
        """The last :data:`SEQ_LAST_WINDOW` bytes, decoded (a cut character becomes U+FFFD)."""
        end = self._skip + self.size
        lo = max(self._skip, end - SEQ_LAST_WINDOW)
        return window(self._pieces, self._start, self._stop, lo, end).decode("utf-8", "replace")

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
                if needle in window(pieces, self._start, self._stop, lo, pos + len(needle) - 1):
                    return True
        return False

    def __str__(self) -> str:
        whole = window(self._pieces, self._start, self._stop, self._skip, self._skip + self.size)
        return whole.decode("utf-8", "replace")
