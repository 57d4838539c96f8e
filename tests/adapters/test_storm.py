"""Storm protection through every adapter: the budget, the limiter and the breaker come
with the seam.

Each adapter drives ``transport.AttemptLoop``; none has a line of its own for the budget,
the limiter or the breaker. Against the fake server playing 503s: a small budget stops
the retries of the second request, and an open breaker fails the next request fast with
``rp.CircuitOpenError`` before anything is sent (urllib3 excepted: its ``Retry`` is
consulted only after the first attempt, so there the first attempt goes out and the
breaker stops the retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import requests
import urllib3

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_aiohttp import RetryMiddleware
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
from retrypolicy_requests import RetryAdapter
from retrypolicy_urllib3 import PolicyRetry

BASE = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))
SMALL_BUDGET = BASE.evolve(
    name="small", budget=rp.RetryBudget(capacity=10, retry_cost=5, refill_rate=0)
)
BREAKER = BASE.evolve(name="guarded", breaker=rp.CircuitBreaker(min_calls=2, open_for=60.0))


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fresh fake EU GPT server."""
    with FakeEUGPT() as srv:
        yield srv


def via_requests(policy: rp.Policy, url: str) -> int:
    with requests.Session() as s:
        s.mount("http://", RetryAdapter(policy))
        return s.post(url, json={"input": "hi"}).status_code


def via_httpx(policy: rp.Policy, url: str) -> int:
    with httpx.Client(transport=RetryTransport(policy)) as c:
        return c.post(url, json={"input": "hi"}).status_code


def via_async_httpx(policy: rp.Policy, url: str) -> int:
    async def go() -> int:
        async with httpx.AsyncClient(transport=AsyncRetryTransport(policy)) as c:
            return (await c.post(url, json={"input": "hi"})).status_code

    return asyncio.run(go())


def via_aiohttp(policy: rp.Policy, url: str) -> int:
    async def go() -> int:
        async with (
            aiohttp.ClientSession(middlewares=(RetryMiddleware(policy),)) as s,
            s.post(url, json={"input": "hi"}) as r,
        ):
            await r.read()
            return r.status

    return asyncio.run(go())


def via_urllib3(policy: rp.Policy, url: str) -> int:
    with urllib3.PoolManager(retries=PolicyRetry(policy)) as pool:
        return pool.request("POST", url, json={"input": "hi"}).status


def via_decorator(policy: rp.Policy, url: str) -> int:
    @rp.retry(policy)
    def post() -> requests.Response:
        return requests.post(url, json={"input": "hi"}, timeout=10)

    return post().status_code


ADAPTERS: dict[str, Callable[[rp.Policy, str], int]] = {
    "requests": via_requests,
    "httpx": via_httpx,
    "httpx-async": via_async_httpx,
    "aiohttp": via_aiohttp,
    "urllib3": via_urllib3,
    "decorator": via_decorator,
}


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_the_budget_applies_through_every_adapter(
    server: FakeEUGPT, instant: rp.testing.Instant, adapter: str, events: list[Any]
) -> None:
    """A budget for two retries: the first request makes them, the second none; the give-up
    says the budget ran out."""
    send = ADAPTERS[adapter]
    server.script(*[Reply.error(503)] * 10)
    assert send(SMALL_BUDGET, server.responses_url) == 503
    assert server.request_count == 3
    assert send(SMALL_BUDGET, server.responses_url) == 503
    assert server.request_count == 4
    gave_up = [e for e in events if e.name == "retry.gave_up"]
    assert "retry budget exhausted" in gave_up[-1].reason
    assert gave_up[-1].kind == "unavailable"
    assert [e.name for e in events].count("budget.exhausted") == 1


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_the_breaker_applies_through_every_adapter(
    server: FakeEUGPT, instant: rp.testing.Instant, adapter: str
) -> None:
    """Two failures open the host's breaker; the next request fails fast, nothing sent."""
    send = ADAPTERS[adapter]
    server.script(*[Reply.error(503)] * 10)
    assert send(BREAKER, server.responses_url) == 503  # the breaker opened: no more retries
    assert server.request_count == 2
    host = "" if adapter == "decorator" else "127.0.0.1"
    assert BREAKER.stats().breakers == {host: "open"}
    if adapter == "urllib3":  # urllib3 asks its Retry only after the first attempt
        assert send(BREAKER, server.responses_url) == 503
        assert server.request_count == 3
        return
    with pytest.raises(rp.CircuitOpenError) as caught:
        send(BREAKER, server.responses_url)
    assert server.request_count == 2
    assert 0 < caught.value.retry_in <= 60.0
    assert caught.value.host == host


def test_the_limiter_paces_an_adapter(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """After a 429 the adapter's next attempts wait for their slot (begin() returns the wait)."""
    policy = BASE.evolve(name="paced", limiter=rp.AdaptiveLimiter(initial_rate=0.5))
    server.script(Reply.error(429), Reply.ok())
    with requests.Session() as s:
        s.mount("http://", RetryAdapter(policy, wall_clock=lambda: 1_000.0))  # time stands still
        assert s.post(server.responses_url, json={"input": "hi"}).status_code == 200
    # the retry waited for the limiter's next slot, 2 s after the throttling (0.5/s):
    # its backoff, then the rest of the slot
    backoff, hold = instant.waits
    assert backoff + hold == pytest.approx(2.0)


class RecordingStore(rp.stores.InProcessStore):
    """The in-process store, recording the limiter's operations (its steps are its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.limiter_ops: list[str] = []

    def limiter(self, key: str, config: Any, now: float, op: Any, measured: float = 0.0) -> Any:
        self.limiter_ops.append(op)
        return super().limiter(key, config, now, op, measured)


class VirtualTime:
    """A clock that only the sleepers move: no test waits for real."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def paced_requests(policy: rp.Policy, url: str, **kw: Any) -> int:
    with requests.Session() as s:
        s.mount("http://", RetryAdapter(policy, **kw))
        return s.post(url, json={"input": "hi"}).status_code


def paced_httpx(policy: rp.Policy, url: str, **kw: Any) -> int:
    with httpx.Client(transport=RetryTransport(policy, **kw)) as c:
        return c.post(url, json={"input": "hi"}).status_code


def paced_async_httpx(policy: rp.Policy, url: str, **kw: Any) -> int:
    async def go() -> int:
        async with httpx.AsyncClient(transport=AsyncRetryTransport(policy, **kw)) as c:
            return (await c.post(url, json={"input": "hi"})).status_code

    return asyncio.run(go())


def paced_aiohttp(policy: rp.Policy, url: str, **kw: Any) -> int:
    async def go() -> int:
        async with (
            aiohttp.ClientSession(middlewares=(RetryMiddleware(policy, **kw),)) as s,
            s.post(url, json={"input": "hi"}) as r,
        ):
            await r.read()
            return r.status

    return asyncio.run(go())


def paced_urllib3(policy: rp.Policy, url: str, **kw: Any) -> int:
    with urllib3.PoolManager(retries=PolicyRetry(policy, **kw)) as pool:
        return pool.request("POST", url, json={"input": "hi"}).status


def paced_decorator(policy: rp.Policy, url: str, **kw: Any) -> int:
    @rp.retry(policy, **kw)
    def post() -> requests.Response:
        return requests.post(url, json={"input": "hi"}, timeout=10)

    return post().status_code


PACED: dict[str, Callable[..., int]] = {
    "requests": paced_requests,
    "httpx": paced_httpx,
    "httpx-async": paced_async_httpx,
    "aiohttp": paced_aiohttp,
    "urllib3": paced_urllib3,
    "decorator": paced_decorator,
}


@pytest.mark.parametrize("adapter", list(PACED))
def test_a_paced_attempt_confirms_its_slot_on_every_adapter(
    server: FakeEUGPT, adapter: str
) -> None:
    """After a 429 the retry waits for the limiter's slot, then has it confirmed before it
    goes (the limiter's ``confirm``): a cut meanwhile would make it wait again instead of
    spending the slot on another 429. Real waits are the adapter's own sleeper, on a
    virtual clock."""
    time = VirtualTime()
    store = RecordingStore()
    limiter = rp.AdaptiveLimiter(initial_rate=0.5, increase=0.0)
    policy = BASE.evolve(name=f"confirm-{adapter}", limiter=limiter)
    server.script(Reply.error(429, retry_after=None), Reply.ok())
    asynchronous = adapter in {"aiohttp", "httpx-async"}
    sleeper = {"async_sleep": time.async_sleep} if asynchronous else {"sleep": time.sleep}
    kw = {"store": store, "wall_clock": time, "clock": time, **sleeper}
    assert PACED[adapter](policy, server.responses_url, **kw) == 200
    assert server.request_count == 2
    assert store.limiter_ops[:3] == ["throttled", "acquire", "confirm"]
    assert sum(time.slept) == pytest.approx(2.0)  # the slot, 1 / 0.5 s after the 429
