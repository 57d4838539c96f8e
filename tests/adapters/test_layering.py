"""An @rp.retry around code that uses a retrying adapter: the attempts add up, never multiply."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
from retrypolicy_requests import RetryAdapter
from retrypolicy_urllib3 import PolicyRetry

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fresh fake EU GPT server."""
    with FakeEUGPT() as srv:
        yield srv


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A requests session with the adapter mounted, closed after the test."""
    with requests.Session() as s:
        s.mount("http://", RetryAdapter(FAST))
        yield s


def test_raise_for_status_after_the_adapter_gave_up(
    server: FakeEUGPT, session: requests.Session, instant: rp.testing.Instant
) -> None:
    """A 503 the adapter already retried 5 times is not retried again by the decorator."""
    server.script(*[Reply.error(503)] * 50)
    s = session

    @rp.retry(FAST)
    def ask() -> object:
        r = s.post(server.responses_url, json={"input": "hi", "stream": False}, timeout=5)
        r.raise_for_status()
        return r.json()

    with pytest.raises(requests.HTTPError):
        ask()
    assert server.request_count == 6  # not 6 x 6


def test_connection_failure_after_the_adapter_gave_up(instant: rp.testing.Instant) -> None:
    """A refused connection the adapter retried to its limit is raised at once by the decorator."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    starts: list[int] = []

    @rp.retry(FAST)
    def ask() -> object:
        with requests.Session() as s:
            adapter = RetryAdapter(FAST, before_attempt=lambda e: starts.append(e.attempt))
            s.mount("http://", adapter)
            return s.post(f"http://127.0.0.1:{port}/v1/responses", json={}, timeout=5)

    with pytest.raises(requests.ConnectionError) as info:
        ask()
    assert len(starts) == 6
    assert getattr(info.value, rp.transport.EXHAUSTED) is True


def test_stream_error_first_event_after_adapter_gave_up(
    server: FakeEUGPT, session: requests.Session, instant: rp.testing.Instant
) -> None:
    """A stream that failed before content on every attempt was retried inside the adapter:
    the decorator does not start the whole exchange again."""
    server.script(*[Reply.stream(0, end="error", code="upstream_timeout")] * 50)
    s = session

    @rp.retry(FAST)
    def consume() -> int:
        with s.post(server.responses_url, json={"input": "hi"}, stream=True, timeout=5) as r:
            return sum(1 for _ in r.iter_lines())

    with pytest.raises(rp.StreamError):
        consume()
    assert server.request_count == 4  # the adapter's 1 + 3, and no more


def test_late_stream_error_still_restarts_the_exchange(
    server: FakeEUGPT, session: requests.Session, instant: rp.testing.Instant
) -> None:
    """An error after content reached the caller is fresh: the decorator retries the exchange."""
    server.script(*[Reply.stream(2, end="error", code="upstream_error")] * 2)
    s = session

    @rp.retry(FAST)
    def consume() -> int:
        with s.post(server.responses_url, json={"input": "hi"}, stream=True, timeout=5) as r:
            return sum(1 for _ in r.iter_lines())

    assert consume() > 0
    assert server.request_count == 3


def test_httpx_status_error_after_the_transport_gave_up(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """httpx: raise_for_status() on a response the transport gave up on is not retried again."""
    server.script(*[Reply.error(500)] * 50)

    @rp.retry(FAST)
    def ask() -> object:
        with httpx.Client(transport=RetryTransport(FAST)) as client:
            return client.post(server.responses_url, json={"stream": False}).raise_for_status()

    with pytest.raises(httpx.HTTPStatusError):
        ask()
    assert server.request_count == 3


def test_async_httpx_after_the_transport_gave_up(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """The same with the async transport and an async function."""
    server.script(*[Reply.error(502)] * 50)

    @rp.retry(FAST)
    async def ask() -> object:
        async with httpx.AsyncClient(transport=AsyncRetryTransport(FAST)) as client:
            r = await client.post(server.responses_url, json={"stream": False})
            return r.raise_for_status()

    with pytest.raises(httpx.HTTPStatusError):
        asyncio.run(ask())
    assert server.request_count == 6


def test_nested_decorators_add_up(instant: rp.testing.Instant) -> None:
    """An inner @rp.retry that gave up hands its exception out marked: the outer one stops."""
    calls: list[int] = []

    @rp.retry(FAST)
    def inner() -> None:
        calls.append(1)
        raise TimeoutError

    @rp.retry(FAST)
    def outer() -> None:
        inner()

    with pytest.raises(TimeoutError):
        outer()
    assert len(calls) == 3


def test_a_different_policy_outside_still_decides_for_itself(instant: rp.testing.Instant) -> None:
    """Only retryable failures are marked: what the inner policy would not retry is not."""
    inner_policy = FAST.evolve(rules=[rp.Rule(kind="fatal", retry=False, failure="timeout")])
    calls: list[int] = []

    @rp.retry(inner_policy)
    def inner() -> None:
        calls.append(1)
        raise TimeoutError

    @rp.retry(FAST)
    def outer() -> None:
        inner()

    with pytest.raises(TimeoutError):
        outer()
    assert len(calls) == 3  # the outer policy retried twice what the inner one would not


def test_urllib3_pool_inside_retry_adds_up(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """urllib3: a PoolManager(retries=PolicyRetry) inside @rp.retry hits an always-503 server
    1 + the unavailable limit times: the final response comes back marked."""
    server.script(*[Reply.error(503)] * 50)
    pm = urllib3.PoolManager(retries=PolicyRetry(FAST))

    @rp.retry(FAST)
    def ask() -> urllib3.BaseHTTPResponse:
        return pm.request("POST", server.responses_url, json={"stream": False})

    assert ask().status == 503
    assert server.request_count == 1 + FAST.classify(503).max_retries


def test_urllib3_in_requests_adapter_closed_port_adds_up(instant: rp.testing.Instant) -> None:
    """urllib3: HTTPAdapter(max_retries=PolicyRetry) inside @rp.retry against a closed port makes
    1 + the connection limit attempts, not their square (it made 36)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    starts: list[int] = []
    retry = PolicyRetry(FAST, before_attempt=lambda e: starts.append(e.attempt))

    @rp.retry(FAST)
    def ask() -> object:
        with requests.Session() as s:
            s.mount("http://", HTTPAdapter(max_retries=retry))
            return s.post(f"http://127.0.0.1:{port}/v1/responses", json={}, timeout=5)

    with pytest.raises(requests.ConnectionError):
        ask()
    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert len(starts) == 1 + FAST.classify(exception=refused).max_retries


def test_urllib3_in_requests_adapter_503_adds_up(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """urllib3: HTTPAdapter(max_retries=PolicyRetry) inside @rp.retry against an always-503
    server, raise_for_status() in the function: 1 + the unavailable limit hits."""
    server.script(*[Reply.error(503)] * 50)

    @rp.retry(FAST)
    def ask() -> None:
        with requests.Session() as s:
            s.mount("http://", HTTPAdapter(max_retries=PolicyRetry(FAST)))
            s.post(server.responses_url, json={}, timeout=5).raise_for_status()

    with pytest.raises(requests.HTTPError):
        ask()
    assert server.request_count == 1 + FAST.classify(503).max_retries
