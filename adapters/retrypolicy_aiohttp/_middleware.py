"""``RetryMiddleware``: the seam's attempt loop around aiohttp's handler (aiohttp 3.12+)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Unpack, cast

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from aiohttp.http_exceptions import LineTooLong
from aiohttp.payload import AsyncIterablePayload

import retrypolicy as rp
from retrypolicy.transport import (
    MAX_ERROR_BODY,
    AdapterKeywords,
    AdapterOptions,
    AttemptLoop,
    Exchange,
    is_event_stream,
)

__all__ = ["CheckedContent", "RetryMiddleware"]

# aiohttp's exceptions, mapped once: never connected, or sent and then no complete response
for _exc, _failure in (
    (aiohttp.ClientConnectorError, rp.Failure.CONNECTION),
    (aiohttp.ClientSSLError, None),
    (aiohttp.ConnectionTimeoutError, rp.Failure.CONNECTION),
    (aiohttp.ClientOSError, rp.Failure.TIMEOUT),
    (aiohttp.ClientConnectionResetError, rp.Failure.TIMEOUT),
    (aiohttp.ServerDisconnectedError, rp.Failure.TIMEOUT),
    (aiohttp.ServerTimeoutError, rp.Failure.TIMEOUT),
    (aiohttp.ClientPayloadError, rp.Failure.TIMEOUT),
):
    rp.register_exception(_exc, _failure)


class RetryMiddleware:
    """Retries each request by *policy* (default: the default policy, ``rp.EUGPT``).

    On give-up the final response is returned, marked with ``retry_attempts``, unless
    ``raise_on_give_up=True``. A one-shot body (an async generator) is sent once. The
    keywords are :class:`~retrypolicy.transport.AdapterKeywords` (``sleep`` is unused).
    """

    def __init__(self, policy: rp.Policy | None = None, **options: Unpack[AdapterKeywords]) -> None:
        self.options = AdapterOptions(policy=policy, name="aiohttp", **options)

    def __repr__(self) -> str:
        return f"<RetryMiddleware policy={self.options.policy.name!r}>"

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """Send *request* through *handler* until the policy is satisfied or gives up."""
        resendable = not isinstance(request.body, AsyncIterablePayload)  # one-shot: sent once
        loop = self.options.loop(request.method, resendable=resendable, host=request.url.host or "")

        async def attempt() -> Exchange:
            response = await handler(request)
            try:
                return await self._exchange(loop, response)
            except BaseException:
                response.close()
                raise

        return cast("ClientResponse", await loop.arun(attempt))

    async def _exchange(self, loop: AttemptLoop, response: ClientResponse) -> Exchange:
        """One attempt's response, judged on the decoded bytes aiohttp reads."""
        status, headers = response.status, response.headers
        ex = Exchange(response, close=response.release)
        rest = _iterate(response.content.readany)
        if loop.judge(status, headers) is not None:  # a failure: its envelope has the code
            read: list[bytes] = []
            size = 0  # a running total: a body in many tiny chunks costs linear time
            try:
                while size < MAX_ERROR_BODY and (chunk := await anext(rest, b"")):
                    read.append(chunk)
                    size += len(chunk)
            except Exception as exc:  # noqa: BLE001 - cut short, or undecodable (a corrupt gzip)
                # the status decides (a 400 is never retried because its body broke); the
                # caller reading the body meets the error after the bytes that came
                rest = _raising(exc)
            ex.outcome = loop.judge(status, headers, b"".join(read)[:MAX_ERROR_BODY])
        elif 200 <= status < 300 and is_event_stream(
            headers, method=response.method, status=status
        ):
            ex.check = check = self.options.stream_check()
            read, problem = await check.aprime(rest)
            if problem is not None:  # handed over only on give-up: never its failing event
                ex.outcome = check.outcome(problem, status)
                read = check.trimmed(read)
            rest = check.aguard(rest)  # what was read is checked already
        else:
            return ex  # a plain success: the response is aiohttp's, untouched
        # not a StreamReader, but it offers StreamReader's reading API (see CheckedContent)
        response.content = CheckedContent(response.content, read, rest)  # type: ignore[assignment]
        return ex


async def _iterate(read: Callable[[], Awaitable[bytes]]) -> AsyncIterator[bytes]:
    while chunk := await read():
        yield chunk


async def _raising(exc: Exception) -> AsyncIterator[bytes]:
    """A rest of a body that ends at once with *exc* (what reading it raised)."""
    for _ in ():  # an async generator: it raises when read, not when made
        yield b""
    raise exc


class CheckedContent:
    """``response.content`` once the middleware read from it: the bytes read, then the rest
    (through the stream check, for an event stream). StreamReader's reading API, its line
    limits included (``readline(max_line_length=)``, ``readuntil(max_size=)``); the chunk
    and buffer calls raise AttributeError; anything else is the original reader's.
    """

    def __init__(
        self, inner: aiohttp.StreamReader, read: list[bytes], chunks: AsyncIterator[bytes]
    ) -> None:
        self._inner = inner
        self._buffer = bytearray().join(read)
        """What was read and not handed out: a bytearray, so that handing out its head
        (``del buffer[:n]``) and adding a chunk cost the bytes moved, not the buffer's size
        (a line at a time out of a large buffer stays linear)."""
        self._chunks = chunks
        self._eof = False

    def __getattr__(self, name: str) -> Any:
        if name in {"readchunk", "iter_chunks", "read_nowait", "unread_data", "is_eof"}:
            msg = f"response.content.{name}() would skip retrypolicy's replay: use iter_any()"
            raise AttributeError(msg)
        return getattr(self._inner, name)

    async def _next(self) -> bytes:
        """The next chunk of the rest of the body; b"" at its end."""
        chunk = await anext(self._chunks, b"")
        self._eof = not chunk
        return chunk

    async def _take(self, want: Callable[[bytearray], int | None]) -> bytes:
        """Fill the buffer until *want* says how much of it to hand out (all of it at the end)."""
        buffer = self._buffer
        while (n := want(buffer)) is None and (chunk := await self._next()):
            buffer += chunk
        n = len(buffer) if n is None else n
        data = bytes(buffer[:n])
        del buffer[:n]
        return data

    async def read(self, n: int = -1) -> bytes:
        """Up to *n* bytes (everything with -1, joined once), like ``StreamReader.read``."""
        if n >= 0:
            return await self._take(lambda b: n if b else None)
        parts = [bytes(self._buffer)]
        self._buffer.clear()
        while chunk := await self._next():
            parts.append(chunk)
        return b"".join(parts)

    async def readany(self) -> bytes:
        """What is buffered, or else the next chunk (as it came: never copied)."""
        if not self._buffer:
            return await self._next()
        return await self._take(len)

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes:
        """Up to and including *separator* (or the rest at the end), like
        ``StreamReader.readuntil``: more than *max_size* bytes without it (by default, the
        reader's high-water mark, as aiohttp's) raise aiohttp's ``LineTooLong``, the bytes
        read for it dropped. Memory stays bounded: the body is never buffered past that.
        An empty *separator* is a ``ValueError``.
        """
        if not separator:
            raise ValueError("Separator should be at least one-byte string")  # as aiohttp's
        limit = max_size or self._inner.get_read_buffer_limits()[1]
        start = 0  # where the separator may begin: each byte is searched once

        def want(buffer: bytearray) -> int | None:
            nonlocal start
            i = buffer.find(separator, start)
            if i >= 0:
                n = i + len(separator)
            elif buffer and len(buffer) > limit:  # no separator within the limit
                n = len(buffer)
            else:
                start = max(0, len(buffer) - len(separator) + 1)
                return None
            if n > limit:  # aiohttp drops what it read for the line, then raises
                head = bytes(buffer[:100])
                del buffer[:n]
                raise LineTooLong(head + b"...", limit)
            return n

        return await self._take(want)

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        """One line, ``\\n`` included; *max_line_length* as :meth:`readuntil`'s *max_size*."""
        return await self.readuntil(max_size=max_line_length)

    async def readexactly(self, n: int) -> bytes:
        """Exactly *n* bytes, or ``asyncio.IncompleteReadError``."""
        data = await self._take(lambda b: n if len(b) >= n else None)
        if len(data) < n:
            raise asyncio.IncompleteReadError(data, n)
        return data

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _iterate(self.readline)

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        return _iterate(lambda: self.read(n))

    def iter_any(self) -> AsyncIterator[bytes]:
        return _iterate(self.readany)
