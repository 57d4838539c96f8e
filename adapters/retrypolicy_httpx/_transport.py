"""``RetryTransport`` and ``AsyncRetryTransport``: a policy's retries inside an httpx client.

Why a transport: mounted once, it covers every request the client sends,
streaming ones included, and the calling code stays plain httpx — the final
response is an ordinary ``httpx.Response`` whose ``raise_for_status()`` works
as before.

One attempt is one call of the inner transport. Only what the policy needs is
read from its response: a bounded prefix of an error body (for the envelope's
code), or an event stream up to its first content event — a stream that fails
before then is retried transparently, since nothing of it has reached the
caller. The final response replays those bytes and then the rest of the inner
stream, so the caller reads exactly what the server sent; an event stream is
read through a ``StreamGuard`` that raises ``rp.StreamError`` when it carries
an ``error`` event or ends without ``response.completed``. Decisions, waits, hooks and
instant mode are those of ``@rp.retry``: the loop is ``AdapterRetrier``'s.

Connections: a response we retry past is closed before the next attempt is
sent (a pool of one connection must not deadlock on it); error bodies and
failed stream openings are usually read or abandoned at once, so their
connection goes back even before the wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TypeAlias, TypeVar

try:
    import httpx
except ImportError as exc:
    _MISSING = (
        "retrypolicy_httpx needs httpx, which is not installed: pip install 'retrypolicy[httpx]'"
    )
    raise ModuleNotFoundError(_MISSING, name="httpx") from exc

from retrypolicy._decorators import _retrier
from retrypolicy._exchange import (
    MAX_ERROR_BODY,
    AdapterRetrier,
    Exchange,
    StreamGuard,
    is_event_stream,
)
from retrypolicy._extract import ATTEMPTS_EXTENSION
from retrypolicy._policy import Policy
from retrypolicy._sse import StreamProblem
from retrypolicy.typing import AsyncSleeper, Clock, RetryHook, Sleeper

__all__ = ["ATTEMPTS_EXTENSION", "AsyncRetryTransport", "RetryTransport"]


Failure: TypeAlias = Callable[[], BaseException]
"""Builds the exception a replayed body ends with (built late: attempts are known then)."""

T = TypeVar("T", httpx.BaseTransport, httpx.AsyncBaseTransport)


# --------------------------------------------------------------------------- shared


class _Retrying:
    """What both transports share: the policy, the attempt loop, and the hand-over."""

    __slots__ = ("loop", "methods", "policy")

    def __init__(
        self,
        policy: Policy | None,
        name: str,
        *,
        raise_on_give_up: bool,
        methods: Iterable[str] | None,
        on_retry: RetryHook | None,
        on_give_up: RetryHook | None,
        on_success: RetryHook | None,
        before_attempt: RetryHook | None,
        clock: Clock | None,
        sleep: Sleeper | None = None,
        async_sleep: AsyncSleeper | None = None,
    ) -> None:
        if isinstance(methods, str):
            msg = f"methods {methods!r}: expected an iterable of method names, e.g. ['POST']"
            raise TypeError(msg)
        retrier = _retrier(
            policy,
            name,
            on_retry=on_retry,
            on_give_up=on_give_up,
            on_success=on_success,
            before_attempt=before_attempt,
            clock=clock,
            sleep=sleep,
            async_sleep=async_sleep,
        )
        self.policy: Policy = retrier.policy
        self.methods = None if methods is None else frozenset(m.upper() for m in methods)
        self.loop = AdapterRetrier(retrier, raise_on_give_up=raise_on_give_up)

    def retries(self, request: httpx.Request) -> bool:
        """Whether *request* is ours to retry (its method is one of ``methods``)."""
        return self.methods is None or request.method in self.methods

    @staticmethod
    def guards(request: httpx.Request, response: httpx.Response) -> bool:
        """Whether *response* is an event stream to check to its last event."""
        return (
            200 <= response.status_code < 300
            and request.method != "HEAD"
            and is_event_stream(response.headers)
        )

    @staticmethod
    def exchange(
        inner: httpx.Response,
        stream: httpx.SyncByteStream | httpx.AsyncByteStream,
        *,
        sync: bool,
        body: bytes | None = None,
        problem: StreamProblem | None = None,
        primed: list[bytes] | None = None,
        guard: StreamGuard | None = None,
    ) -> Exchange:
        """The exchange of one attempt whose body the caller would read from *stream*."""
        final = httpx.Response(
            inner.status_code, headers=inner.headers, stream=stream, extensions=inner.extensions
        )
        return Exchange(
            final,
            final.status_code,
            final.headers,
            release=final.close,
            arelease=None if sync else final.aclose,
            body=body,
            problem=problem,
            primed=[] if primed is None else primed,
            guard=guard,
        )

    @staticmethod
    def hand_over(ex: Exchange) -> httpx.Response:
        """The final response, marked with the attempts it took."""
        response: httpx.Response = ex.response
        response.extensions[ATTEMPTS_EXTENSION] = ex.attempts
        return response

    def describe(self, owner: object, inner: object) -> str:
        return f"<{type(owner).__name__} policy={self.policy.name!r} transport={inner!r}>"


def _stream_failure(guard: StreamGuard, problem: StreamProblem) -> Failure:
    return lambda: guard.error(problem)


def _read_failure(exc: Exception | None) -> Failure | None:
    return None if exc is None else (lambda: exc)


# --------------------------------------------------------------------------- sync


class _Replay(httpx.SyncByteStream):
    """The final response's body: what the adapter read, then the rest of the inner stream."""

    def __init__(self, chunks: Iterator[bytes], inner: httpx.SyncByteStream) -> None:
        self._chunks = chunks
        self._inner = inner
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        if not self._closed:  # the inner stream may have been closed early: once is enough
            self._closed = True
            self._inner.close()


def _replay(
    read: list[bytes], rest: Iterator[bytes] | None, failure: Failure | None
) -> Iterator[bytes]:
    yield from read
    if failure is not None:
        raise failure()
    if rest is not None:
        yield from rest


def _peek(chunks: Iterator[bytes]) -> tuple[list[bytes], bool, Exception | None]:
    """Read at most about :data:`MAX_ERROR_BODY` of a body: (chunks, whether it ended, error)."""
    read: list[bytes] = []
    size = 0
    while size < MAX_ERROR_BODY:
        try:
            chunk = next(chunks)
        except StopIteration:
            return read, True, None
        except Exception as exc:  # noqa: BLE001 - the status decides; the reader gets exc later
            return read, True, exc
        read.append(chunk)
        size += len(chunk)
    return read, False, None


class RetryTransport(httpx.BaseTransport):
    """An httpx transport that retries by *policy* (default ``rp.EUGPT``) around *transport*.

    ``httpx.Client(transport=RetryTransport())`` retries every request the
    client sends (``methods=None``: POST included, as the API's calls are
    POSTs; give ``methods`` to limit it — other requests pass straight
    through). On give-up the final response is returned, so
    ``raise_for_status()`` keeps working, unless ``raise_on_give_up=True``: then
    the matching ``rp.APIError`` is raised (an exception from the inner
    transport is always re-raised unchanged). ``response.extensions
    ["retrypolicy.attempts"]`` says how many attempts were made. Hooks,
    ``clock`` and ``sleep`` are those of ``@rp.retry``.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        transport: httpx.BaseTransport | None = None,
        *,
        raise_on_give_up: bool = False,
        methods: Iterable[str] | None = None,
        on_retry: RetryHook | None = None,
        on_give_up: RetryHook | None = None,
        on_success: RetryHook | None = None,
        before_attempt: RetryHook | None = None,
        clock: Clock | None = None,
        sleep: Sleeper | None = None,
    ) -> None:
        self._core = _Retrying(
            policy,
            type(self).__name__,
            raise_on_give_up=raise_on_give_up,
            methods=methods,
            on_retry=on_retry,
            on_give_up=on_give_up,
            on_success=on_success,
            before_attempt=before_attempt,
            clock=clock,
            sleep=sleep,
        )
        self._transport = _inner(transport, httpx.BaseTransport, httpx.HTTPTransport)

    @property
    def policy(self) -> Policy:
        """The policy this transport retries by."""
        return self._core.policy

    def __repr__(self) -> str:
        return self._core.describe(self, self._transport)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* through the inner transport, retrying by the policy."""
        core = self._core
        if not core.retries(request):
            return self._transport.handle_request(request)
        if not isinstance(request.stream, httpx.ByteStream):
            request.read()  # a one-shot body (a generator, multipart) must be re-sendable
        # a response we retry past is released by the attempt loop before it waits
        return core.hand_over(core.loop.send(lambda: self._attempt(request)))

    def _attempt(self, request: httpx.Request) -> Exchange:
        response = self._transport.handle_request(request)
        try:
            return self._inspect(request, response)
        except BaseException:
            response.close()
            raise

    def _inspect(self, request: httpx.Request, response: httpx.Response) -> Exchange:
        """Read what the policy needs of *response*; the caller would read the rest."""
        core = self._core
        stream = response.stream
        if not isinstance(stream, httpx.SyncByteStream):
            msg = f"{self!r}: the inner transport returned an async stream"
            raise TypeError(msg)
        if response.status_code >= 400:
            chunks = iter(stream)
            read, ended, error = _peek(chunks)
            if ended:
                stream.close()  # the whole body is in hand: free the connection now
            body = _replay(read, None if ended else chunks, _read_failure(error))
            return core.exchange(
                response, _Replay(body, stream), sync=True, body=b"".join(read)[:MAX_ERROR_BODY]
            )
        if core.guards(request, response):
            guard = StreamGuard(core.policy)
            chunks = iter(stream)
            primed, problem = guard.prime(chunks)
            if problem is None:
                body = guard.iterate(primed, chunks)
            else:
                _close_iterator(chunks)
                stream.close()  # the caller gets the bytes read, then the StreamError
                body = _replay(primed, None, _stream_failure(guard, problem))
            return core.exchange(
                response,
                _Replay(body, stream),
                sync=True,
                problem=problem,
                primed=primed,
                guard=guard,
            )
        return Exchange(response, response.status_code, response.headers, release=response.close)

    def close(self) -> None:
        """Close the inner transport."""
        self._transport.close()


def _close_iterator(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


# --------------------------------------------------------------------------- async


class _AsyncReplay(httpx.AsyncByteStream):
    """:class:`_Replay` for an async inner stream."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        rest: AsyncIterator[bytes] | None,
        inner: httpx.AsyncByteStream,
    ) -> None:
        self._chunks = chunks
        self._rest = rest
        self._inner = inner
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Close the generators too: left to the garbage collector, an async
        # generator is finalised on whatever loop is still around, if any.
        await _aclose_iterator(self._chunks)
        if self._rest is not None:
            await _aclose_iterator(self._rest)
        await self._inner.aclose()


async def _areplay(
    read: list[bytes], rest: AsyncIterator[bytes] | None, failure: Failure | None
) -> AsyncIterator[bytes]:
    for chunk in read:
        yield chunk
    if failure is not None:
        raise failure()
    if rest is not None:
        async for chunk in rest:
            yield chunk


async def _apeek(chunks: AsyncIterator[bytes]) -> tuple[list[bytes], bool, Exception | None]:
    """:func:`_peek` for an async stream."""
    read: list[bytes] = []
    size = 0
    while size < MAX_ERROR_BODY:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return read, True, None
        except Exception as exc:  # noqa: BLE001
            return read, True, exc
        read.append(chunk)
        size += len(chunk)
    return read, False, None


async def _aclose_iterator(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


class AsyncRetryTransport(httpx.AsyncBaseTransport):
    """:class:`RetryTransport` for ``httpx.AsyncClient``; ``async_sleep`` replaces ``sleep``."""

    def __init__(
        self,
        policy: Policy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        raise_on_give_up: bool = False,
        methods: Iterable[str] | None = None,
        on_retry: RetryHook | None = None,
        on_give_up: RetryHook | None = None,
        on_success: RetryHook | None = None,
        before_attempt: RetryHook | None = None,
        clock: Clock | None = None,
        async_sleep: AsyncSleeper | None = None,
    ) -> None:
        self._core = _Retrying(
            policy,
            type(self).__name__,
            raise_on_give_up=raise_on_give_up,
            methods=methods,
            on_retry=on_retry,
            on_give_up=on_give_up,
            on_success=on_success,
            before_attempt=before_attempt,
            clock=clock,
            async_sleep=async_sleep,
        )
        self._transport = _inner(transport, httpx.AsyncBaseTransport, httpx.AsyncHTTPTransport)

    @property
    def policy(self) -> Policy:
        """The policy this transport retries by."""
        return self._core.policy

    def __repr__(self) -> str:
        return self._core.describe(self, self._transport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* through the inner transport, retrying by the policy."""
        core = self._core
        if not core.retries(request):
            return await self._transport.handle_async_request(request)
        if not isinstance(request.stream, httpx.ByteStream):
            await request.aread()  # a one-shot body must be re-sendable

        async def attempt() -> Exchange:
            response = await self._transport.handle_async_request(request)
            try:
                return await self._inspect(request, response)
            except BaseException:
                await response.aclose()
                raise

        # a response we retry past is released (awaited) by the attempt loop before it waits
        return core.hand_over(await core.loop.asend(attempt))

    async def _inspect(self, request: httpx.Request, response: httpx.Response) -> Exchange:
        """:meth:`RetryTransport._inspect` for an async response."""
        core = self._core
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            msg = f"{self!r}: the inner transport returned a sync stream"
            raise TypeError(msg)
        if response.status_code >= 400:
            chunks = aiter(stream)
            read, ended, error = await _apeek(chunks)
            if ended:
                await stream.aclose()
            rest = None if ended else chunks
            body = _areplay(read, rest, _read_failure(error))
            return core.exchange(
                response,
                _AsyncReplay(body, rest, stream),
                sync=False,
                body=b"".join(read)[:MAX_ERROR_BODY],
            )
        if core.guards(request, response):
            guard = StreamGuard(core.policy)
            chunks = aiter(stream)
            primed, problem = await guard.aprime(chunks)
            if problem is None:
                body = guard.aiterate(primed, chunks)
                replay = _AsyncReplay(body, chunks, stream)
            else:
                await _aclose_iterator(chunks)
                await stream.aclose()
                body = _areplay(primed, None, _stream_failure(guard, problem))
                replay = _AsyncReplay(body, None, stream)
            return core.exchange(
                response, replay, sync=False, problem=problem, primed=primed, guard=guard
            )
        return Exchange(
            response,
            response.status_code,
            response.headers,
            release=response.close,
            arelease=response.aclose,
        )

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._transport.aclose()


def _inner(transport: T | None, base: type[T], default: Callable[[], T]) -> T:
    """The inner transport: *transport*, checked, or a new default one."""
    if transport is None:
        return default()
    if not isinstance(transport, base):
        msg = f"transport {transport!r}: expected an {base.__module__}.{base.__qualname__}"
        raise TypeError(msg)
    return transport
