"""What the simulated service does: scenarios, as data.

A :class:`Scenario` is a latency distribution and an ordered tuple of effects, each
active in a window of time: an outage, a token-bucket rate limit, an error rate of one
kind, mid-stream ``upstream_timeout`` errors, a trace file's answers. Scenarios add up
(``a + b``: both at once, ``a``'s effects asked first), so healthy → outage → healthy is
``Scenario.outage(30, at=60)`` and a rate limit during an incident is the sum of two.

Why data and not a callable: the same scenario is run against several policies, shown
in a report and replayed from a seed; frozen values make all three trivial.
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs

from .._rules import Kind
from ._effects import KIND_ANSWERS, Answer, Effect, Latency, answer_of, check_number
from ._trace import read_trace

__all__ = ["Scenario"]


def _window(at: float, seconds: float | None, name: str) -> tuple[float, float]:
    for label, value in (("at", at), (name, seconds)):
        if value is not None:
            check_number(label, value, lambda v: v >= 0, "a number of seconds >= 0")
    return float(at), math.inf if seconds is None else float(at) + float(seconds)


@attrs.frozen
class Scenario:
    """What the service does during a simulation (see the module docstring).

    Build with the class methods and add them up; :func:`retrypolicy.simulate` runs one.
    """

    effects: tuple[Effect, ...] = ()
    latency: Latency = attrs.field(factory=Latency)

    @classmethod
    def healthy(cls) -> Scenario:
        """Every request succeeds."""
        return cls()

    @classmethod
    def outage(
        cls, seconds: float, *, at: float = 0.0, answer: str | int = Kind.UNAVAILABLE
    ) -> Scenario:
        """Every request fails with *answer* (a kind or a status: 503 by default,
        ``"connection"`` for a host that refuses connections) from *at* for *seconds*."""
        start, end = _window(at, seconds, "seconds")
        found = answer_of(answer, where="answer")
        if found is None:
            msg = f"answer {answer!r}: expected a failure, not a success"
            raise ValueError(msg)
        return cls((Effect("outage", start, end, found, bad=(start, end)),))

    @classmethod
    def rate_limit(
        cls,
        rate: float,
        *,
        burst: float | None = None,
        at: float = 0.0,
        seconds: float | None = None,
        retry_after: bool = True,
    ) -> Scenario:
        """A token bucket of *rate* requests/s holding *burst* (default: one second's worth)
        that every request — retries included — draws from; an empty bucket answers 429,
        with ``Retry-After`` unless *retry_after* is False."""
        per_s = check_number("rate", rate, lambda v: v > 0, "requests per second > 0")
        size = max(1.0, per_s) if burst is None else burst
        size = check_number("burst", size, lambda v: v >= 1, "a number of requests >= 1")
        start, end = _window(at, seconds, "seconds")
        effect = Effect(
            "rate_limit",
            start,
            end,
            KIND_ANSWERS[Kind.RATE_LIMITED],
            rate=per_s,
            burst=size,
            retry_after=retry_after,
            bad=None if math.isinf(end) else (start, end),
        )
        return cls((effect,))

    @classmethod
    def errors(
        cls,
        rate: float,
        kind: str | int = Kind.SERVER_ERROR,
        *,
        at: float = 0.0,
        seconds: float | None = None,
    ) -> Scenario:
        """A share *rate* (0-1) of the requests fails with *kind* (a kind or a status)."""
        check_number("rate", rate, lambda v: 0 <= v <= 1, "a share of the requests between 0 and 1")
        found = answer_of(kind)
        if found is None:
            msg = f"kind {kind!r}: expected a failure, not a success"
            raise ValueError(msg)
        start, end = _window(at, seconds, "seconds")
        bad = None if math.isinf(end) else (start, end)
        return cls((Effect("errors", start, end, found, rate=float(rate), bad=bad),))

    @classmethod
    def stream_timeouts(
        cls, rate: float, *, at: float = 0.0, seconds: float | None = None
    ) -> Scenario:
        """A share *rate* of the streams fails half-way with an ``upstream_timeout`` event."""
        return cls.errors(rate, Kind.UPSTREAM_TIMEOUT, at=at, seconds=seconds)

    @classmethod
    def trace(cls, path: str | Path, *, at: float = 0.0) -> Scenario:
        """Replay a trace file (CSV or JSON Lines: ``t``, ``status`` or ``kind``, optional
        ``retry_after``): a request sent in second *n* of the trace is answered like one
        of the requests it recorded in that second, drawn at random; a second without
        records answers a success. See :func:`read_trace` for the format."""
        check_number("at", at, lambda v: v >= 0, "a number of seconds >= 0")
        return cls((read_trace(path, at=at),))

    def with_latency(
        self, median: float, p99: float | None = None, *, fail_fast: float | None = None
    ) -> Scenario:
        """This scenario with answers taking *median* seconds (lognormal up to *p99*)."""
        latency = Latency(
            median,
            median if p99 is None else p99,
            self.latency.fail_fast if fail_fast is None else fail_fast,
        )
        return attrs.evolve(self, latency=latency)

    def __add__(self, other: object) -> Scenario:
        if not isinstance(other, Scenario):
            return NotImplemented
        latency = other.latency if self.latency == Latency() else self.latency
        return Scenario((*self.effects, *other.effects), latency)

    @property
    def bad_period(self) -> tuple[float, float] | None:
        """From the first incident's start to the last one's end; None without one."""
        spans = [e.bad for e in self.effects if e.bad is not None]
        if not spans:
            return None
        return min(s for s, _ in spans), max(e for _, e in spans)

    def describe(self) -> str:
        """One line for a report."""
        parts = [_describe(e) for e in self.effects] or ["healthy"]
        lat = self.latency
        spread = f"-{lat.p99:g}" if lat.p99 != lat.median else ""
        return "; ".join(parts) + f"; latency {lat.median:g}{spread} s"


def _when(e: Effect) -> str:
    if math.isinf(e.end):
        return f" from {e.start:g} s" if e.start else ""
    return f" {e.start:g}-{e.end:g} s"


def _what(answer: Answer | None) -> str:
    if answer is None:
        return "success"
    if answer.code is not None:
        return answer.code
    if answer.failure is not None:
        return str(answer.failure)
    return str(answer.status)


def _describe(e: Effect) -> str:
    if e.what == "outage":
        return f"outage ({_what(e.answer)}){_when(e)}"
    if e.what == "rate_limit":
        return f"rate limit {e.rate:g}/s (burst {e.burst:g}){_when(e)}"
    if e.what == "errors":
        return f"{e.rate:.3g} {_what(e.answer)}{_when(e)}"
    return f"trace of {len(e.bins)} s" + (f" from {e.start:g} s" if e.start else "")
