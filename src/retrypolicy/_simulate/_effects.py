"""What a simulated server answers, and an effect in time: the pieces scenarios and traces
share (one module, so that neither imports the other)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import attrs

from .._rules import Failure, Kind

__all__ = ["KIND_ANSWERS", "Answer", "Effect", "Latency", "answer_of", "check_number"]

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


def check_number(name: str, value: object, ok: Callable[[float], bool], expected: str) -> float:
    """*value* as a float when it is a number (not a bool) for which *ok* holds (never for
    NaN), else a ValueError naming *name* and what was *expected*."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
        msg = f"{name} {value!r}: expected {expected}"
        raise ValueError(msg)
    return float(value)


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    check_number(attr.name, value, lambda v: 0 <= v < math.inf, "a finite number >= 0")


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
