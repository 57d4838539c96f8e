"""The shells: everything a call path needs to carry out the attempt machine's answers.

:class:`Retrier` holds what is fixed when a call path is built (policy, hooks,
clocks, sleepers, rng, store). It builds one
:class:`~retrypolicy.transport.AttemptMachine` per call that needs one, performs
the machine's store steps (:meth:`Retrier.perform`, or awaited:
:meth:`Retrier.aperform`), reports the answers as events, and waits. The
decorator's two interpreters, :meth:`Retrier.call` and :meth:`Retrier.acall`,
live here too; the adapters' interpreter is
:class:`~retrypolicy.transport.AttemptLoop`, the batch runner and
``rp.attempts`` use these same pieces. Sync and async differ only in the lines
that call, perform and wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from . import _clock
from ._clock import ASYNC_SLEEP, MONOTONIC, SLEEP, WALL, Skipped, _instant
from ._emit import MAX_ERROR_TEXT, mark_reported, reported, retry_event, safe_call
from ._errors import CircuitOpenError
from ._events import ATTEMPT, GAVE_UP, SCHEDULED, SUCCEEDED, RetryEvent
from ._extract import _NOT_RESPONSES, outcome_of_exception, outcome_of_value, response_of
from ._outcome import Decision, Outcome, mark_exhausted
from ._policy import Policy
from ._rules import Kind
from ._runtime import RUNTIME
from ._storm import CALL_HOOKS, Guard, Steps, guard_for
from ._verdict import NO_OBJECTION, StormVerdict, paid
from .instrumentation import _hooks
from .instrumentation._hooks import get_hooks
from .stores._base import Store
from .stores._base import _default as _default_store
from .transport._machine import (
    DONE,
    SEND,
    STEPS,
    Answer,
    AttemptMachine,
    Fail,
    Gate,
    Report,
    Settle,
    Step,
    Wait,
)
from .typing import AsyncSleeper, Clock, OutcomeExtractor, RetryHook, Sleeper

__all__ = [
    "MAX_ERROR_TEXT",
    "NEVER_RETRIED",
    "Ending",
    "Retrier",
    "adiscard",
    "discard",
]

NEVER_RETRIED: Final = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)
"""Exceptions that always pass straight through: the caller asked to stop."""


@attrs.frozen
class Ending:
    """How a call ended, as its machine decided: for a caller that records the verdict (the
    batch runner) instead of deciding it again. ``decision`` and ``outcome`` are the last
    failure's (None after a success); ``error`` is what the call raised in the end."""

    value: Any
    error: BaseException | None
    decision: Decision | None
    outcome: Outcome | None
    attempts: int


@attrs.frozen(kw_only=True)
class Retrier:
    """Everything fixed when a call path is built; per call, an :class:`AttemptMachine`."""

    policy: Policy
    name: str
    on_retry: RetryHook | None = None
    on_give_up: RetryHook | None = None
    on_success: RetryHook | None = None
    before_attempt: RetryHook | None = None
    clock: Clock = MONOTONIC
    wall_clock: Clock = WALL
    sleep: Sleeper = SLEEP
    async_sleep: AsyncSleeper = ASYNC_SLEEP
    rng: random.Random | None = None
    extract: OutcomeExtractor | None = None
    store: Store | None = None
    """Where the policy's budget, limiter and breaker live; None: the default store."""
    storm: bool = attrs.field(init=False, eq=False, repr=False)
    """True when the policy has a budget, limiter or breaker."""
    gated: bool = attrs.field(init=False, eq=False, repr=False)
    """True when an attempt must first ask the limiter or breaker."""
    plain: bool = attrs.field(init=False, eq=False, repr=False)
    """True when a plain returned value may be handed back unexamined."""
    direct: bool = attrs.field(init=False, eq=False, repr=False)
    """True when a first attempt may go without a machine (nothing to ask or announce)."""
    news: bool = attrs.field(init=False, eq=False, repr=False)
    """True when every first-try success has news for storm protection: a limiter or
    breaker, or a budget in a shared store of this call path's own (other workers drain
    it unseen); else only while some budget is below capacity (``RUNTIME.unfull``)."""
    hooks: tuple[RetryHook, ...] = attrs.field(init=False, eq=False, repr=False)
    """The call's own hooks, which storm events reach too."""
    _guard_cache: list[Any] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        p = self.policy
        gated = p.limiter is not None or p.breaker is not None
        setter = object.__setattr__
        news = gated or (p.budget is not None and bool(getattr(self.store, "shared", False)))
        setter(self, "storm", gated or p.budget is not None)
        setter(self, "gated", gated)
        setter(self, "news", news)
        setter(self, "plain", self.extract is None and not news)
        setter(self, "direct", not gated and self.before_attempt is None)
        own = (self.on_retry, self.on_give_up, self.on_success)
        setter(self, "hooks", tuple(dict.fromkeys(h for h in own if h is not None)))
        setter(self, "_guard_cache", [None, None, False])

    # -- clocks ------------------------------------------------------------------------

    def now(self) -> float:
        """The call's monotonic clock, advanced by the waits instant mode skipped."""
        inst = _instant[0]
        return self.clock() + (inst.local.skipped.offset if inst is not None else 0.0)

    def storm_now(self) -> float:
        """Storm state's clock: wall-clock seconds (comparable across the machines that
        share a store), advanced by the waits instant mode skipped."""
        inst = _instant[0]
        return self.wall_clock() + (inst.local.skipped.offset if inst is not None else 0.0)

    def wait(self, delay: float) -> None:
        """Sleep *delay* seconds (never for a zero wait; recorded in instant mode)."""
        inst = _instant[0]
        if inst is not None:
            inst.record(delay)
        elif delay > 0:
            self.sleep(delay)

    async def await_wait(self, delay: float) -> None:
        """Await *delay* seconds (never for a zero wait; recorded in instant mode)."""
        inst = _instant[0]
        if inst is not None:
            inst.record(delay)
        elif delay > 0:
            await self.async_sleep(delay)

    def wait_attempt(self, m: AttemptMachine, delay: float) -> None:
        """:meth:`wait` for a wait before *m*'s next attempt. Interrupted during it
        (``KeyboardInterrupt``, a timeout signal), the attempt is never sent: a retry
        already paid for gets its cost back (:meth:`give_back`)."""
        try:
            self.wait(delay)
        except BaseException:
            self.give_back(m)
            raise

    async def await_attempt(self, m: AttemptMachine, delay: float) -> None:
        """:meth:`await_wait` for a wait before *m*'s next attempt (a retry's backoff, the
        limiter's pacing). Cancelled during it, the attempt is never sent: a retry already
        paid for gets its cost back (:meth:`agive_back`)."""
        try:
            await self.await_wait(delay)
        except asyncio.CancelledError:
            await self.agive_back(m)
            raise

    def _unsent(self, m: AttemptMachine) -> tuple[Guard, Steps[None]] | None:
        """The refund of *m*'s retry, paid for and never to be sent (its wait was cancelled,
        the breaker refused it): only retries that fail drain the budget. None: nothing
        was paid (a first attempt, no budget)."""
        if self.policy.budget is None or not (cost := m.unsent()):
            return None
        guard = self.guard()
        return guard, guard.refund_steps(self.storm_now(), cost, paid=True)

    def give_back(self, m: AttemptMachine) -> None:
        """Give the budget back what *m*'s unsent retry paid (best effort, never raises)."""
        with contextlib.suppress(Exception):
            if (unsent := self._unsent(m)) is not None:
                unsent[0].run(unsent[1])

    async def agive_back(self, m: AttemptMachine) -> None:
        """:meth:`give_back` for async code: a shared store's step is awaited (shielded, as
        the task giving back is being cancelled)."""
        with contextlib.suppress(Exception):
            if (unsent := self._unsent(m)) is not None:
                guard, steps = unsent
                if guard.shared:
                    await asyncio.shield(guard.arun(steps))
                else:
                    guard.run(steps)

    pause = staticmethod(_clock.pause)

    # -- judging -----------------------------------------------------------------------

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

    # -- the machine and its store steps ---------------------------------------------------

    def machine(
        self,
        started: float,
        *,
        host: str = "",
        retrying: bool = True,
        attempts: int = 0,
        connect_only: bool = False,
    ) -> AttemptMachine:
        """A new machine for one call that started at *started* (:meth:`now`)."""
        return AttemptMachine(
            self.policy,
            started=started,
            retrying=retrying,
            host=host,
            rng=self.rng,
            attempts=attempts,
            connect_only=connect_only,
        )

    def guard(self) -> Guard:
        """The guard of this policy in the store in use (the default store unless given)."""
        # cached under the default store in place: a new one (rp.testing.reset(), isolated(),
        # use_store) means new process-wide guards, for a call path given its own store too
        default = _default_store[0]
        cache = self._guard_cache
        if cache[0] is default:
            guard: Guard = cache[1]
            return guard
        store = self.store if self.store is not None else default
        guard = guard_for(store, self.policy, clock=self.wall_clock)
        # the third: a retry is paid in place and refunded by owe() (drive's fast lane)
        self._guard_cache[:] = [default, guard, guard.paid_in_place and not self.hooks]
        return guard

    def perform(self, step: Step) -> object:
        """Carry out one store step of the machine (sync: the store is called here)."""
        cache = self._guard_cache
        if cache[0] is _default_store[0]:  # guard(), its cache read inline
            guard: Guard = cache[1]
        else:
            guard = self.guard()
        if type(step) is Settle and guard.paid_in_place and not self.hooks:
            if guard.owe(step.refund, paid=step.retried):  # nothing else to tell
                guard.flush_in_place(self.storm_now())
            return None
        inst = _instant[0]
        now = self.wall_clock() + (inst.local.skipped.offset if inst is not None else 0.0)
        if not self.hooks:  # no call hook for storm events to reach
            return guard.run(self._steps(guard, step, now))
        token = CALL_HOOKS.set(self.hooks)
        try:
            return guard.run(self._steps(guard, step, now))
        finally:
            CALL_HOOKS.reset(token)

    def pay(self, m: AttemptMachine, wait: Wait) -> Wait | Fail:
        """Pay for *wait*'s retry from the retry budget (its ``cost``): the wait when paid
        for, the machine's :class:`Fail` when the budget refuses. Sync: the store is
        called here."""
        cost, wait.cost = wait.cost, 0.0
        guard = self.guard()
        now = self.storm_now()
        token = CALL_HOOKS.set(self.hooks) if self.hooks else None
        try:
            refused = guard.pay(cost, now, self.name, m.attempts)
        finally:
            if token is not None:
                CALL_HOOKS.reset(token)
        return wait if refused is None else m.refused(refused)

    async def apay(self, m: AttemptMachine, wait: Wait) -> Wait | Fail:
        """:meth:`pay` for async code: a shared store's step is awaited."""
        guard = self.guard()
        if not guard.shared:
            return self.pay(m, wait)
        cost, wait.cost = wait.cost, 0.0
        now = self.storm_now()
        token = CALL_HOOKS.set(self.hooks) if self.hooks else None
        try:
            refused = await guard.arun(guard.pay_steps(cost, now, self.name, m.attempts))
        finally:
            if token is not None:
                CALL_HOOKS.reset(token)
        return wait if refused is None else m.refused(refused)

    async def aperform(self, step: Step) -> object:
        """:meth:`perform` for async code: the steps of a shared store are awaited (a
        :class:`~retrypolicy.stores.RedisStore` through ``redis.asyncio``), never a blocking
        call on the event loop; an in-process store's steps are memory, done at once."""
        guard = self.guard()
        if not guard.shared:
            return self.perform(step)
        now = self.storm_now()
        token = CALL_HOOKS.set(self.hooks) if self.hooks else None
        try:
            return await guard.arun(self._steps(guard, step, now))
        finally:
            if token is not None:
                CALL_HOOKS.reset(token)

    def _steps(self, guard: Guard, step: Step, now: float) -> Steps[object]:
        """One machine step as the guard's store steps: written once, run by :meth:`perform`
        or awaited by :meth:`aperform`."""
        name = self.name
        if type(step) is Report:
            why = ""
            if guard.gated:
                why = yield from guard.failed_steps(
                    step.host,
                    step.kind,
                    now,
                    name,
                    step.attempt,
                    retrying=step.retrying,
                    delay=step.delay,
                )
            if not step.retrying:
                return NO_OBJECTION
            cost = step.cost
            if why or guard.budget is None:
                return StormVerdict(why, None, cost)
            refused = yield from guard.pay_steps(cost, now, name, step.attempt)
            return paid(cost) if refused is None else StormVerdict("", refused, cost)
        if type(step) is Gate:
            hold = yield from guard.before_steps(step.host, now, name, step.attempt, step.epoch)
            return hold
        assert type(step) is Settle  # noqa: S101 - the three steps there are
        yield from guard.succeeded_steps(step.host, now, step.refund, retried=step.retried)
        return None

    def step(self, m: AttemptMachine, step: Step) -> Answer:
        """Perform one store step of *m* and give it the result: *m*'s next answer. A
        ``Gate`` refused by the open breaker raises ``CircuitOpenError``, and the retry
        already paid for, never to be sent, gets its cost back."""
        try:
            return m.answered(self.perform(step))
        except CircuitOpenError:
            self.give_back(m)
            raise

    async def astep(self, m: AttemptMachine, step: Step) -> Answer:
        """:meth:`step`, the store awaited."""
        try:
            return m.answered(await self.aperform(step))
        except CircuitOpenError:
            await self.agive_back(m)
            raise

    def resolve(self, m: AttemptMachine, answer: Answer) -> Answer:
        """Perform the store steps *answer* asks for until the machine answers something
        else; report it (events, exhaustion marks). Sync."""
        while type(answer) in STEPS:
            answer = self.step(m, answer)  # type: ignore[arg-type] # a step
        if type(answer) is Wait and answer.cost:
            answer = self.pay(m, answer)
        if answer is SEND or (type(answer) is Wait and self.on_retry is None and not _hooks._hooks):
            return answer  # nothing to report: no mark, nobody listening
        self.report(m, answer)
        return answer

    async def aresolve(self, m: AttemptMachine, answer: Answer) -> Answer:
        """:meth:`resolve`, awaiting the store steps."""
        while type(answer) in STEPS:
            answer = await self.astep(m, answer)  # type: ignore[arg-type] # a step
        if type(answer) is Wait and answer.cost:
            answer = await self.apay(m, answer)
        if answer is not SEND:
            self.report(m, answer)
        return answer

    def storm_success(self, host: str = "") -> None:
        """A first attempt succeeded without a machine: the success's storm news (the
        budget's refund when it is below capacity, the breaker's and limiter's count)."""
        if self.storm and self._has_news():
            budget = self.policy.budget
            self.perform(Settle(host, budget.success_refund if budget is not None else 0.0, False))

    async def astorm_success(self, host: str = "") -> None:
        """:meth:`storm_success`, awaiting the store."""
        if self.storm and self._has_news():
            budget = self.policy.budget
            refund = budget.success_refund if budget is not None else 0.0
            await self.aperform(Settle(host, refund, False))

    def _has_news(self) -> bool:
        """Whether this call path's guard wants a first-try success: a limiter or breaker,
        a bucket below capacity, or a shared one (seen full a while ago, perhaps). False
        for a full in-process bucket, when another's (below capacity, or shared) sent the
        shell here."""
        return self.gated or not (guard := self.guard()).full or guard.shared

    def needs_news(self) -> bool:
        """Whether a first-try success has anything to tell storm protection (a budget below
        capacity somewhere, a limiter or breaker, a shared store of its own): False on the
        common path."""
        return self.news or (self.storm and bool(RUNTIME.unfull))

    # -- events --------------------------------------------------------------------------

    def emit(self, make: Callable[[], RetryEvent], hook: RetryHook | None) -> None:
        """Send the event *make* builds to the per-call and process-wide hooks, if any."""
        hooks = get_hooks()
        if hook is None and not hooks:
            return  # nobody listens: do not even build the event
        event = make()
        if hook is not None:
            safe_call(hook, event)
        for h in hooks:
            safe_call(h, event)

    def report(self, m: AttemptMachine, answer: Answer) -> None:
        """The events of an answer, and the exhaustion mark of a failure given up on."""
        if type(answer) is Wait:
            d = answer.decision
            if d is not None and (self.on_retry is not None or _hooks._hooks):
                retried = answer.outcome
                self.emit(lambda: self._event(m, SCHEDULED, retried, d), self.on_retry)
        elif type(answer) is Fail:
            given_up = answer.decision
            if given_up is None:
                return  # not the policy's to retry: nothing to report or mark
            outcome = answer.outcome
            exc = outcome.exception
            failed = exc if exc is not None else outcome.value
            if (
                outcome.exhausted
                or (failed is not None and reported(failed))
                # an HTTP error raised for a response an adapter gave up on (and logged)
                or (exc is not None and outcome.status is not None and _carries_reported(exc))
            ):
                # an inner retry layer gave up on it and told the process: one log line per
                # failure; the call's own hook still hears of it
                if self.on_give_up is not None:
                    safe_call(self.on_give_up, self._event(m, GAVE_UP, outcome, given_up))
            elif self.on_give_up is not None or get_hooks():
                self.emit(lambda: self._event(m, GAVE_UP, outcome, given_up), self.on_give_up)
            if failed is not None:
                mark_reported(failed)
                if given_up.classification.retryable:  # an outer layer must not retry it
                    mark_exhausted(failed)
        elif answer is DONE and m.attempt > 1 and (self.on_success or _hooks._hooks):
            self.emit(lambda: self._event(m, SUCCEEDED, None, None), self.on_success)

    def _event(
        self, m: AttemptMachine, name: str, outcome: Outcome | None, decision: Any
    ) -> RetryEvent:
        # a retry's event counts the attempt that failed: the machine already moved past it
        retried = decision is not None and decision.action == "retry"
        attempt = m.attempt - 1 if retried else m.attempt
        return retry_event(
            self,
            name,
            outcome,
            decision,
            attempt=attempt,
            started=m.started,
            now=self.now(),
        )

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
            safe_call(self.before_attempt, event)

    # -- the decorator's interpreters ------------------------------------------------------
    # Both are the same loop over the machine's answers; they differ only in ``fn()``
    # versus ``await fn()``, in how a store step is performed and in how they wait.

    def call(
        self,
        fn: Callable[..., Any],
        _instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run *fn* under the policy; returns its last value or re-raises its last error.

        The signature is wrapt's wrapper signature, so this bound method *is* the
        wrapper: no extra frame on the success path, where no machine is built.
        """
        inst = _instant[0]
        started = self.clock() if inst is None else self.clock() + inst.local.skipped.offset
        if not self.direct:
            m = self.machine(started)
            return self.drive(m, self.resolve(m, m.begin()), fn, args, kwargs)
        try:
            value = fn(*args, **kwargs) if kwargs else fn(*args)  # no copy of an empty dict
        except Exception as exc:  # noqa: BLE001 - classified, re-raised unchanged
            failure: BaseException | None = exc
            outcome = outcome_of_exception(exc, wall=self.wall_clock)
        except NEVER_RETRIED:  # checked second: an Exception is matched in one step
            raise
        except BaseException as exc:  # noqa: BLE001
            failure = exc
            outcome = outcome_of_exception(exc, wall=self.wall_clock)
        else:
            if self.plain and type(value) in _NOT_RESPONSES:
                if RUNTIME.unfull and self.storm:  # a budget below capacity somewhere: refund
                    self.storm_success()
                return value  # the common case: a first try returned a plain value
            failure = None
            found = self.outcome_of_value(value)
            if found is None:
                if self.needs_news():
                    self.storm_success()
                return value
            outcome = found
        # out of the except block: a later attempt's error must not chain to this one
        m = AttemptMachine(self.policy, started, True, "", self.rng, 1)
        inst = _instant[0]
        skipped = None if inst is None else inst.local.skipped  # this thread's, for drive()
        now = self.clock() if skipped is None else self.clock() + skipped.offset
        answer: Answer = m.failed(outcome, now)
        try:
            return self.drive(
                m, answer, fn, args, kwargs, None if failure else value, failure, skipped
            )
        finally:  # the failure's traceback holds this frame: no cycle back to the failure
            failure = outcome = m = answer = None  # type: ignore[assignment]

    def drive(  # noqa: PLR0915, PLR0917 - one hot loop, inlined on purpose; call()'s pieces
        self,
        m: AttemptMachine,
        answer: Answer,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        value: Any = None,
        exc: BaseException | None = None,
        skipped: Skipped | None = None,
    ) -> Any:
        """Interpret the machine's answers from *answer* on, until done or given up.

        The hot loop of a retried call: an in-process budget with nobody to tell is paid
        and refunded here, in place (what :meth:`perform` would do, one call shorter), and
        a retry's wait with nobody listening is carried out without :meth:`resolve`.
        *skipped*: in instant mode, this thread's skipped seconds (read once per call).
        """
        found: Outcome | None
        announce = self.before_attempt is not None
        guard = None
        in_place = False
        if m.storm:  # guard(), its cache read here
            cache = self._guard_cache
            if cache[0] is not _default_store[0]:
                self.guard()
            guard, in_place = cache[1], cache[2]
        inst = _instant[0]
        if inst is not None and skipped is None:
            skipped = inst.local.skipped
        here = inst  # the instant mode *skipped* belongs to
        off = skipped.offset if in_place and skipped is not None else 0.0  # as of the failure
        while True:
            t = type(answer)
            if t is Wait:
                if answer.cost:  # type: ignore[union-attr] # the budget pays first
                    if in_place:  # pay(), inlined: an in-process budget with nobody to tell
                        refused = guard.pay_in_place(  # type: ignore[union-attr]
                            answer.cost,  # type: ignore[union-attr]
                            self.wall_clock() + off,  # storm_now(), the failure's offset
                            self.name,
                            m.attempts,
                        )
                        if refused is not None:
                            answer = m.refused(refused)
                            continue
                    else:
                        answer = self.pay(m, answer)  # type: ignore[arg-type]
                        if type(answer) is not Wait:
                            continue
                if self.on_retry is not None or _hooks._hooks:
                    self.report(m, answer)
                if exc is None:  # a response retried past: its connection is free first
                    retried = answer.outcome  # type: ignore[union-attr]
                    if retried is not None and retried.value is not None:
                        discard(retried)
                delay = answer.seconds  # type: ignore[union-attr]
                inst = _instant[0]
                if inst is not None:  # inst.record(delay), inlined
                    if inst is not here:  # instant mode was switched on (or anew) meanwhile
                        here, skipped = inst, inst.local.skipped
                    inst.waits.append(delay)
                    skipped.offset += delay  # type: ignore[union-attr]
                elif delay > 0:
                    self.wait_attempt(m, delay)  # interrupted: the retry's cost goes back
                answer = m.waited()
                if answer is not SEND:
                    continue  # a store step first (the limiter, the breaker)
            elif t in STEPS:
                answer = self.step(m, answer)  # type: ignore[arg-type] # a step
                continue
            elif answer is DONE:
                if m.attempt > 1 and (self.on_success is not None or _hooks._hooks):
                    self.report(m, answer)
                # the failures' tracebacks hold this frame: without a way back to them, they
                # are freed as the call returns, not left to the garbage collector
                m = answer = None  # type: ignore[assignment]
                return value
            elif t is Fail:
                self.report(m, answer)
                m = answer = found = None  # type: ignore[assignment] # as above
                if exc is not None:
                    try:
                        raise exc
                    finally:
                        exc = None
                return value
            if announce:
                self.announce(m.attempts, m.started)
            try:
                value = fn(*args, **kwargs) if kwargs else fn(*args)
            except Exception as e:  # noqa: BLE001 - classified, re-raised unchanged
                exc, value = e, None
                found = outcome_of_exception(e, wall=self.wall_clock)
            except NEVER_RETRIED:  # checked second: an Exception is matched in one step
                raise
            except BaseException as e:  # noqa: BLE001
                exc, value = e, None
                found = outcome_of_exception(e, wall=self.wall_clock)
            else:
                exc = None
                found = (
                    None
                    if self.plain and type(value) in _NOT_RESPONSES
                    else self.outcome_of_value(value)
                )
            if found is not None:
                inst = _instant[0]
                if inst is None:
                    off = 0.0
                else:
                    if inst is not here:
                        here, skipped = inst, inst.local.skipped
                    off = skipped.offset  # type: ignore[union-attr]
                answer = m.failed(found, self.clock() + off)
                continue
            answer = m.succeeded()
            if type(answer) is Settle and in_place:  # perform(), inlined: a refund, owed
                if guard.owe(answer.refund, paid=answer.retried):  # type: ignore[union-attr]
                    guard.flush_in_place(self.storm_now())  # type: ignore[union-attr]
                answer = DONE  # what answered(None) says to a Settle, one call shorter
            if answer is DONE:  # the call is over (the loop's DONE, one turn shorter)
                if m.attempt > 1 and (self.on_success is not None or _hooks._hooks):
                    self.report(m, answer)
                m = answer = None  # type: ignore[assignment] # as above
                return value

    def finish(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Ending:
        """Run *fn* like :meth:`call`, but hand back how it ended (:class:`Ending`) instead of
        raising; only what is never retried (KeyboardInterrupt...) passes through."""
        m = self.machine(self.now())
        try:
            value = self.drive(m, self.resolve(m, m.begin()), fn, args, kwargs)
        except NEVER_RETRIED:
            raise
        except BaseException as exc:  # noqa: BLE001 - the ending carries it
            return Ending(None, exc, m.decision, m.last, m.attempts)
        last = m.last
        return Ending(value, None, None if last is None else m.decision, last, m.attempts)

    async def afinish(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Ending:
        """:meth:`finish` for coroutine functions."""
        m = self.machine(self.now())
        try:
            value = await self.adrive(m, await self.aresolve(m, m.begin()), fn, args, kwargs)
        except NEVER_RETRIED:
            raise
        except BaseException as exc:  # noqa: BLE001
            return Ending(None, exc, m.decision, m.last, m.attempts)
        last = m.last
        return Ending(value, None, None if last is None else m.decision, last, m.attempts)

    async def acall(
        self,
        fn: Callable[..., Awaitable[Any]],
        _instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The async interpreter: :meth:`call` for coroutine functions."""
        inst = _instant[0]
        started = self.clock() if inst is None else self.clock() + inst.local.skipped.offset
        if not self.direct:
            m = self.machine(started)
            return await self.adrive(m, await self.aresolve(m, m.begin()), fn, args, kwargs)
        try:
            value = await fn(*args, **kwargs)
        except NEVER_RETRIED:
            raise
        except BaseException as exc:  # noqa: BLE001
            failure: BaseException | None = exc
            outcome = outcome_of_exception(exc, wall=self.wall_clock)
        else:
            if self.plain and type(value) in _NOT_RESPONSES:
                if RUNTIME.unfull and self.storm:
                    await self.astorm_success()
                return value
            failure = None
            found = self.outcome_of_value(value)
            if found is None:
                if self.needs_news():
                    await self.astorm_success()
                return value
            outcome = found
        m = self.machine(started, attempts=1)
        answer = await self.afailed(m, outcome)
        try:
            return await self.adrive(
                m, answer, fn, args, kwargs, None if failure else value, failure
            )
        finally:  # as in call(): no cycle back to the failure through this frame
            failure = outcome = m = answer = None  # type: ignore[assignment]

    async def adrive(  # noqa: PLR0917 - as drive()
        self,
        m: AttemptMachine,
        answer: Answer,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        value: Any = None,
        exc: BaseException | None = None,
    ) -> Any:
        """:meth:`drive` for coroutine functions."""
        found: Outcome | None
        while True:
            t = type(answer)
            if t is Wait:
                await adiscard(answer.outcome)  # type: ignore[union-attr]
                await self.await_attempt(m, answer.seconds)  # type: ignore[union-attr]
                answer = await self.aresolve(m, m.waited())
                continue
            if answer is DONE:
                m = None  # type: ignore[assignment] # as in drive(): no cycle to the failures
                return value
            if t is Fail:
                m = answer = found = None  # type: ignore[assignment]
                if exc is not None:
                    try:
                        raise exc
                    finally:
                        exc = None
                return value
            self.announce(m.attempts, m.started)
            try:
                value = await fn(*args, **kwargs)
            except NEVER_RETRIED:
                raise
            except BaseException as e:  # noqa: BLE001
                exc, value = e, None
                found = outcome_of_exception(e, wall=self.wall_clock)
            else:
                exc = None
                found = self.outcome_of_value(value)
            if found is None:
                answer = await self.aresolve(m, m.succeeded())
            else:
                answer = await self.afailed(m, found)

    async def afailed(self, m: AttemptMachine, outcome: Outcome) -> Answer:
        """*m*'s answer to a failed attempt, resolved. Cancelled in a store step, the
        failed response is released: nobody will read it."""
        try:
            return await self.aresolve(m, m.failed(outcome, self.now()))
        except BaseException:
            await adiscard(outcome)
            raise


def _carries_reported(exc: BaseException) -> bool:
    """Whether *exc* carries a response (``raise_for_status()``'s errors) whose give-up a
    retry layer already reported."""
    response = response_of(exc, exc.__dict__)
    return response is not None and reported(response)


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
