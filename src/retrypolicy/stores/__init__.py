"""Where storm protection keeps its state: one process, or a whole fleet through Redis.

A policy's retry budget, adaptive limiter and circuit breakers (see
:doc:`/storm`) live in a :class:`Store`. Every call path uses the process's
default store unless it was given one (``store=`` on ``@rp.retry``,
``rp.attempts`` and every adapter):

- :class:`InProcessStore` (the default): this process's memory, thread-safe;
- :class:`RedisStore`: ``RedisStore.from_url("redis://host:6379/0", prefix="retrypolicy")``
  (or ``RedisStore(redis.Redis(...))``) shares one budget, one limiter and one
  breaker per host among every process that uses the same Redis and prefix;
  atomic Lua scripts, keys with TTLs, a ``redis.asyncio`` path for async callers,
  and an in-process fallback while Redis is unreachable — one caller probes, the
  others stay local (``store.unavailable`` / ``store.recovered`` events, never an
  exception to the caller).

:func:`set_default_store` / :func:`use_store` change the default;
:func:`stats` (or ``policy.stats()``) reads a policy's state and counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._policy import APPLIED as _APPLIED
from .._stats import StormStats
from ._base import InProcessStore, Store, get_default_store, set_default_store, use_store

if TYPE_CHECKING:
    from .._policy import Policy
    from ._redis import RedisStore

__all__ = [
    "InProcessStore",
    "RedisStore",
    "Store",
    "StormStats",
    "get_default_store",
    "reset",
    "set_default_store",
    "stats",
    "use_store",
]


def __getattr__(name: str) -> object:
    if name == "RedisStore":  # its module is loaded on first use only
        from ._redis import RedisStore  # noqa: PLC0415

        return RedisStore
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def stats(policy: Policy, *, store: Store | None = None, now: float | None = None) -> StormStats:
    """A frozen snapshot of *policy*'s budget, limiter and breakers in *store* (default:
    the default store), with this process's counters. *now*: wall-clock seconds (the
    clock the state is kept in); unless given, the clock of the call path that uses
    this policy and store (``wall_clock=``), else the real one. It only reads."""
    from .._storm import guard_for  # noqa: PLC0415 - the guards sit above the stores

    chosen = store if store is not None else get_default_store()
    return guard_for(chosen, policy).stats(now)


def reset(store: Store | None = None) -> None:
    """Start afresh: a new default in-process store (or *store*), and every guard's local
    caches and counters forgotten. For tests: state does not leak from one to the next."""
    from .._runtime import RUNTIME  # noqa: PLC0415 - the runtime sits above the stores

    set_default_store(store if store is not None else InProcessStore())
    RUNTIME.forget_storm()


_APPLIED["stats"] = stats  # policy.stats() is stores.stats(policy)
