"""The circuit breaker: fail fast while a host is down, probe it, close when it answers.

Closed → open when, within a ``window`` of seconds, at least ``min_calls``
attempts were made and at least ``failure_rate`` of them failed with one of
``kinds`` (the retryable server-side kinds: a 5xx, a connect failure, a
timeout — not a 4xx, which proves the server is up, nor a 429, which the
limiter handles). Open → half-open after ``open_for`` seconds: up to
``half_open_probes`` attempts go through; the first to succeed closes the
breaker, one that fails opens it again for another ``open_for``. A probe
that never reports frees its slot after ``open_for``.

The window is a tumbling one (counts reset every ``window`` seconds): three
numbers, so a fleet can share it through one short atomic script.

While open, a call fails fast with :class:`~retrypolicy.CircuitOpenError`
(``retry_in``: seconds until the next probe), and a retry whose wait would end
before the next probe is not made: the call gives up with its last failure.

Pure: :func:`breaker_step` takes ``now``; stores apply it atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Literal, TypeAlias

import attrs

from ._budget import as_float, number_at_least, whole_at_least
from ._rules import Kind

__all__ = [
    "BREAKER_KINDS",
    "BreakerOp",
    "BreakerResult",
    "BreakerState",
    "CircuitBreaker",
    "breaker_step",
]

BreakerOp: TypeAlias = Literal["allow", "record", "read"]
State: TypeAlias = Literal["closed", "open", "half_open"]

BREAKER_KINDS: Final = frozenset(
    {Kind.SERVER_ERROR, Kind.UNAVAILABLE, Kind.CONNECTION, Kind.TIMEOUT}
)
"""The failures a breaker counts by default: the server (or the way to it) is in trouble."""


def _kinds(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        msg = f"kinds {value!r}: expected a collection of kinds, not one string"
        raise TypeError(msg)
    kinds = frozenset(value)
    for k in kinds:
        if not isinstance(k, str) or not k:
            msg = f"kinds: {k!r} is not a kind (expected e.g. 'unavailable')"
            raise TypeError(msg)
    if not kinds:
        msg = "kinds: expected at least one kind"
        raise ValueError(msg)
    return frozenset(str(k) for k in kinds)


@attrs.frozen(kw_only=True)
class CircuitBreaker:
    """A circuit breaker per policy and host (see the module docstring for the states)."""

    failure_rate: float = attrs.field(
        default=0.5, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """The fraction of failed attempts (0-1] in the window that opens the breaker."""
    min_calls: int = attrs.field(default=20, validator=whole_at_least(1))
    """Attempts in the window before the failure rate counts."""
    window: float = attrs.field(
        default=30.0, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """Seconds of attempts the failure rate is computed over (a tumbling window)."""
    open_for: float = attrs.field(
        default=15.0, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """Seconds the breaker stays open before it lets probes through."""
    half_open_probes: int = attrs.field(default=1, validator=whole_at_least(1))
    """Attempts let through while half-open."""
    kinds: frozenset[str] = attrs.field(default=BREAKER_KINDS, converter=_kinds)
    """The failure kinds that count as failures; other outcomes count as answers."""

    def __attrs_post_init__(self) -> None:
        if self.failure_rate > 1:
            msg = f"failure_rate {self.failure_rate!r}: expected a number > 0 and <= 1"
            raise ValueError(msg)

    def evolve(self, **changes: Any) -> CircuitBreaker:
        """A copy with *changes* applied."""
        return attrs.evolve(self, **changes)


@attrs.frozen
class BreakerState:
    """One host's breaker: its state, the window's counts, and ``until`` (the next probe,
    while open; the probe deadline, while half-open)."""

    state: State = "closed"
    failures: int = 0
    total: int = 0
    window_start: float = 0.0
    until: float = 0.0
    probes: int = 0


@attrs.frozen
class BreakerResult:
    """What one step did: ``allowed`` (for ``allow``), the state after it, the seconds until
    the next probe, and ``event`` (``"opened"``, ``"half_open"``, ``"closed"`` or ``""``)."""

    state: State = "closed"
    allowed: bool = True
    retry_in: float = 0.0
    failures: int = 0
    total: int = 0
    event: str = ""
    notice: tuple[str, str] | None = None


def _result(s: BreakerState, now: float, *, allowed: bool = True, event: str = "") -> BreakerResult:
    retry_in = max(0.0, s.until - now) if s.state != "closed" else 0.0
    return BreakerResult(s.state, allowed, retry_in, s.failures, s.total, event)


def breaker_step(
    config: CircuitBreaker,
    state: BreakerState | None,
    now: float,
    op: BreakerOp,
    *,
    failures: int = 0,
    successes: int = 0,
) -> tuple[BreakerState | None, BreakerResult]:
    """One step of a host's breaker: the new state (None: nothing to keep), and the result.

    ``allow``: may an attempt be sent now? ``record``: *failures* attempts
    failed (with a counted kind) and *successes* were answered. ``read``: no change.
    """
    s = state if state is not None else BreakerState(window_start=now)
    if op == "read":
        return state, _result(s, now)
    if op == "allow":
        if s.state == "closed":
            return state, BreakerResult(total=s.total, failures=s.failures)
        if s.state == "open":
            if now < s.until:
                return s, _result(s, now, allowed=False)
            s = BreakerState(
                "half_open", s.failures, s.total, s.window_start, now + config.open_for, 1
            )
            return s, _result(s, now, event="half_open")
        # half-open: a probe slot, or one freed by a probe that never reported
        if s.probes < config.half_open_probes:
            s = attrs.evolve(s, probes=s.probes + 1)
            return s, _result(s, now)
        if now >= s.until:
            s = attrs.evolve(s, probes=1, until=now + config.open_for)
            return s, _result(s, now)
        return s, _result(s, now, allowed=False)
    # record
    if s.state == "open":
        return s, _result(s, now)  # late answers to attempts sent before it opened
    if s.state == "half_open":
        if failures:
            s = BreakerState("open", 0, 0, now, now + config.open_for, 0)
            return s, _result(s, now, event="opened")
        if successes:
            s = BreakerState("closed", 0, 0, now, 0.0, 0)
            return s, _result(s, now, event="closed")
        return s, _result(s, now)
    if now - s.window_start >= config.window:
        s = BreakerState("closed", 0, 0, now, 0.0, 0)
    total = s.total + failures + successes
    failed = s.failures + failures
    if failures and total >= config.min_calls and failed >= config.failure_rate * total:
        s = BreakerState("open", failed, total, s.window_start, now + config.open_for, 0)
        return s, _result(s, now, event="opened")
    s = attrs.evolve(s, failures=failed, total=total)
    return s, _result(s, now)


def breaker_ttl(config: CircuitBreaker) -> float:
    """Seconds after which an untouched breaker may be forgotten (it would be closed)."""
    return config.window + config.open_for * 2 + 60.0
