"""``RetryAdapter``: requests' ``HTTPAdapter`` with the policy's retries inside ``send``.

Mounted on a session, every request through it is retried by the policy
(POST included: the API's calls are POSTs), error bodies are peeked at (a
bounded prefix) for their code, ``Retry-After`` is honoured, discarded
connections go back to the pool, and event streams are checked to their last
event as the caller reads them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from retrypolicy._decorators import _retrier
from retrypolicy._exchange import (
    MAX_ERROR_BODY,
    AdapterRetrier,
    Exchange,
    StreamGuard,
    is_event_stream,
)
from retrypolicy._policy import Policy
from retrypolicy.typing import Clock, RetryHook, Sleeper

__all__ = ["RetryAdapter"]

_CHUNK = 64 * 1024


class RetryAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose ``send`` retries by *policy* (default: ``rp.EUGPT``).

    On give-up the final response is returned, so ``raise_for_status()`` keeps
    working, unless ``raise_on_give_up=True``: then the matching
    ``rp.APIError`` is raised. The final response carries ``retry_attempts``.
    Other keyword arguments go to ``HTTPAdapter`` (``pool_connections``, ...).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        raise_on_give_up: bool = False,
        methods: Iterable[str] | None = None,
        on_retry: RetryHook | None = None,
        on_give_up: RetryHook | None = None,
        on_success: RetryHook | None = None,
        before_attempt: RetryHook | None = None,
        clock: Clock | None = None,
        sleep: Sleeper | None = None,
        **kwargs: Any,
    ) -> None:
        if "max_retries" in kwargs:
            msg = (
                "RetryAdapter(max_retries=...): the policy decides the retries; "
                "urllib3's own retries on top would retry twice. Use Policy(max_attempts=...)."
            )
            raise TypeError(msg)
        super().__init__(**kwargs)
        retrier = _retrier(
            policy,
            "requests.send",
            on_retry=on_retry,
            on_give_up=on_give_up,
            on_success=on_success,
            before_attempt=before_attempt,
            clock=clock,
            sleep=sleep,
        )
        self.policy: Policy = retrier.policy
        self.methods: frozenset[str] | None = (
            None if methods is None else frozenset(m.upper() for m in methods)
        )
        self._retrying = AdapterRetrier(retrier, raise_on_give_up=raise_on_give_up)

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
        method = (request.method or "GET").upper()
        rewind = _rewinder(request.body)
        if (self.methods is not None and method not in self.methods) or rewind is None:
            # not ours to retry, or a one-shot body (a generator) that cannot be re-sent
            return super().send(request, stream, timeout, verify, cert, proxies)

        def attempt() -> Exchange:
            rewind()
            response = HTTPAdapter.send(self, request, True, timeout, verify, cert, proxies)
            return self._exchange(response)

        ex = self._retrying.send(attempt)
        return _hand_over(ex)

    def _exchange(self, response: Response) -> Exchange:
        """One attempt's response, with what the policy needs read from it."""
        status = response.status_code
        ex = Exchange(response, status, response.headers, release=lambda: _release(response))
        raw = response.raw
        if status >= 400:
            ex.body = raw.read(MAX_ERROR_BODY, decode_content=True) or b""
            ex.primed = [ex.body]
            ex.rest = _chunks(raw)
        elif 200 <= status < 300 and is_event_stream(response.headers):
            guard = StreamGuard(self.policy)
            rest = _chunks(raw)
            ex.primed, ex.problem = guard.prime(rest)
            ex.guard = guard
            ex.rest = rest
        return ex


def _rewinder(body: object) -> Any:
    """A function that makes *body* sendable again, or None when it cannot be re-sent."""
    if body is None or isinstance(body, bytes | str):
        return lambda: None
    if isinstance(body, io.IOBase) and body.seekable():
        start = body.tell()
        return lambda: body.seek(start)
    return None


def _chunks(raw: Any) -> Iterator[bytes]:
    """The body as it arrives: chunk by chunk for chunked encoding, else what is available."""
    if getattr(raw, "chunked", False) and raw.supports_chunked_reads():
        yield from raw.read_chunked(_CHUNK, decode_content=True)
        return
    while True:
        chunk = raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            return
        yield chunk


def _release(response: Response) -> None:
    """Give a discarded response's connection back: drain a small rest, else close it."""
    raw = response.raw
    remaining = getattr(raw, "length_remaining", None)
    if remaining is not None and remaining <= MAX_ERROR_BODY:
        raw.drain_conn()
        raw.release_conn()
    else:
        response.close()


def _hand_over(ex: Exchange) -> Response:
    """The final response, its body replayed from what we read (checked, for streams)."""
    response: Response = ex.response
    response.retry_attempts = ex.attempts  # type: ignore[attr-defined] # our documented extra
    if ex.guard is not None:
        response.raw = _ReplayedRaw(response.raw, ex.guard.iterate(ex.primed, ex.rest))
    elif ex.rest is not None:
        response.raw = _ReplayedRaw(response.raw, _chain(ex.primed, ex.rest))
    return response


def _chain(first: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from first
    yield from rest


class _ReplayedRaw:
    """A stand-in for ``response.raw`` that serves our (checked) byte iterator.

    requests reads ``raw.stream()`` (``iter_content``, ``.content``) or
    ``raw.read()``; everything else (``release_conn``, ``close``, headers...) is
    the real urllib3 response's.
    """

    def __init__(self, raw: Any, chunks: Iterator[bytes]) -> None:
        self._raw = raw
        self._chunks = chunks
        self._buffer = b""

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
        """Yield the body in the chunks it arrives in (already decoded)."""
        if self._buffer:
            buffered, self._buffer = self._buffer, b""
            yield buffered
        while (chunk := self._next()) is not None:
            if chunk:
                yield chunk

    def read(self, amt: int | None = None, decode_content: bool | None = None, **_: Any) -> bytes:
        """Read up to *amt* bytes (all with None), like ``HTTPResponse.read``."""
        parts = [self._buffer]
        size = len(self._buffer)
        while amt is None or size < amt:
            chunk = self._next()
            if chunk is None:
                break
            parts.append(chunk)
            size += len(chunk)
        data = b"".join(parts)
        if amt is None:
            self._buffer = b""
            return data
        data, self._buffer = data[:amt], data[amt:]
        return data
