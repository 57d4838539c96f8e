"""The in-process store and the process's default store (the interface they implement,
:class:`Store`, is in the core: ``retrypolicy.typing`` and this package re-export it).

Also the three async dispatchers (:func:`abudget`, :func:`alimiter`, :func:`abreaker`)
that async call paths await for a store step: a store's own coroutine method when it
has one (``RedisStore``: ``redis.asyncio``), else the sync step in a worker thread
for a shared store (it may block on the network), else the sync step itself (an
in-process step is a few microseconds under a lock: no thread hop). No blocking
network call ever runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from .._breaker import BreakerOp, BreakerResult, BreakerState, CircuitBreaker, breaker_step
from .._budget import Bucket, BudgetResult, RetryBudget
from .._limiter import AdaptiveLimiter, LimiterOp, LimiterResult, LimiterState, limiter_step
from .._store import Store

__all__ = [
    "DEFAULT_WATCHERS",
    "InProcessStore",
    "Store",
    "abreaker",
    "abudget",
    "alimiter",
    "get_default_store",
    "set_default_store",
    "use_store",
]


class InProcessStore:
    """State in this process's memory, one lock around each step: thread-safe, exact.

    The default store: one budget, limiter and breaker per policy (and host)
    per process. Keys never expire (their number is bounded by the policies and
    hosts in use); :meth:`clear` forgets everything.
    """

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._budgets: dict[str, Bucket] = {}
        self._limiters: dict[str, LimiterState] = {}
        self._breakers: dict[str, BreakerState] = {}

    def __repr__(self) -> str:
        return f"<InProcessStore budgets={len(self._budgets)} breakers={len(self._breakers)}>"

    def budget(self, key: str, config: RetryBudget, now: float, delta: float) -> BudgetResult:
        """See :meth:`Store.budget`."""
        with self._lock:
            bucket = self._budgets.get(key)
            if bucket is None:
                bucket = self._budgets[key] = Bucket(config.capacity, now)
            ok, level, event = bucket.step(config, now, delta)
        return BudgetResult(ok, level, config.capacity, event)

    def local_budgets(self) -> tuple[threading.Lock, dict[str, Bucket]] | None:
        """The lock and the buckets, for a guard to pay for retries in place (see
        ``_storm.Guard.pay``); None for a subclass that changes :meth:`budget`."""
        if type(self).budget is not InProcessStore.budget:
            return None
        return self._lock, self._budgets

    def limiter(
        self, key: str, config: AdaptiveLimiter, now: float, op: LimiterOp, measured: float = 0.0
    ) -> LimiterResult:
        """See :meth:`Store.limiter`."""
        with self._lock:
            state, result = limiter_step(config, self._limiters.get(key), now, op, measured)
            self._limiters[key] = state
        return result

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
        """See :meth:`Store.breaker`."""
        with self._lock:
            state, result = breaker_step(
                config, self._breakers.get(key), now, op, failures=failures, successes=successes
            )
            if state is not None:
                self._breakers[key] = state
        return result

    def breaker_keys(self, prefix: str) -> list[str]:
        """The keys of the breakers starting with *prefix* (for stats)."""
        with self._lock:
            return sorted(k for k in self._breakers if k.startswith(prefix))

    # The coroutine twins: the same steps (no I/O, so nothing is awaited), for async
    # callers that treat every store alike. Each calls the sync method, so a subclass
    # that overrides one overrides both.

    async def abudget(
        self, key: str, config: RetryBudget, now: float, delta: float
    ) -> BudgetResult:
        """:meth:`budget`, for async callers."""
        return self.budget(key, config, now, delta)

    async def alimiter(
        self, key: str, config: AdaptiveLimiter, now: float, op: LimiterOp, measured: float = 0.0
    ) -> LimiterResult:
        """:meth:`limiter`, for async callers."""
        return self.limiter(key, config, now, op, measured)

    async def abreaker(
        self,
        key: str,
        config: CircuitBreaker,
        now: float,
        op: BreakerOp,
        *,
        failures: int = 0,
        successes: int = 0,
    ) -> BreakerResult:
        """:meth:`breaker`, for async callers."""
        return self.breaker(key, config, now, op, failures=failures, successes=successes)

    async def abreaker_keys(self, prefix: str) -> list[str]:
        """:meth:`breaker_keys`, for async callers."""
        return self.breaker_keys(prefix)

    def clear(self) -> None:
        """Forget every budget, limiter and breaker: each starts afresh."""
        with self._lock:
            self._budgets.clear()
            self._limiters.clear()
            self._breakers.clear()


_default: list[Store] = [InProcessStore()]
_default_lock = threading.Lock()
DEFAULT_WATCHERS: list[Callable[[Store], None]] = []
"""Called with the new default store after each change (the runtime notes whether the
default is a shared store, whose budget another worker may drain unseen)."""


def get_default_store() -> Store:
    """The store used by every call path that was not given one."""
    return _default[0]


def set_default_store(store: Store) -> Store:
    """Make *store* the process's default; returns the previous one (to restore it).

    Decorators and adapters built before the change use the new store from
    their next call on.
    """
    if not isinstance(store, Store):
        msg = f"store {store!r}: expected a retrypolicy.stores.Store (InProcessStore, RedisStore)"
        raise TypeError(msg)
    with _default_lock:
        previous = _default[0]
        _default[0] = store
    for watcher in DEFAULT_WATCHERS:
        watcher(store)
    return previous


@contextlib.contextmanager
def use_store(store: Store) -> Iterator[Store]:
    """Within the block, *store* is the default store (process-wide); restored after."""
    previous = set_default_store(store)
    try:
        yield store
    finally:
        set_default_store(previous)


async def _astep(store: Store, step: str, *args: Any, **kwargs: Any) -> Any:
    """The store's coroutine twin of *step* if it has one, else the sync step: in a worker
    thread for a shared store (it may block on the network), else in place."""
    twin = getattr(store, "a" + step, None)
    if twin is not None:
        return await twin(*args, **kwargs)
    sync = getattr(store, step)
    if store.shared:
        return await asyncio.to_thread(sync, *args, **kwargs)
    return sync(*args, **kwargs)


async def abudget(
    store: Store, key: str, config: RetryBudget, now: float, delta: float
) -> BudgetResult:
    """:meth:`Store.budget` for an async caller, never blocking the event loop (see the
    module docstring for how each kind of store is stepped)."""
    return cast("BudgetResult", await _astep(store, "budget", key, config, now, delta))


async def alimiter(  # noqa: PLR0917 - Store.limiter's arguments, the store first
    store: Store,
    key: str,
    config: AdaptiveLimiter,
    now: float,
    op: LimiterOp,
    measured: float = 0.0,
) -> LimiterResult:
    """:meth:`Store.limiter` for an async caller (as :func:`abudget`)."""
    return cast("LimiterResult", await _astep(store, "limiter", key, config, now, op, measured))


async def abreaker(
    store: Store,
    key: str,
    config: CircuitBreaker,
    now: float,
    op: BreakerOp,
    *,
    failures: int = 0,
    successes: int = 0,
) -> BreakerResult:
    """:meth:`Store.breaker` for an async caller (as :func:`abudget`)."""
    kwargs = {"failures": failures, "successes": successes}
    return cast("BreakerResult", await _astep(store, "breaker", key, config, now, op, **kwargs))
