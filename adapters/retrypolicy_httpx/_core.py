"""The transports' logic, written once for httpx and httpx2 (and sync and async).

httpx2 is a maintained fork of httpx with the same transport interface but its own
types: a client of one library asserts that a response's stream is *its*
``SyncByteStream``, and a transport of the other fails deep inside it. So every
type the transports touch comes from a :class:`Library` — the record of one
module's classes — and :mod:`retrypolicy_httpx` (httpx) and
:mod:`retrypolicy_httpx.httpx2` only bind it. Nothing here imports either library.

Why a transport: mounted once, it covers every request the client sends,
streaming ones included, and the calling code stays plain httpx — the final
response is the inner transport's own response, whose ``raise_for_status()``
works as before.

The adapter only reads and hands over; the seam (:mod:`retrypolicy.transport`)
decides. One attempt is one call of the inner transport. Of its response only
what the policy needs is read: a bounded prefix of an error body (for the
envelope's code), or an event stream up to its first content event — a stream
that fails before then is retried transparently, since nothing of it has
reached the caller. The final response replays those bytes and then the rest
of the inner stream, so the caller reads exactly what the bare transport would
have given it. An httpx transport hands over the bytes off the wire, before
httpx undoes ``Content-Encoding``: the seam judges a decoded *copy*.

The attempt logic is written once, as a coroutine over a small I/O object:
:class:`_AsyncIO` awaits the inner transport; :class:`_SyncIO` calls it, never
suspends, and the sync transport runs the coroutine to its end with one
``send(None)``. The two differ only in the lines that do I/O. The common case —
a first attempt that succeeds with nothing to read — both transports settle
before any coroutine or attempt loop exists (when the policy has no limiter or
breaker to ask first, and nobody listens for ``before_attempt``): a clock
reading, one status look-up and a Content-Type scan, which keeps the
transport's cost per request near httpx-retries'. Anything else is handed to
the loop from where it stands.

Connections: a response retried past is closed before the wait (a pool of one
connection must not deadlock on it); an error body or a stream opening read to
its end is closed at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, NamedTuple, TypeVar, Unpack

from retrypolicy import Policy
from retrypolicy.transport import (
    ATTEMPTS_ATTRIBUTE,
    MAX_ERROR_BODY,
    AdapterKeywords,
    AdapterOptions,
    AttemptLoop,
    Outcome,
    StreamCheck,
    StreamProblem,
    is_event_stream,
    redact,
)

if TYPE_CHECKING:
    from retrypolicy.transport import FirstAttempt

__all__ = ["ATTEMPTS_EXTENSION", "AsyncTransport", "Library", "SyncTransport"]

ATTEMPTS_EXTENSION: Final = "retrypolicy.attempts"
"""The ``response.extensions`` key that says how many attempts a final response took."""

Inner = TypeVar("Inner")

Failure = Callable[[], BaseException]
"""Builds the exception a replayed body ends with (late: the attempts are known then)."""

# --------------------------------------------------------------------------- replayed bodies


class _Body:
    """A final body: the chunks the adapter read, then the rest, or the error it ends with."""

    def __init__(
        self, inner: Any, chunks: Any, read: list[bytes], rest: Any, failure: Failure | None
    ) -> None:
        self._inner = inner  # the inner transport's stream
        self._chunks = chunks  # its chunk iterator, which *rest* (if any) continues
        self._read = read
        self._rest = rest
        self._failure = failure
        self._closed = False


class _Replay(_Body):
    """The final body of a sync response."""

    def __iter__(self) -> Iterator[bytes]:
        yield from self._read
        if self._failure is not None:
            raise self._failure()
        if self._rest is not None:
            yield from self._rest

    def close(self) -> None:
        if not self._closed:  # the inner stream may have been closed early: once is enough
            self._closed = True
            self._inner.close()


class _AsyncReplay(_Body):
    """The final body of an async response; closing it closes the generators too."""

    _open: AsyncIterator[bytes] | None = None

    async def _body(self) -> AsyncIterator[bytes]:
        for chunk in self._read:
            yield chunk
        if self._failure is not None:
            raise self._failure()
        if self._rest is not None:
            async for chunk in self._rest:
                yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        body = self._open = self._body()
        return body

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # left to the garbage collector, an async generator is finalised on whatever
        # event loop is still around, if any: close ours, the guard's and the inner one now
        for it in (self._open, self._rest, self._chunks):
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        await self._inner.aclose()


# --------------------------------------------------------------------------- one library's types


class _Wiring(NamedTuple):
    """One library's classes for one side (sync or async): transports, stream, body."""

    base: type  # the library's BaseTransport or AsyncBaseTransport
    default: Callable[[], Any]  # the inner transport by default: its (Async)HTTPTransport
    stream: type  # the library's SyncByteStream or AsyncByteStream
    replay: Callable[..., Any]  # the final body: a stream of the library's own type


class Library(NamedTuple):
    """The classes of one httpx-shaped library (httpx, httpx2) the transports use."""

    name: str
    Request: Any  # Any, not type: isinstance() must not narrow what it checks to object
    Response: Any
    ByteStream: Any
    sync: _Wiring
    async_: _Wiring
    other: str
    """The other library's name: in a TypeError that says which transport to use."""
    may_stream: Callable[[Any], bool]
    """Whether a response's headers may name an event stream (see :func:`_listed_type`)."""

    @classmethod
    def of(cls, module: ModuleType, other: str) -> Library:
        """The record of *module* (``httpx`` or ``httpx2``), its replay bodies made once."""
        m, here = module, {"__module__": __name__}
        replay = type("_Replay", (_Replay, m.SyncByteStream), here)
        areplay = type("_AsyncReplay", (_AsyncReplay, m.AsyncByteStream), here)
        return cls(
            name=m.__name__,
            Request=m.Request,
            Response=m.Response,
            ByteStream=m.ByteStream,
            sync=_Wiring(m.BaseTransport, m.HTTPTransport, m.SyncByteStream, replay),
            async_=_Wiring(m.AsyncBaseTransport, m.AsyncHTTPTransport, m.AsyncByteStream, areplay),
            other=other,
            may_stream=_listed_type if _lists(module) else _raw_type,
        )


def _home(library: str) -> str:
    """The package whose transports are those of *library* (``httpx`` or ``httpx2``)."""
    return "retrypolicy_httpx" if library == "httpx" else "retrypolicy_httpx.httpx2"


def _lists(module: ModuleType) -> bool:
    """Whether *module*'s ``Headers`` keep the (raw key, lower key, value) list httpx and
    httpx2 keep today: read directly, it spares every success ``headers.raw``'s copy and
    the lower-casing of each key (a private layout, so it is checked once, here)."""
    try:
        probe = module.Headers({"Content-Type": "x"})
        return bool(probe._list == [(b"Content-Type", b"content-type", b"x")])
    except Exception:  # noqa: BLE001 - another layout: the public reading instead
        return False


def _listed_type(response: Any) -> bool:
    """Whether *response*'s Content-Type may be an event stream (for the fast path: a yes
    is only a maybe, which the seam decides). Every Content-Type line is looked at: when
    a server sends several, the seam reads them all (:func:`is_event_stream`), so a no
    here must hold for each. Headers as :func:`_lists` found them."""
    for _, key, value in response.headers._list:  # see _lists
        if key == b"content-type" and b"event-stream" in value.lower():
            return True
    return False


def _raw_type(response: Any) -> bool:
    """:func:`_listed_type` through the public ``headers.raw``."""
    for key, value in response.headers.raw:
        if len(key) == 12 and key.lower() == b"content-type" and b"event-stream" in value.lower():
            return True
    return False


# --------------------------------------------------------------------------- the I/O


class _Shell:
    """What the sync and async I/O share: the inner transport, the wiring."""

    __slots__ = ("transport", "wiring")
    open: Any  # iter or aiter (a class attribute of each side)

    def __init__(self, transport: Any, wiring: _Wiring) -> None:
        self.transport = transport
        self.wiring = wiring

    def chunks(self, stream: object) -> Any:
        """The chunk iterator of a response *stream* (checked: an inner transport may lie)."""
        wiring = self.wiring
        if not isinstance(stream, wiring.stream):
            msg = f"{self.transport!r} returned a {type(stream).__name__}, not {wiring.stream}"
            raise TypeError(msg)
        return self.open(stream)


class _SyncIO(_Shell):
    """The inner transport's I/O for the shared coroutine, done at once (never suspends)."""

    __slots__ = ()
    open = staticmethod(iter)
    guard = staticmethod(StreamCheck.guard)

    async def send(self, request: Any) -> Any:
        return self.transport.handle_request(request)

    async def next(self, chunks: Iterator[bytes]) -> bytes | None:
        return next(chunks, None)

    async def close(self, stream: Any) -> None:  # a response, or a response's stream
        stream.close()

    async def pause(self, loop: AttemptLoop, seconds: float) -> None:
        loop.sleep(seconds)  # interrupted: the retry's cost goes back

    async def begin(self, loop: AttemptLoop) -> float:
        return loop.begin()

    async def failed(self, loop: AttemptLoop, outcome: Outcome) -> float | None:
        return loop.failed(outcome)

    async def succeeded(self, loop: AttemptLoop) -> None:
        loop.succeeded()


class _AsyncIO(_Shell):
    """:class:`_SyncIO` for an async inner transport."""

    __slots__ = ()
    open = staticmethod(aiter)
    guard = staticmethod(StreamCheck.aguard)

    async def send(self, request: Any) -> Any:
        return await self.transport.handle_async_request(request)

    async def next(self, chunks: AsyncIterator[bytes]) -> bytes | None:
        return await anext(chunks, None)

    async def close(self, stream: Any) -> None:
        await stream.aclose()

    async def pause(self, loop: AttemptLoop, seconds: float) -> None:
        await loop.asleep(seconds)  # cancelled: the retry's cost goes back

    async def begin(self, loop: AttemptLoop) -> float:
        return await loop.abegin()  # a shared store is awaited, never blocked on

    async def failed(self, loop: AttemptLoop, outcome: Outcome) -> float | None:
        return await loop.afailed(outcome)

    async def succeeded(self, loop: AttemptLoop) -> None:
        await loop.asucceeded()


IO = _SyncIO | _AsyncIO
"""What the shared coroutine does its I/O with."""


# --------------------------------------------------------------------------- the attempts


async def _take(
    io: IO, chunks: Any, more: Callable[[bytes], bool]
) -> tuple[list[bytes], bool, Exception | None]:
    """Read while *more(chunk)*: (the chunks read, whether the body ended, the read error)."""
    read: list[bytes] = []
    while True:
        try:
            chunk = await io.next(chunks)
        except Exception as exc:  # noqa: BLE001 - judged by the caller; the reader meets it later
            return read, True, exc
        if chunk is None:
            return read, True, None
        read.append(chunk)
        if not more(chunk):
            return read, False, None


async def _send(io: IO, request: Any) -> Any:
    """One attempt: the inner transport's response, or the exception it raised."""
    try:
        return await io.send(request)
    except Exception as exc:  # noqa: BLE001 - judged by the loop, re-raised on give-up
        return exc


async def _release(io: IO, response: Any) -> None:
    """Close a response we hand nobody (best effort: it is discarded anyway)."""
    with contextlib.suppress(Exception):
        await io.close(response)


def _stream_failure(check: StreamCheck, problem: StreamProblem, cause: Exception | None) -> Failure:
    def failure() -> BaseException:
        error = check.error(problem)
        error.__cause__ = cause
        return error

    return failure


def _is_stream(request: Any, response: Any) -> bool:
    """Whether *response* is an event stream to check to its last event."""
    # the seam decides (a HEAD, a 204... has no stream); the scan (cheaper than httpx's own
    # look-up) spares it the common JSON
    return (
        request.method != "HEAD"
        and _raw_type(response)
        and is_event_stream(response.headers, status=response.status_code)
    )


def _hand_over(
    loop: AttemptLoop, response: Any, outcome: Outcome | None, check: StreamCheck | None
) -> Any:
    """The final response, marked with its attempts (or the error raised on give-up)."""
    response.extensions[ATTEMPTS_EXTENSION] = loop.attempts
    return loop.finish(response, outcome, check)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (its I/O is :class:`_SyncIO`) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()  # pragma: no cover - _SyncIO never suspends
    msg = "a sync RetryTransport attempt suspended"  # pragma: no cover
    raise RuntimeError(msg)  # pragma: no cover


def _mismatch(library: Library, request: object, name: str) -> TypeError:
    """A transport of one library mounted in a client of the other: what to use instead."""
    theirs = type(request).__module__.partition(".")[0]
    hint = ""
    if theirs == library.other:
        hint = f": use {_home(theirs)}.{name} (openai's DefaultHttpxClient is an httpx2.Client)"
    msg = (
        f"{_home(library.name)}.{name} is a transport for {library.name} clients, but it was "
        f"given a {type(request).__module__}.{type(request).__qualname__}{hint}"
    )
    return TypeError(msg)


def _inner(transport: Any, wiring: _Wiring, library: Library) -> Any:
    """The inner transport: *transport*, checked, or a new default one."""
    inner = wiring.default() if transport is None else transport
    if isinstance(inner, wiring.base):
        return inner
    msg = (
        f"transport {redact(repr(transport))}: expected a {library.name}.{wiring.base.__qualname__}"
    )
    if type(inner).__module__.partition(".")[0] == library.other:
        msg += f" (for a {library.other} transport, use the transports of {_home(library.other)})"
    raise TypeError(msg)


# --------------------------------------------------------------------------- the transports


class _Transport(Generic[Inner]):
    """What the sync and async transports share: the options, the I/O, and the attempt loop
    written once (*Inner*: the inner transport's type)."""

    _library: ClassVar[Library]
    _sync: ClassVar[bool]

    def __init__(
        self,
        policy: Policy | None = None,
        transport: Inner | None = None,
        **options: Unpack[AdapterKeywords],
    ) -> None:
        library = self._library
        wiring = library.sync if self._sync else library.async_
        inner = _inner(transport, wiring, library)
        name = "RetryTransport" if self._sync else "AsyncRetryTransport"
        self._options = opts = AdapterOptions(policy=policy, name=name, **options)
        self._io: IO = (_SyncIO if self._sync else _AsyncIO)(inner, wiring)
        self._transport = inner
        self._first: FirstAttempt | None = opts.first_attempt()
        """Set when a first attempt needs no loop (the fast path); None: always a loop."""
        self._request: type = library.Request
        self._may_stream = library.may_stream

    @property
    def policy(self) -> Policy:
        """The policy this transport retries by."""
        return self._options.policy

    def __repr__(self) -> str:
        options = self._options
        return f"<{options.name} policy={options.policy.name!r} transport={self._transport!r}>"

    def _settled(self, first: FirstAttempt, response: Any) -> bool:
        """Whether a first attempt's *response* ends the request here: a status the policy
        counts as success, below 400, and nothing that may be an event stream to read."""
        status = response.status_code
        if (ok := first.known.get(status)) is None:
            ok = first.options.succeeds(status)
        return ok and status < 400 and not self._may_stream(response)

    def _new_loop(
        self, request: Any, first: FirstAttempt | None = None, started: float = 0.0
    ) -> AttemptLoop:
        """The attempt loop of *request*: the caller begins its first attempt, unless that
        went out already, at *started*, settled by *first* (then it is counted)."""
        library, options = self._library, self._options
        if not isinstance(request, library.Request):
            raise _mismatch(library, request, options.name)
        # a one-shot body (a generator) is sent once, not buffered: its stream is still checked
        resendable = isinstance(request.stream, library.ByteStream)
        # the host keys the policy's breaker: not even read without one (it costs)
        host = request.url.host if options.policy.breaker is not None else ""
        if first is None:
            return options.loop(request.method, resendable=resendable, host=host)
        return first.loop(started, request.method, resendable=resendable, host=host)

    def _retrying(self, request: Any) -> bool:
        """Whether *request* is the policy's to retry (see :meth:`AdapterOptions.loop`)."""
        return isinstance(request.stream, self._library.ByteStream) and self._options.retries(
            request.method
        )

    async def _attempts(
        self, request: Any, loop: AttemptLoop | None = None, sent: Any = None
    ) -> Any:
        """Send *request* until the policy is satisfied or gives up; the final response.

        *loop* and *sent* (the response, or the exception raised) are the first
        attempt's, when the shell made it itself.
        """
        io = self._io
        if loop is None:
            loop = self._new_loop(request)
        while True:
            if sent is None:  # an attempt to make (not the shell's first, made already)
                while hold := await io.begin(loop):  # the limiter may pace (its slot is
                    await io.pause(loop, hold)  # confirmed after the wait); the breaker
                sent = await _send(io, request)  # may refuse
            if isinstance(sent, self._library.Response):
                final, wait = await self._judge(loop, request, sent)
                if final is not None:
                    # the failures' tracebacks hold this frame (their f_back): without the
                    # loop in it they are freed now, not by the garbage collector
                    loop = sent = None
                    return final
            else:
                assert sent is not None  # noqa: S101 - an attempt was made
                wait = await io.failed(loop, loop.judge_exception(sent))
                if wait is None:
                    loop = None
                    try:
                        raise sent  # unchanged
                    finally:
                        sent = None
            if wait:
                await io.pause(loop, wait)
            sent = None

    async def _judge(
        self, loop: AttemptLoop, request: Any, response: Any
    ) -> tuple[Any, float | None]:
        """(the final response, or None and the seconds to wait) after *response*."""
        io = self._io
        check: StreamCheck | None = None
        status = response.status_code
        try:
            if status >= 400:
                outcome = await self._error_body(loop, response)
            elif 200 <= status < 300 and _is_stream(request, response):
                outcome, check = await self._event_stream(response)
            else:
                outcome = loop.judge(status, response.headers)
            if outcome is None:
                await io.succeeded(loop)
                wait = None
            else:
                wait = await io.failed(loop, outcome)
        except BaseException:  # an error reading, or cancelled in a store step: nobody's
            await _release(io, response)
            raise
        if wait is None:
            try:
                return _hand_over(loop, response, outcome, check), None
            except Exception:  # raise_on_give_up: the response goes nowhere
                await _release(io, response)
                raise
        await _release(io, response)  # before the wait: a pool of one must not deadlock
        return None, wait

    async def _error_body(self, loop: AttemptLoop, response: Any) -> Outcome | None:
        """Judge an error response by a bounded prefix of its body, replayed to the caller."""
        io = self._io
        stream = response.stream
        chunks = io.chunks(stream)
        size = [0]

        def more(chunk: bytes) -> bool:
            size[0] += len(chunk)
            return size[0] < MAX_ERROR_BODY

        read, ended, error = await _take(io, chunks, more)
        if ended:
            await io.close(stream)  # the whole body is in hand: free the connection now
        failure = None if error is None else (lambda: error)
        response.stream = io.wiring.replay(stream, chunks, read, None if ended else chunks, failure)
        encoding = response.headers.get("content-encoding")
        return loop.judge(
            response.status_code, response.headers, b"".join(read), content_encoding=encoding
        )

    async def _event_stream(self, response: Any) -> tuple[Outcome | None, StreamCheck]:
        """Read an event stream up to its first content; the rest is checked as it is read."""
        io = self._io
        stream = response.stream
        chunks = io.chunks(stream)
        check = self._options.stream_check(
            content_encoding=response.headers.get("content-encoding")
        )
        read, ended, error = await _take(
            io, chunks, lambda chunk: check.feed(chunk) is None and not check.committed
        )
        if not ended and check.problem is None:  # committed: the caller gets it, checked to its end
            response.stream = io.wiring.replay(stream, chunks, read, io.guard(check, chunks), None)
            return None, check
        await io.close(stream)  # ended or failed: nothing more is read
        problem = check.problem
        # a stream that completed is a success, whatever the connection did next
        if problem is None:
            problem = check.close() if error is None else check.lost(error)
        if problem is None:
            response.stream = io.wiring.replay(stream, chunks, read, None, None)
            return None, check
        response.stream = io.wiring.replay(  # the failing event itself is never replayed
            stream, chunks, check.trimmed(read), None, _stream_failure(check, problem, error)
        )
        return check.outcome(problem, response.status_code), check


def _mark(response: Any) -> Any:
    """*response*, a first-try success, marked as :meth:`AttemptLoop.finish` marks it."""
    response.extensions[ATTEMPTS_EXTENSION] = 1
    try:  # noqa: SIM105 - not contextlib.suppress: on every success, it costs 4x as much
        setattr(response, ATTEMPTS_ATTRIBUTE, 1)
    except (AttributeError, TypeError):
        pass  # a type that refuses attributes: the count is informative only
    return response


class SyncTransport(_Transport[Inner]):
    """The sync transport's body; a library's ``RetryTransport`` adds its base class."""

    _sync = True

    def handle_request(self, request: Any) -> Any:
        """Send *request* through the inner transport, retrying by the policy.

        A first attempt that succeeds with nothing to read is settled here, without
        a loop, when the options allow it (:meth:`AdapterOptions.first_attempt`);
        anything else goes on in the loop from where it stands.
        """
        first = self._first
        if first is None or type(request) is not self._request:
            return self._handle(request)
        started = first.started()
        sent: Any
        try:
            sent = self._transport.handle_request(request)
        except Exception as exc:  # noqa: BLE001 - judged by the loop, re-raised on give-up
            sent = exc
        else:
            if self._settled(first, sent):
                if first.needs_news():
                    first.news(self._retrying(request))
                return _mark(sent)
        handled = self._attempts(request, self._new_loop(request, first, started), sent)
        sent = None  # an error's traceback holds this frame: no way back to the error from it
        return _run(handled)

    def _handle(self, request: Any) -> Any:
        """:meth:`handle_request` with a loop from the start (a limiter or breaker to ask,
        ``before_attempt`` to tell, or a request of a type to check)."""
        loop = self._new_loop(request)
        while hold := loop.begin():  # the limiter may pace (its slot confirmed after the
            loop.sleep(hold)  # wait); the breaker may refuse
        sent: Any
        try:
            sent = self._transport.handle_request(request)
        except Exception as exc:  # noqa: BLE001 - judged by the loop, re-raised on give-up
            sent = exc
        else:  # the common case, settled without the coroutine: a success with nothing to read
            status = sent.status_code
            if (
                status < 400
                and not (200 <= status < 300 and _is_stream(request, sent))
                and loop.judge(status, sent.headers) is None
            ):
                loop.succeeded()
                return _hand_over(loop, sent, None, None)
        handled = self._attempts(request, loop, sent)
        loop = sent = None  # type: ignore[assignment] # as in handle_request: no cycle back
        return _run(handled)

    def close(self) -> None:
        """Close the inner transport."""
        self._transport.close()


class AsyncTransport(_Transport[Inner]):
    """The async transport's body; a library's ``AsyncRetryTransport`` adds its base class."""

    _sync = False

    async def handle_async_request(self, request: Any) -> Any:
        """Send *request* through the inner transport, retrying by the policy (the common
        case settled without a loop, as :meth:`SyncTransport.handle_request` does)."""
        first = self._first
        if first is None or type(request) is not self._request:
            return await self._attempts(request)
        started = first.started()
        sent: Any
        try:
            sent = await self._transport.handle_async_request(request)
        except Exception as exc:  # noqa: BLE001 - judged by the loop, re-raised on give-up
            sent = exc
        else:
            if self._settled(first, sent):
                if first.needs_news():
                    try:
                        await first.anews(self._retrying(request))
                    except BaseException:  # cancelled in the store step: nobody's response
                        await _release(self._io, sent)
                        raise
                return _mark(sent)
        handled = self._attempts(request, self._new_loop(request, first, started), sent)
        sent = None  # as in handle_request: no way back to the error from this frame
        return await handled

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._transport.aclose()
