"""Redis stopped mid-run: calls go on with a local fallback, and shared state resumes after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.stores import RedisStore

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
