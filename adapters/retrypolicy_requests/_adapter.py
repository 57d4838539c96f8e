"""``RetryAdapter``: requests' ``HTTPAdapter`` with the policy's retries inside ``send``.

Mounted on a session, every request through it is retried by the policy
(POST included: the API's calls are POSTs). The adapter only reads and hands
over; the seam (:mod:`retrypolicy.transport`) decides: an error body's bounded
prefix is judged for its code, an event stream is read up to its first content
event (a failure before it is retried transparently) and then checked to its
last event as the caller reads it. urllib3 decodes the body for us
(``decode_content=True``), so the policy judges what the caller reads.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any, Unpack
from urllib.parse import urlsplit

from requests import PreparedRequest, Response
from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, HTTPAdapter

from retrypolicy import Policy
from retrypolicy.transport import (
    MAX_ERROR_BODY,
    AdapterKeywords,
    AdapterOptions,
    AttemptLoop,
    Exchange,
    StreamCheck,
    is_event_stream,
)

__all__ = ["RetryAdapter"]

_CHUNK = 64 * 1024


class RetryAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose ``send`` retries by *policy* (default: ``rp.EUGPT``).

    On give-up the final response is returned, so ``raise_for_status()`` keeps
    working, unless ``raise_on_give_up=True``: then the matching
    ``rp.APIError`` is raised. The final response carries ``retry_attempts``.
    ``methods`` limits which requests are retried (``"POST"`` or ``["POST"]``):
    a request outside it is sent again only after a connection failure (it never
    left), one with a one-shot body (a generator) never — its event stream is
    still checked. The keywords are ``HTTPAdapter``'s own
    (``pool_connections``, ``pool_maxsize``, ``pool_block``) and every
    :class:`~retrypolicy.transport.AdapterKeywords` key (``store=``, ``rng=``,
    hooks, clocks, sleepers).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
        pool_block: bool = DEFAULT_POOLBLOCK,
        max_retries: None = None,
        **options: Unpack[AdapterKeywords],
    ) -> None:
        if max_retries is not None:
            msg = (
                "RetryAdapter(max_retries=...): the policy decides the retries; "
                "urllib3's own retries on top would retry twice. Use Policy(max_attempts=...)."
            )
            raise TypeError(msg)
        self.options = AdapterOptions(policy=policy, name="requests.send", **options)
        super().__init__(
            pool_connections=pool_connections, pool_maxsize=pool_maxsize, pool_block=pool_block
        )

    @property
    def policy(self) -> Policy:
        """The policy this adapter retries by."""
        return self.options.policy

    @property
    def methods(self) -> frozenset[str] | None:
        """The methods retried (None: every method)."""
        return self.options.methods

    def __repr__(self) -> str:
        return f"<RetryAdapter policy={self.policy.name!r}>"

    def send(  # noqa: PLR0917 - HTTPAdapter.send's own signature
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | Any | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Send *request*, retrying by the policy; see the class docstring."""
        rewind = _rewinder(request.body)
        host = ""  # the breaker's key: not even parsed without a breaker (it costs per request)
        if self.options.policy.breaker is not None:
            host = urlsplit(request.url or "").hostname or ""
        loop = self.options.loop(request.method, resendable=rewind is not None, host=host)

        def attempt() -> Exchange:
            if rewind is not None:
                rewind()
            response = HTTPAdapter.send(self, request, True, timeout, verify, cert, proxies)
            try:
                return self._judge(loop, response)
            except BaseException:
                response.close()
                raise

        response: Response = loop.run(attempt)
        return response

    def _judge(self, loop: AttemptLoop, response: Response) -> Exchange:
        """One attempt's response, with what the policy needs read from it."""
        status = response.status_code
        ex = Exchange(response, close=lambda: _release(response))
        if status >= 400:
            raw = response.raw
            rest: Iterator[bytes]
            try:
                body = raw.read(MAX_ERROR_BODY, decode_content=True) or b""
            except Exception as exc:  # noqa: BLE001 - cut short, or undecodable (a corrupt gzip)
                # the status decides (a 400 is never retried because its body broke); the
                # caller reading the body meets the error, as requests' own would give it
                body, rest = b"", _raising(exc)
            else:
                rest = chain([body], _chunks(raw))
            ex.outcome = loop.judge(status, response.headers, body)
            response.raw = _ReplayedRaw(raw, rest)
        elif 200 <= status < 300 and is_event_stream(
            response.headers, method=response.request.method, status=status
        ):
            check = self.options.stream_check()
            primed, rest = _prime(check, _chunks(response.raw))
            if check.problem is not None:
                ex.outcome = check.outcome(check.problem, status)
            ex.check = check
            response.raw = _ReplayedRaw(response.raw, check.guard(rest, primed=primed))
        return ex


def _prime(check: StreamCheck, chunks: Iterator[bytes]) -> tuple[list[bytes], Iterator[bytes]]:
    """Read up to the stream's first content event (or its problem); the chunks read."""
    primed: list[bytes] = []
    try:
        for chunk in chunks:
            primed.append(chunk)
            if check.feed(chunk) is not None or check.committed:
                return primed, chunks
        check.close()
    except Exception as exc:  # noqa: BLE001 - a transport error before the first content event
        check.lost(exc)
    return primed, iter(())


def _rewinder(body: object) -> Any:
    """A function that makes *body* sendable again, or None when it cannot be re-sent."""
    if body is None or isinstance(body, bytes | str):
        return lambda: None
    if isinstance(body, io.IOBase) and body.seekable():
        start = body.tell()
        return lambda: body.seek(start)
    return None


def _chunks(raw: Any) -> Iterator[bytes]:
    """The body as it arrives, decoded: chunk by chunk for chunked encoding, else as available."""
    if getattr(raw, "chunked", False) and raw.supports_chunked_reads():
        yield from raw.read_chunked(_CHUNK, decode_content=True)
        return
    while chunk := raw.read1(_CHUNK, decode_content=True):
        yield chunk


def _raising(exc: Exception) -> Iterator[bytes]:
    """A body that ends at once with *exc* (what reading it raised)."""
    yield from ()  # a generator: it raises when read, not when made
    raise exc


def _release(response: Response) -> None:
    """Give a discarded response's connection back: drain a small rest, else close it."""
    raw = response.raw
    inner = getattr(raw, "_raw", raw)
    remaining = getattr(inner, "length_remaining", None)
    if remaining is not None and remaining <= MAX_ERROR_BODY:
        inner.drain_conn()
        inner.release_conn()
    else:
        response.close()


class _ReplayedRaw:
    """A stand-in for ``response.raw`` that serves the whole body: what the adapter read,
    then the rest (decoded; through the stream check, for an event stream).

    requests reads ``raw.stream()`` (``iter_content``, ``.content``) or
    ``raw.read()``; everything else (``release_conn``, ``close``, headers...) is
    the real urllib3 response's.
    """

    def __init__(self, raw: Any, chunks: Iterator[bytes]) -> None:
        self._raw = raw
        self._chunks = chunks
        self._buffer = bytearray()
        """Read and not handed out: a bytearray, so that handing out its head costs the
        bytes handed out, not the buffer's size (small reads out of a large one stay
        linear)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def _next(self) -> bytes | None:
        """The next chunk; a broken stream closes its connection before raising."""
        try:
            return next(self._chunks, None)
        except BaseException:
            self._raw.close()
            raise

    def stream(self, amt: int | None = None, decode_content: bool | None = None) -> Iterator[bytes]:
        """Yield the body (already decoded) as it arrives, in pieces of at most *amt* bytes
        as urllib3's does (``iter_content(chunk_size)``); what a caller leaves unread when
        it stops iterating is still there for :meth:`read`."""
        data, at = bytes(self._buffer), 0
        self._buffer.clear()
        try:
            while True:
                if at >= len(data):
                    chunk = self._next()
                    data, at = chunk or b"", 0
                    if chunk is None:
                        return
                    continue
                end = len(data) if amt is None else min(len(data), at + amt)
                piece = data if at == 0 and end == len(data) else data[at:end]
                at = end
                yield piece
        finally:
            self._buffer[:0] = memoryview(data)[at:]  # what was left unread, for read()

    def read(self, amt: int | None = None, decode_content: bool | None = None, **_: Any) -> bytes:
        """Read up to *amt* bytes (all with None), like ``HTTPResponse.read``."""
        buffer = self._buffer
        while (amt is None or len(buffer) < amt) and (chunk := self._next()) is not None:
            buffer += chunk
        cut = len(buffer) if amt is None else amt
        data = bytes(buffer[:cut])
        del buffer[:cut]
        return data
