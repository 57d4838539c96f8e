"""The transport seam: what every adapter drives, without doing any I/O itself.

An adapter (requests, httpx, urllib3, aiohttp, yours) does three things only:
it sends, it reads, and it maps its transport's exceptions once at the
boundary. Everything it must *decide* lives here — the way h11 and wsproto
keep a protocol apart from its sockets.

:class:`AttemptMachine`
    One call's attempts as a question: told what happened (an attempt is about
    to go, it failed with an :class:`~retrypolicy.engine.Outcome`, it
    succeeded, a store step answered), it answers :data:`SEND`, :class:`Wait`,
    :class:`Ask` (a store step for the budget, limiter or breaker), :data:`DONE`
    or :class:`Fail`. It never sleeps, reads a clock or touches a store. Every
    call path of retrypolicy interprets it: ``@rp.retry``, ``rp.attempts``, the
    adapters (through :class:`AttemptLoop`) and the batch runner.
:class:`AdapterOptions`
    What a user configures on any adapter (policy, ``methods``,
    ``raise_on_give_up``, preamble, hooks, sleepers, clocks, rng, store),
    validated once, with one ``methods`` normaliser for everyone; an adapter
    takes them as ``**options: Unpack[AdapterKeywords]``.
:class:`AttemptLoop`
    The machine's interpreter for adapters, as steps: :meth:`~AttemptLoop.begin`
    before an attempt, :meth:`~AttemptLoop.judge` /
    :meth:`~AttemptLoop.judge_exception` to turn what happened into an outcome,
    :meth:`~AttemptLoop.failed` for the seconds to wait (or ``None``: give up),
    :meth:`~AttemptLoop.succeeded`, and :meth:`~AttemptLoop.finish` for the
    response handed to the caller (marked so that an outer retry layer adds to
    the attempts instead of multiplying them). Async adapters await
    ``abegin``/``afailed``/``asucceeded``: a shared store is never called on
    the event loop.
:class:`FirstAttempt`
    From :meth:`AdapterOptions.first_attempt`: a first attempt sent before any loop
    exists, its success settled without one (the common case, made cheap); anything
    else goes on in :meth:`FirstAttempt.loop`, counted from the attempt's start.
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
``send``, ``abegin``/``afailed``/``asucceeded`` and ``asleep``)::

    loop = options.loop(method, host=host)
    while True:
        while hold := loop.begin():  # the limiter may pace (begin() again after the
            loop.sleep(hold)  # wait confirms the slot); the breaker may refuse
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
            loop.sleep(wait)  # interrupted, the retry is never sent: its cost goes back

``AttemptLoop.run`` / ``arun`` are that loop, for adapters whose attempt fits
one function returning an :class:`Exchange`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._backoff import header_value, parse_retry_after, retry_after_from_headers
from .._envelope import parse_error
from .._errors import api_error
from .._events import RetryEvent
from .._outcome import EXHAUSTED, AttemptState, Decision, Outcome, mark_exhausted
from .._redact import redact
from .._sse import StreamProblem
from .._verdict import StormVerdict
from ._decoding import ContentDecoder
from ._limits import ATTEMPTS_ATTRIBUTE, MAX_ERROR_BODY, MAX_PRIME_BYTES, PREAMBLE_TYPES
from ._machine import (
    DONE,
    SEND,
    Ask,
    AttemptMachine,
    Done,
    Fail,
    Gate,
    Report,
    Send,
    Settle,
    Wait,
)
from ._stream import StreamCheck, is_event_stream

if TYPE_CHECKING:
    from ._adapter import (
        AdapterKeywords,
        AdapterOptions,
        AttemptLoop,
        Exchange,
        FirstAttempt,
        normalize_methods,
    )

__all__ = [
    "ATTEMPTS_ATTRIBUTE",
    "DONE",
    "EXHAUSTED",
    "MAX_ERROR_BODY",
    "MAX_PRIME_BYTES",
    "PREAMBLE_TYPES",
    "SEND",
    "AdapterKeywords",
    "AdapterOptions",
    "Ask",
    "AttemptLoop",
    "AttemptMachine",
    "AttemptState",
    "ContentDecoder",
    "Decision",
    "Done",
    "Exchange",
    "Fail",
    "FirstAttempt",
    "Gate",
    "Outcome",
    "Report",
    "RetryEvent",
    "Send",
    "Settle",
    "StormVerdict",
    "StreamCheck",
    "StreamProblem",
    "Wait",
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


def __getattr__(name: str) -> object:
    # the adapters' side (the names of __all__ not imported above) sits on the shells, which
    # sit on the machine: loaded once the package (and so the machine) is
    if name in __all__:
        from . import _adapter  # noqa: PLC0415

        value = getattr(_adapter, name)
        globals()[name] = value
        return value
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
