"""The storm protection of a simulated fleet: one store's budget, limiter and breaker.

What a :class:`~retrypolicy._storm.Guard` does around the pure steps, on the virtual
clock: it calls the real transitions — :meth:`Bucket.step <retrypolicy._budget.Bucket.step>`
(the in-process store's budget), :func:`~retrypolicy._limiter.limiter_step` and
:func:`~retrypolicy._breaker.breaker_step` — looked up in their modules at each call (so a
spy sees every call), never copied. Only the bookkeeping around them is here: what the
guard asks in which order (the breaker before an attempt, then the limiter's slot; after a
failure the limiter, then the breaker, then the budget pays), and the refund rule of AWS
standard mode — a first-try success refunds ``success_refund``, a success after retries
refunds what its last retry cost, so retries that fix things are free and only failing
ones drain the bucket.

One per store: the whole fleet shares one (threads of a process, or processes sharing
a ``RedisStore``), or each client has its own (processes with in-process stores).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .. import _breaker, _budget, _limiter
from .._rules import Kind

if TYPE_CHECKING:
    from .._policy import Policy

__all__ = ["Counters", "Protection"]


@attrs.define
class Counters:
    """What storm protection did across the fleet, and the budget level over time."""

    level_sum: float
    """The sum of every store's budget level (one store: its level)."""
    budget_min: float = attrs.field(default=attrs.Factory(lambda c: c.level_sum, takes_self=True))
    budget_paid: int = 0
    budget_refused: int = 0
    breaker_openings: int = 0
    limiter_cuts: int = 0
    levels: dict[int, float] = attrs.Factory(dict)
    """The budget level (per store, on average) at the end of each second it changed."""


class Protection:
    """One store's budget, limiter and breaker, stepped by the real transitions."""

    __slots__ = (
        "breaker",
        "breaker_state",
        "bucket",
        "budget",
        "consecutive",
        "counters",
        "full",
        "gated",
        "limiter",
        "limiter_state",
        "sent",
        "sent_rate",
        "sent_since",
        "share",
    )

    def __init__(self, policy: Policy, counters: Counters, share: float) -> None:
        self.budget = policy.budget
        self.limiter = policy.limiter
        self.breaker = policy.breaker
        self.gated = policy._protected[1]
        self.counters = counters
        self.share = share
        """1 / the number of stores: this store's part of the fleet's average level."""
        self.bucket = _budget.Bucket(self.budget.capacity, 0.0) if self.budget is not None else None
        self.full = True
        self.limiter_state: _limiter.LimiterState | None = None
        self.breaker_state: _breaker.BreakerState | None = None
        self.consecutive = 0
        self.sent = 0
        self.sent_since = 0.0
        self.sent_rate = 0.0

    # -- the budget ----------------------------------------------------------------------

    def _step(self, now: float, delta: float) -> tuple[bool, float]:
        """One step of the bucket (a payment when *delta* < 0, else a refund): did it go,
        and the level after it."""
        budget = self.budget
        bucket = self.bucket
        assert budget is not None  # noqa: S101 - only called with a budget
        assert bucket is not None  # noqa: S101
        before = bucket.level
        ok, level, _ = bucket.step(budget, now, delta)
        c = self.counters
        c.level_sum += (level - before) * self.share
        c.levels[int(now)] = c.level_sum
        if level < c.budget_min:  # noqa: PLR1730 - min() costs a call on every step
            c.budget_min = level
        self.full = level >= budget.capacity
        return ok, level

    def pay(self, cost: float, now: float) -> _budget.BudgetResult | None:
        """Pay *cost* for a retry: None when paid for (or there is no budget), else the
        refusing result (what :meth:`~retrypolicy._storm.Guard.pay_in_place` answers)."""
        budget = self.budget
        if budget is None:
            return None  # no budget: nothing to pay, nothing to refund
        ok, level = self._step(now, -cost)
        if ok:
            self.counters.budget_paid += 1
            return None
        self.counters.budget_refused += 1
        return _budget.BudgetResult(False, level, budget.capacity)

    def refund(self, now: float, amount: float) -> None:
        """A success: *amount* back (AWS: 1 on a first try, else the last retry's cost)."""
        if self.budget is not None and not self.full:
            self._step(now, amount)

    # -- before an attempt ---------------------------------------------------------------

    def gate(self, now: float, epoch: float | None = None) -> float | _limiter.LimiterResult:
        """0.0, or the limiter's result with the wait for a slot, before an attempt; -1.0
        while the breaker is open. *epoch*: the slot waited for, to confirm (Guard's)."""
        breaker = self.breaker
        limiter = self.limiter
        if epoch is not None and limiter is not None:
            self.limiter_state, r = _limiter.limiter_step(
                limiter, self.limiter_state, now, "confirm", epoch
            )
        else:
            if breaker is not None:
                self.breaker_state, b = _breaker.breaker_step(
                    breaker, self.breaker_state, now, "allow"
                )
                if not b.allowed:
                    return -1.0
            if limiter is None:
                return 0.0
            if now - self.sent_since >= 1.0:  # this process's sending rate, for a first cut
                elapsed = now - self.sent_since
                self.sent_rate = self.sent / elapsed if self.sent_since and elapsed else 0.0
                self.sent, self.sent_since = 0, now
            self.sent += 1
            self.limiter_state, r = _limiter.limiter_step(
                limiter, self.limiter_state, now, "acquire"
            )
        self.consecutive = r.consecutive
        return r if r.wait > 0 else 0.0

    def _measured(self, now: float) -> float:
        elapsed = now - self.sent_since
        current = self.sent / elapsed if elapsed >= 0.1 else 0.0
        return max(self.sent_rate, current, float(self.sent))

    # -- after an attempt ----------------------------------------------------------------

    def failed(self, kind: str, now: float, *, retrying: bool, delay: float) -> str:
        """A failure of *kind*: "" when a retry may go ahead (as far as the limiter and
        the breaker are concerned), else why not."""
        reason = ""
        limiter = self.limiter
        if limiter is not None:
            if kind == Kind.RATE_LIMITED:
                self.limiter_state, r = _limiter.limiter_step(
                    limiter, self.limiter_state, now, "throttled", self._measured(now)
                )
                self.consecutive = r.consecutive
                if r.changed:
                    self.counters.limiter_cuts += 1
                if r.persistent:
                    reason = "persistent"
            elif self.consecutive:
                self._answered(now)
        breaker = self.breaker
        if breaker is not None:
            counted = kind in breaker.kinds
            self.breaker_state, b = _breaker.breaker_step(
                breaker,
                self.breaker_state,
                now,
                "record",
                failures=1 if counted else 0,
                successes=0 if counted else 1,
            )
            if b.event == "opened":
                self.counters.breaker_openings += 1
            if retrying and not reason and b.state != "closed":
                if b.state != "open":
                    _, b = _breaker.breaker_step(breaker, self.breaker_state, now, "read")
                if b.state == "open" and b.retry_in > delay:
                    reason = "circuit_open"
        return reason

    def _answered(self, now: float) -> None:
        limiter = self.limiter
        assert limiter is not None  # noqa: S101 - only a limiter counts 429s in a row
        self.consecutive = 0
        self.limiter_state, _ = _limiter.limiter_step(limiter, self.limiter_state, now, "answered")

    def succeeded(self, now: float) -> None:
        """An attempt succeeded: the breaker's and the limiter's good news."""
        breaker = self.breaker
        if breaker is not None:
            self.breaker_state, _ = _breaker.breaker_step(
                breaker, self.breaker_state, now, "record", successes=1
            )  # a success never opens it
        if self.consecutive:
            self._answered(now)
