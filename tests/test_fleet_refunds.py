"""A fleet's retry budget is refunded by every worker, not only by the ones that paid.

With a shared store (a real ``redis-server``: ``tests/redis_server.py``) one bucket serves
the whole fleet. Each process's guard used to believe the bucket full until it paid for a
retry itself, so a worker that only ever succeeded refunded nothing while others drained
it, and the fleet recovered at ``refill_rate`` alone. A bucket seen full is now taken as
full for ``_RECHECK`` seconds only: the next success after that takes its refund to the
store and learns the level; below capacity, refunds are batched. Each worker here is one
``RedisStore`` (its own guard) on the same Redis and prefix; "theirs" drains the bucket,
"mine" only succeeds — through the decorator (sync and async), ``rp.attempts``, the
requests adapter (its first attempt settled without a loop) and httpx's async transport
(its direct first attempt).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import requests

import retrypolicy as rp
from retrypolicy._budget import BudgetResult
from retrypolicy._runtime import FLEET, RUNTIME
from retrypolicy.stores import RedisStore, stats
from retrypolicy.testing import FakeEUGPT
from retrypolicy_httpx import AsyncRetryTransport
from retrypolicy_requests import RetryAdapter

POLICY = rp.EUGPT.evolve(name="fleet", budget=rp.RetryBudget(capacity=20, refill_rate=0))
KEY = "fleet:budget"


class Worker(RedisStore):
    """One worker's store: counts its budget round trips, sync and awaited."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, prefix="x")
        self.sync = self.awaited = 0

    def budget(self, key: str, config: rp.RetryBudget, now: float, delta: float) -> BudgetResult:
        self.sync += 1
        return super().budget(key, config, now, delta)

    async def abudget(
        self, key: str, config: rp.RetryBudget, now: float, delta: float
    ) -> BudgetResult:
        self.awaited += 1
        return await super().abudget(key, config, now, delta)


@pytest.fixture
def mine(redis_client: redis.Redis) -> Worker:
    """The healthy worker: it never pays for a retry."""
    return Worker(redis_client)


@pytest.fixture
def theirs(redis_client: redis.Redis) -> Worker:
    """Another worker on the same Redis and prefix."""
    return Worker(redis.Redis(connection_pool=redis_client.connection_pool))


def level(store: Worker) -> float:
    """The fleet's budget level as *store*'s worker reads it (pending refunds counted)."""
    found = stats(POLICY, store=store).budget_level
    assert found is not None
    return found


def drain(theirs: Worker) -> None:
    """The other worker's calls fail and retry until the bucket refuses them."""

    @rp.retry(POLICY, store=theirs)
    def flaky() -> None:
        raise ConnectionRefusedError

    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            flaky()
    assert level(theirs) == 0.0


def test_a_worker_that_never_retried_refunds_a_bucket_others_drained(
    mine: Worker, theirs: Worker, instant: rp.testing.Instant
) -> None:
    """The report's reproduction: another worker drains the shared bucket, then this worker's
    40 first-try successes give back 40 tokens (the bucket's 20, capped)."""

    @rp.retry(POLICY, store=mine)
    def ok() -> int:
        return 1

    drain(theirs)
    for _ in range(40):
        ok()
    assert level(mine) == 20.0
    assert level(theirs) >= 15.0  # what went to Redis; the last few are still pending here


def test_a_shared_default_store_is_refunded_too(
    mine: Worker, theirs: Worker, instant: rp.testing.Instant
) -> None:
    """A call path built before a shared store became the process's default (``use_store``)
    refunds the fleet's bucket through it, though no call path was given a shared store and
    no guard here saw a bucket below capacity."""
    RUNTIME.unfull.discard(FLEET)

    @rp.retry(POLICY)
    def ok() -> int:
        return 1

    theirs.budget(KEY, POLICY.budget, 0.0, -20.0)  # type: ignore[arg-type] # drained
    assert not RUNTIME.unfull
    with rp.stores.use_store(mine):
        for _ in range(40):
            ok()
    assert level(mine) == 20.0


def test_an_async_worker_refunds_the_fleet_awaiting_the_store(
    mine: Worker, theirs: Worker, instant: rp.testing.Instant
) -> None:
    """The same through a coroutine function: the refunds are awaited (``redis.asyncio``),
    never a blocking step on the event loop."""

    @rp.retry(POLICY, store=mine)
    async def ok() -> int:
        return 1

    async def main() -> None:
        for _ in range(40):
            await ok()

    drain(theirs)
    asyncio.run(main())
    assert (mine.sync, mine.awaited > 0) == (0, True)
    assert level(mine) == 20.0


def test_a_bucket_seen_full_is_checked_again_within_a_second(mine: Worker, theirs: Worker) -> None:
    """A worker that saw the bucket full drops first-try refunds for ``_RECHECK`` seconds (no
    round trip), then its next success learns the bucket was drained, and refunds flow."""
    now = [1_000.0]

    @rp.retry(POLICY, store=mine, wall_clock=lambda: now[0])
    def ok() -> int:
        return 1

    ok()  # sees the bucket full
    theirs.budget(KEY, POLICY.budget, now[0], -20.0)  # type: ignore[arg-type] # another drains it
    for _ in range(10):
        ok()
    assert theirs.budget(KEY, POLICY.budget, now[0], 0.0).level == 0.0  # type: ignore[arg-type]
    now[0] += 1.0
    for _ in range(10):
        ok()
    assert level(mine) == 10.0


def via_attempts(store: Worker, server: FakeEUGPT, n: int) -> None:
    for _ in range(n):
        for attempt in rp.attempts(POLICY, store=store):
            with attempt:
                pass


def via_requests(store: Worker, server: FakeEUGPT, n: int) -> None:
    with requests.Session() as session:
        session.mount("http://", RetryAdapter(POLICY, store=store))
        for _ in range(n):
            assert session.post(server.responses_url, json={"input": "hi"}).status_code == 200


def via_async_httpx(store: Worker, server: FakeEUGPT, n: int) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(transport=AsyncRetryTransport(POLICY, store=store)) as c:
            for _ in range(n):
                assert (await c.post(server.responses_url, json={"input": "hi"})).status_code == 200

    asyncio.run(main())


PATHS: dict[str, Callable[[Worker, FakeEUGPT, int], Any]] = {
    "attempts": via_attempts,
    "requests": via_requests,
    "async_httpx": via_async_httpx,
}


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fake EU GPT server answering 200 to every request."""
    with FakeEUGPT() as srv:
        yield srv


@pytest.mark.parametrize("path", PATHS)
def test_every_call_path_refunds_the_fleet(
    path: str, mine: Worker, theirs: Worker, server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """``rp.attempts``, the requests adapter and httpx's async transport (its direct first
    attempt) refund a bucket another worker drained, as the decorator does; the async
    transport awaits the store."""
    drain(theirs)
    PATHS[path](mine, server, 40)
    assert level(mine) == 20.0
    if path == "async_httpx":
        assert mine.sync == 1  # level()'s read: the refunds were all awaited


def test_a_healthy_worker_makes_few_round_trips(mine: Worker, theirs: Worker) -> None:
    """1,000 successes over 2 s against a full bucket make at most a round trip a second;
    another worker drains it, and a second later 100 more make one round trip to learn it
    and then one per batch of refunds that pays for a retry (5 first tries), refilling it."""
    now = [1_000.0]
    budget = rp.RetryBudget(capacity=500, refill_rate=0)
    policy = POLICY.evolve(budget=budget)

    @rp.retry(policy, store=mine, wall_clock=lambda: now[0])
    def ok() -> int:
        now[0] += 0.002
        return 1

    for _ in range(1_000):
        ok()
    assert mine.sync <= 3  # the first look, then one a second
    theirs.budget(KEY, budget, now[0], -100.0)
    now[0] += 1.0
    before = mine.sync
    for _ in range(100):
        ok()
    assert mine.sync - before <= 100 // 5 + 2
    assert theirs.budget(KEY, budget, now[0], 0.0).level >= 495.0  # the last batch may pend


def test_a_call_path_with_a_shared_store_costs_the_others_nothing(mine: Worker) -> None:
    """A call path given a shared store of its own knows that its successes have news for
    the fleet (``Retrier.news``); the process is not marked for it, so the in-process call
    paths beside it keep their first-try success as it was: no store, no guard asked."""
    rp.testing.reset()

    @rp.retry(POLICY, store=mine)
    def shared() -> int:
        return 1

    @rp.retry(rp.EUGPT)
    def local() -> int:
        return 1

    assert not RUNTIME.unfull
    assert local() == 1
    assert not RUNTIME.guards  # the in-process path's success asked no guard
    assert shared() == 1
    assert RUNTIME.guards  # the shared path's success went to its guard
