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
from typing import Final

import attrs

from .._rules import Failure, Kind

__all__ = [
    "KIND_ANSWERS",
    "Answer",
    "Effect",
    "Latency",
    "Scenario",
    "answer_of",
]

_P99_Z: Final = 2.326347874
"""The standard normal's 99th percentile: a lognormal's sigma is ln(p99 / median) / this."""


@attrs.frozen
class Answer:
    """One failed answer of the simulated service, as the client sees it.

    ``status``/``code``/``failure`` feed the policy's classification; ``headers`` are
    read by the real ``Retry-After`` parser; ``paid``: the request reached the model, so
    it was billed (a success, a timeout, a stream that failed half-way, a 500), as
    opposed to a refusal at the door (429, 502-504, a connect failure, another 4xx).
    """

    status: int | None = None
    code: str | None = None
    failure: Failure | None = None
    headers: tuple[tuple[str, str], ...] = ()
    paid: bool = False
    midway: bool = False
    """Fails part of the way through the answer (its latency is a fraction of a full one)."""


KIND_ANSWERS: Final[dict[str, Answer]] = {
    Kind.RATE_LIMITED: Answer(status=429),
    Kind.SERVER_ERROR: Answer(status=500, paid=True),
    Kind.UNAVAILABLE: Answer(status=503),
    Kind.CONNECTION: Answer(failure=Failure.CONNECTION),
    Kind.TIMEOUT: Answer(failure=Failure.TIMEOUT, paid=True),
    Kind.UPSTREAM_TIMEOUT: Answer(status=200, code="upstream_timeout", paid=True, midway=True),
    Kind.UPSTREAM_ERROR: Answer(status=200, code="upstream_error", paid=True, midway=True),
    Kind.INTERNAL_ERROR: Answer(status=200, code="internal_error", paid=True, midway=True),
    Kind.CANCELLED: Answer(status=200, code="cancelled", paid=True, midway=True),
    Kind.STREAM_ERROR: Answer(failure=Failure.STREAM_ERROR, paid=True, midway=True),
    Kind.INCOMPLETE_STREAM: Answer(failure=Failure.INCOMPLETE_STREAM, paid=True, midway=True),
    Kind.INVALID_REQUEST: Answer(status=400),
    Kind.AUTHENTICATION: Answer(status=401),
    Kind.PERMISSION: Answer(status=403),
    Kind.NOT_FOUND: Answer(status=404),
    Kind.CLIENT_ERROR: Answer(status=422),
}
"""A representative answer for each failure kind of the EU GPT contract."""


def answer_of(what: str | int, *, where: str = "kind") -> Answer | None:
    """The answer a kind name (``"unavailable"``) or an HTTP status (``503``, ``"503"``)
    stands for; None for a success (a status below 400). Raises ValueError naming
    *where* and what was expected."""
    text = str(what).strip()
    if text.isdigit():
        status = int(text)
        if not 100 <= status <= 599:
            msg = f"{where} {what!r}: expected an HTTP status 100-599 or a failure kind"
            raise ValueError(msg)
        if status < 400:
            return None
        paid = status == 500 or (status >= 500 and status not in (502, 503, 504))
        return Answer(status=status, paid=paid)
    found = KIND_ANSWERS.get(text)
    if found is None:
        kinds = ", ".join(sorted(KIND_ANSWERS))
        msg = f"{where} {what!r}: expected an HTTP status or one of: {kinds}"
        raise ValueError(msg)
    return found


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        msg = f"{attr.name} {value!r}: expected a number >= 0"
        raise ValueError(msg)


@attrs.frozen
class Latency:
    """How long an answer takes: lognormal with this ``median`` and ``p99`` (seconds);
    constant when they are equal. Failures that fail at the door (503, 429, a connect
    failure) take ``fail_fast`` instead; a stream that fails half-way, a random part
    of a full answer."""

    median: float = attrs.field(default=0.1, validator=_non_negative)
    p99: float = attrs.field(default=0.1, validator=_non_negative)
    fail_fast: float = attrs.field(default=0.005, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.p99 < self.median:
            msg = f"p99 {self.p99!r}: expected a number >= the median {self.median!r}"
            raise ValueError(msg)

    @property
    def sigma(self) -> float:
        """The lognormal's sigma (0: constant)."""
        if self.median <= 0 or self.p99 <= self.median:
            return 0.0
        return math.log(self.p99 / self.median) / _P99_Z


@attrs.frozen
class Effect:
    """One effect of a scenario, active from ``start`` to ``end`` (seconds of the run).

    ``what``: ``"outage"`` (every answer ``answer``), ``"rate_limit"`` (a token bucket
    of ``rate`` requests/s holding ``burst``; a request that finds it empty is a 429 with
    ``Retry-After`` in whole seconds, as the fake server answers), ``"errors"`` (a
    share ``rate`` of the requests fails with ``answer``), ``"trace"`` (the answers of
    a trace file, per second of it).
    """

    what: str
    start: float = 0.0
    end: float = math.inf
    answer: Answer | None = None
    rate: float = 0.0
    burst: float = 0.0
    retry_after: bool = True
    bins: tuple[tuple[Answer | None, ...], ...] = attrs.field(default=(), repr=False)
    """A trace's answers, one tuple per second from ``start`` (None: a success)."""
    bad: tuple[float, float] | None = None
    """The part of the window that is an incident (for amplification and recovery)."""


def _window(at: float, seconds: float | None, name: str) -> tuple[float, float]:
    for label, value in (("at", at), (name, seconds)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            msg = f"{label} {value!r}: expected a number of seconds >= 0"
            raise ValueError(msg)
    return float(at), math.inf if seconds is None else float(at) + float(seconds)


@attrs.frozen
class Scenario:
    """What the service does during a simulation (see the module docstring).

    Build with the class methods and add them up; :func:`retrypolicy.simulate` runs one.
    """

    effects: tuple[Effect, ...] = ()
    latency: Latency = Latency()

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
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            msg = f"rate {rate!r}: expected requests per second > 0"
            raise ValueError(msg)
        size = max(1.0, float(rate)) if burst is None else burst
        if isinstance(size, bool) or not isinstance(size, int | float) or not size >= 1:
            msg = f"burst {burst!r}: expected a number of requests >= 1"
            raise ValueError(msg)
        start, end = _window(at, seconds, "seconds")
        effect = Effect(
            "rate_limit",
            start,
            end,
            KIND_ANSWERS[Kind.RATE_LIMITED],
            rate=float(rate),
            burst=float(size),
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
        _probability_check(rate)
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
        from ._trace import read_trace  # noqa: PLC0415 - the trace reader builds Effects

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


def _probability_check(rate: object) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        msg = f"rate {rate!r}: expected a share of the requests between 0 and 1"
        raise ValueError(msg)


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
