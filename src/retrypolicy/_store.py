"""The interface of a storm-protection store: one Protocol, for the stores that implement
it (:mod:`retrypolicy.stores`) and the annotations that name it, with nothing above the
core imported (``retrypolicy.typing`` and ``retrypolicy.stores`` re-export it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._breaker import BreakerOp, BreakerResult, CircuitBreaker
    from ._budget import BudgetResult, RetryBudget
    from ._limiter import AdaptiveLimiter, LimiterOp, LimiterResult

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """Where budgets, limiters and breakers keep their state; each method is one atomic step.

    ``key`` names one budget, limiter or breaker (policy name, and host for a
    breaker); ``now`` is the caller's clock (wall-clock seconds, comparable
    across machines). A step applies the pure transition of
    :mod:`retrypolicy._budget` / ``_limiter`` / ``_breaker`` atomically and
    returns its result. A step never raises for a store failure: a store that
    cannot reach its backend answers from a local fallback and says so in the
    result's ``notice``.

    ``shared`` is True when other processes see the same state: callers then
    batch what they can (success reports) instead of a round trip per call.

    A store may also have coroutine twins ``abudget``, ``alimiter``, ``abreaker``
    and ``abreaker_keys`` (same arguments, same results) for async callers; a
    shared store without them is stepped in a worker thread.
    """

    shared: bool

    def budget(self, key: str, config: RetryBudget, now: float, delta: float) -> BudgetResult:
        """Spend (``delta < 0``), refund (``> 0``) or read (``0``) a budget."""
        ...

    def limiter(
        self, key: str, config: AdaptiveLimiter, now: float, op: LimiterOp, measured: float = 0.0
    ) -> LimiterResult:
        """One limiter step (``acquire``, ``throttled``, ``answered``, ``read``)."""
        ...

    def breaker(
        self,
        key: str,
        config: CircuitBreaker,
        now: float,
        op: BreakerOp,
        *,
        failures: int = 0,
        successes: int = 0,
    ) -> BreakerResult:
        """One breaker step (``allow``, ``record``, ``read``)."""
        ...
