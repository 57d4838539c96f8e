"""One suite, every transport: each row of the DESIGN.md table through requests, httpx (sync
and async), urllib3, aiohttp and the openai SDK (sync and async), against the fake EU GPT
server, counting what the server saw."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
import httpx
import httpx2
import openai
import pytest
import requests
import urllib3

import retrypolicy as rp
import retrypolicy_openai
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_aiohttp import RetryMiddleware
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
from retrypolicy_requests import RetryAdapter
from retrypolicy_urllib3 import PolicyRetry, guard_stream

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))
TIMEOUT = 0.25  # read timeout for the timeout row; the fake server delays past it


@dataclass
class Result:
    """What the caller ended with: a final status (body read through the guard) or an error."""

    status: int | None = None
    error: BaseException | None = None


def _call_requests(url: str, timeout: float) -> Result:
    with requests.Session() as s:
        s.mount("http://", RetryAdapter(FAST))
        try:
            r = s.post(url, json={"input": "hi"}, timeout=(2.0, timeout))
        except Exception as e:  # noqa: BLE001 - the matrix records what the caller got
            return Result(error=e)
        return Result(status=r.status_code)


def _call_httpx(url: str, timeout: float) -> Result:
    limits = httpx.Timeout(2.0, read=timeout)
    with httpx.Client(transport=RetryTransport(FAST), timeout=limits) as c:
        try:
            r = c.post(url, json={"input": "hi"})
        except Exception as e:  # noqa: BLE001
            return Result(error=e)
        return Result(status=r.status_code)


def _call_httpx_async(url: str, timeout: float) -> Result:
    async def main() -> Result:
        transport = AsyncRetryTransport(FAST)
        async with httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(2.0, read=timeout)
        ) as c:
            try:
                r = await c.post(url, json={"input": "hi"})
            except Exception as e:  # noqa: BLE001
                return Result(error=e)
            return Result(status=r.status_code)

    return asyncio.run(main())


def _call_urllib3(url: str, timeout: float) -> Result:
    with urllib3.PoolManager(retries=PolicyRetry(FAST)) as http:
        try:
            r = http.request(
                "POST",
                url,
                json={"input": "hi"},
                preload_content=False,
                timeout=urllib3.Timeout(connect=2.0, read=timeout),
            )
            if r.status < 400:
                for _ in guard_stream(r):
                    pass
            else:  # the caller releases a preload_content=False response, as with bare urllib3
                r.drain_conn()
        except Exception as e:  # noqa: BLE001
            return Result(error=e)
        return Result(status=r.status)


def _call_aiohttp(url: str, timeout: float) -> Result:
    async def main() -> Result:
        limits = aiohttp.ClientTimeout(sock_connect=2.0, sock_read=timeout)
        mw = RetryMiddleware(FAST)
        async with aiohttp.ClientSession(middlewares=(mw,), timeout=limits) as s:
            try:
                async with s.post(url, json={"input": "hi"}) as r:
                    await r.read()  # through the stream check
                    return Result(status=r.status)
            except Exception as e:  # noqa: BLE001
                return Result(error=e)

    return asyncio.run(main())


def _openai_options(url: str, timeout: float) -> dict[str, object]:
    return {
        "base_url": url.removesuffix("/responses"),
        "api_key": "eugpt_matrix",
        "timeout": httpx2.Timeout(2.0, read=timeout),
        "_strict_response_validation": True,
    }


def _call_openai(url: str, timeout: float) -> Result:
    with retrypolicy_openai.client(FAST, **_openai_options(url, timeout)) as c:
        try:
            for _ in c.responses.create(model="auto", input="hi", stream=True):
                pass
        except openai.APIStatusError as e:  # the SDK raises for the final status
            return Result(status=e.status_code)
        except Exception as e:  # noqa: BLE001
            return Result(error=e)
        return Result(status=200)


def _call_openai_async(url: str, timeout: float) -> Result:
    async def main() -> Result:
        options = _openai_options(url, timeout)
        async with retrypolicy_openai.async_client(FAST, **options) as c:
            try:
                async for _ in await c.responses.create(model="auto", input="hi", stream=True):
                    pass
            except openai.APIStatusError as e:
                return Result(status=e.status_code)
            except Exception as e:  # noqa: BLE001
                return Result(error=e)
            return Result(status=200)

    return asyncio.run(main())


TRANSPORTS: dict[str, Callable[[str, float], Result]] = {
    "requests": _call_requests,
    "httpx": _call_httpx,
    "httpx-async": _call_httpx_async,
    "urllib3": _call_urllib3,
    "aiohttp": _call_aiohttp,
    "openai": _call_openai,
    "openai-async": _call_openai_async,
}


@dataclass(frozen=True)
class Row:
    """One line of the contract: what the server does, how many attempts, what the caller gets."""

    name: str
    reply: Reply | None  # None: nothing listens (connection refused)
    attempts: int
    status: int | None = None
    kind: rp.Kind | None = None  # for StreamError outcomes
    attempts_urllib3: int | None = None  # a Retry object cannot see stream bodies


ROWS = [
    Row("400 fix the request", Reply.error(400, detail="input is required"), 1, 400),
    Row("401 fix credentials", Reply.error(401, detail="Invalid API key"), 1, 401),
    Row("403 membership or plan", Reply.error(403, code="project_forbidden", bare=True), 1, 403),
    Row("404 not coming back", Reply.error(404), 1, 404),
    Row("429 backoff with a cap", Reply.error(429), 7, 429),
    Row("500 once or twice", Reply.error(500), 3, 500),
    Row("500 plain text body", Reply.text(500, "upstream connect error"), 3, 500),
    Row("502 load balancer", Reply.error(502), 6, 502),
    Row("503 load balancer", Reply.error(503), 6, 503),
    Row("504 load balancer", Reply.error(504), 6, 504),
    Row("other 4xx never", Reply.error(409), 1, 409),
    Row("other 5xx like 500", Reply.error(507), 3, 507),
    Row("connect failure", None, 6),
    Row("read timeout", Reply.ok(delay=2.0), 3),
    Row(
        "stream upstream_timeout",
        Reply.stream(0, end="error", code="upstream_timeout"),
        4,
        kind=rp.Kind.UPSTREAM_TIMEOUT,
        attempts_urllib3=1,
    ),
    Row(
        "stream upstream_error",
        Reply.stream(0, end="error", code="upstream_error"),
        4,
        kind=rp.Kind.UPSTREAM_ERROR,
        attempts_urllib3=1,
    ),
    Row(
        "stream internal_error once",
        Reply.stream(0, end="error", code="internal_error"),
        2,
        kind=rp.Kind.INTERNAL_ERROR,
        attempts_urllib3=1,
    ),
    Row(
        "stream cancelled never",
        Reply.stream(0, end="error", code="cancelled"),
        1,
        kind=rp.Kind.CANCELLED,
    ),
    Row(
        "stream undocumented code never",
        Reply.stream(0, end="error", code="model_on_fire"),
        1,
        kind=rp.Kind.STREAM_ERROR,
    ),
    Row(
        "stream incomplete",
        Reply.stream(0, end="cut"),
        3,
        kind=rp.Kind.INCOMPLETE_STREAM,
        attempts_urllib3=1,
    ),
]


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/responses"


@pytest.fixture
def attempts_seen() -> Iterator[list[RetryEvent]]:
    """The retry events of the test (scheduled and gave_up: one per failed attempt)."""
    seen: list[RetryEvent] = []
    previous = rp.instrumentation.get_hooks()
    rp.instrumentation.set_hooks([seen.append])
    try:
        yield seen
    finally:
        rp.instrumentation.set_hooks(previous)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_contract_row(
    row: Row, transport: str, instant: rp.testing.Instant, attempts_seen: list[RetryEvent]
) -> None:
    """The row's failure is attempted its number of times on this transport; the caller gets
    the final status, the transport's own exception, or a classified StreamError."""
    call = TRANSPORTS[transport]
    expected = row.attempts
    if transport == "urllib3" and row.attempts_urllib3 is not None:
        expected = row.attempts_urllib3
    if row.reply is None:
        result = call(_closed_port_url(), TIMEOUT)
        failed = [e for e in attempts_seen if e.name != rp.instrumentation.SUCCEEDED]
        assert len(failed) == expected
        assert result.error is not None
        return
    with FakeEUGPT() as server:
        server.script(*[row.reply] * 8)
        result = call(server.responses_url, TIMEOUT)
        assert server.request_count == expected
    if row.status is not None:
        assert (result.status, result.error) == (row.status, None)
    elif row.kind is not None:
        assert isinstance(result.error, rp.StreamError), result.error
        assert result.error.kind == row.kind
    else:
        assert result.error is not None
        assert rp.EUGPT.classify(exception=result.error).kind == rp.Kind.TIMEOUT or isinstance(
            result.error, urllib3.exceptions.MaxRetryError
        )


# -- header fields sent on several lines, or in any case -------------------------------------

HINTS_SENT_TWICE = {
    "Retry-After twice": [("Retry-After", "1"), ("retry-after", "7")],
    "Retry-After twice, later first": [("Retry-After", "7"), ("Retry-After", "1")],
    "retry-after-ms twice": [("retry-after-ms", "7000"), ("Retry-After-Ms", "1500")],
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("headers", list(HINTS_SENT_TWICE))
def test_a_hint_sent_on_two_lines_is_never_undercut(
    headers: str, transport: str, instant: rp.testing.Instant
) -> None:
    """A wait hint the server sends on two lines is read whole on every transport: the later
    moment is waited, never the earlier one, and never the backoff alone."""
    with FakeEUGPT() as server:
        server.script(Reply.error(429, headers=HINTS_SENT_TWICE[headers]), Reply.stream(0))
        result = TRANSPORTS[transport](server.responses_url, 5.0)
        assert server.request_count == 2
    assert (result.status, result.error) == (200, None)
    assert instant.waits == [7.0]


EVENT_STREAM_TYPES = {
    "twice": [("Content-Type", "text/event-stream"), ("content-type", "text/event-stream")],
    "any case": [("CONTENT-TYPE", "Text/Event-Stream; charset=UTF-8")],
    "twice, parameters": [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Content-Type", "text/event-stream; charset=utf-8"),
    ],
    "the last line wins (Fetch)": [
        ("Content-Type", "application/json"),
        ("Content-Type", "text/event-stream"),
    ],
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("headers", list(EVENT_STREAM_TYPES))
def test_an_event_stream_is_checked_however_its_type_is_sent(headers: str, transport: str) -> None:
    """An event stream whose Content-Type comes on two lines, or in any case, is still
    checked to its last event: its error event raises the classified StreamError. Of
    several types, the last one wins, as the Fetch standard reads the header."""
    reply = Reply.stream(0, end="error", code="cancelled", headers=EVENT_STREAM_TYPES[headers])
    with FakeEUGPT() as server:
        server.script(reply)
        result = TRANSPORTS[transport](server.responses_url, 5.0)
        assert server.request_count == 1
    assert isinstance(result.error, rp.StreamError), result
    assert result.error.kind == rp.Kind.CANCELLED
