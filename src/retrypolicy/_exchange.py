"""What every transport adapter shares: one HTTP exchange as the policy sees it.

Adapters do the I/O (send, read a bounded prefix of an error body, read the
first event of a stream); this module turns what they read into an
:class:`Outcome` and checks event streams as callers read them. No rule is
re-implemented in an adapter: they all come through here to the policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final

import attrs

from ._backoff import header_value, retry_after_from_headers
from ._drivers import Retrier
from ._envelope import ErrorInfo, parse_error
from ._errors import APIError, StreamError, api_error
from ._extract import _GETTERS
from ._outcome import Outcome, mark_exhausted
from ._policy import Policy
from ._rules import Failure, Kind
from ._sse import StreamMonitor, StreamProblem

__all__ = [
    "MAX_ERROR_BODY",
    "AdapterRetrier",
    "Exchange",
    "StreamGuard",
    "is_event_stream",
]

MAX_ERROR_BODY: Final = 64 * 1024
"""Adapters read at most this much of an error body to classify it."""
MAX_PRIME_BYTES: Final = 64 * 1024
"""How far into a stream an adapter reads, looking for the first event, before handing it over."""
PREAMBLE_TYPES: Final = frozenset({"response.created", "response.in_progress"})
"""Event types that carry no content: a stream is not committed to the caller by them."""


def is_event_stream(headers: object) -> bool:
    """True for a ``text/event-stream`` response."""
    ctype = header_value(headers, "content-type")
    return ctype is not None and ctype.split(";", 1)[0].strip().lower() == "text/event-stream"


@attrs.define(slots=True, eq=False)
class Exchange:
    """One attempt's response, with what the adapter read of it for the policy.

    ``body`` is a bounded prefix of an error body; ``problem`` what the first
    event(s) of a stream showed; ``primed`` the stream bytes already read (to
    be handed to the caller first). ``release`` gives the connection back.
    """

    response: Any
    status: int
    headers: Any
    release: Callable[[], None]
    body: bytes | None = None
    problem: StreamProblem | None = None
    primed: list[bytes] = attrs.field(factory=list)
    guard: StreamGuard | None = None
    rest: Any = None
    """The adapter's iterator over the body bytes not read yet (after ``primed``)."""
    arelease: Callable[[], Awaitable[None]] | None = None
    """The async ``release``, for transports whose responses close with ``await``."""
    attempts: int = 1

    def close(self) -> None:
        """Release the response we are retrying past (called by the attempt loop)."""
        with contextlib.suppress(Exception):  # best effort: the response is discarded anyway
            self.release()

    async def aclose(self) -> None:
        """:meth:`close` for async transports: awaits ``arelease`` when one was given."""
        if self.arelease is None:
            self.close()
            return
        with contextlib.suppress(Exception):
            await self.arelease()

    def outcome(self, policy: Policy, wall: Callable[[], float]) -> Outcome | None:
        """The outcome for the policy, or None when this exchange is a success."""
        if self.problem is not None:
            return Outcome(
                status=self.status,
                code=self.problem.code,
                failure=self.problem.failure,
                error=ErrorInfo(self.status, self.problem.code, None, self.problem.message),
                value=self,
            )
        if policy.classify(self.status).kind == Kind.SUCCESS:
            return None
        info = parse_error(self.status, self.body, self.headers)
        return Outcome(
            status=self.status,
            code=info.code,
            retry_after=retry_after_from_headers(self.headers, now=wall()),
            error=info,
            value=self,
        )

    def error(self, policy: Policy, *, attempts: int, wall: Callable[[], float]) -> APIError:
        """The APIError for a failed final exchange (for ``raise_on_give_up``)."""
        if self.problem is not None:
            return StreamGuard(policy).error(self.problem, attempts=attempts)
        info = parse_error(self.status, self.body, self.headers)
        return api_error(
            policy.classify(self.status, info.code),
            info,
            attempts=attempts,
            retry_after=retry_after_from_headers(self.headers, now=wall()),
        )


class StreamGuard:
    """Checks an event stream to its last event as the caller reads it.

    The bytes pass through unchanged; an ``error`` event, a sequence gap, or an
    end without the completion event raises :class:`~retrypolicy.StreamError`
    (classified by the policy), after the bytes before it were delivered.
    """

    __slots__ = ("attempts", "exhausted", "monitor", "policy", "preamble")

    def __init__(
        self,
        policy: Policy,
        *,
        attempts: int = 1,
        preamble: frozenset[str] = PREAMBLE_TYPES,
    ) -> None:
        self.policy = policy
        self.monitor = StreamMonitor()
        self.attempts = attempts
        self.preamble = preamble
        self.exhausted = False

    def _committed(self, size: int) -> bool:
        """True once the caller must get the stream: content arrived, or we read enough."""
        monitor = self.monitor
        if size >= MAX_PRIME_BYTES:
            return True
        return monitor.events_seen > 0 and monitor.last_type not in self.preamble

    def error(self, problem: StreamProblem, *, attempts: int | None = None) -> StreamError:
        """The StreamError for *problem*, classified by the policy."""
        c = self.policy.classify(200, problem.code, failure=problem.failure)
        info = ErrorInfo(200, problem.code, None, problem.message)
        err = api_error(c, info, attempts=attempts or self.attempts, stream=True)
        assert isinstance(err, StreamError)  # noqa: S101 - stream=True guarantees it
        if self.exhausted and c.retryable:
            mark_exhausted(err)
        return err

    def prime(self, chunks: Iterator[bytes]) -> tuple[list[bytes], StreamProblem | None]:
        """Read up to the first content event; returns the bytes read and any problem.

        gRPC's commit rule: until an event past the preamble (``response.created``)
        arrives, nothing of the stream has reached the caller, so a problem here
        (an error event, a stream cut short) can be retried transparently. Reads
        at most :data:`MAX_PRIME_BYTES`.
        """
        read: list[bytes] = []
        size = 0
        monitor = self.monitor
        while not self._committed(size):
            try:
                chunk = next(chunks)
            except StopIteration:
                return read, monitor.finish()
            except Exception as exc:  # noqa: BLE001 - a broken stream before any event
                return read, _lost(monitor, exc)
            read.append(chunk)
            size += len(chunk)
            problem = monitor.feed(chunk)
            if problem is not None:
                return read, problem
        return read, None

    async def aprime(
        self, chunks: AsyncIterator[bytes]
    ) -> tuple[list[bytes], StreamProblem | None]:
        """:meth:`prime` for an async byte stream."""
        read: list[bytes] = []
        size = 0
        monitor = self.monitor
        while not self._committed(size):
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return read, monitor.finish()
            except Exception as exc:  # noqa: BLE001
                return read, _lost(monitor, exc)
            read.append(chunk)
            size += len(chunk)
            problem = monitor.feed(chunk)
            if problem is not None:
                return read, problem
        return read, None

    def iterate(self, primed: Iterable[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
        """Yield *primed* then *rest*, checking every byte; raise StreamError on a problem."""
        monitor = self.monitor
        yield from primed  # already checked by prime()
        while True:
            try:
                chunk = next(rest)
            except StopIteration:
                break
            except Exception as exc:
                raise self.error(_lost(monitor, exc)) from exc
            problem = monitor.feed(chunk)
            yield chunk
            if problem is not None:
                raise self.error(problem)
        problem = monitor.finish()
        if problem is not None:
            raise self.error(problem)

    async def aiterate(
        self, primed: Iterable[bytes], rest: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """:meth:`iterate` for an async byte stream."""
        monitor = self.monitor
        for chunk in primed:
            yield chunk
        while True:
            try:
                chunk = await anext(rest)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise self.error(_lost(monitor, exc)) from exc
            problem = monitor.feed(chunk)
            yield chunk
            if problem is not None:
                raise self.error(problem)
        problem = monitor.finish()
        if problem is not None:
            raise self.error(problem)


def _lost(monitor: StreamMonitor, exc: BaseException) -> StreamProblem:
    """The problem of a stream whose connection broke before its last event."""
    problem = monitor.problem
    if problem is not None:
        return problem
    return StreamProblem(
        code=None,
        message=(
            f"connection lost after {monitor.events_seen} events without response.completed "
            f"({type(exc).__name__})"
        ),
        failure=Failure.INCOMPLETE_STREAM,
        events_seen=monitor.events_seen,
    )


# an Exchange is judged by its own outcome(), never duck-typed as a response
_GETTERS[Exchange] = None


class AdapterRetrier:
    """The attempt loop for a transport adapter: one policy, one :class:`Retrier`.

    The adapter hands :meth:`send` a function that performs one attempt and
    returns an :class:`Exchange` (or raises its transport's exception); this
    runs it under the policy with the same decisions, events, hooks and
    instant mode as ``@rp.retry``, and returns the final exchange.
    """

    __slots__ = ("policy", "raise_on_give_up", "retrier")

    def __init__(self, retrier: Retrier, *, raise_on_give_up: bool = False) -> None:
        policy = retrier.policy
        wall = retrier.wall_clock
        self.policy = policy
        self.raise_on_give_up = raise_on_give_up

        def extract(value: object) -> Outcome | None:
            if isinstance(value, Exchange):
                return value.outcome(policy, wall)
            return None

        self.retrier = attrs.evolve(retrier, extract=extract)

    def _final(self, ex: Exchange, attempts: int) -> Exchange:
        ex.attempts = attempts
        if ex.guard is not None:
            ex.guard.attempts = attempts
            # a stream that failed before its first content event was retried already
            ex.guard.exhausted = ex.problem is not None
        if self.raise_on_give_up and ex.outcome(self.policy, self.retrier.wall_clock) is not None:
            ex.close()
            raise ex.error(self.policy, attempts=attempts, wall=self.retrier.wall_clock)
        return ex

    def send(self, attempt: Callable[[], Exchange]) -> Exchange:
        """Run *attempt* under the policy; the final exchange, or the last exception re-raised."""
        count = [0]

        def counted() -> Exchange:
            count[0] += 1
            return attempt()

        ex: Exchange = self.retrier.call(counted, None, (), {})
        return self._final(ex, count[0])

    async def asend(self, attempt: Callable[[], Awaitable[Exchange]]) -> Exchange:
        """:meth:`send` for an async attempt."""
        count = [0]

        async def counted() -> Exchange:
            count[0] += 1
            return await attempt()

        ex: Exchange = await self.retrier.acall(counted, None, (), {})
        return self._final(ex, count[0])
