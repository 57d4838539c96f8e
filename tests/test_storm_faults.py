"""Redis stopped mid-run: calls go on with a local fallback, and shared state resumes after.

A Redis outage must go unnoticed by callers: no exception, no call waiting on a dead
Redis longer than the store's timeout, one caller probing at a time while the others
answer locally, ``store.unavailable`` and ``store.recovered`` once each per outage.
Wall-clock figures (detection, slowest call, longest gap) are measured by
``bench/redis_outage.py``; here the structure is asserted, with generous time bounds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

import retrypolicy as rp
from retrypolicy._budget import BudgetResult
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.stores import RedisStore

from .hung_listener import hung_listener
from .redis_server import RedisServer


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client with short timeouts, on an empty database; the server is running again after."""
    c = redis.Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
    c.flushdb()
    try:
        yield c
    finally:
        if redis_server.process is None:  # the fixture is session-wide: restore it
            redis_server.start()
        c.close()


POLICY = rp.EUGPT.evolve(
    name="fleet",
    budget=rp.RetryBudget(capacity=20, retry_cost=5, refill_rate=0),
    breaker=rp.CircuitBreaker(min_calls=50),
)


def test_calls_go_on_while_redis_is_down(
    redis_server: RedisServer,
    client: redis.Redis,
    instant: rp.testing.Instant,
    events: list[RetryEvent],
) -> None:
    """Redis killed mid-run: no exception reaches the caller, store.unavailable is reported
    once, budget and breaker keep working locally; Redis back: store.recovered, and what
    one worker spends another sees again."""
    clock = Clock()
    store = RedisStore(client, prefix="faults", retry_every=5.0)
    other_worker = RedisStore(redis.Redis.from_url(redis_server.url), prefix="faults")
    state = {"fail": 1}

    @rp.retry(POLICY, wall_clock=clock, store=store)
    def call() -> int:
        if state["fail"]:
            state["fail"] -= 1
            raise ConnectionError("refused")
        return 1

    assert call() == 1  # one retry, paid for in Redis, and refunded: it fixed the call
    assert rp.stores.stats(POLICY, store=store).counters["retries_allowed"] == 1
    assert other_worker.budget("fleet:budget", POLICY.budget, clock.now, 0.0).level == 20  # type: ignore[arg-type]

    redis_server.stop()
    events.clear()
    for _ in range(3):
        state["fail"] = 1
        assert call() == 1  # retried, on the local fallback
    names = [e.name for e in events]
    assert names.count("store.unavailable") == 1
    unavailable = next(e for e in events if e.name == "store.unavailable").to_log()
    assert unavailable["store"] == "RedisStore"
    assert "Connection" in unavailable["error"]
    assert not store.available
    stats = rp.stores.stats(POLICY, store=store, now=clock.now)  # the state's clock
    assert stats.counters["store_unavailable"] == 1

    # while down and before retry_every has passed, Redis is not even tried
    redis_server.start()
    state["fail"] = 1
    assert call() == 1
    assert not store.available
    events.clear()
    clock.now += 10.0  # past retry_every: Redis is tried again, and answers
    state["fail"] = 2  # two retries: the first one's cost stays spent (the last is refunded)
    assert call() == 1
    assert "store.recovered" in [e.name for e in events]
    assert store.available
    # shared state resumes: the other worker sees this worker's spend
    level = other_worker.budget("fleet:budget", POLICY.budget, clock.now, 0.0).level  # type: ignore[arg-type]
    assert level < 20


def test_a_dead_redis_at_start_never_raises(
    redis_server: RedisServer, client: redis.Redis, instant: rp.testing.Instant
) -> None:
    """With Redis down from the first call, every step answers from the fallback."""
    clock = Clock()
    store = RedisStore(client, prefix="dead", retry_every=1.0)
    redis_server.stop()
    policy = POLICY.evolve(limiter=rp.AdaptiveLimiter(initial_rate=100.0))
    replies = [503, 503, 200]

    class Response:
        def __init__(self, status: int) -> None:
            self.status_code = status

    @rp.retry(policy, wall_clock=clock, store=store)
    def call() -> Response:
        clock.now += 2.0  # every attempt probes again: still down, still no exception
        return Response(replies.pop(0))

    assert call().status_code == 200
    # two retries paid for (10), the success after them refunds the last one's cost (5)
    assert rp.stores.stats(policy, store=store, now=clock.now).budget_level == 15.0


BIG = rp.RetryBudget(capacity=10_000, retry_cost=5, refill_rate=0)
THREADS = 8


def in_threads(step: Callable[[int], BudgetResult], per_thread: int) -> list[tuple[float, str]]:
    """*step* run *per_thread* times in each of 8 threads started together: for every call,
    its duration (s) and its notice's name ("" for none). Raises what a thread raised."""
    start = threading.Barrier(THREADS)
    seen: list[tuple[float, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(per_thread):
                began = time.monotonic()
                result = step(index)
                took = time.monotonic() - began
                with lock:
                    seen.append((took, result.notice[0] if result.notice else ""))
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(seen) == THREADS * per_thread
    return seen


def test_redis_killed_under_8_threads(redis_server: RedisServer) -> None:
    """8 threads, Redis killed between two rounds: no exception, no call near a second,
    store.unavailable once; Redis back: still local until the probe is due, then
    store.recovered once (from the one prober), and every step is in Redis again — the
    shared level counts exactly the steps Redis answered."""
    clock = Clock()
    store = RedisStore.from_url(redis_server.url, prefix="killed", retry_every=5.0)
    watcher = redis.Redis.from_url(redis_server.url)
    watcher.delete("killed:k:budget")

    def step(_: int) -> BudgetResult:
        return store.budget("k:budget", BIG, clock.now, -1.0)

    try:
        up = in_threads(step, 20)
        assert {notice for _, notice in up} == {""}
        redis_server.stop()
        down = in_threads(step, 20)
        assert [n for _, n in down if n] == ["store.unavailable"]
        assert max(took for took, _ in down) < 1.0  # a refused connection: at once
        assert not store.available
        redis_server.start()
        waiting = in_threads(step, 5)  # back, but the probe is not due: still local
        assert {notice for _, notice in waiting} == {""}
        assert not store.available
        clock.now += 6.0  # the probe is due
        assert step(0).notice == ("store.recovered", "")
        again = in_threads(step, 20)
        assert {notice for _, notice in again} == {""}
        assert store.available
        # the restarted Redis (no persistence) holds exactly the probe and the last round
        level = RedisStore(watcher, prefix="killed").budget("k:budget", BIG, clock.now, 0.0)
        assert level.level == 10_000 - 1 - THREADS * 20
    finally:
        if redis_server.process is None:
            redis_server.start()
        watcher.close()
        store.close()


def test_a_hung_redis_costs_one_timeout_and_then_one_prober() -> None:
    """A Redis that accepts and never answers (timeout 0.3): 8 threads calling at once each
    wait at most about the timeout, together, and it is reported once; until the probe is due
    nobody connects; when it is due, 8 threads make exactly one connection."""
    with hung_listener() as listener:
        clock = Clock()
        store = RedisStore.from_url(listener.url, timeout=0.3, retry_every=1.0)

        def step(_: int) -> BudgetResult:
            return store.budget("k:budget", BIG, clock.now, -1.0)

        first = in_threads(step, 1)
        assert [n for _, n in first if n] == ["store.unavailable"]
        assert max(took for took, _ in first) < 1.0
        assert listener.accept() <= THREADS  # the calls in flight when it hung
        quiet = in_threads(step, 10)
        assert listener.accept() == 0
        assert max(took for took, _ in quiet) < 0.25  # local: no wait on the dead Redis
        clock.now += 2.0
        due = in_threads(step, 1)
        assert listener.accept() == 1
        assert {n for _, n in due} == {""}
        store.close()


def test_the_next_probe_is_timed_from_the_end_of_the_failure() -> None:
    """A probe that hung for its whole timeout (0.3 s) does not shorten the local window: the
    next one is due retry_every (1 s) after the failure ended, not after it started."""
    with hung_listener() as listener:
        store = RedisStore.from_url(listener.url, timeout=0.3, retry_every=1.0)
        assert store.budget("k:budget", BIG, 100.0, -1.0).notice is not None
        assert listener.accept() == 1
        store.budget("k:budget", BIG, 101.1, -1.0)  # due, if timed from the start
        assert listener.accept() == 0
        store.budget("k:budget", BIG, 102.5, -1.0)  # due: 1 s after the failure ended
        assert listener.accept() == 1
        store.close()
