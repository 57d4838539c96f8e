"""Reading stats never swallows a store's news: an outage (or its end) met by a read is told.

A shared store reports ``store.unavailable`` once per outage, on the first step that meets
it, and ``store.recovered`` on the probe that ends it. ``policy.stats()`` — what a
Prometheus scrape calls every few seconds — steps the store too: when its read is that
first step, the news must reach the hooks and the counters like any other step's.
"""

from __future__ import annotations

import pytest
import redis

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.stores import RedisStore

from .redis_server import RedisServer
from .test_storm_faults import Clock, client  # noqa: F401 - client: the fixture, shared

ROWS = [
    # (a policy whose only shared state the read steps, no budget to meet the outage first)
    rp.EUGPT.evolve(name="paced", budget=None, limiter=rp.AdaptiveLimiter()),
    rp.EUGPT.evolve(name="guarded", budget=None, breaker=rp.CircuitBreaker()),
]


@pytest.mark.parametrize("policy", ROWS, ids=lambda p: p.name)
def test_a_stats_read_reports_the_outage_it_meets_and_its_end(
    policy: rp.Policy,
    redis_server: RedisServer,
    client: redis.Redis,  # noqa: F811 - the fixture imported above
    events: list[RetryEvent],
) -> None:
    """Redis dies between two calls and the next step is a stats() read: store.unavailable
    is reported and counted once (before: dropped, and never reported at all, since the
    outage was then known); Redis back, the read that probes reports store.recovered."""
    clock = Clock(1_000.0)
    store = RedisStore(client, prefix="stats-news", retry_every=5.0)

    @rp.retry(policy, wall_clock=clock, store=store)
    def call() -> str:
        return "ok"

    assert call() == "ok"  # the shared limiter / breaker is asked once while Redis is up
    redis_server.stop()
    events.clear()

    stats = rp.stores.stats(policy, store=store, now=clock.now)
    assert not store.available
    assert [e.name for e in events] == ["store.unavailable"]
    assert stats.counters["store_unavailable"] == 1
    assert call() == "ok"  # the outage is known: answered locally, not reported again
    assert [e.name for e in events] == ["store.unavailable"]

    redis_server.start()
    clock.now += 10.0  # past retry_every: the next step probes
    rp.stores.stats(policy, store=store, now=clock.now)
    assert store.available
    assert [e.name for e in events] == ["store.unavailable", "store.recovered"]
