"""httpx2 (the openai SDK's HTTP library): the same transports, bound to its types.

The wire rules run on httpx2 clients in tests/adapters/test_wire_contract.py; here:
mounting in ``httpx2`` clients and the SDK's default clients, and the ``TypeError``
that names the right class when a transport meets the other library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import httpx2
import openai
import pytest

import retrypolicy as rp
import retrypolicy_httpx
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_httpx import httpx2 as on_httpx2

BODY = {"model": "auto", "input": "hello"}


@pytest.fixture(autouse=True)
def _no_waits(instant: rp.testing.Instant) -> rp.testing.Instant:
    """No test in this module ever sleeps: every retry wait is recorded instead."""
    return instant


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    with FakeEUGPT() as srv:
        yield srv


@pytest.mark.parametrize(
    "make_client",
    [httpx2.Client, openai.DefaultHttpxClient],
    ids=["httpx2.Client", "openai.DefaultHttpxClient"],
)
def test_sync_transport_retries_inside_an_httpx2_client(
    server: FakeEUGPT, make_client: type[httpx2.Client]
) -> None:
    """Mounted in httpx2.Client or the SDK's DefaultHttpxClient: 503, 503, then 200."""
    server.script(Reply.error(503), Reply.error(503), Reply.ok("hi"))
    with make_client(transport=on_httpx2.RetryTransport()) as client:
        response = client.post(server.responses_url, json=BODY)
    assert isinstance(response, httpx2.Response)
    assert response.status_code == 200
    assert response.extensions["retrypolicy.attempts"] == 3
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "make_client",
    [httpx2.AsyncClient, openai.DefaultAsyncHttpxClient],
    ids=["httpx2.AsyncClient", "openai.DefaultAsyncHttpxClient"],
)
def test_async_transport_retries_inside_an_httpx2_client(
    server: FakeEUGPT, make_client: type[httpx2.AsyncClient]
) -> None:
    """The async twin: a 429 with Retry-After is waited out (recorded), then 200."""
    server.script(Reply.error(429, retry_after=2), Reply.ok("hi"))

    async def main() -> httpx2.Response:
        async with make_client(transport=on_httpx2.AsyncRetryTransport()) as client:
            return await client.post(server.responses_url, json=BODY)

    with rp.testing.instant() as waits:
        response = asyncio.run(main())
    assert response.status_code == 200
    assert response.extensions["retrypolicy.attempts"] == 2
    assert waits.waits == [2.0]


def test_httpx2_stream_failing_after_content_raises_stream_error(server: FakeEUGPT) -> None:
    """A stream that fails after content reaches the httpx2 caller as rp.StreamError."""
    server.script(Reply.stream(2, end="error", code="upstream_error"))
    with (
        httpx2.Client(transport=on_httpx2.RetryTransport()) as client,
        client.stream("POST", server.responses_url, json=BODY) as response,
        pytest.raises(rp.StreamError) as caught,
    ):
        for _ in response.iter_bytes():
            pass
    assert (caught.value.code, caught.value.kind) == ("upstream_error", rp.Kind.UPSTREAM_ERROR)


def test_httpx_transport_in_an_httpx2_client_names_the_right_class(server: FakeEUGPT) -> None:
    """An httpx transport in an httpx2 client fails at once with a TypeError, not deep inside."""
    server.script(Reply.ok("hi"))
    with (
        httpx2.Client(transport=retrypolicy_httpx.RetryTransport()) as client,
        pytest.raises(TypeError, match=r"use retrypolicy_httpx\.httpx2\.RetryTransport"),
    ):
        client.post(server.responses_url, json=BODY)
    assert server.requests == []  # refused before anything was sent


def test_httpx2_transport_in_an_httpx_client_names_the_right_class(server: FakeEUGPT) -> None:
    """The other way round: an httpx2 transport in an httpx.AsyncClient says what to use."""

    async def main() -> None:
        transport = on_httpx2.AsyncRetryTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            await client.post(server.responses_url, json=BODY)

    with pytest.raises(TypeError, match=r"use retrypolicy_httpx\.AsyncRetryTransport"):
        asyncio.run(main())
    assert server.requests == []


@pytest.mark.parametrize(
    ("make", "inner", "hint"),
    [
        (retrypolicy_httpx.RetryTransport, httpx2.HTTPTransport, r"retrypolicy_httpx\.httpx2"),
        (on_httpx2.RetryTransport, httpx.HTTPTransport, r"transports of retrypolicy_httpx\)"),
        (on_httpx2.AsyncRetryTransport, httpx2.HTTPTransport, "httpx2.AsyncBaseTransport"),
    ],
)
def test_inner_transport_of_the_wrong_kind_is_refused_at_construction(
    make: type, inner: type, hint: str
) -> None:
    """An inner transport of the other library (or sync for async) is refused when built."""
    with pytest.raises(TypeError, match=hint):
        make(transport=inner())
