"""Content decoding for judging: gzip, deflate, br and zstd undone on a bounded copy."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

__all__ = ["ContentDecoder"]

_DECODE_STEP: Final = 256 * 1024
"""Decoded bytes produced per step: a small compressed chunk never becomes one huge string."""


def _step_for(coding: str) -> Callable[[bytes], Iterator[bytes]] | None:
    """An incremental decoder for one content coding; None when we cannot decode it."""
    if coding in ("gzip", "x-gzip"):
        return _zlib(zlib.decompressobj(16 + zlib.MAX_WBITS))
    if coding == "deflate":
        return _deflate()
    if coding == "br":
        try:
            import brotli  # type: ignore[import-not-found]  # noqa: PLC0415 - optional
        except ImportError:
            return None
        br = brotli.Decompressor()
        return lambda data: iter((br.process(data),))
    if coding == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found]  # noqa: PLC0415 - optional
        except ImportError:
            return None
        zstd = zstandard.ZstdDecompressor().decompressobj()
        return lambda data: iter((zstd.decompress(data),))
    return None


def _zlib(d: Any) -> Callable[[bytes], Iterator[bytes]]:
    def step(data: bytes) -> Iterator[bytes]:
        while data:
            out = d.decompress(data, _DECODE_STEP)
            yield out
            data = d.unconsumed_tail
            if not out and not data:
                return

    return step


def _deflate() -> Callable[[bytes], Iterator[bytes]]:
    """``deflate`` is zlib-wrapped by the RFC and raw in practice: sniff the zlib header
    (its first two bytes), and fall back on raw deflate when it is not there."""
    wrapped = zlib.decompressobj()
    head = bytearray()
    chosen: list[Callable[[bytes], Iterator[bytes]]] = []

    def step(data: bytes) -> Iterator[bytes]:
        if chosen:
            yield from chosen[0](data)
            return
        head.extend(data)
        if len(head) < 2:
            return
        try:
            wrapped.decompress(bytes(head[:2]))
        except zlib.error:
            chosen.append(_zlib(zlib.decompressobj(-zlib.MAX_WBITS)))
            yield from chosen[0](bytes(head))
        else:
            chosen.append(_zlib(wrapped))
            yield from chosen[0](bytes(head[2:]))

    return step


class ContentDecoder:
    """Undoes ``Content-Encoding`` on a copy of the bytes, incrementally; never raises.

    Transports differ in what they hand an adapter: requests and aiohttp give
    decoded bytes, an httpx transport the bytes off the wire. The policy must
    judge what the caller will read (a gzip-encoded envelope has a code, a
    gzip-encoded stream an end), so adapters of the second kind feed this a
    copy. A coding it cannot undo, or corrupt data, sets :attr:`failed`.
    """

    __slots__ = ("failed", "steps")

    def __init__(self, content_encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        # the last applied comes off first
        steps = [_step_for(c) for c in reversed(codings) if c not in ("", "identity")]
        self.failed = any(s is None for s in steps)
        self.steps: list[Callable[[bytes], Iterator[bytes]]] = [s for s in steps if s is not None]

    @property
    def identity(self) -> bool:
        """True when there is nothing to undo."""
        return not self.steps and not self.failed

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of *data* (each at most a few hundred KiB)."""
        if self.failed:
            return
        pieces: Iterable[bytes] = (data,)
        try:
            for step in self.steps:
                pieces = [out for piece in pieces for out in step(piece) if out]
            yield from pieces
        except Exception:  # noqa: BLE001 - corrupt data: zlib.error, brotli.error, anything
            self.failed = True

    def decode_prefix(self, data: bytes, limit: int) -> bytes:
        """At most *limit* decoded bytes of *data* (an error body's prefix)."""
        out = bytearray()
        for piece in self.decode(data):
            out += piece[: limit - len(out)]
            if len(out) >= limit:
                break
        return bytes(out)
