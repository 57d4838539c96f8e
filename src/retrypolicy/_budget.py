"""The retry budget: a token bucket that every retry spends from and every success refills.

Why: retries that help one caller hurt everyone in an outage — N clients times
six retries is a storm against a service that is already down. A budget bounds
the extra load retries can add, whatever the per-call limits say. This is the
AWS SDKs' "standard" retry mode: a bucket of ``capacity`` tokens; a retry costs
``retry_cost`` (``timeout_cost`` after a timeout, which is more likely to mean
an overloaded server); every success puts ``success_refund`` back. When a
retry cannot be paid for, the call gives up now. In steady state a budget of
5 per retry and 1 per success lets retries add at most one request per five
successes (20 %), and in an outage the bucket empties after
``capacity / retry_cost`` retries — 100 with the defaults — instead of
growing with the number of callers.

Finagle's budgets add a floor so that a quiet client (or one whose transport
never reports successes, like urllib3's ``Retry``) is not starved for ever:
``refill_rate`` tokens per second flow back with time alone (1/s by default:
one retry every five seconds once empty — no storm).

Pure: the state and its transition take ``now`` as an argument; the stores
(:mod:`retrypolicy.stores`) apply :func:`budget_step` atomically (the in-process
store through :class:`Bucket`, its in-place twin).
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

__all__ = ["Bucket", "BudgetResult", "BudgetState", "RetryBudget", "budget_step", "budget_ttl"]


def number_at_least(low: float, *, strict: bool = False) -> Any:
    """An attrs validator: a finite number >= *low* (> *low* when *strict*)."""

    def check(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"{attr.name} {value!r}: expected a number"
            raise TypeError(msg)
        if not math.isfinite(value) or value < low or (strict and value == low):
            msg = (
                f"{attr.name} {value!r}: expected a finite number {'>' if strict else '>='} {low:g}"
            )
            raise ValueError(msg)

    return check


def whole_at_least(low: int) -> Any:
    """An attrs validator: a whole number >= *low*."""

    def check(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            msg = f"{attr.name} {value!r}: expected a whole number >= {low}"
            raise ValueError(msg)

    return check


def as_float(value: float) -> float:
    """A converter: an int becomes a float (validators refuse what is no number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@attrs.frozen(kw_only=True)
class RetryBudget:
    """A retry budget (AWS standard mode's token bucket), shared by every call of a policy.

    One bucket per policy per store: per process with the default in-process
    store, per fleet with a :class:`~retrypolicy.stores.RedisStore`.
    """

    capacity: float = attrs.field(
        default=500.0, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """Tokens in a full bucket (the bucket starts full)."""
    retry_cost: float = attrs.field(default=5.0, converter=as_float, validator=number_at_least(0))
    """Tokens a retry costs."""
    timeout_cost: float = attrs.field(
        default=10.0, converter=as_float, validator=number_at_least(0)
    )
    """Tokens a retry after a timeout costs (``timeout``, ``upstream_timeout``)."""
    success_refund: float = attrs.field(
        default=1.0, converter=as_float, validator=number_at_least(0)
    )
    """Tokens a success puts back (up to ``capacity``)."""
    refill_rate: float = attrs.field(default=1.0, converter=as_float, validator=number_at_least(0))
    """Tokens per second that flow back with time alone (Finagle's floor); 0 for none."""

    def evolve(self, **changes: Any) -> RetryBudget:
        """A copy with *changes* applied."""
        return attrs.evolve(self, **changes)

    def cost_of(self, kind: str) -> float:
        """What a retry after a failure of *kind* costs."""
        return self.timeout_cost if kind in _TIMEOUT_KINDS else self.retry_cost


_TIMEOUT_KINDS: Final = frozenset({"timeout", "upstream_timeout"})


# Built on every retry, so built fast (as ``_outcome.Outcome`` is): dict classes with a
# hand-written __init__; attrs still gives eq, repr and evolve. Keep each __init__'s
# parameters exactly the attrs fields.
@attrs.frozen(slots=False, init=False)
class BudgetState:
    """A bucket's level at ``stamp`` (seconds, the store's clock), and whether it ran dry."""

    level: float
    stamp: float
    exhausted: bool = False

    def __init__(self, level: float, stamp: float, exhausted: bool = False) -> None:
        d = self.__dict__
        d["level"] = level
        d["stamp"] = stamp
        d["exhausted"] = exhausted


@attrs.frozen(slots=False, init=False)
class BudgetResult:
    """What one step did: ``ok`` is False when a spend was refused.

    ``event`` is ``"exhausted"`` on the step that found the bucket too low for a
    retry (once, until it recovers), ``"recovered"`` on the step that brought it
    back to half its capacity, else ``""``. ``notice`` is a store's own news
    (``("store.unavailable", error)`` / ``("store.recovered", "")``), for the
    caller to report.
    """

    ok: bool
    level: float
    capacity: float
    event: str = ""
    notice: tuple[str, str] | None = None

    def __init__(
        self,
        ok: bool,
        level: float,
        capacity: float,
        event: str = "",
        notice: tuple[str, str] | None = None,
    ) -> None:
        d = self.__dict__
        d["ok"] = ok
        d["level"] = level
        d["capacity"] = capacity
        d["event"] = event
        d["notice"] = notice


def budget_step(
    config: RetryBudget, state: BudgetState | None, now: float, delta: float
) -> tuple[BudgetState, BudgetResult]:
    """Spend ``-delta`` tokens (a retry: refused when the bucket holds less), or refund
    ``delta`` (a success), after the time refill; ``delta == 0`` only reads.

    A missing *state* is a full bucket: a key a store let expire comes back full.
    """
    bucket = (
        Bucket(config.capacity, now)
        if state is None
        else Bucket(state.level, state.stamp, state.exhausted)
    )
    ok, level, event = bucket.step(config, now, delta)
    return BudgetState(level, bucket.stamp, bucket.exhausted), BudgetResult(
        ok, level, config.capacity, event
    )


class Bucket:
    """One budget's state in an in-process store, changed in place by :meth:`step`.

    The transition itself: :func:`budget_step` (the pure form, which the Redis script
    mirrors) runs it on a throwaway bucket. An in-process store keeps buckets and
    steps them in place, because a retry pays on every failed attempt and building
    two frozen values per step cost as much as the policy's whole decision. Not
    thread-safe: the store's lock guards it.
    """

    __slots__ = ("exhausted", "level", "stamp")

    def __init__(self, level: float, stamp: float, exhausted: bool = False) -> None:
        self.level = level
        self.stamp = stamp
        self.exhausted = exhausted

    def __repr__(self) -> str:
        return f"<Bucket level={self.level!r} stamp={self.stamp!r} exhausted={self.exhausted}>"

    def step(self, config: RetryBudget, now: float, delta: float) -> tuple[bool, float, str]:
        """Spend ``-delta`` tokens or refund ``delta`` after the time refill (see
        :func:`budget_step`), in place: ``(ok, level, event)``. A new bucket is
        ``Bucket(config.capacity, now)``: a full one."""
        cap = config.capacity
        level = self.level
        elapsed = now - self.stamp
        if elapsed > 0:
            level += config.refill_rate * elapsed
        if level > cap:  # noqa: PLR1730 - min(level, cap) without the call, NaN included
            level = cap
        exhausted = self.exhausted
        ok = True
        event = ""
        if delta > 0:
            level = level + delta if level + delta < cap else cap
        if exhausted and level >= cap / 2:
            exhausted, event = False, "recovered"
        if delta < 0:
            if level + delta >= 0:
                level += delta
            else:
                ok = False
                if not exhausted:
                    exhausted, event = True, "exhausted"
        self.level = level
        if elapsed > 0:  # never back: a clock behind the last step refills nothing, twice
            self.stamp = now
        self.exhausted = exhausted
        return ok, level, event


def budget_ttl(config: RetryBudget) -> float:
    """Seconds after which an untouched bucket is full again (a store may forget it then)."""
    if config.refill_rate <= 0:
        return 24 * 3600.0
    return max(60.0, config.capacity / config.refill_rate)
