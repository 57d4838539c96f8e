"""A shared store never blocks the event loop: async call paths await its steps.

A Redis address whose listener accepts connections and never answers: every store step
waits for its socket timeout, then falls back to the in-process store. Three retried calls
— through the async httpx transport, the aiohttp middleware and the async decorator — run
beside a 10 ms ticker on the same event loop; the ticker never falls behind by more than
``BOUND``. The control shows the test can fail: the same step called on the loop itself
holds the ticker back for the whole socket timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Final

import aiohttp
import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import retrypolicy as rp
from retrypolicy.stores import RedisStore, Store
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_aiohttp import RetryMiddleware
from retrypolicy_httpx import AsyncRetryTransport

PERIOD: Final = 0.01
"""The ticker's period: 10 ms."""
SOCKET_TIMEOUT: Final = 0.5
"""How long a store step waits for the silent Redis: a step run on the loop stalls it so long."""
BOUND: Final = 0.3
"""The most the ticker may fall behind: generous for a loaded machine, well below one step."""
POLICY: Final = rp.EUGPT.evolve(name="never-blocks")
"""The default budget: a retry pays (one store step), the success after it refunds (another)."""
BODY: Final = {"model": "auto", "input": "hi"}


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts every connection and never writes a byte."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)  # the accept loop looks at the stop flag this often
        self.port: int = self._socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-redis", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.accepted.append(self._socket.accept()[0])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def hung_store() -> Iterator[tuple[RedisStore, SilentListener]]:
    """A ``RedisStore`` whose Redis accepts and never answers, tried again at every step."""
    listener = SilentListener()
    client = redis.Redis(
        host="127.0.0.1",
        port=listener.port,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0),  # one step, one timeout (redis-py retries 3 more times)
    )
    try:
        yield RedisStore(client, prefix="never-blocks", retry_every=0.0), listener
    finally:
        client.close()
        listener.close()


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fresh fake EU GPT server."""
    with FakeEUGPT() as srv:
        yield srv


class Ticker:
    """Ticks every ``PERIOD`` on the running loop, and records the gaps between ticks."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.ticked = asyncio.Event()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self.stop.is_set():
            await asyncio.sleep(PERIOD)  # the instrument: how late does this wake up?
            now = loop.time()
            self.gaps.append(now - last)
            last = now
            self.ticked.set()

    @property
    def lag(self) -> float:
        """The most the ticker fell behind its period."""
        return max(self.gaps) - PERIOD


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[Ticker]:
    """A ticker running beside the block, from its first tick to a tick after the block."""
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    await ticker.ticked.wait()
    try:
        yield ticker
    finally:
        ticker.ticked.clear()
        await ticker.ticked.wait()  # the gap that spans the end of the block is counted
        ticker.stop.set()
        await task


Send = Callable[[], Awaitable[int]]
"""One retried POST; its final status."""


# Each path opens its client before the ticker starts (httpx builds its TLS context then,
# which is the client's own start-up, not a store step) and yields the call to time.


@contextlib.asynccontextmanager
async def via_httpx(url: str, store: Store) -> AsyncIterator[Send]:
    transport = AsyncRetryTransport(POLICY, store=store)
    async with httpx.AsyncClient(transport=transport, timeout=10) as c:

        async def send() -> int:
            return (await c.post(url, json=BODY)).status_code

        yield send


@contextlib.asynccontextmanager
async def via_aiohttp(url: str, store: Store) -> AsyncIterator[Send]:
    middleware = RetryMiddleware(POLICY, store=store)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as s:

        async def send() -> int:
            async with s.post(url, json=BODY) as r:
                await r.read()
                return r.status

        yield send


@contextlib.asynccontextmanager
async def via_decorator(url: str, store: Store) -> AsyncIterator[Send]:
    async with httpx.AsyncClient(timeout=10) as c:

        @rp.retry(POLICY, store=store)
        async def post() -> httpx.Response:
            return await c.post(url, json=BODY)

        async def send() -> int:
            return (await post()).status_code

        yield send


PATHS: Final[dict[str, Callable[[str, Store], contextlib.AbstractAsyncContextManager[Send]]]] = {
    "httpx-async": via_httpx,
    "aiohttp": via_aiohttp,
    "async-decorator": via_decorator,
}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_hung_redis_never_stalls_the_event_loop(
    path: str, hung_store: tuple[RedisStore, SilentListener], server: FakeEUGPT
) -> None:
    """A retried call whose store steps each wait out a silent Redis leaves a 10 ms ticker
    on the same loop on time: the steps ran off the loop."""
    store, listener = hung_store
    url = server.responses_url
    server.script(Reply.error(503), Reply.ok(), Reply.error(503), Reply.ok())

    async def main() -> tuple[int, float, Ticker]:
        # warm-up, not timed: a path's first call imports and builds things (the client's
        # backends, the log handler, the worker threads); the ticker times store steps
        async with PATHS[path](url, rp.stores.InProcessStore()) as warm:
            assert await warm() == 200
        await asyncio.to_thread(int)
        async with PATHS[path](url, store) as send, ticking() as ticker:
            started = time.monotonic()
            status = await send()
            took = time.monotonic() - started
        return status, took, ticker

    with rp.testing.instant():
        status, took, ticker = asyncio.run(main())
    assert status == 200
    assert server.request_count == 4
    # the steps really went to the silent Redis and waited there: the call took that long
    assert listener.accepted
    assert not store.available
    assert took >= SOCKET_TIMEOUT
    assert ticker.lag < BOUND, f"{path}: the ticker fell {ticker.lag:.3f} s behind"


def test_a_step_on_the_loop_stalls_it(hung_store: tuple[RedisStore, SilentListener]) -> None:
    """The control: the store's sync ``budget()`` called on the loop holds the ticker back
    beyond the bound (so the test above would catch a step run on the loop)."""
    store, _ = hung_store

    async def main() -> Ticker:
        async with ticking() as ticker:
            store.budget("never-blocks:budget", rp.RetryBudget(), time.time(), -5.0)
        return ticker

    ticker = asyncio.run(main())
    assert ticker.lag >= SOCKET_TIMEOUT - PERIOD > BOUND
