"""The stores' asyncio path: no blocking network call on the event loop, ever.

Async call paths await a store step through the dispatchers of ``stores._base``
(``abudget``, ``alimiter``, ``abreaker``): a store's coroutine twin when it has one
(``RedisStore``: ``redis.asyncio``), a worker thread for a shared store without
one, the sync step in place for an in-process store. Against a Redis that accepts
connections and never answers, a 10 ms ticker on the loop keeps ticking while the
calls wait out their timeout and fall back; one caller probes at a time, and a
cancelled probe leaves the probe free.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

import retrypolicy as rp
from retrypolicy._breaker import BreakerOp, BreakerResult
from retrypolicy._budget import BudgetResult
from retrypolicy._limiter import LimiterOp, LimiterResult
from retrypolicy.stores import InProcessStore, RedisStore
from retrypolicy.stores._base import abreaker, abudget, alimiter

from .hung_listener import HungListener, hung_listener
from .redis_server import RedisServer

BUDGET = rp.RetryBudget(capacity=20, retry_cost=5, refill_rate=0)
LIMITER = rp.AdaptiveLimiter()
BREAKER = rp.CircuitBreaker(min_calls=4)


class SyncOnly:
    """A third-party store with sync steps only; each step notes its thread, and may wait
    for *release* (set from the event loop: a step run on the loop would never see it)."""

    def __init__(self, *, shared: bool, release: threading.Event | None = None) -> None:
        self.shared = shared
        self.release = release
        self.inner = InProcessStore()
        self.threads: list[int] = []

    def _enter(self) -> None:
        self.threads.append(threading.get_ident())
        if self.release is not None:
            assert self.release.wait(timeout=5), "the step blocked the event loop"

    def budget(self, key: str, config: rp.RetryBudget, now: float, delta: float) -> BudgetResult:
        self._enter()
        return self.inner.budget(key, config, now, delta)

    def limiter(
        self,
        key: str,
        config: rp.AdaptiveLimiter,
        now: float,
        op: LimiterOp,
        measured: float = 0.0,
    ) -> LimiterResult:
        self._enter()
        return self.inner.limiter(key, config, now, op, measured)

    def breaker(
        self,
        key: str,
        config: rp.CircuitBreaker,
        now: float,
        op: BreakerOp,
        *,
        failures: int = 0,
        successes: int = 0,
    ) -> BreakerResult:
        self._enter()
        return self.inner.breaker(key, config, now, op, failures=failures, successes=successes)


class WithTwins(SyncOnly):
    """A store with coroutine twins: the dispatchers must await those, not the sync steps."""

    def __init__(self) -> None:
        super().__init__(shared=True)
        self.awaited: list[str] = []

    async def abudget(
        self, key: str, config: rp.RetryBudget, now: float, delta: float
    ) -> BudgetResult:
        self.awaited.append("budget")
        return self.inner.budget(key, config, now, delta)

    async def alimiter(
        self,
        key: str,
        config: rp.AdaptiveLimiter,
        now: float,
        op: LimiterOp,
        measured: float = 0.0,
    ) -> LimiterResult:
        self.awaited.append("limiter")
        return self.inner.limiter(key, config, now, op, measured)

    async def abreaker(
        self,
        key: str,
        config: rp.CircuitBreaker,
        now: float,
        op: BreakerOp,
        *,
        failures: int = 0,
        successes: int = 0,
    ) -> BreakerResult:
        self.awaited.append("breaker")
        return self.inner.breaker(key, config, now, op, failures=failures, successes=successes)


Step = Callable[[Any], Awaitable[Any]]
STEPS: list[tuple[str, Step]] = [
    ("budget", lambda s: abudget(s, "p:budget", BUDGET, 0.0, -5.0)),
    ("limiter", lambda s: alimiter(s, "p:limiter", LIMITER, 0.0, "throttled", 4.0)),
    ("breaker", lambda s: abreaker(s, "p:breaker:h", BREAKER, 0.0, "record", failures=1)),
]


@pytest.mark.parametrize(("name", "step"), STEPS)
def test_the_dispatchers_await_a_stores_twin(name: str, step: Step) -> None:
    """A store with coroutine twins is awaited through them, never through its sync step."""
    store = WithTwins()
    asyncio.run(step(store))  # type: ignore[arg-type]
    assert (store.awaited, store.threads) == ([name], [])


@pytest.mark.parametrize(("name", "step"), STEPS)
def test_a_shared_store_without_twins_is_stepped_off_the_loop(name: str, step: Step) -> None:
    """A shared sync-only store (it may block on a network) runs in a worker thread: the
    loop stays free to run the callback that lets the step finish."""

    async def main() -> None:
        release = threading.Event()
        store = SyncOnly(shared=True, release=release)
        running = asyncio.ensure_future(step(store))
        asyncio.get_running_loop().call_soon(release.set)  # runs only if the loop is free
        await asyncio.wait_for(running, timeout=10)
        assert store.threads
        assert store.threads[0] != threading.get_ident()

    asyncio.run(main())


@pytest.mark.parametrize(("name", "step"), STEPS)
def test_an_in_process_store_without_twins_is_stepped_in_place(name: str, step: Step) -> None:
    """A non-shared sync-only store (a few microseconds under a lock) is stepped on the loop's
    own thread: no thread hop for an in-memory step."""

    async def main() -> None:
        store = SyncOnly(shared=False)
        await step(store)
        assert store.threads == [threading.get_ident()]

    asyncio.run(main())


async def _ticking(work: Callable[[], Awaitable[Any]]) -> tuple[Any, float, float]:
    """Await *work()* beside a 10 ms ticker (started first): its result, the ticker's worst
    lag, and how long the work took (seconds, the loop's clock)."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    lags: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while not done.is_set():  # bounded: done is set when the work ends
            await asyncio.sleep(0.01)
            now = loop.time()
            lags.append(now - last - 0.01)
            last = now

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)  # the ticker starts first
    started = loop.time()
    result = await asyncio.wait_for(work(), timeout=10)
    took = loop.time() - started
    done.set()
    await ticking
    return result, max(lags), took


def test_a_hung_redis_never_stalls_the_event_loop() -> None:
    """8 stores on a Redis that accepts and never answers (timeout=0.2), 24 concurrent steps
    through the dispatchers: the ticker keeps ticking, all wait out one timeout together
    (a blocking call would stall the loop 0.2 s per call, 4.8 s in all), all fall back,
    and each store reports the outage once."""
    with hung_listener() as listener:
        stores = [RedisStore.from_url(listener.url, prefix=f"s{i}", timeout=0.2) for i in range(8)]

        async def main() -> tuple[list[Any], float, float]:
            results, lag, took = await _ticking(
                lambda: asyncio.gather(*(step(store) for store in stores for _, step in STEPS))
            )
            for store in stores:
                await store.aclose()
            return results, lag, took

        results, lag, took = asyncio.run(main())
        for store in stores:
            store.close()
    assert lag < 0.3, f"the loop stalled {lag:.3f} s"
    assert took < 2.0, f"24 steps took {took:.3f} s: they waited one after the other"
    notices = [r.notice[0] for r in results if r.notice is not None]
    assert notices == ["store.unavailable"] * 8
    budgets = [r for r in results if isinstance(r, BudgetResult)]
    assert [(b.ok, b.level) for b in budgets] == [(True, 15.0)] * 8  # the fallback's buckets
    assert not any(store.available for store in stores)


async def _probe_due(store: RedisStore, listener: HungListener) -> None:
    first = await store.abudget("p:budget", BUDGET, 100.0, -5.0)
    assert first.notice is not None
    assert first.notice[0] == "store.unavailable"
    assert listener.accept() == 1


def test_one_async_caller_probes_at_a_time() -> None:
    """Down: before the next probe is due nobody touches the network; when it is due, 8
    concurrent callers make exactly one connection (the probe), the others stay local."""
    with hung_listener() as listener:
        store = RedisStore.from_url(listener.url, timeout=0.2, retry_every=1.0)

        async def main() -> None:
            await _probe_due(store, listener)
            quiet = await asyncio.gather(
                *(store.abudget("p:budget", BUDGET, 100.5, -1.0) for _ in range(8))
            )
            assert listener.accept() == 0
            assert [r.level for r in quiet] == [14.0, 13.0, 12.0, 11.0, 10.0, 9.0, 8.0, 7.0]
            due = await asyncio.gather(
                *(store.abudget("p:budget", BUDGET, 200.0, -1.0) for _ in range(8))
            )
            assert listener.accept() == 1
            assert [r.notice for r in due] == [None] * 8  # the same outage
            await store.aclose()

        asyncio.run(main())
        store.close()


def test_a_cancelled_probe_leaves_the_probe_free() -> None:
    """A probe cancelled while it waits on Redis does not keep the probe taken: the next
    caller probes."""
    with hung_listener() as listener:
        store = RedisStore.from_url(listener.url, timeout=0.5, retry_every=1.0)

        async def main() -> None:
            await _probe_due(store, listener)
            probe = asyncio.ensure_future(store.abudget("p:budget", BUDGET, 200.0, -1.0))
            for _ in range(2000):  # bounded: the probe connects within a few loop turns
                if listener.accept():
                    break
                await asyncio.sleep(0.001)
            else:
                pytest.fail("the probe never connected")
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
            again = asyncio.ensure_future(store.abudget("p:budget", BUDGET, 200.0, -1.0))
            await asyncio.wait_for(again, timeout=5)
            assert listener.accept() == 1  # a new probe went out
            await store.aclose()

        asyncio.run(main())
        store.close()


@pytest.mark.parametrize("built", ["from_url", "from a sync client"])
def test_one_asyncio_client_per_event_loop(
    redis_server: RedisServer, redis_client: redis.Redis, built: str
) -> None:
    """One store awaited from three event loops in turn (asyncio.run each time): each loop
    gets its own redis.asyncio client, closed when asyncio.run ends that loop, and the
    steps all reach the shared state."""
    if built == "from_url":
        store = RedisStore.from_url(redis_server.url, prefix="loops")
    else:
        store = RedisStore(redis.Redis.from_url(redis_server.url), prefix="loops")
    for _ in range(3):
        result = asyncio.run(store.abudget("p:budget", BUDGET, 0.0, -5.0))
        assert result.notice is None
    assert not store._async._per_loop  # each closed and forgotten with its loop
    gc.collect()  # an unclosed connection would warn here (warnings are errors)
    assert store.budget("p:budget", BUDGET, 0.0, 0.0).level == 5.0
    store.client.close()
