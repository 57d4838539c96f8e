"""The transport seam: what every adapter drives, without doing any I/O itself.

An adapter (requests, httpx, urllib3, aiohttp, yours) does three things only:
it sends, it reads, and it maps its transport's exceptions once at the
boundary. Everything it must *decide* lives here, in plain objects it feeds
what it read and asks what to do next — the way h11 and wsproto keep a
protocol apart from its sockets. Nothing here sleeps, reads a socket or
touches a clock; sync and async shells differ only in ``next`` versus
``await anext`` and ``sleep`` versus ``await sleep``.

The pieces, in the order an adapter meets them:

:class:`AdapterOptions`
    What a user configures on any adapter (policy, ``methods``,
    ``raise_on_give_up``, preamble, hooks, sleepers, clocks, rng), validated
    once, with one ``methods`` normaliser for everyone.
:class:`AttemptLoop`
    One request's attempt loop as steps: :meth:`~AttemptLoop.begin` before an
    attempt, :meth:`~AttemptLoop.judge` / :meth:`~AttemptLoop.judge_exception`
    to turn what happened into an :class:`~retrypolicy.engine.Outcome`,
    :meth:`~AttemptLoop.failed` for the seconds to wait (or ``None``: give up),
    :meth:`~AttemptLoop.succeeded`, and :meth:`~AttemptLoop.finish` for the
    response handed to the caller (marked so that an outer retry layer adds
    to the attempts instead of multiplying them). Events, hooks and the
    ``rp.testing.instant()`` switch are handled inside.
:class:`StreamCheck`
    An event stream judged as it is read: :meth:`~StreamCheck.feed` a chunk,
    :meth:`~StreamCheck.close` at its end, :meth:`~StreamCheck.lost` when the
    connection breaks, and :attr:`~StreamCheck.committed` once content reached
    the caller (gRPC's commit rule: before that a failure is retried
    transparently). :meth:`~StreamCheck.guard` / :meth:`~StreamCheck.aguard`
    wrap a byte iterator so that the caller gets ``rp.StreamError``.
:class:`ContentDecoder`
    Undoes ``Content-Encoding`` (gzip, deflate; br and zstd when their
    modules are installed) on a *copy* of the bytes, for transports that hand
    adapters encoded bytes: the policy judges what the caller will read, and
    the caller gets the bytes as the bare transport would have given them.

The smallest complete adapter is a loop like this (sync; the async one awaits
``send`` and the sleep)::

    loop = options.loop(method, host=host)
    while True:
        if hold := loop.begin():  # the policy's limiter may pace; its breaker may refuse
            options.sleep(hold)
        try:
            response = send()
        except TransportError as exc:
            wait = loop.failed(loop.judge_exception(exc))
            if wait is None:
                raise
        else:
            outcome = loop.judge(response.status, response.headers, prefix)
            if outcome is None:
                loop.succeeded()
                return loop.finish(response)
            wait = loop.failed(outcome)
            if wait is None:
                return loop.finish(response, outcome)   # or raises with raise_on_give_up
            response.close()
        if wait:
            options.sleep(wait)

``AttemptLoop.run`` / ``arun`` are that loop, for adapters whose attempt fits
one function returning an :class:`Exchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final, NoReturn

import attrs

from ._backoff import header_value, parse_retry_after, retry_after_from_headers
from ._defaults import default_policy as _default_policy
from ._drivers import Loop as _Loop
from ._drivers import Retrier as _Retrier
from ._envelope import ErrorInfo, parse_error
from ._errors import APIError, StreamError, api_error
from ._events import RetryEvent
from ._extract import outcome_of_exception as _outcome_of_exception
from ._outcome import EXHAUSTED, AttemptState, Decision, Outcome, mark_exhausted
from ._policy import Policy
from ._redact import redact
from ._rules import Failure, Kind
from ._sse import StreamMonitor as _StreamMonitor
from ._sse import StreamProblem
from ._sse import bytes_before_event as _bytes_before_event
from ._storm import UNFULL as _UNFULL
from .stores import Store as _Store
from .typing import AsyncSleeper, Clock, LoopOptions, RetryHook, Sleeper

__all__ = [
    "ATTEMPTS_ATTRIBUTE",
    "EXHAUSTED",
    "MAX_ERROR_BODY",
    "MAX_PRIME_BYTES",
    "PREAMBLE_TYPES",
    "AdapterKeywords",
    "AdapterOptions",
    "AttemptLoop",
    "AttemptState",
    "ContentDecoder",
    "Decision",
    "Exchange",
    "Outcome",
    "RetryEvent",
    "StreamCheck",
    "StreamProblem",
    "api_error",
    "header_value",
    "is_event_stream",
    "mark_exhausted",
    "normalize_methods",
    "parse_error",
    "parse_retry_after",
    "redact",
    "retry_after_from_headers",
]

MAX_ERROR_BODY: Final = 64 * 1024
"""Adapters read at most this much of an error body (decoded) to classify it."""
MAX_PRIME_BYTES: Final = 64 * 1024
"""How far into a stream an adapter reads, looking for content, before handing it over."""
PREAMBLE_TYPES: Final = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    }
)
"""Event types that carry no content: a stream is not committed to the caller by them.
OpenAI's Responses API sends the last two before the first text, so an error after them
is still retried transparently."""
ATTEMPTS_ATTRIBUTE: Final = "retry_attempts"
"""The attribute on a final response (where its type allows one) that says how many attempts
it took; httpx responses carry it in ``extensions["retrypolicy.attempts"]`` instead."""

_DECODE_STEP: Final = 256 * 1024
"""Decoded bytes produced per step: a small compressed chunk never becomes one huge string."""


# --------------------------------------------------------------------------- options


def normalize_methods(methods: str | Iterable[str] | None) -> frozenset[str] | None:
    """The one reading of ``methods=`` for every adapter: None means every method.

    A single string is one method (``"POST"``, not ``{"P", "O", "S", "T"}``);
    an iterable gives several; names are upper-cased. An empty collection or a
    non-string name is refused, naming what was given.
    """
    if methods is None:
        return None
    names = [methods] if isinstance(methods, str) else methods
    try:
        chosen = list(names)
    except TypeError:
        msg = f"methods {methods!r}: expected a method name, an iterable of names, or None"
        raise TypeError(msg) from None
    for name in chosen:
        if not isinstance(name, str) or not name.strip():
            msg = f"methods {methods!r}: {name!r} is not a method name (expected e.g. 'POST')"
            raise TypeError(msg)
    if not chosen:
        msg = "methods: expected at least one method name, or None for every method"
        raise ValueError(msg)
    return frozenset(n.strip().upper() for n in chosen)


def _policy(value: Policy | None) -> Policy:
    if value is None:
        return _default_policy()
    if not isinstance(value, Policy):
        msg = f"policy {value!r}: expected a retrypolicy.Policy (e.g. rp.EUGPT) or None"
        raise TypeError(msg)
    return value


def _preamble(value: Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return PREAMBLE_TYPES
    if isinstance(value, str):
        msg = f"preamble {value!r}: expected a collection of event types, not one string"
        raise TypeError(msg)
    return frozenset(value)


def _clock(value: Clock | None) -> Clock:
    return time.monotonic if value is None else value


def _wall_clock(value: Clock | None) -> Clock:
    return time.time if value is None else value


def _sleep(value: Sleeper | None) -> Sleeper:
    return time.sleep if value is None else value


def _async_sleep(value: AsyncSleeper | None) -> AsyncSleeper:
    return asyncio.sleep if value is None else value


@attrs.frozen(kw_only=True)
class AdapterOptions:
    """What a user sets on any adapter; every adapter takes these keywords.

    ``policy`` defaults to the default policy (``RETRYPOLICY_CONFIG``, else
    ``rp.EUGPT``); ``methods`` limits which requests are retried (None: all —
    the API's calls are POSTs); ``raise_on_give_up`` turns a failed final
    response into the matching ``rp.APIError``; ``preamble`` names the event
    types that do not commit a stream to the caller. Hooks, clocks, sleepers
    and ``rng`` are those of ``@rp.retry``; ``name`` is the call name in events.
    """

    policy: Policy = attrs.field(default=None, converter=_policy)
    methods: frozenset[str] | None = attrs.field(default=None, converter=normalize_methods)
    raise_on_give_up: bool = False
    preamble: frozenset[str] = attrs.field(default=PREAMBLE_TYPES, converter=_preamble)
    name: str = "transport"
    on_retry: RetryHook | None = None
    on_give_up: RetryHook | None = None
    on_success: RetryHook | None = None
    before_attempt: RetryHook | None = None
    # None (left out, or passed on as None by an adapter) means the real one
    clock: Clock = attrs.field(default=None, converter=_clock)
    wall_clock: Clock = attrs.field(default=None, converter=_wall_clock)
    sleep: Sleeper = attrs.field(default=None, converter=_sleep)
    async_sleep: AsyncSleeper = attrs.field(default=None, converter=_async_sleep)
    rng: random.Random | None = None
    store: _Store | None = None
    """Where the policy's budget, limiter and breaker live; None: the default store."""
    _retrier: _Retrier = attrs.field(init=False, eq=False, repr=False)
    _succeeds: dict[int, bool] = attrs.field(init=False, eq=False, repr=False, factory=dict)
    """Whether a status alone is a success for the policy (the hot question, asked of
    every response): filled on first sight, bounded by the statuses there are."""

    def __attrs_post_init__(self) -> None:
        retrier = _Retrier(
            policy=self.policy,
            name=self.name,
            on_retry=self.on_retry,
            on_give_up=self.on_give_up,
            on_success=self.on_success,
            before_attempt=self.before_attempt,
            clock=self.clock,
            wall_clock=self.wall_clock,
            sleep=self.sleep,
            async_sleep=self.async_sleep,
            rng=self.rng,
            store=self.store,
        )
        object.__setattr__(self, "_retrier", retrier)

    def evolve(self, **changes: Any) -> AdapterOptions:
        """A copy with *changes* applied."""
        return attrs.evolve(self, **changes)

    def retries(self, method: str | None) -> bool:
        """Whether a request with *method* is one the policy may retry."""
        methods = self.methods
        return methods is None or (method is not None and method.upper() in methods)

    def loop(
        self, method: str | None = None, *, resendable: bool = True, host: str = ""
    ) -> AttemptLoop:
        """A new attempt loop for one request to *host* (its breaker's key: ``api.example.com``).

        A request whose method is outside ``methods``, or whose body cannot be
        sent twice (a generator), gets a loop that never retries: it is sent
        once, and its response (its event stream too) is still judged; the
        policy's limiter and breaker are not asked for it.
        """
        return AttemptLoop(self, retrying=resendable and self.retries(method), host=host)

    def stream_check(self, *, content_encoding: str | None = None) -> StreamCheck:
        """A :class:`StreamCheck` for one event stream, with these options' policy and preamble."""
        return StreamCheck(self.policy, preamble=self.preamble, content_encoding=content_encoding)


class AdapterKeywords(LoopOptions, total=False):
    """The keywords of :class:`AdapterOptions` a user passes to an adapter, all optional.

    An adapter takes them in one typed line and hands them on unchanged, so its
    signature cannot drift from the options::

        def __init__(self, policy=None, **options: Unpack[AdapterKeywords]) -> None:
            self.options = AdapterOptions(policy=policy, name="mine", **options)
    """

    raise_on_give_up: bool
    methods: str | Iterable[str] | None
    preamble: Iterable[str] | None


# --------------------------------------------------------------------------- exchange


@attrs.define(eq=False)
class Exchange:
    """One attempt's response as the loop sees it: the response, and how it was judged.

    ``outcome`` is None for a success. ``close``/``aclose`` release a response
    the loop retries past (best effort: it is discarded anyway).
    """

    response: Any
    outcome: Outcome | None = None
    close: Callable[[], object] | None = None
    aclose: Callable[[], Awaitable[object]] | None = None
    check: StreamCheck | None = None
    """The check of the response's event stream, when it is one."""

    def release(self) -> None:
        """Release the response (sync)."""
        if self.close is not None:
            with contextlib.suppress(Exception):
                self.close()

    async def arelease(self) -> None:
        """Release the response, awaiting ``aclose`` when there is one."""
        if self.aclose is None:
            self.release()
            return
        with contextlib.suppress(Exception):
            await self.aclose()


def is_event_stream(headers: object) -> bool:
    """True for a ``text/event-stream`` response."""
    ctype = header_value(headers, "content-type")
    return ctype is not None and ctype.split(";", 1)[0].strip().lower() == "text/event-stream"


# --------------------------------------------------------------------------- the loop


class AttemptLoop:
    """One request's attempts, as steps an adapter calls; it never waits itself.

    :meth:`failed` returns the seconds the adapter must sleep before the next
    attempt (0 under ``rp.testing.instant()``, which records the wait), or
    None when the policy gives up. A loop built with ``retrying=False`` gives
    up on the first failure, emits nothing and marks nothing: the request was
    not the policy's to retry.
    """

    __slots__ = ("_loop", "_started", "attempts", "host", "options", "retrying")

    def __init__(self, options: AdapterOptions, *, retrying: bool = True, host: str = "") -> None:
        self.options = options
        self.retrying = retrying
        self.host = host
        """The host whose breaker is asked ("" for one breaker per policy)."""
        self.attempts = 0
        """Attempts begun so far."""
        self._started = options._retrier.now()
        self._loop: _Loop | None = None

    @property
    def policy(self) -> Policy:
        """The policy that decides."""
        return self.options.policy

    @property
    def state(self) -> AttemptState:
        """Where the request stands (attempts made, retries per kind)."""
        return AttemptState(started=self._started) if self._loop is None else self._loop.state

    @property
    def decision(self) -> Decision | None:
        """The last decision taken; None before the first failure."""
        return None if self._loop is None else self._loop.decision

    def begin(self, *, sent: bool = False) -> float:
        """An attempt is about to be sent (tells ``before_attempt``): the seconds to wait
        before sending it (0.0 but for the policy's limiter; 0 under ``rp.testing.instant()``).

        With a breaker, raises :class:`~retrypolicy.CircuitOpenError` while the host's
        breaker is open: nothing must be sent. *sent*: the attempt went out already (a
        transport that reports only after the fact, like urllib3's ``Retry`` on the
        first attempt): it is counted and announced, and neither paced nor refused.
        """
        self.attempts += 1
        if not self.retrying:
            return 0.0
        retrier = self.options._retrier
        retrier.announce(self.attempts, self._started)
        if not retrier.gated or sent:
            return 0.0
        hold = retrier.gate(self.host, self.attempts)
        return retrier.pause(hold) if hold else 0.0

    # -- judging -------------------------------------------------------------------

    def judge(
        self,
        status: int,
        headers: object,
        body: bytes | None = None,
        *,
        content_encoding: str | None = None,
    ) -> Outcome | None:
        """The outcome of a response: None for a success.

        *body* is a bounded prefix of an error body (the envelope's code is read
        from it). Pass *content_encoding* when *body* is still encoded as it came
        off the wire: it is decoded (bounded) before it is judged.
        """
        options = self.options
        ok = options._succeeds.get(status)
        if ok is None:
            ok = options.policy.classify(status).kind == Kind.SUCCESS
            if 100 <= status <= 999:  # only real statuses are remembered: the dict stays small
                options._succeeds[status] = ok
        if ok:
            return None
        if body and content_encoding:
            body = ContentDecoder(content_encoding).decode_prefix(body, MAX_ERROR_BODY)
        info = parse_error(status, body, headers)
        return Outcome(
            status=status,
            code=info.code,
            retry_after=retry_after_from_headers(headers, now=self.options.wall_clock()),
            error=info,
        )

    def judge_exception(self, exc: BaseException) -> Outcome:
        """The outcome of an exception the transport raised (its failure kind, if known)."""
        return _outcome_of_exception(exc, wall=self.options.wall_clock)

    # -- deciding ------------------------------------------------------------------

    def failed(self, outcome: Outcome) -> float | None:
        """Record a failed attempt: the seconds to sleep before the next one, or None.

        On give-up, an exception behind *outcome* (re-raised unchanged by the adapter)
        learns the attempts it took, as a final response does (:meth:`finish`): what
        wraps it (the openai SDK's ``APIConnectionError``) can still tell.
        """
        delay = None
        if self.retrying:
            if self._loop is None:
                self._loop = _Loop(self.options._retrier, self._started, self.host)
            delay = self._loop.failed(outcome)
        if delay is not None:
            return self.options._retrier.pause(delay)
        if outcome.exception is not None:
            try:  # noqa: SIM105 - see finish()
                setattr(outcome.exception, ATTEMPTS_ATTRIBUTE, self.attempts)
            except (AttributeError, TypeError):
                pass
        return None

    def succeeded(self) -> None:
        """Record the successful attempt (an event, when it followed a retry; the budget's
        refund and the breaker's count, when the policy has them)."""
        if self._loop is not None:
            self._loop.succeeded()
        elif (_UNFULL or self.options._retrier.gated) and self.retrying:
            self.options._retrier.storm_success(self.host)

    def finish(
        self, response: Any, outcome: Outcome | None = None, check: StreamCheck | None = None
    ) -> Any:
        """The response for the caller, marked with its attempts.

        With a failed *outcome* the loop gave up on: the response is marked as
        retried to the end (an outer ``@rp.retry`` must not retry it again),
        and with ``raise_on_give_up`` it is released and its ``rp.APIError``
        raised instead. *check*, the response's stream check, learns the
        attempts for the ``rp.StreamError`` it may raise later.
        """
        try:  # noqa: SIM105 - not contextlib.suppress: on every success, it costs 4x as much
            setattr(response, ATTEMPTS_ATTRIBUTE, self.attempts)
        except (AttributeError, TypeError):
            pass  # a type that refuses attributes (slots): the count is informative only
        if check is not None:
            check.attempts = self.attempts
            # a stream that failed before it was committed was retried already
            check.exhausted = self.retrying and outcome is not None
        if outcome is None:
            return response
        c = self.policy.classify(outcome.status, outcome.code, failure=outcome.failure)
        if self.retrying and c.retryable:
            mark_exhausted(response)
        if self.options.raise_on_give_up:
            with contextlib.suppress(Exception):
                close = getattr(response, "close", None)
                if close is not None:
                    close()
            raise self.error(outcome)
        return response

    def error(self, outcome: Outcome) -> APIError:
        """The ``rp.APIError`` for a failed final *outcome*."""
        c = self.policy.classify(outcome.status, outcome.code, failure=outcome.failure)
        info = outcome.error or ErrorInfo(outcome.status, outcome.code, None, None)
        stream = outcome.failure is Failure.INCOMPLETE_STREAM or (
            outcome.status is not None and outcome.status < 300
        )
        err = api_error(
            c, info, attempts=self.attempts, retry_after=outcome.retry_after, stream=stream
        )
        if self.retrying and c.retryable:
            mark_exhausted(err)
        return err

    # -- the two shells, for adapters whose attempt is one function -----------------

    def raised(self, exc: BaseException) -> float:
        """After an attempt raised *exc*: the seconds to wait; re-raises *exc* on give-up."""
        wait = self.failed(self.judge_exception(exc))
        if wait is None:
            raise exc
        return wait

    def returned(self, ex: Exchange) -> float | None:
        """After an attempt returned *ex*: the seconds to wait, or None to hand *ex* over."""
        if ex.outcome is None:
            self.succeeded()
            return None
        return self.failed(ex.outcome)

    def run(self, attempt: Callable[[], Exchange]) -> Any:
        """Run *attempt* until success or give-up; the final response (see :meth:`finish`).

        An exception *attempt* raises is judged; on give-up it is re-raised unchanged.
        """
        wait: float | None
        while True:
            if hold := self.begin():
                self.options.sleep(hold)
            try:
                ex = attempt()
            except Exception as exc:  # noqa: BLE001 - judged; re-raised on give-up
                wait = self.raised(exc)
            else:
                if (wait := self.returned(ex)) is None:
                    return self.finish(ex.response, ex.outcome, ex.check)
                ex.release()
            if wait:
                self.options.sleep(wait)

    async def arun(self, attempt: Callable[[], Awaitable[Exchange]]) -> Any:
        """:meth:`run` for an async attempt."""
        wait: float | None
        while True:
            if hold := self.begin():
                await self.options.async_sleep(hold)
            try:
                ex = await attempt()
            except Exception as exc:  # noqa: BLE001
                wait = self.raised(exc)
            else:
                if (wait := self.returned(ex)) is None:
                    return self.finish(ex.response, ex.outcome, ex.check)
                await ex.arelease()
            if wait:
                await self.options.async_sleep(wait)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


# --------------------------------------------------------------------------- decoding


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
        return _zlib(zstandard.ZstdDecompressor().decompressobj(), bounded=False)
    return None


def _zlib(d: Any, *, bounded: bool = True) -> Callable[[bytes], Iterator[bytes]]:
    def step(data: bytes) -> Iterator[bytes]:
        if not bounded:
            yield d.decompress(data)
            return
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
        codings = [
            c.strip().lower()
            for c in (content_encoding or "").split(",")
            if c.strip() and c.strip().lower() != "identity"
        ]
        steps = [_step_for(c) for c in reversed(codings)]  # the last applied comes off first
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


# --------------------------------------------------------------------------- streams


class StreamCheck:
    """An event stream judged while it is read (gRPC's commit rule included).

    Feed it the chunks as they arrive (:meth:`feed`), then :meth:`close` at the
    end or :meth:`lost` when the connection broke; each returns the stream's
    :class:`StreamProblem` or None. A stream that delivered the completion
    event is a success whatever the connection does next. :attr:`committed`
    turns True once an event past the preamble arrived, or
    :data:`MAX_PRIME_BYTES` were read: from then on the caller has the stream
    and a failure surfaces as ``rp.StreamError`` instead of a silent retry.
    """

    __slots__ = (
        "_decoder",
        "_ended_by",
        "_monitor",
        "_size",
        "attempts",
        "exhausted",
        "policy",
        "preamble",
    )

    def __init__(
        self,
        policy: Policy,
        *,
        preamble: frozenset[str] = PREAMBLE_TYPES,
        content_encoding: str | None = None,
    ) -> None:
        self.policy = policy
        self.preamble = preamble
        self._monitor = _StreamMonitor()
        decoder = ContentDecoder(content_encoding)
        self._decoder = None if decoder.identity else decoder
        self._size = 0
        self._ended_by: StreamProblem | None = None
        self.attempts = 1
        """The attempts behind this stream (set by the adapter when it hands it over)."""
        self.exhausted = False
        """True when the policy already retried this stream's failures to the end."""

    @property
    def committed(self) -> bool:
        """True once the caller must get the stream: content arrived, or enough was read."""
        m = self._monitor
        return self._size >= MAX_PRIME_BYTES or (
            m.events_seen > 0 and m.last_type not in self.preamble
        )

    @property
    def completed(self) -> bool:
        """True once the completion event arrived without a problem."""
        return self._monitor.completed

    @property
    def problem(self) -> StreamProblem | None:
        """The problem found so far (by :meth:`feed`, :meth:`close` or :meth:`lost`)."""
        return self._ended_by or self._monitor.problem

    def feed(self, chunk: bytes) -> StreamProblem | None:
        """Judge one chunk as it came off the transport; the problem as soon as there is one."""
        self._size += len(chunk)
        decoder = self._decoder
        if decoder is None:
            return self._monitor.feed(chunk)
        problem = None
        for piece in decoder.decode(chunk):
            problem = self._monitor.feed(piece)
            if problem is not None:
                return problem
        if decoder.failed:
            return self._undecodable()
        return problem

    def close(self) -> StreamProblem | None:
        """The stream ended: None when it completed, else why it is no success."""
        if self._ended_by is not None:
            return self._ended_by
        if self._decoder is not None and self._decoder.failed:
            return self._undecodable()
        return self._monitor.finish()

    def lost(self, exc: BaseException) -> StreamProblem | None:
        """The connection broke with *exc*: None when the stream had already completed."""
        m = self._monitor
        if m.problem is not None:
            return m.problem
        if m.completed:
            return None
        if self._ended_by is None:
            self._ended_by = StreamProblem(
                code=None,
                message=(
                    f"connection lost after {m.events_seen} events without response.completed "
                    f"({type(exc).__name__})"
                ),
                failure=Failure.INCOMPLETE_STREAM,
                events_seen=m.events_seen,
            )
        return self._ended_by

    def _undecodable(self) -> StreamProblem:
        if self._ended_by is None:
            self._ended_by = StreamProblem(
                code=None,
                message="the stream's Content-Encoding could not be decoded: it cannot be verified",
                failure=Failure.INCOMPLETE_STREAM,
                events_seen=self._monitor.events_seen,
            )
        return self._ended_by

    # -- what the policy makes of a problem -------------------------------------------

    def outcome(self, problem: StreamProblem, status: int = 200) -> Outcome:
        """The outcome of a stream that failed with *problem* before it was committed."""
        return Outcome(
            status=status,
            code=problem.code,
            failure=problem.failure,
            error=ErrorInfo(status, problem.code, None, redact(problem.message)),
        )

    def error(self, problem: StreamProblem) -> StreamError:
        """The ``rp.StreamError`` for *problem*, classified by the policy."""
        c = self.policy.classify(200, problem.code, failure=problem.failure)
        info = ErrorInfo(200, problem.code, None, redact(problem.message))
        err = api_error(c, info, attempts=self.attempts, stream=True)
        assert isinstance(err, StreamError)  # noqa: S101 - stream=True guarantees it
        if self.exhausted and c.retryable:
            mark_exhausted(err)
        return err

    def _raise(self, problem: StreamProblem, cause: BaseException | None = None) -> NoReturn:
        raise self.error(problem) from cause

    # -- guarding a body the caller reads ------------------------------------------------

    def guard(self, chunks: Iterable[bytes], primed: Iterable[bytes] = ()) -> Iterator[bytes]:
        """Yield *chunks* unchanged, raising ``rp.StreamError`` when the stream fails.

        The error is raised *in place of* the failing event: the bytes before its
        frame are yielded, the frame itself never is, so a caller's SSE parser (the
        openai SDK's, say) never sees an ``error`` event it would act on first.
        *primed* are chunks already fed to this check (while the adapter looked
        for the first content event): they are yielded first, not judged again,
        and a problem they showed is raised right after them (see :meth:`trimmed`).
        """
        yield from self.trimmed(primed) if self.problem is not None else primed
        previous = b""
        try:
            for chunk in chunks if self.problem is None else ():
                if self.feed(chunk) is not None:
                    if head := self.before_problem(chunk, previous):
                        yield head
                    break
                yield chunk
                previous = chunk
        except Exception as exc:  # noqa: BLE001 - the transport broke: lost() judges it
            self._broken(exc)
        self._ended()

    async def aguard(
        self, chunks: AsyncIterable[bytes], primed: Iterable[bytes] = ()
    ) -> AsyncIterator[bytes]:
        """:meth:`guard` for an async byte stream."""
        for chunk in self.trimmed(primed) if self.problem is not None else primed:
            yield chunk
        previous = b""
        try:
            async for chunk in chunks if self.problem is None else _nothing():
                if self.feed(chunk) is not None:
                    if head := self.before_problem(chunk, previous):
                        yield head
                    break
                yield chunk
                previous = chunk
        except Exception as exc:  # noqa: BLE001
            self._broken(exc)
        self._ended()

    def before_problem(self, chunk: bytes, previous: bytes = b"") -> bytes:
        """What of *chunk* — the chunk whose :meth:`feed` found the problem — the caller gets.

        The bytes before the failing event's frame (*previous* is the chunk before,
        as a frame boundary may straddle the two). A problem that is no single
        event (an overlong line, an undecodable body) leaves *chunk* whole; an
        encoded (gzip…) chunk cannot be cut, so none of it is handed over.
        """
        data = self._monitor.problem_data
        if data is None or self._ended_by is not None:
            return chunk
        if self._decoder is not None:
            return b""
        return _bytes_before_event(chunk, data, previous)

    def trimmed(self, read: Iterable[bytes]) -> list[bytes]:
        """*read* — chunks fed to this check, the last of which showed its problem —
        as the caller may see them: up to the failing event's frame (:meth:`before_problem`).

        For an adapter that hands over what it read while priming, then raises.
        """
        chunks = list(read)
        if chunks and self.problem is not None:
            previous = chunks[-2] if len(chunks) > 1 else b""
            head = self.before_problem(chunks[-1], previous)
            chunks[-1:] = [head] if head else []
        return chunks

    async def aprime(
        self, chunks: AsyncIterator[bytes]
    ) -> tuple[list[bytes], StreamProblem | None]:
        """Read *chunks* until the stream is committed or fails: (chunks read, problem).

        The chunks read were fed to this check: hand them over with the rest,
        ``aguard(chunks, primed=read)``. A problem means the stream failed
        before it was committed: judge it with :meth:`outcome` (a retry is
        transparent). A transport error ends the priming like :meth:`lost`.
        """
        read: list[bytes] = []
        while not self.committed:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return read, self.close()
            except Exception as exc:  # noqa: BLE001 - any transport error ends the stream
                return read, self.lost(exc)
            read.append(chunk)
            if (problem := self.feed(chunk)) is not None:
                return read, problem
        return read, None

    def _broken(self, exc: Exception) -> None:
        problem = self.lost(exc)
        if problem is not None:
            self._raise(problem, exc)

    def _ended(self) -> None:
        problem = self.close()
        if problem is not None:
            self._raise(problem)
