"""The attempt loop: the only code that sleeps or reads the clock.

:class:`Retrier` holds what is fixed when a function is decorated (policy,
hooks, clock, sleepers). Per call, a :class:`Loop` feeds outcomes to the
policy's pure ``decide`` and reports events; the two small drivers,
:meth:`Retrier.call` and :meth:`Retrier.acall`, only run attempts and wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from ._events import ATTEMPT, GAVE_UP, SCHEDULED, SUCCEEDED, RetryEvent
from ._extract import _NOT_RESPONSES, outcome_of_exception, outcome_of_value
from ._outcome import AttemptState, Decision, Outcome, mark_exhausted
from ._policy import Policy
from ._redact import redact
from ._rules import Kind
from ._storm import UNFULL as _UNFULL
from ._storm import Guard, guard_for
from .instrumentation._hooks import get_hooks, internal_log
from .stores._base import Store
from .stores._base import _default as _default_store
from .typing import AsyncSleeper, Clock, OutcomeExtractor, RetryHook, Sleeper

__all__ = [
    "MAX_ERROR_TEXT",
    "NEVER_RETRIED",
    "Instant",
    "Loop",
    "Retrier",
    "Run",
    "adiscard",
    "discard",
    "instant_mode",
    "retry_event",
    "set_instant_mode",
    "wall_time",
]

MAX_ERROR_TEXT: Final = 500
"""An event's ``error`` text is cut to this many characters."""

NEVER_RETRIED: Final = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)
"""Exceptions that always pass straight through: the caller asked to stop."""

_log = internal_log  # structlog once configured, stdlib logging before: never stdout


@attrs.define
class Instant:
    """The testing switch's state: waits are recorded instead of slept.

    A virtual clock advances by each recorded wait, so deadlines behave as if
    the waits had happened.
    """

    waits: list[float] = attrs.field(factory=list)
    offset: float = 0.0

    def record(self, delay: float) -> None:
        self.waits.append(delay)
        self.offset += delay


_instant: list[Instant | None] = [None]


def instant_mode() -> Instant | None:
    """The active :class:`Instant` recorder, or None when waits are real."""
    return _instant[0]


def set_instant_mode(value: Instant | None) -> Instant | None:
    """Switch instant mode; returns the previous recorder (to restore it)."""
    previous = _instant[0]
    _instant[0] = value
    return previous


def wall_time() -> float:
    """Wall-clock seconds, advanced by the waits instant mode skipped (storm state's clock)."""
    inst = _instant[0]
    return time.time() + (inst.offset if inst is not None else 0.0)


def retry_event(
    retrier: Retrier,
    name: str,
    outcome: Outcome | None,
    decision: Decision | None,
    *,
    state: AttemptState,
    now: float,
) -> RetryEvent:
    """The event for one decision of the attempt loop: the same keys on every call path."""
    exc = outcome.exception if outcome is not None else None
    return RetryEvent(
        name=name,
        call=retrier.name,
        attempt=state.attempt,
        policy=retrier.policy,
        kind=decision.classification.kind if decision is not None else None,
        status=outcome.status if outcome is not None else None,
        code=outcome.code if outcome is not None else None,
        delay=decision.delay if decision is not None and decision.retry else 0.0,
        elapsed=now - state.started,
        reason=decision.reason if decision is not None else "",
        error=None if exc is None else redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_TEXT],
        outcome=outcome,
    )


def _safe_call(hook: RetryHook, event: RetryEvent) -> None:
    try:
        hook(event)
    except Exception as exc:  # noqa: BLE001 - a hook must never break the call it observes
        _log.exception(
            "retry.hook_failed", hook=repr(hook), retry_event=event.name, error=repr(exc)
        )


@attrs.frozen(kw_only=True)
class Retrier:
    """Everything fixed at decoration time; per-call work happens in :class:`Loop`."""

    policy: Policy
    name: str
    on_retry: RetryHook | None = None
    on_give_up: RetryHook | None = None
    on_success: RetryHook | None = None
    before_attempt: RetryHook | None = None
    clock: Clock = time.monotonic
    wall_clock: Clock = time.time
    sleep: Sleeper = time.sleep
    async_sleep: AsyncSleeper = asyncio.sleep
    rng: random.Random | None = None
    extract: OutcomeExtractor | None = None
    store: Store | None = None
    """Where the policy's budget, limiter and breaker live; None: the default store."""
    storm: bool = attrs.field(init=False, eq=False, repr=False)
    """True when the policy has a budget, limiter or breaker."""
    gated: bool = attrs.field(init=False, eq=False, repr=False)
    """True when an attempt must first ask the limiter or breaker."""
    plain: bool = attrs.field(init=False, eq=False, repr=False)
    """True when a plain returned value may be handed back unexamined (see ``Run.plain``)."""
    between: bool = attrs.field(init=False, eq=False, repr=False)
    """True when something must happen between a wait and the next attempt."""
    _guard_cache: list[Any] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        p = self.policy
        gated = p.limiter is not None or p.breaker is not None
        setter = object.__setattr__
        setter(self, "storm", gated or p.budget is not None)
        setter(self, "gated", gated)
        setter(self, "plain", self.extract is None and not gated)
        setter(self, "between", gated or self.before_attempt is not None)
        setter(self, "_guard_cache", [None, None])

    def guard(self) -> Guard:
        """The guard of this policy in the store in use (the default store unless given)."""
        store = self.store if self.store is not None else _default_store[0]
        cache = self._guard_cache
        if cache[0] is store:
            guard: Guard = cache[1]
            return guard
        guard = guard_for(store, self.policy)
        self._guard_cache[:] = [store, guard]
        return guard

    def storm_now(self) -> float:
        """The storm state's clock: wall-clock seconds (comparable across the machines that
        share a store), advanced by the waits instant mode skipped."""
        inst = _instant[0]
        return self.wall_clock() + (inst.offset if inst is not None else 0.0)

    def gate(self, host: str, attempt: int) -> float:
        """Before attempt *attempt* to *host*: the limiter's wait (raises
        ``CircuitOpenError`` while the breaker is open)."""
        return self.guard().before(host, self.storm_now(), self.name, attempt)

    def storm_success(self, host: str = "") -> None:
        """An attempt succeeded: the budget's refund, the breaker's and limiter's news."""
        if self.storm:
            self.guard().succeeded(host, self.storm_now())

    def now(self) -> float:
        """The loop's clock, advanced by the waits instant mode skipped."""
        inst = _instant[0]
        return self.clock() + (inst.offset if inst is not None else 0.0)

    def outcome_of_value(self, value: object) -> Outcome | None:
        """The outcome of a returned value; None for a plain value or a success."""
        if self.extract is not None:
            custom = self.extract(value)
            if custom is not None:
                c = self.policy.classify(custom.status, custom.code, failure=custom.failure)
                return None if c.kind == Kind.SUCCESS else custom
        return outcome_of_value(value, self.policy, wall=self.wall_clock)

    def outcome_of_exception(self, exc: BaseException) -> Outcome:
        """The outcome of a raised exception."""
        return outcome_of_exception(exc, wall=self.wall_clock)

    def emit(self, make: Callable[[], RetryEvent], hook: RetryHook | None) -> None:
        """Send the event *make* builds to the per-call and process-wide hooks, if any."""
        hooks = get_hooks()
        if hook is None and not hooks:
            return  # nobody listens: do not even build the event
        event = make()
        if hook is not None:
            _safe_call(hook, event)
        for h in hooks:
            _safe_call(h, event)

    def announce(self, attempt: int, started: float) -> None:
        """Tell ``before_attempt`` that attempt *attempt* is about to start."""
        if self.before_attempt is not None:
            event = RetryEvent(
                name=ATTEMPT,
                call=self.name,
                attempt=attempt,
                policy=self.policy,
                elapsed=self.now() - started,
            )
            _safe_call(self.before_attempt, event)

    def pause(self, delay: float) -> float:
        """The seconds a shell must really sleep for *delay*: 0 in instant mode (recorded)."""
        inst = _instant[0]
        if inst is not None:
            inst.record(delay)
            return 0.0
        return delay

    def wait(self, delay: float) -> None:
        """Sleep *delay* seconds (never for a zero wait; recorded in instant mode)."""
        inst = _instant[0]
        if inst is not None:
            inst.waits.append(delay)  # inst.record(delay), inlined
            inst.offset += delay
        elif delay > 0:
            self.sleep(delay)

    async def await_wait(self, delay: float) -> None:
        """Await *delay* seconds (never for a zero wait; recorded in instant mode)."""
        inst = _instant[0]
        if inst is not None:
            inst.record(delay)
        elif delay > 0:
            await self.async_sleep(delay)

    # -- the drivers --------------------------------------------------------------
    # Both shells are the same loop; they differ only in ``fn()`` versus ``await fn()``
    # and in how they wait. Everything else is the :class:`Run`'s.

    def call(
        self,
        fn: Callable[..., Any],
        _instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run *fn* under the policy; returns its last value or re-raises its last error.

        The signature is wrapt's wrapper signature, so this bound method *is* the
        wrapper: no extra frame on the success path.
        """
        run = Run(self)
        delay: float | None
        while True:
            try:
                value = fn(*args, **kwargs)
            except NEVER_RETRIED:
                raise
            except BaseException as exc:  # noqa: BLE001 - classified, re-raised unchanged
                delay = run.raised(exc)
            else:
                if run.plain and type(value) in _NOT_RESPONSES:
                    if _UNFULL:  # a budget below capacity somewhere: refund (rarely true)
                        self.storm_success()
                    return value  # the common case: a first try returned a plain value
                delay = run.returned(value)
                if delay is None:
                    return value
                discard(run.retried_past)  # its connection is free before we wait
            self.wait(delay)
            if self.between:
                hold = run.next()
                if hold:
                    self.wait(hold)

    async def acall(
        self,
        fn: Callable[..., Awaitable[Any]],
        _instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The async driver: :meth:`call` for coroutine functions."""
        run = Run(self)
        delay: float | None
        while True:
            try:
                value = await fn(*args, **kwargs)
            except NEVER_RETRIED:
                raise
            except BaseException as exc:  # noqa: BLE001
                delay = run.raised(exc)
            else:
                if run.plain and type(value) in _NOT_RESPONSES:
                    if _UNFULL:
                        self.storm_success()
                    return value
                delay = run.returned(value)
                if delay is None:
                    return value
                await adiscard(run.retried_past)  # awaits aclose() where there is one
            await self.await_wait(delay)
            if self.between:
                hold = run.next()
                if hold:
                    await self.await_wait(hold)

    def gated_call(
        self,
        fn: Callable[..., Any],
        _instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """:meth:`call` for a policy with a limiter or breaker: the first attempt asks first
        (``CircuitOpenError`` while the breaker is open; the limiter's wait)."""
        hold = self.gate("", 1)
        if hold:
            self.wait(hold)
        return self.call(fn, _instance, args, kwargs)

    async def agated_call(
        self,
        fn: Callable[..., Awaitable[Any]],
        _instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """:meth:`gated_call` for coroutine functions."""
        hold = self.gate("", 1)
        if hold:
            await self.await_wait(hold)
        return await self.acall(fn, _instance, args, kwargs)


class Run:
    """One decorated call in progress: what the two driver shells share.

    Cheap on the success path: one small object, no loop state until the first
    failure.
    """

    __slots__ = ("loop", "plain", "retried_past", "retrier", "started", "value")

    def __init__(self, retrier: Retrier) -> None:
        self.retrier = retrier
        inst = _instant[0]  # retrier.now(), inlined: this runs on every call
        self.started = started = retrier.clock() if inst is None else retrier.clock() + inst.offset
        self.loop: Loop | None = None
        self.value: Any = None
        self.retried_past: Outcome | None = None
        """A returned response the next attempt replaces: released before the wait."""
        self.plain = retrier.plain
        """True while a plain value (see ``_extract``) may be handed back unexamined: no
        custom extractor, no failure yet (a success after one must be reported)."""
        if retrier.before_attempt is not None:
            retrier.announce(1, started)

    def returned(self, value: Any) -> float | None:
        """After an attempt returned *value*: the wait before the next, or None to hand it back."""
        self.value = value
        outcome = self.retrier.outcome_of_value(value)
        if outcome is None:
            if self.loop is not None:
                self.loop.succeeded()
            elif _UNFULL or self.retrier.gated:
                self.retrier.storm_success()
            return None
        delay = self._failed(outcome)
        if delay is not None:
            self.retried_past = outcome  # the shell releases it before it waits
        return delay

    def raised(self, exc: BaseException) -> float:
        """After an attempt raised *exc*: the wait before the next; re-raises it on give-up."""
        r = self.retrier
        loop = self.loop
        if loop is None:
            loop = self.loop = Loop(r, self.started)
            self.plain = False
        delay = loop.failed(outcome_of_exception(exc, wall=r.wall_clock))
        if delay is None:
            raise exc
        return delay

    def _failed(self, outcome: Outcome) -> float | None:
        loop = self.loop
        if loop is None:
            loop = self.loop = Loop(self.retrier, self.started)
            self.plain = False
        return loop.failed(outcome)

    def next(self) -> float:
        """The next attempt starts (tells ``before_attempt``): the limiter's wait before it."""
        r = self.retrier
        loop = self.loop
        if loop is None:
            return 0.0
        if r.before_attempt is not None:
            r.announce(loop.attempt, self.started)
        return r.gate(loop.host, loop.attempt) if r.gated else 0.0


class Loop:
    """One call's progress: state, last failure, and the events it reports."""

    __slots__ = ("decision", "guard", "host", "last", "retrier", "started", "state")

    def __init__(self, retrier: Retrier, started: float, host: str = "") -> None:
        self.retrier = retrier
        self.started = started
        self.host = host
        """The host the breaker is kept for ("" for the decorator: one per policy)."""
        self.state = AttemptState(started=started)
        self.last: Outcome | None = None
        self.decision: Decision | None = None
        """The last decision taken (None before the first failure)."""
        self.guard: Guard | None = None
        """The policy's guard, looked up once per call (the store in use when first asked)."""

    @property
    def attempt(self) -> int:
        """The number of the attempt to run next (or the one that just ended)."""
        return self.state.attempt

    def _event(self, name: str, outcome: Outcome | None, decision: Decision | None) -> RetryEvent:
        r = self.retrier
        return retry_event(r, name, outcome, decision, state=self.state, now=r.now())

    def failed(self, outcome: Outcome) -> float | None:
        """Record a failed attempt; the wait before the next one, or None to give up."""
        r = self.retrier
        inst = _instant[0]  # r.now(), inlined
        now = r.clock() if inst is None else r.clock() + inst.offset
        decision = r.policy.decide(outcome, self.state, now=now, rng=r.rng)
        if r.storm and not outcome.exhausted and decision.action != "succeed":
            decision = self._storm(decision)
        self.last = outcome
        self.decision = decision
        if decision.action != "retry":
            # "give_up", or "succeed" for an error the policy does not count as a
            # failure (an exception carrying a 2xx): either way it goes back as it is
            if r.on_give_up is not None or get_hooks():
                r.emit(lambda: self._event(GAVE_UP, outcome, decision), r.on_give_up)
            if decision.classification.retryable:
                # an outer layer must not retry it again: the exception, or the response
                failed = outcome.exception if outcome.exception is not None else outcome.value
                if failed is not None:
                    mark_exhausted(failed)
            return None
        if r.on_retry is not None or get_hooks():  # no closure when nobody listens
            r.emit(lambda: self._event(SCHEDULED, outcome, decision), r.on_retry)
        self.state = decision.state
        return decision.delay

    def _storm(self, decision: Decision) -> Decision:
        """The guard's say on a failure: the breaker and limiter are told; a retry goes ahead
        only if the breaker is not open past the wait, 429s are not persistent, and the
        budget pays for it. Otherwise: give up now, saying why (the failure keeps its kind)."""
        r = self.retrier
        guard = self.guard
        if guard is None:
            guard = self.guard = r.guard()
        inst = _instant[0]  # r.storm_now(), inlined: this runs on every retry
        now = r.wall_clock() if inst is None else r.wall_clock() + inst.offset
        c = decision.classification
        kind = c.kind
        retrying = decision.action == "retry"
        why = ""
        if guard.gated:
            why = guard.failed(
                self.host,
                kind,
                now,
                r.name,
                self.state.attempt,
                retrying=retrying,
                delay=decision.delay,
            )
        if not retrying:
            return decision
        if not why:
            paid = guard.pay(kind, now, r.name, self.state.attempt)
            if paid is None:
                return decision
            cost = guard.budget.cost_of(kind) if guard.budget is not None else 0.0
            why = (
                f"{kind}: retry budget exhausted ({paid.level:.4g} of {paid.capacity:g} tokens "
                f"left; a retry costs {cost:g})"
            )
        return Decision(
            action="give_up",
            classification=c,
            reason=why,
            state=self.state,
            retry_after=decision.retry_after,
        )

    def succeeded(self) -> None:
        """Record the successful attempt after at least one retry."""
        self.last = None
        r = self.retrier
        if r.storm:
            guard = self.guard
            if guard is None:
                guard = self.guard = r.guard()
            if guard.gated or not guard.full:  # else nothing to tell: skip the clock too
                inst = _instant[0]  # r.storm_now(), inlined
                now = r.wall_clock() if inst is None else r.wall_clock() + inst.offset
                if guard.gated:
                    guard.succeeded(self.host, now)
                else:  # a budget alone: Guard.succeeded comes down to its refund
                    guard.refund(now)
        if r.on_success is not None or get_hooks():
            r.emit(lambda: self._event(SUCCEEDED, None, None), r.on_success)


def discard(outcome: Outcome | None) -> None:
    """Release a response we retry past (its connection goes back to the pool)."""
    if outcome is None or outcome.value is None or outcome.exception is not None:
        return
    close = getattr(outcome.value, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):  # best effort: the response is garbage anyway
            close()


async def adiscard(outcome: Outcome | None) -> None:
    """:func:`discard` for async responses: awaits ``aclose()`` where there is one."""
    if outcome is None or outcome.value is None or outcome.exception is not None:
        return
    aclose = getattr(outcome.value, "aclose", None)
    if aclose is None:
        discard(outcome)
        return
    with contextlib.suppress(Exception):  # best effort: the response is garbage anyway
        await aclose()
