"""Every adapter takes every ``AdapterKeywords`` key, and each key takes effect.

The table is adapters by keys. One driver per adapter sends one POST to the fake EU GPT
server through an adapter built with the keywords under test, and returns the final
status or the exception; one probe per key scripts the server, runs the driver and shows
that the key made the difference — against a run without it where the difference is not
obvious. Where a key cannot apply to an adapter by its nature (``sleep`` on an async
adapter, ...), the cell says why and shows the keyword is still accepted: no cell is
skipped silently.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import httpx
import httpx2
import openai
import pytest
import requests
import urllib3

import retrypolicy as rp
import retrypolicy_httpx.httpx2 as rp_httpx2
import retrypolicy_openai
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy.transport import AdapterKeywords
from retrypolicy_aiohttp import RetryMiddleware
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
from retrypolicy_requests import RetryAdapter
from retrypolicy_urllib3 import PolicyRetry, guard_stream

POLICY: Final = rp.EUGPT.evolve(name="keywords", backoff=rp.Backoff(jitter="none"), max_attempts=3)
"""Waits of 0.5 s, 1 s (no jitter), three attempts at most, the default budget."""
JITTERED: Final = POLICY.evolve(backoff=rp.Backoff(jitter="full"))
BODY: Final = {"model": "auto", "input": "hi"}
TIMEOUT: Final = 10.0
API_KEY: Final = "eugpt_keywords"


@dataclass
class Result:
    """What the caller ended with: the final status, or what was raised."""

    status: int | None = None
    error: BaseException | None = None


Keywords = Mapping[str, Any]


# -- one driver per adapter ------------------------------------------------------------------
# drive(url, keywords, policy, stream): one POST, the body read to its end (through the
# adapter's stream check), the status or the exception. build(keywords): the adapter alone.


def _requests(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    with requests.Session() as s:
        s.mount("http://", RetryAdapter(policy, **kw))
        try:
            r = s.post(url, json=BODY, timeout=TIMEOUT)
        except Exception as e:  # noqa: BLE001 - the driver reports what the caller got
            return Result(error=e)
        return Result(status=r.status_code)


def _httpx(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    with httpx.Client(transport=RetryTransport(policy, **kw), timeout=TIMEOUT) as c:
        try:
            r = c.post(url, json=BODY)
        except Exception as e:  # noqa: BLE001
            return Result(error=e)
        return Result(status=r.status_code)


def _httpx_async(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    async def main() -> Result:
        transport = AsyncRetryTransport(policy, **kw)
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as c:
            try:
                r = await c.post(url, json=BODY)
            except Exception as e:  # noqa: BLE001
                return Result(error=e)
            return Result(status=r.status_code)

    return asyncio.run(main())


def _httpx2(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    with httpx2.Client(transport=rp_httpx2.RetryTransport(policy, **kw), timeout=TIMEOUT) as c:
        try:
            r = c.post(url, json=BODY)
        except Exception as e:  # noqa: BLE001
            return Result(error=e)
        return Result(status=r.status_code)


def _httpx2_async(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    async def main() -> Result:
        transport = rp_httpx2.AsyncRetryTransport(policy, **kw)
        async with httpx2.AsyncClient(transport=transport, timeout=TIMEOUT) as c:
            try:
                r = await c.post(url, json=BODY)
            except Exception as e:  # noqa: BLE001
                return Result(error=e)
            return Result(status=r.status_code)

    return asyncio.run(main())


def _urllib3(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    with urllib3.PoolManager(retries=PolicyRetry(policy, **kw), timeout=TIMEOUT) as pool:
        try:
            r = pool.request("POST", url, json=BODY, preload_content=False)
            if r.status < 400:
                for _ in guard_stream(r):
                    pass
            else:  # the caller releases a preload_content=False response
                r.drain_conn()
        except Exception as e:  # noqa: BLE001
            return Result(error=e)
        return Result(status=r.status)


def _aiohttp(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    async def main() -> Result:
        middleware = RetryMiddleware(policy, **kw)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(middlewares=(middleware,), timeout=timeout) as s:
            try:
                async with s.post(url, json=BODY) as r:
                    await r.read()
                    return Result(status=r.status)
            except Exception as e:  # noqa: BLE001
                return Result(error=e)

    return asyncio.run(main())


def _base_url(url: str) -> str:
    return url.removesuffix("/responses")


def _openai(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    with retrypolicy_openai.client(policy, api_key=API_KEY, base_url=_base_url(url), **kw) as c:
        try:
            if stream:
                for _ in c.responses.create(model="auto", input="hi", stream=True):
                    pass
            else:
                c.responses.create(model="auto", input="hi")
        except openai.APIStatusError as e:  # the SDK raises for a final error status
            return Result(status=e.status_code)
        except Exception as e:  # noqa: BLE001
            return Result(error=e)
        return Result(status=200)


def _openai_async(url: str, kw: Keywords, policy: rp.Policy, stream: bool) -> Result:
    async def main() -> Result:
        base = _base_url(url)
        async with retrypolicy_openai.async_client(
            policy, api_key=API_KEY, base_url=base, **kw
        ) as c:
            try:
                if stream:
                    async for _ in await c.responses.create(model="auto", input="hi", stream=True):
                        pass
                else:
                    await c.responses.create(model="auto", input="hi")
            except openai.APIStatusError as e:
                return Result(status=e.status_code)
            except Exception as e:  # noqa: BLE001
                return Result(error=e)
            return Result(status=200)

    return asyncio.run(main())


def _build_openai(kw: Keywords) -> object:
    retrypolicy_openai.client(
        POLICY, api_key=API_KEY, base_url="http://127.0.0.1:9/v1", **kw
    ).close()
    return True


def _build_openai_async(kw: Keywords) -> object:
    async def main() -> None:
        client = retrypolicy_openai.async_client(
            POLICY, api_key=API_KEY, base_url="http://127.0.0.1:9/v1", **kw
        )
        await client.close()

    asyncio.run(main())
    return True


@dataclass(frozen=True)
class Adapter:
    """One adapter: how to build it with keywords, how to send one request through it."""

    build: Callable[[Keywords], object]
    drive: Callable[[str, Keywords, rp.Policy, bool], Result]
    is_async: bool

    def send(
        self, url: str, policy: rp.Policy = POLICY, *, stream: bool = False, **kw: Any
    ) -> Result:
        """One POST to *url* through the adapter built with *policy* and keywords *kw*."""
        return self.drive(url, kw, policy, stream)


ADAPTERS: Final[dict[str, Adapter]] = {
    "requests": Adapter(lambda kw: RetryAdapter(POLICY, **kw), _requests, is_async=False),
    "httpx": Adapter(lambda kw: RetryTransport(POLICY, **kw), _httpx, is_async=False),
    "httpx-async": Adapter(
        lambda kw: AsyncRetryTransport(POLICY, **kw), _httpx_async, is_async=True
    ),
    "httpx2": Adapter(lambda kw: rp_httpx2.RetryTransport(POLICY, **kw), _httpx2, is_async=False),
    "httpx2-async": Adapter(
        lambda kw: rp_httpx2.AsyncRetryTransport(POLICY, **kw), _httpx2_async, is_async=True
    ),
    "urllib3": Adapter(lambda kw: PolicyRetry(POLICY, **kw), _urllib3, is_async=False),
    "aiohttp": Adapter(lambda kw: RetryMiddleware(POLICY, **kw), _aiohttp, is_async=True),
    "openai": Adapter(_build_openai, _openai, is_async=False),
    "openai-async": Adapter(_build_openai_async, _openai_async, is_async=True),
}


# -- one probe per key -----------------------------------------------------------------------


def play(server: FakeEUGPT, *replies: Reply) -> None:
    """The server answers the next requests with *replies* (and forgets what it saw)."""
    server.clear()
    server.script(*replies)


def probe_raise_on_give_up(a: Adapter, server: FakeEUGPT) -> None:
    """Given up on, the final 503 becomes the ``rp.APIError`` instead of a response."""
    with rp.testing.instant():
        play(server, *[Reply.error(503)] * 3)
        assert a.send(server.responses_url).status == 503
        play(server, *[Reply.error(503)] * 3)
        error = a.send(server.responses_url, raise_on_give_up=True).error
    assert isinstance(error, rp.APIError), error  # through the openai SDK too, unwrapped
    assert (error.status, error.kind, error.attempts) == (503, "unavailable", 3)
    assert server.request_count == 3


def probe_methods(a: Adapter, server: FakeEUGPT) -> None:
    """A POST is retried with ``methods="post"`` and not with ``methods={"GET"}``."""
    with rp.testing.instant():
        play(server, Reply.error(503), Reply.ok())
        assert a.send(server.responses_url, methods={"GET"}).status == 503
        assert server.request_count == 1
        play(server, Reply.error(503), Reply.ok())
        assert a.send(server.responses_url, methods="post").status == 200
        assert server.request_count == 2


def probe_preamble(a: Adapter, server: FakeEUGPT) -> None:
    """With the deltas declared preamble, an error after them is retried transparently;
    with the default preamble they commit the stream and the error reaches the caller."""
    # the events come apart (20 ms between them): the deltas reach the adapter before the error
    failing = Reply.stream(2, end="error", code="upstream_error", interval=0.02)
    custom = {"response.created", "response.output_text.delta"}
    with rp.testing.instant():
        play(server, failing, Reply.stream(2))
        retried = a.send(server.responses_url, stream=True, preamble=custom)
        assert (retried.status, retried.error, server.request_count) == (200, None, 2)
        play(server, failing, Reply.stream(2))
        committed = a.send(server.responses_url, stream=True)
    error = committed.error
    assert isinstance(error, rp.StreamError), committed
    assert error.code == "upstream_error"
    assert server.request_count == 1


def _hooked(a: Adapter, server: FakeEUGPT, key: str, *replies: Reply) -> list[RetryEvent]:
    """The events *key*'s hook received for one request answered by *replies*."""
    seen: list[RetryEvent] = []
    with rp.testing.instant():
        play(server, *replies)
        a.drive(server.responses_url, {key: seen.append}, POLICY, False)
    return seen


def probe_on_retry(a: Adapter, server: FakeEUGPT) -> None:
    """``on_retry`` gets the ``retry.scheduled`` event of the 503 retried."""
    seen = _hooked(a, server, "on_retry", Reply.error(503), Reply.ok())
    assert [(e.name, e.status, e.attempt, e.delay) for e in seen] == [
        ("retry.scheduled", 503, 1, 0.5)
    ]


def probe_on_give_up(a: Adapter, server: FakeEUGPT) -> None:
    """``on_give_up`` gets the ``retry.gave_up`` event of the last 503."""
    seen = _hooked(a, server, "on_give_up", *[Reply.error(503)] * 3)
    assert [(e.name, e.status, e.attempt) for e in seen] == [("retry.gave_up", 503, 3)]


def probe_on_success(a: Adapter, server: FakeEUGPT) -> None:
    """``on_success`` gets the ``retry.succeeded`` event of a success after a retry."""
    seen = _hooked(a, server, "on_success", Reply.error(503), Reply.ok())
    assert [(e.name, e.attempt) for e in seen] == [("retry.succeeded", 2)]


def probe_before_attempt(a: Adapter, server: FakeEUGPT) -> None:
    """``before_attempt`` hears of both attempts, numbered."""
    seen = _hooked(a, server, "before_attempt", Reply.error(503), Reply.ok())
    assert [(e.name, e.attempt) for e in seen] == [("retry.attempt", 1), ("retry.attempt", 2)]


def probe_clock(a: Adapter, server: FakeEUGPT) -> None:
    """An event's ``elapsed`` is read from the given clock (500 s pass between its ticks)."""
    ticks = iter([1_000.0])
    seen: list[RetryEvent] = []
    with rp.testing.instant():
        play(server, Reply.error(503), Reply.ok())
        sent = a.send(
            server.responses_url, clock=lambda: next(ticks, 1_500.0), on_retry=seen.append
        )
    assert sent.status == 200
    assert [e.elapsed for e in seen] == [pytest.approx(500.0)]


# 978307210 is this moment in Unix seconds: in the past for the real clock
HTTP_DATE: Final = "Mon, 01 Jan 2001 00:00:10 GMT"


def probe_wall_clock(a: Adapter, server: FakeEUGPT) -> None:
    """A ``Retry-After`` HTTP-date is read against the given wall clock (3 s ahead of it);
    against the real clock the date is long past and the backoff's 0.5 s applies."""
    waits = []
    for wall in (lambda: 978_307_210.0 - 3.0, None):
        with rp.testing.instant() as clock:
            play(server, Reply.error(503, retry_after=HTTP_DATE), Reply.ok())
            assert a.send(server.responses_url, wall_clock=wall).status == 200
        waits.append(clock.waits)
    assert waits == [[pytest.approx(3.0)], [0.5]]


def probe_sleep(a: Adapter, server: FakeEUGPT) -> None:
    """Outside instant mode the given sleeper makes the decided wait (and returns at once)."""
    slept: list[float] = []
    seen: list[RetryEvent] = []
    play(server, Reply.error(503), Reply.ok())
    assert a.send(server.responses_url, sleep=slept.append, on_retry=seen.append).status == 200
    assert slept == [e.delay for e in seen] == [0.5]


def probe_async_sleep(a: Adapter, server: FakeEUGPT) -> None:
    """Outside instant mode the given async sleeper makes the decided wait."""
    slept: list[float] = []
    seen: list[RetryEvent] = []

    async def sleeper(seconds: float) -> None:
        slept.append(seconds)

    play(server, Reply.error(503), Reply.ok())
    sent = a.send(server.responses_url, async_sleep=sleeper, on_retry=seen.append)
    assert sent.status == 200
    assert slept == [e.delay for e in seen] == [0.5]


def probe_rng(a: Adapter, server: FakeEUGPT) -> None:
    """The same seed draws the same jittered waits; another seed draws others."""

    def waits(seed: int) -> list[float]:
        with rp.testing.instant() as clock:
            play(server, Reply.error(503), Reply.error(503), Reply.ok())
            assert a.send(server.responses_url, JITTERED, rng=random.Random(seed)).status == 200
        return clock.waits

    first, again, other = waits(7), waits(7), waits(8)
    assert len(first) == 2
    assert first == again
    assert first != other


def probe_store(a: Adapter, server: FakeEUGPT) -> None:
    """The retry's budget is paid in the given store; without ``store=``, in the default one."""
    given = rp.stores.InProcessStore()

    def allowed(store: rp.stores.Store | None) -> int:
        return rp.stores.stats(POLICY, store=store).counters["retries_allowed"]

    with rp.testing.instant():
        play(server, Reply.error(503), Reply.ok())
        assert a.send(server.responses_url, store=given).status == 200
        assert (allowed(given), allowed(None)) == (1, 0)
        play(server, Reply.error(503), Reply.ok())
        assert a.send(server.responses_url).status == 200
        assert (allowed(given), allowed(None)) == (1, 1)


PROBES: Final[dict[str, Callable[[Adapter, FakeEUGPT], None]]] = {
    "raise_on_give_up": probe_raise_on_give_up,
    "methods": probe_methods,
    "preamble": probe_preamble,
    "on_retry": probe_on_retry,
    "on_give_up": probe_on_give_up,
    "on_success": probe_on_success,
    "before_attempt": probe_before_attempt,
    "clock": probe_clock,
    "wall_clock": probe_wall_clock,
    "sleep": probe_sleep,
    "async_sleep": probe_async_sleep,
    "rng": probe_rng,
    "store": probe_store,
}

_ASYNC = [name for name, a in ADAPTERS.items() if a.is_async]
_SYNC = [name for name, a in ADAPTERS.items() if not a.is_async]

NOT_APPLICABLE: Final[dict[tuple[str, str], str]] = {
    # an async adapter waits with async_sleep: a blocking sleeper would stall its event loop
    **{(name, "sleep"): "waits are awaited: async_sleep" for name in _ASYNC},
    # a sync adapter blocks its thread to wait: it has no event loop to await on
    **{(name, "async_sleep"): "waits block the thread: sleep" for name in _SYNC},
    # urllib3 hands a Retry only statuses and headers: the body is read after urllib3 is
    # done with retries (guard_stream checks it), so a stream is never retried
    # transparently and nothing is committed early or late
    ("urllib3", "preamble"): "streams are checked after the retries, never retried",
    # urllib3 tells a Retry nothing about a success: no retry.succeeded (PolicyRetry's doc)
    ("urllib3", "on_success"): "urllib3 never reports a success to its Retry",
}


async def _async_sleeper(seconds: float) -> None:
    """An async sleeper that does not wait (for the not-applicable rows)."""


SAMPLES: Final[dict[str, object]] = {
    "sleep": lambda seconds: None,
    "async_sleep": _async_sleeper,
    "preamble": {"response.created"},
    "on_success": lambda event: None,
}
"""A value of each key that has a not-applicable row, to show it is accepted."""


@pytest.fixture(scope="module")
def server() -> Iterator[FakeEUGPT]:
    """One fake EU GPT server for the table (each probe clears it: see ``play``)."""
    with FakeEUGPT() as srv:
        yield srv


def test_the_table_covers_every_key() -> None:
    """The probes are exactly the keys of ``AdapterKeywords``: a new key needs a probe."""
    keys = AdapterKeywords.__required_keys__ | AdapterKeywords.__optional_keys__
    assert set(PROBES) == keys
    assert {key for _, key in NOT_APPLICABLE} <= keys
    assert {name for name, _ in NOT_APPLICABLE} <= set(ADAPTERS)
    assert set(SAMPLES) == {key for _, key in NOT_APPLICABLE}


CELLS: Final = list(itertools.product(ADAPTERS, PROBES))


@pytest.mark.parametrize(("adapter", "key"), CELLS, ids=[f"{a}-{k}" for a, k in CELLS])
def test_every_adapter_takes_every_keyword(adapter: str, key: str, server: FakeEUGPT) -> None:
    """The keyword is accepted by the adapter and takes effect (or, where it cannot apply
    by the adapter's nature, is accepted all the same)."""
    a = ADAPTERS[adapter]
    if (adapter, key) in NOT_APPLICABLE:
        assert a.build({key: SAMPLES[key]}) is not None  # accepted: constructing does not raise
        return
    PROBES[key](a, server)
