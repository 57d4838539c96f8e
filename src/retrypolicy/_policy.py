"""Policy: an error contract as data, and the pure function that applies it.

``Policy.decide(outcome, state, now=..., rng=...)`` is the only place where
"retry or not, and after how long" is decided. It reads no clock and sleeps
never: the drivers in the apply layer pass the time in and do the waiting.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast, overload

import attrs

from ._backoff import Backoff, _default_rng
from ._breaker import CircuitBreaker
from ._budget import RetryBudget
from ._envelope import ErrorInfo
from ._errors import APIError, CircuitOpenError, api_error
from ._limiter import AdaptiveLimiter
from ._outcome import AttemptState, Decision, Outcome
from ._rules import Classification, Failure, Kind, Rule, failure_of, failure_of_kind

if TYPE_CHECKING:
    from ._stats import StormStats
    from ._store import Store

__all__ = ["Policy"]

F = TypeVar("F", bound=Callable[..., Any])


class _Where(Protocol):
    """Where a call stands, as :meth:`Policy._judge` reads it."""

    @property
    def started(self) -> float: ...
    @property
    def attempt(self) -> int: ...
    @property
    def last_delay(self) -> float | None: ...


APPLIED: Final[dict[str, Callable[..., Any]]] = {}
"""What the layers above lend :class:`Policy`'s convenience methods — ``"retry"``
(:func:`retrypolicy.retry`), ``"stats"`` (:func:`retrypolicy.stores.stats`), ``"to_toml"``
(:func:`retrypolicy.dump_policy`) — registered as they are imported (``import retrypolicy``
imports them all), so that the core never imports upward."""

_CACHE_LIMIT: Final = 1024
_SUCCESS_KIND: Final = Kind.SUCCESS
_SUCCESS: Final = Classification(Kind.SUCCESS, retryable=False, max_retries=0, reason="success")


def _rules(value: Iterable[Rule]) -> tuple[Rule, ...]:
    rules = tuple(value)
    for i, r in enumerate(rules):
        if not isinstance(r, Rule):
            msg = f"rules[{i}] {r!r}: expected a Rule"
            raise TypeError(msg)
    return rules


def _opt_positive_int(_inst: object, attr: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        msg = f"{attr.name} {value!r}: expected a whole number >= 1 or None"
        raise ValueError(msg)


def _opt_positive(_inst: object, attr: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
    ):
        msg = f"{attr.name} {value!r}: expected a number > 0 or None"
        raise ValueError(msg)


def _optional(cls: type) -> Any:
    return attrs.validators.optional(attrs.validators.instance_of(cls))


def _a_status(value: object) -> bool:
    """Whether *value*, not an int, still reads as a status: an int subclass such as
    ``http.HTTPStatus`` (but not a bool), or a whole float (``429.0``)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


@attrs.frozen(kw_only=True)
class Policy:
    """An error contract: ordered rules, a backoff, and overall limits.

    Build variants with :meth:`evolve`; :func:`retrypolicy.load_policy` builds
    them from TOML.
    """

    name: str = "custom"
    rules: tuple[Rule, ...] = attrs.field(converter=_rules)
    backoff: Backoff = attrs.field(factory=Backoff)
    max_attempts: int | None = attrs.field(default=None, validator=_opt_positive_int)
    """Attempts in all, first try included; None: only the per-kind limits apply."""
    deadline: float | None = attrs.field(default=None, validator=_opt_positive)
    """Seconds across all attempts; no wait is scheduled that would end past it."""
    budget: RetryBudget | None = attrs.field(default=None, validator=_optional(RetryBudget))
    """The retry budget shared by every call of this policy (``rp.EUGPT``: on); None: none."""
    limiter: AdaptiveLimiter | None = attrs.field(
        default=None, validator=_optional(AdaptiveLimiter)
    )
    """Adaptive pacing after 429s, and persistent-limit detection; None (the default): off."""
    breaker: CircuitBreaker | None = attrs.field(default=None, validator=_optional(CircuitBreaker))
    """A circuit breaker per host; None (the default, ``rp.EUGPT`` too): off."""
    _cache: dict[tuple[int | None, str | None, Failure | None], Classification] = attrs.field(
        init=False, factory=dict, eq=False, repr=False, hash=False
    )
    _protected: tuple[RetryBudget | None, bool, bool] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    """(budget, gated, storm), what an attempt machine needs: a limiter or breaker gates
    each attempt; storm: any protection at all."""

    def __attrs_post_init__(self) -> None:
        gated = self.limiter is not None or self.breaker is not None
        protected = (self.budget, gated, gated or self.budget is not None)
        object.__setattr__(self, "_protected", protected)

    def evolve(self, **changes: Any) -> Policy:
        """A copy with *changes* applied (``attrs.evolve``)."""
        return attrs.evolve(self, **changes)

    def classify(
        self,
        status: int | None = None,
        code: str | None = None,
        *,
        exception: BaseException | None = None,
        failure: Failure | None = None,
    ) -> Classification:
        """Classify a status and/or error code, or a raised exception.

        An :class:`~retrypolicy.APIError` is classified by its status and code;
        other exceptions by the transport-failure registry. Anything the rules
        do not cover is ``unknown`` and not retried.
        """
        if exception is not None:
            if isinstance(exception, CircuitOpenError):
                # nothing was sent: judged as the service unavailable, the breaker's view of it
                status, code, failure = 503, None, None
            elif isinstance(exception, APIError):
                # a StreamError for a cut stream carries status 200 and no code: its kind
                # (incomplete_stream, connection, timeout) is what failed
                status, code = exception.status, exception.code
                failure = failure_of_kind(exception.kind)
            else:
                failure = failure_of(exception)
                if failure is None:
                    return _unknown(
                        f"{type(exception).__name__} is not a failure this policy knows"
                    )
        if type(status) is not int and status is not None and not _a_status(status):
            msg = f"status {status!r}: expected an HTTP status (an int, e.g. 429) or None"
            raise TypeError(msg)
        key = (status, code, failure)
        if (found := self._cache.get(key)) is not None:
            return found
        result = self._classify(status, code, failure)
        if len(self._cache) < _CACHE_LIMIT:  # codes are remote data: keep the cache bounded
            self._cache[key] = result
        return result

    def _classify(
        self, status: int | None, code: str | None, failure: Failure | None
    ) -> Classification:
        for rule in self.rules:
            if rule.matches(status, code, failure):
                n = rule.max_retries if rule.retry else 0
                verdict = f"retry up to {n} time{'s' if n != 1 else ''}" if n else "do not retry"
                return Classification(
                    rule.kind,
                    retryable=n > 0,
                    max_retries=n,
                    reason=f"{_describe(status, code, failure)} is {rule.kind}: {verdict}",
                    advice=rule.advice,
                    rule=rule,
                )
        if failure is None and code is None and status is not None and status < 400:
            return _SUCCESS
        return _unknown(f"{_describe(status, code, failure)} matches no rule: do not retry")

    def decide(
        self,
        outcome: Outcome,
        state: AttemptState | None = None,
        *,
        now: float = 0.0,
        rng: random.Random | None = None,
    ) -> Decision:
        """Succeed, retry after a delay, or give up — for *outcome* at *state*.

        *now* is the driver's monotonic clock (compared with ``state.started``
        for the deadline); *rng* draws the jitter. Pure: same inputs, same answer.
        """
        if state is None:
            state = AttemptState(started=now)
        c = self._classification_of(outcome)
        kind = c.kind
        if c is _SUCCESS or kind == _SUCCESS_KIND:
            return Decision(action="succeed", classification=c, reason="success", state=state)
        used = state.retries_of(kind) if state.retries else 0
        delay = self._judge(c, outcome, used, state, now, rng)
        if isinstance(delay, str):
            return Decision("give_up", c, delay, state, retry_after=outcome.retry_after)
        return Decision(
            "retry",
            c,
            retry_reason(kind, used + 1, c.max_retries),
            state.after_retry(kind, delay),
            delay,
            outcome.retry_after,
        )

    def _classification_of(self, outcome: Outcome) -> Classification:
        """What this policy makes of *outcome* (cached: this runs on every failed attempt)."""
        status, failure = outcome.status, outcome.failure
        if status is None and failure is None and outcome.exception is not None:
            return self.classify(exception=outcome.exception)
        code = outcome.code
        found = self._cache.get((status, code, failure))
        return found if found is not None else self.classify(status, code, failure=failure)

    def _judge(  # noqa: PLR0917 - the decision's inputs
        self,
        c: Classification,
        outcome: Outcome,
        used: int,
        where: _Where,
        now: float,
        rng: random.Random | None,
    ) -> float | str:
        """The decision itself: the seconds to wait before retrying a failure classified *c*,
        or — a ``str`` — why to give up. *used*: retries already spent on its kind; *where*:
        the call's state (an :class:`~retrypolicy.engine.AttemptState`, or the attempt
        machine, which keeps the same three fields as plain values).

        :meth:`decide` wraps it in a :class:`~retrypolicy.engine.Decision`; the attempt
        machine calls it directly and builds the decision only when someone reads it, which
        is what keeps a retry cheap.
        """
        if not c.retryable:
            return c.reason
        if outcome.exhausted:
            return f"{c.kind}: already retried until an inner retry layer gave up"
        if used >= c.max_retries:
            return f"{c.kind}: {used} of {c.max_retries} retries used"
        if self.max_attempts is not None and where.attempt >= self.max_attempts:
            return f"max_attempts {self.max_attempts} reached"
        rule = c.rule
        backoff = rule.backoff if rule is not None and rule.backoff is not None else self.backoff
        hint = outcome.retry_after
        if hint is None:  # the common case: no server hint, the jittered backoff alone
            delay = backoff._jittered(used + 1, rng or _default_rng, where.last_delay)
        elif hint > backoff.max_retry_after:
            return (
                f"server asked to wait {hint:g}s, more than max_retry_after "
                f"{backoff.max_retry_after:g}s"
            )
        else:
            delay = backoff.delay(used + 1, retry_after=hint, rng=rng, previous=where.last_delay)
        deadline = self.deadline
        if deadline is not None and now - where.started + delay > deadline:
            elapsed = now - where.started
            return (
                f"deadline {deadline:g}s: waiting {delay:.3g}s after {elapsed:.3g}s would pass it"
            )
        return delay

    def error_for(
        self, info: ErrorInfo, *, attempts: int = 1, retry_after: float | None = None
    ) -> APIError:
        """The :class:`~retrypolicy.APIError` subclass this policy raises for *info*."""
        return api_error(
            self.classify(info.status, info.code), info, attempts=attempts, retry_after=retry_after
        )

    def to_toml(self) -> str:
        """This policy as a self-contained TOML file that :func:`retrypolicy.load_policy` reads
        back to an equal policy."""
        return cast("str", APPLIED["to_toml"](self))

    def stats(self, *, store: Store | None = None) -> StormStats:
        """A frozen snapshot of this policy's budget, limiter and breakers, and this process's
        counters (:func:`retrypolicy.stores.stats`; *store*: the default store unless given)."""
        return cast("StormStats", APPLIED["stats"](self, store=store))

    @overload
    def retry(self, fn: F, /) -> F: ...
    @overload
    def retry(
        self, fn: None = None, /, **hooks: Callable[[Any], object] | None
    ) -> Callable[[F], F]: ...
    def retry(self, fn: F | None = None, /, **hooks: Any) -> F | Callable[[F], F]:
        """Decorate *fn* so that it is retried by this policy (see :func:`retrypolicy.retry`);
        *hooks* are its hooks (``on_retry=...``)."""
        decorator = cast("Callable[[F], F]", APPLIED["retry"](self, **hooks))
        return decorator if fn is None else decorator(fn)


_reasons: dict[tuple[str, int, int], str] = {}


def retry_reason(kind: str, n: int, of: int) -> str:
    """``"<kind>: retry <n> of <of>"``, built once per (kind, n, of): every retry needs one."""
    key = (kind, n, of)
    reason = _reasons.get(key)
    if reason is None:
        # concatenation, not an f-string: formatting a StrEnum is slow on 3.11
        reason = kind + ": retry " + str(n) + " of " + str(of)
        if len(_reasons) < _CACHE_LIMIT:  # kinds come from rules: bounded in practice
            _reasons[key] = reason
    return reason


def _unknown(reason: str) -> Classification:
    return Classification(Kind.UNKNOWN, retryable=False, max_retries=0, reason=reason)


def _describe(status: int | None, code: str | None, failure: Failure | None) -> str:
    parts = []
    if failure is not None:
        article = "an" if str(failure)[:1] in tuple("aeiou") else "a"
        parts.append(f"{article} {failure} failure")
    if status is not None:
        parts.append(f"HTTP {status}")
    if code is not None:
        parts.append(f"code {code!r}")
    return " with ".join(parts) or "an outcome"
