"""Storm protection applied: one :class:`Guard` per policy and store, asked by the attempt loop.

The attempt machine asks for store steps, and the shells (``@rp.retry``,
``rp.attempts``, every adapter through ``transport.AttemptLoop``) carry them
out with the guard of its policy:

- before an attempt (:meth:`Guard.before`, only when a limiter or breaker is
  configured): may it be sent (else :class:`~retrypolicy.CircuitOpenError`),
  and after how long a wait (the limiter's pacing);
- after a failure the policy would retry (:meth:`Guard.failed`): is the
  breaker open past the wait, are 429s persistent, can the budget pay for the
  retry — any "no" turns the retry into "give up now", with a reason;
- after a success (:meth:`Guard.succeeded`): the refund, the breaker's and
  the limiter's good news.

What the success path costs is what the benchmarks measure, so it is kept to
almost nothing: with a full budget (the normal case) a success does not touch
the guard at all — the shells test one process-wide set, ``RUNTIME.unfull``, of
the guards whose bucket is below capacity. No store is asked about the limiter
before this process has seen a 429 (with an in-process store; a shared one is
asked at most once a second, for the fleet's 429s). With a shared store,
refunds and the breaker's success counts are batched (one round trip per
several successes, or per second). A shared bucket is drained by other workers
unseen, so there every success reaches the guard (``RUNTIME.unfull`` holds
``FLEET``) and a bucket seen full is taken as full for ``_RECHECK`` seconds only:
the next success after that brings its refund to the store, and learns the level.

State changes are reported as :class:`~retrypolicy.instrumentation.RetryEvent`
to the process-wide hooks and to the hooks of the call that caused them (``call``).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from . import _events as ev
from ._budget import Bucket, BudgetResult
from ._clock import WALL, _instant
from ._emit import safe_call
from ._errors import CircuitOpenError
from ._limiter import PERSISTENT_ADVICE, LimiterResult
from ._rules import Kind
from ._runtime import RUNTIME
from ._stats import StormStats
from .instrumentation._hooks import get_hooks
from .stores._base import abreaker, abudget, alimiter

T = TypeVar("T")

if TYPE_CHECKING:
    from ._breaker import BreakerResult
    from ._budget import RetryBudget
    from ._policy import Policy
    from .stores._base import Store

__all__ = ["CALL_HOOKS", "Guard", "StormStats", "guard_for", "reset_guards"]

StoreCall = tuple[str, tuple[Any, ...], Mapping[str, Any]]
"""One store step a guard needs: the :class:`~retrypolicy.stores.Store` method's name
(``budget``, ``limiter``, ``breaker``), its arguments and keywords."""
Steps = Generator[StoreCall, Any, T]
"""A guard operation written once, as a generator of the store steps it needs: a sync
shell performs them (:meth:`Guard.run`), an async shell awaits them (:meth:`Guard.arun`)."""
_NO_KW: Final[Mapping[str, Any]] = MappingProxyType({})
_ASYNC_STEPS: Final[dict[str, Callable[..., Awaitable[Any]]]] = {
    "budget": abudget,
    "limiter": alimiter,
    "breaker": abreaker,
}

CALL_HOOKS: Final[contextvars.ContextVar[tuple[Any, ...]]] = contextvars.ContextVar(
    "retrypolicy_call_hooks", default=()
)
"""The hooks of the call whose store step is being performed: its storm events reach them."""

_SHARED_FLUSH: Final = 16
"""With a shared store, successes are reported in batches of this many (or once a second)."""
_SHARED_FLUSH_SECONDS: Final = 1.0
_RECHECK: Final = 1.0
"""Seconds an unpaced shared limiter, a closed shared breaker, or a shared bucket seen full,
is taken to stay so without asking the store (another worker's change is seen within this)."""

CIRCUIT_ADVICE: Final = (
    "The circuit breaker for this host is open after repeated server-side failures: calls "
    "fail fast until a probe succeeds. Retry after retry_in seconds."
)


_COUNTERS: Final = (
    "retries_allowed",
    "retries_refused",
    "refunds",
    "throttled",
    "persistent",
    "rate_changes",
    "circuit_rejected",
    "breaker_opened",
    "store_unavailable",
)


class Guard:
    """The budget, limiter and breaker of one policy in one store, with local caches."""

    _seen_at: float = float("-inf")
    """With a shared store: when this process last stepped the bucket (a spend, a batch of
    refunds); a bucket seen full is taken as full for :data:`_RECHECK` seconds after. A class
    default, set on the instance only by a store step: an in-process guard's instances keep
    29 attributes, within CPython 3.11's 30 shared keys (a 30th made every retried call cost
    1.7 % more instructions: its attribute reads lost their fast path)."""

    def __init__(
        self, store: Store, policy: Policy, clock: Callable[[], float] | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        """The wall clock of the call path that made this guard (stats read state with it)."""
        self.policy = policy
        self.name = policy.name
        self.budget = policy.budget
        self.limiter = policy.limiter
        self.breaker = policy.breaker
        self.gated = self.limiter is not None or self.breaker is not None
        self.shared = bool(getattr(store, "shared", False))
        self._budget_key = f"{policy.name}:budget"
        self._limiter_key = f"{policy.name}:limiter"
        self._breaker_prefix = f"{policy.name}:breaker:"
        local = getattr(store, "local_budgets", None)
        buckets = local() if local is not None and self.budget is not None else None
        self._buckets: dict[str, Bucket] | None = None
        """An in-process store's buckets: a retry pays in place (:meth:`pay`)."""
        self._lock: threading.Lock
        """Guards the counters and the pending refund. With an in-process store it is the
        store's own lock, so a retry's payment is one critical section: never call the store
        while holding it."""
        if buckets is not None:
            self._lock, self._buckets = buckets
        else:
            self._lock = threading.Lock()
        self.full = True
        """False while this process last saw the bucket below capacity."""
        self.paid_in_place = self._buckets is not None and not self.gated
        """An in-process budget alone: a retry is paid in place, with no store step."""
        self._pending_refund = 0.0
        one = max(self.budget.retry_cost, 1.0) if self.budget is not None else 1.0
        self._flush_at = one if self.shared else 2 * one
        """Pending refunds go to the store once they reach this, or with the next spend: as
        soon as they pay for a retry in a shared store (other workers wait on them), for two
        in this process's own. Two: a retried call's refund is its last retry's cost, and with
        one that refund alone would step the bucket — a third step for a call that retried
        twice, where riding with the next payment costs none."""
        self._pending_ok: dict[str, int] = {}
        self._flushed = 0.0
        self._hosts: dict[str, str] = {}
        """The last known state of each host's breaker."""
        self._closed_until: dict[str, float] = {}
        """With a shared store: until when a host's breaker is taken as closed unasked."""
        self._paced_until = -1.0
        """Until when a shared limiter is taken to be unpaced without asking."""
        self._throttled = False
        """With an in-process store: a 429 was seen and the limiter may be pacing (until
        it says it is not). Before that, no store is asked about the limiter at all."""
        self._consecutive = 0
        self._sent = 0
        self._sent_since = 0.0
        self._sent_rate = 0.0
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    def __repr__(self) -> str:
        return f"<Guard policy={self.name!r} store={type(self.store).__name__}>"

    # -- running an operation's store steps ------------------------------------------------

    def run(self, steps: Steps[T]) -> T:
        """Carry out *steps* with the store's own (sync) methods."""
        store = self.store
        try:
            call = steps.send(None)
            while True:
                name, args, kwargs = call
                call = steps.send(getattr(store, name)(*args, **kwargs))
        except StopIteration as done:
            result: T = done.value
            return result

    async def arun(self, steps: Steps[T]) -> T:
        """Carry out *steps* awaiting the store: its coroutine methods (``redis.asyncio``
        for a :class:`~retrypolicy.stores.RedisStore`), never a blocking call on the loop."""
        store = self.store
        try:
            call = steps.send(None)
            while True:
                name, args, kwargs = call
                call = steps.send(await _ASYNC_STEPS[name](store, *args, **kwargs))
        except StopIteration as done:
            result: T = done.value
            return result

    # -- events ------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def emit(self, name: str, call: str, attempt: int, **extra: object) -> None:
        """Report a state change to the process-wide hooks and the current call's own."""
        hooks = get_hooks()
        own = CALL_HOOKS.get()
        if own:
            hooks = own + hooks
        if not hooks:
            return
        event = ev.RetryEvent(
            name=name,
            call=call,
            attempt=attempt,
            policy=self.policy,
            extra=MappingProxyType(extra),
        )
        for hook in hooks:
            safe_call(hook, event)

    def _notice(self, notice: tuple[str, str] | None, call: str, attempt: int) -> None:
        if notice is None:
            return
        name, error = notice
        store = type(self.store).__name__
        if name == ev.STORE_UNAVAILABLE:
            self._count("store_unavailable")
            self.emit(name, call, attempt, store=store, error=error)
        else:
            self.emit(name, call, attempt, store=store)

    # -- the budget ------------------------------------------------------------------------

    def _fullness(self, full: bool) -> None:
        """The bucket became full, or stopped being: a first-try success has news for it only
        while it is not (``RUNTIME.unfull``)."""
        self.full = full
        if full:
            RUNTIME.unfull.discard(self)
        else:
            RUNTIME.unfull.add(self)

    def _budget_seen(self, result: BudgetResult, call: str, attempt: int) -> None:
        self._notice(result.notice, call, attempt)
        full = result.level >= result.capacity
        if full != self.full:
            self._fullness(full)
        if result.event == "exhausted":
            self.emit(
                ev.BUDGET_EXHAUSTED, call, attempt, tokens=result.level, capacity=result.capacity
            )
        elif result.event == "recovered":
            self.emit(
                ev.BUDGET_RECOVERED, call, attempt, tokens=result.level, capacity=result.capacity
            )

    def spend_steps(
        self, cost: float, now: float, call: str, attempt: int
    ) -> Steps[BudgetResult | None]:
        """Pay *cost* for a retry through the store's API; None without a budget."""
        budget = self.budget
        if budget is None:
            return None
        refund = 0.0
        if self._pending_refund:
            with self._lock:
                refund, self._pending_refund = self._pending_refund, 0.0
        step = ("budget", (self._budget_key, budget, now, refund - cost), _NO_KW)
        result: BudgetResult = yield step
        self._seen_at = now
        with self._lock:
            self.counters["retries_allowed" if result.ok else "retries_refused"] += 1
        if not result.ok and refund:  # the refund was not spent with the refused retry
            again = yield ("budget", (self._budget_key, budget, now, refund), _NO_KW)
            result = attrs.evolve(
                again,
                ok=False,
                event=result.event or again.event,
                notice=result.notice or again.notice,
            )
        if result.event or result.notice or (result.level >= result.capacity) is not self.full:
            self._budget_seen(result, call, attempt)
        return result

    def pay(self, cost: float, now: float, call: str, attempt: int) -> BudgetResult | None:
        """Pay *cost* for a retry, here (in place with an in-process store): None when paid
        for (or there is no budget), the refusing result otherwise."""
        if self._buckets is not None:
            return self.pay_in_place(cost, now, call, attempt)
        return self.run(self.pay_steps(cost, now, call, attempt))

    def pay_steps(
        self, cost: float, now: float, call: str, attempt: int
    ) -> Steps[BudgetResult | None]:
        """:meth:`spend_steps`, answering None when the retry is paid for (or there is no
        budget) and the refusing result otherwise."""
        if self._buckets is not None:
            return self.pay_in_place(cost, now, call, attempt)
        result = yield from self.spend_steps(cost, now, call, attempt)
        return None if result is None or result.ok else result

    def pay_in_place(self, cost: float, now: float, call: str, attempt: int) -> BudgetResult | None:
        """:meth:`pay_steps` with an in-process store: the step is applied here, in place,
        in the same critical section as the pending refund and the counters; no result is
        built for a retry that was paid for and changed nothing worth reporting (the common
        case). None when paid for, the refusing result otherwise."""
        budget: RetryBudget = self.budget  # type: ignore[assignment] # buckets come with one
        cap = budget.capacity
        lock = self._lock
        lock.acquire()  # not ``with``: half the cost, and this runs on every retry
        try:
            bucket = self._buckets.get(self._budget_key)  # type: ignore[union-attr]
            delta = self._pending_refund - cost
            paid = False
            if bucket is not None and delta <= 0 and not bucket.exhausted:
                # Bucket.step, inlined for its common case: a spend from a bucket that has
                # not run dry (test_budget holds the two equal)
                level = bucket.level
                elapsed = now - bucket.stamp
                if elapsed > 0:
                    level += budget.refill_rate * elapsed
                    bucket.stamp = now
                if level > cap:  # noqa: PLR1730 - as Bucket.step
                    level = cap
                paid = level + delta >= 0
                bucket.level = level = level + delta if paid else level
            if paid:  # nothing to report, no result to build
                self._pending_refund = 0.0
                self.counters["retries_allowed"] += 1
            else:
                ok, level, event = self._step(bucket, budget, now, cost)
        finally:
            lock.release()
        if paid:
            if (level >= cap) is not self.full:
                self._fullness(not self.full)  # a retry from a full bucket: the usual flip
            return None
        if ok and not event:
            if (level >= cap) is not self.full:
                self._fullness(not self.full)
            return None
        result = BudgetResult(ok, level, cap, event)
        self._budget_seen(result, call, attempt)
        return None if ok else result

    def _step(
        self, bucket: Bucket | None, budget: RetryBudget, now: float, cost: float
    ) -> tuple[bool, float, str]:
        """A retry's payment of *cost*, with the pending refund, by :meth:`Bucket.step`
        (under the lock): a new bucket, a refund larger than the cost, one that ran dry."""
        refund = self._pending_refund
        self._pending_refund = 0.0
        if bucket is None:
            bucket = self._buckets[self._budget_key] = Bucket(budget.capacity, now)  # type: ignore[index]
        ok, level, event = bucket.step(budget, now, refund - cost)
        if not ok and refund:  # the refund was not spent with the refused retry
            _, level, again = bucket.step(budget, now, refund)
            event = event or again
        self.counters["retries_allowed" if ok else "retries_refused"] += 1
        return ok, level, event

    def refund(self, now: float, amount: float | None = None, *, paid: bool = False) -> None:
        """:meth:`refund_steps`, its store step performed here."""
        self.run(self.refund_steps(now, amount, paid=paid))

    def refund_steps(
        self, now: float, amount: float | None = None, *, paid: bool = False
    ) -> Steps[None]:
        """A success: put *amount* back (AWS standard mode: the last retry's cost after
        retries; ``success_refund``, the default, after a first try).

        Batched (:meth:`owe`): refunds add up here until they pay for a retry (two with an
        in-process store), or go with the next spend, so a store is asked once per several
        successes — a round trip saved with Redis, a step saved in-process. What is
        pending is in the stats. A shared store's bucket: :meth:`owe_shared`.
        """
        if self.shared:
            pending = self.owe_shared(now, amount, paid=paid)
        else:
            pending = self.flush_in_place(now) if self.owe(amount, paid=paid) else 0.0
        if pending:  # a shared store's turn: the refunds that added up go to it
            budget = self.budget
            flushed = yield ("budget", (self._budget_key, budget, now, pending), _NO_KW)
            self._budget_seen(flushed, "", 0)

    def owe(self, amount: float | None = None, *, paid: bool = False) -> bool:
        """A success's refund (*amount*; ``success_refund`` when None), counted and added to
        what is pending; True when the pending refunds are due to the bucket now
        (:meth:`flush_in_place`). No clock is read: most refunds wait for the next spend."""
        budget = self.budget
        if budget is None or (self.full and not paid):
            return False  # a full bucket takes no more (*paid*: this process spent, so it is not)
        lock = self._lock
        lock.acquire()  # not ``with``: half the cost, and this runs on every refund
        try:
            self.counters["refunds"] += 1
            self._pending_refund += budget.success_refund if amount is None else amount
            return self._pending_refund >= self._flush_at
        finally:
            lock.release()

    def owe_shared(self, now: float, amount: float | None = None, *, paid: bool = False) -> float:
        """:meth:`owe` for a shared store's bucket: what is due to the store now (0.0: none).

        Other workers drain a shared bucket unseen, so what this process saw last holds for
        a while only. Seen full less than :data:`_RECHECK` seconds ago: a first try's refund
        is dropped (a full bucket takes no more), no round trip. Seen full longer ago (or
        never seen): the refund goes to the store at once, and its answer is the level
        seen. Seen below capacity: refunds add up here until they pay for a retry, or until
        :data:`_SHARED_FLUSH_SECONDS` after the last step (or go with the next spend).
        """
        budget = self.budget
        if budget is None:
            return 0.0
        with self._lock:
            since = now - self._seen_at
            if self.full and not paid and since < _RECHECK:
                return 0.0
            self.counters["refunds"] += 1
            pending = self._pending_refund + (budget.success_refund if amount is None else amount)
            if not self.full and pending < self._flush_at and since < _SHARED_FLUSH_SECONDS:
                self._pending_refund = pending
                return 0.0
            self._pending_refund = 0.0
            self._seen_at = now  # this thread's turn: the others' refunds add up meanwhile
            return pending

    def flush_in_place(self, now: float) -> float:
        """Hand the pending refunds to the bucket: with an in-process store stepped here, in
        place; otherwise the amount a shared store must be given (0.0 when nothing)."""
        budget = self.budget
        buckets = self._buckets
        if budget is None:
            return 0.0
        lock = self._lock
        lock.acquire()
        try:
            pending, self._pending_refund = self._pending_refund, 0.0
            if buckets is None or not pending:
                return pending
            bucket = buckets.get(self._budget_key)  # in-process: in this critical section
            if bucket is None:
                bucket = buckets[self._budget_key] = Bucket(budget.capacity, now)
            _, level, event = bucket.step(budget, now, pending)
        finally:
            lock.release()
        if event:
            self._budget_seen(BudgetResult(True, level, budget.capacity, event), "", 0)
        elif (level >= budget.capacity) is not self.full:
            self._fullness(not self.full)  # topped up again: the common flip back
        return 0.0

    # -- before an attempt -------------------------------------------------------------------

    def before_steps(
        self, host: str, now: float, call: str, attempt: int, epoch: float | None = None
    ) -> Steps[float | LimiterResult]:
        """May an attempt to *host* go now? 0.0, or the limiter's result with the seconds to
        wait first; raises :class:`~retrypolicy.CircuitOpenError` while the host's breaker
        is open. *epoch*: the attempt waited for a slot reserved then (the result's
        ``epoch``): it confirms the slot, reserved again when the rate was cut meanwhile."""
        limiter = self.limiter
        if epoch is not None and limiter is not None:
            confirmed: LimiterResult = yield (
                "limiter",
                (self._limiter_key, limiter, now, "confirm", epoch),
                _NO_KW,
            )
            self._limiter_seen(confirmed, call, attempt)
            return confirmed if confirmed.wait > 0 else 0.0
        breaker = self.breaker
        if breaker is not None and not (
            self.shared
            and now < self._closed_until.get(host, -1.0)
            and self._hosts.get(host) == "closed"
        ):
            b = yield ("breaker", (self._breaker_prefix + host, breaker, now, "allow"), _NO_KW)
            self._breaker_seen(b, host, call, attempt)
            if self.shared and b.state == "closed":  # taken as closed for a while: no round trip
                self._closed_until[host] = now + _RECHECK
            if not b.allowed:
                self._count("circuit_rejected")
                where = f" for {host}" if host else ""
                msg = (
                    f"circuit open{where} (policy {self.name}): {b.failures} of {b.total} "
                    f"attempts failed; next probe in {b.retry_in:.3g}s"
                )
                raise CircuitOpenError(
                    msg, retry_in=b.retry_in, host=host, attempts=attempt - 1, advice=CIRCUIT_ADVICE
                )
        if limiter is None:
            return 0.0
        with self._lock:  # this process's sending rate, for the limiter's first cut
            if now - self._sent_since >= 1.0:
                elapsed = now - self._sent_since
                self._sent_rate = self._sent / elapsed if self._sent_since and elapsed else 0.0
                self._sent, self._sent_since = 0, now
            self._sent += 1
        if self.shared:
            if now < self._paced_until:
                return 0.0
        elif not self._throttled:  # no 429 seen: the limiter is unpaced, nothing to ask
            return 0.0
        result: LimiterResult = yield (
            "limiter",
            (self._limiter_key, limiter, now, "acquire"),
            _NO_KW,
        )
        self._limiter_seen(result, call, attempt)
        if not result.active:
            if self.shared:
                self._paced_until = now + _RECHECK
            else:
                self._throttled = False  # back to unpaced: quiet again until the next 429
        return result if result.wait > 0 else 0.0

    def measured_rate(self, now: float) -> float:
        """This process's recent sending rate (requests/s)."""
        elapsed = now - self._sent_since
        current = self._sent / elapsed if elapsed >= 0.1 else 0.0  # shorter: too noisy to divide by
        return max(self._sent_rate, current, float(self._sent))

    # -- after an attempt ----------------------------------------------------------------

    def failed_steps(
        self,
        host: str,
        kind: str,
        now: float,
        call: str,
        attempt: int,
        *,
        retrying: bool,
        delay: float,
    ) -> Steps[str]:
        """A failure of *kind* from *host*; "" when a retry (if *retrying*) may go ahead,
        else why not. Tells the breaker and the limiter; the budget is asked separately."""
        reason = ""
        limiter = self.limiter
        if limiter is not None:
            if kind == Kind.RATE_LIMITED:
                self._count("throttled")
                self._throttled = True
                r = yield (
                    "limiter",
                    (self._limiter_key, limiter, now, "throttled", self.measured_rate(now)),
                    _NO_KW,
                )
                self._paced_until = -1.0
                self._limiter_seen(r, call, attempt)
                if r.report:
                    self._count("persistent")
                    self.emit(
                        ev.RATE_LIMIT_PERSISTENT,
                        call,
                        attempt,
                        consecutive=r.consecutive,
                        window=limiter.persist_window,
                        advice=PERSISTENT_ADVICE,
                    )
                if r.persistent:
                    reason = (
                        f"rate limit persistent: {r.consecutive} 429s in a row; {PERSISTENT_ADVICE}"
                    )
            elif self._consecutive:
                yield from self._answered(now, call, attempt)
        breaker = self.breaker
        if breaker is not None:
            key = self._breaker_prefix + host
            b: BreakerResult | None
            if kind in breaker.kinds:
                pending = self._take_ok(host)
                b = yield (
                    "breaker",
                    (key, breaker, now, "record"),
                    {"failures": 1, "successes": pending},
                )
            else:
                b = yield from self._record_ok(host, now, force=True)
            if b is not None:
                self._breaker_seen(b, host, call, attempt)
            if retrying and not reason and b is not None and b.state != "closed":
                state = b
                if b.state != "open":
                    state = yield ("breaker", (key, breaker, now, "read"), _NO_KW)
                if state.state == "open" and state.retry_in > delay:
                    reason = (
                        f"circuit open for {host or self.name}: the next probe is in "
                        f"{state.retry_in:.3g}s, after the {delay:.3g}s wait"
                    )
        return reason

    def succeeded_steps(
        self, host: str, now: float, refund: float | None = None, *, retried: bool = False
    ) -> Steps[None]:
        """An attempt succeeded (or was answered with a failure the breaker does not count);
        *refund*: what the budget gets back (default ``success_refund``); *retried*: the
        call paid for retries, so its refund is due whatever this process saw last."""
        if self.breaker is not None:
            b = yield from self._record_ok(host, now, force=False)
            if b is not None:
                self._breaker_seen(b, host, "", 0)
        if self._consecutive:
            yield from self._answered(now, "", 0)
        if retried or not self.full or self.shared:  # shared: full as last seen, for a while
            yield from self.refund_steps(now, refund, paid=retried)

    def _answered(self, now: float, call: str, attempt: int) -> Steps[None]:
        limiter = self.limiter
        if limiter is not None:
            self._consecutive = 0
            r = yield ("limiter", (self._limiter_key, limiter, now, "answered"), _NO_KW)
            self._limiter_seen(r, call, attempt)

    def _take_ok(self, host: str) -> int:
        with self._lock:
            return self._pending_ok.pop(host, 0)

    def _record_ok(self, host: str, now: float, *, force: bool) -> Steps[BreakerResult | None]:
        """Count a success for *host*'s breaker: at once with a local store (or while the
        breaker is not closed), else in batches."""
        breaker = self.breaker
        assert breaker is not None  # noqa: S101 - callers check
        with self._lock:
            n = self._pending_ok.get(host, 0) + 1
            batch = (
                self.shared
                and not force
                and self._hosts.get(host, "closed") == "closed"
                and n < _SHARED_FLUSH
                and now - self._flushed < _SHARED_FLUSH_SECONDS
            )
            if batch:
                self._pending_ok[host] = n
                return None
            self._pending_ok.pop(host, None)
            self._flushed = now
        result: BreakerResult = yield (
            "breaker",
            (self._breaker_prefix + host, breaker, now, "record"),
            {"successes": n},
        )
        return result

    def _breaker_seen(self, b: BreakerResult, host: str, call: str, attempt: int) -> None:
        self._notice(b.notice, call, attempt)
        self._hosts[host] = b.state
        if b.event == "opened":
            self._count("breaker_opened")
            self.emit(
                ev.BREAKER_OPENED, call, attempt, host=host, state=b.state, retry_in=b.retry_in
            )
        elif b.event == "half_open":
            self.emit(ev.BREAKER_HALF_OPEN, call, attempt, host=host, state=b.state)
        elif b.event == "closed":
            self.emit(ev.BREAKER_CLOSED, call, attempt, host=host, state=b.state)

    def _limiter_seen(self, r: LimiterResult, call: str, attempt: int) -> None:
        self._notice(r.notice, call, attempt)
        self._consecutive = r.consecutive
        if r.changed:
            self._count("rate_changes")
            self.emit(
                ev.LIMITER_RATE_CHANGED,
                call,
                attempt,
                rate=r.rate,
                previous=r.previous,
                active=r.active,
            )

    # -- reading -----------------------------------------------------------------------------

    def now(self) -> float:
        """The storm clock of the call path that made this guard (instant mode included)."""
        inst = _instant[0]
        wall = self.clock() if self.clock is not None else WALL()
        return wall + (inst.local.skipped.offset if inst is not None else 0.0)

    def _read_budget(self, now: float) -> BudgetResult:
        """The budget's level at *now*, without changing it: a copy of an in-process
        bucket is stepped; a shared store is asked for a zero step, whose event (a
        budget back above half) is reported rather than lost."""
        budget = self.budget
        assert budget is not None  # noqa: S101 - callers check
        buckets = self._buckets
        if buckets is not None:
            with self._lock:
                bucket = buckets.get(self._budget_key)
                copy = (
                    Bucket(budget.capacity, now)
                    if bucket is None
                    else Bucket(bucket.level, bucket.stamp, bucket.exhausted)
                )
            _, level, _ = copy.step(budget, now, 0.0)
            return BudgetResult(True, level, budget.capacity, "")
        result = self.store.budget(self._budget_key, budget, now, 0.0)
        if result.event or result.notice:
            self._budget_seen(result, "", 0)
        return result

    def stats(self, now: float | None = None) -> StormStats:
        """The snapshot :func:`retrypolicy.stores.stats` returns. It only reads: refunds
        still pending stay pending (the level shown counts them), and an event a read
        brings about (a budget back above half, pacing stopped after ``idle_reset``, a
        shared store found unreachable or answering again) is reported, never dropped:
        a store's outage is reported once, by whichever step meets it first."""
        if now is None:
            now = self.now()
        store = self.store
        level = capacity = None
        exhausted = False
        if self.budget is not None:
            b = self._read_budget(now)
            with self._lock:
                pending = self._pending_refund
            level = min(b.capacity, b.level + pending)
            capacity, exhausted = b.capacity, level < self.budget.retry_cost
        rate: float | None = None
        consecutive = 0
        if self.limiter is not None:
            r = store.limiter(self._limiter_key, self.limiter, now, "read")
            self._limiter_seen(r, "", 0)  # a store's outage (or its end) met here is told
            rate, consecutive = r.rate, r.consecutive
        breakers: dict[str, str] = {}
        if self.breaker is not None:
            lister = getattr(store, "breaker_keys", None)
            keys = lister(self._breaker_prefix) if lister is not None else []
            hosts = {k[len(self._breaker_prefix) :] for k in keys} | set(self._hosts)
            for host in sorted(hosts):
                br = store.breaker(self._breaker_prefix + host, self.breaker, now, "read")
                self._breaker_seen(br, host, "", 0)  # as above
                breakers[host] = br.state
        with self._lock:
            counters = dict(self.counters)
        return StormStats(
            policy=self.name,
            store=type(store).__name__,
            budget_level=level,
            budget_capacity=capacity,
            budget_exhausted=exhausted,
            limiter_rate=rate,
            limiter_consecutive_429=consecutive,
            breakers=MappingProxyType(breakers),
            counters=MappingProxyType(counters),
        )


def guard_for(store: Store, policy: Policy, clock: Callable[[], float] | None = None) -> Guard:
    """The one guard of *policy* (by name and storm settings) in *store*; *clock*: the wall
    clock of the call path asking, which the guard's stats read with (the first given)."""
    key = (id(store), policy.name, policy.budget, policy.limiter, policy.breaker)
    guards = RUNTIME.guards
    guard: Guard | None = guards.get(key)
    if guard is None or guard.store is not store:
        with RUNTIME.guards_lock:
            guard = guards.get(key)
            if guard is None or guard.store is not store:
                guard = guards[key] = Guard(store, policy, clock)
    if guard.clock is None and clock is not None and clock is not WALL:
        guard.clock = clock
    return guard


def reset_guards() -> None:
    """Forget every guard (their caches and counters): tests start afresh."""
    RUNTIME.forget_storm()
