"""retrypolicy_httpx's transports against the fake EU GPT server on 127.0.0.1.

Every behaviour is checked through a real ``httpx.Client`` and ``httpx.AsyncClient``
talking HTTP/1.1 to :class:`~retrypolicy.testing.FakeEUGPT`; waits are zeroed (and
recorded) by instant mode, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import socket
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest

import retrypolicy as rp
import retrypolicy_httpx
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport

from . import wire
from .wire import Wire, WireServer

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
BODY = {"model": "auto", "input": "hello"}
ATTEMPTS = "retrypolicy.attempts"
FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none", initial=0.001, max_delay=0.001))
GZ = (("Content-Encoding", "gzip"),)


@pytest.fixture(autouse=True)
def _no_waits(instant: rp.testing.Instant) -> rp.testing.Instant:
    """No test in this module ever sleeps: every retry wait is recorded instead."""
    return instant


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[FakeEUGPT]:
    with FakeEUGPT() as srv:
        yield srv


@pytest.fixture
def server(_shared_server: FakeEUGPT) -> Iterator[FakeEUGPT]:
    """The module's fake server, with an empty script and no recorded requests."""
    _shared_server.clear()
    yield _shared_server
    _shared_server.clear()


# --------------------------------------------------------------------------- helpers


def frame(event: dict[str, object]) -> str:
    return f"event: message\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


def sse(body: str) -> Reply:
    """A 200 event stream with exactly *body* (Content-Length framed): any first event."""
    return Reply.text(200, body, headers={"Content-Type": "text/event-stream"})


def error_first(code: str) -> Reply:
    """A stream whose very first event is an ``error``: nothing valid reached anyone."""
    return sse(frame({"type": "error", "code": code, "message": f"{code} happened"}))


GOOD_STREAM = (
    frame({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_x"}})
    + frame({"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hel"})
    + frame({"type": "response.output_text.delta", "sequence_number": 2, "delta": "lo."})
    + frame({"type": "response.completed", "sequence_number": 3, "response": {"id": "resp_x"}})
)

EMPTY_COMPLETED_STREAM = frame(
    {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_x"}}
) + frame({"type": "response.completed", "sequence_number": 1, "response": {"id": "resp_x"}})


def closed_port_url() -> str:
    """A URL on a local port nobody listens on: connecting fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/responses"


@dataclass
class Result:
    """What the caller saw: the final response (if any), the bytes read, the error raised."""

    status: int | None = None
    body: bytes = b""
    error: BaseException | None = None
    attempts_extension: object = None
    tries: list[RetryEvent] = field(default_factory=list)


def transport_for(mode: Mode, **options: Any) -> httpx.BaseTransport | httpx.AsyncBaseTransport:
    if mode == "sync":
        return RetryTransport(**options)
    return AsyncRetryTransport(**options)


def exchange(
    mode: Mode,
    url: str,
    *,
    client: dict[str, Any] | None = None,
    content: Any = None,
    decode: bool = False,
    **options: Any,
) -> Result:
    """POST once through a Retry(Async)Transport client and read the whole body.

    The body is read as it came off the wire (``iter_raw``), or with ``decode=True``
    as httpx decodes it for the caller (``iter_bytes``).
    """
    result = Result()
    options.setdefault("before_attempt", result.tries.append)
    transport = transport_for(mode, **options)
    kwargs: dict[str, Any] = {"content": content} if content is not None else {"json": BODY}
    if mode == "sync":
        assert isinstance(transport, httpx.BaseTransport)
        with httpx.Client(transport=transport, **(client or {})) as c:
            chunks: list[bytes] = []
            try:
                with c.stream("POST", url, **kwargs) as response:
                    result.status = response.status_code
                    result.attempts_extension = response.extensions.get(ATTEMPTS)
                    read = response.iter_bytes() if decode else response.iter_raw()
                    for chunk in read:
                        chunks.append(chunk)
            except Exception as exc:  # noqa: BLE001 - the test inspects what the caller got
                result.error = exc
            result.body = b"".join(chunks)
        return result

    async def main() -> None:
        assert isinstance(transport, httpx.AsyncBaseTransport)
        async with httpx.AsyncClient(transport=transport, **(client or {})) as c:
            chunks: list[bytes] = []
            try:
                async with c.stream("POST", url, **kwargs) as response:
                    result.status = response.status_code
                    result.attempts_extension = response.extensions.get(ATTEMPTS)
                    aread = response.aiter_bytes() if decode else response.aiter_raw()
                    async for chunk in aread:
                        chunks.append(chunk)
            except Exception as exc:  # noqa: BLE001
                result.error = exc
            result.body = b"".join(chunks)

    asyncio.run(main())
    return result


# --------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class Row:
    """One line of DESIGN.md's table: the reply, the attempts, what reaches the caller."""

    reply: Reply | None  # None: the connection is refused
    attempts: int
    status: int | None  # the final response's status; None when an exception is raised
    error: type[BaseException] | None = None  # raised by send or while reading the body
    kind: str | None = None  # the StreamError's kind
    client: dict[str, Any] = field(default_factory=dict)


ROWS: dict[str, Row] = {
    "400 invalid_request": Row(Reply.error(400, detail="input is required"), 1, 400),
    "401 authentication": Row(Reply.error(401), 1, 401),
    "403 permission (bare error)": Row(Reply.error(403, bare=True), 1, 403),
    "404 not_found": Row(Reply.error(404), 1, 404),
    "409 other 4xx": Row(Reply.error(409), 1, 409),
    "429 rate_limited": Row(Reply.error(429), 7, 429),
    "500 server_error": Row(Reply.error(500), 3, 500),
    "500 plain text": Row(Reply.text(500, "upstream connect error"), 3, 500),
    "507 other 5xx": Row(Reply.error(507), 3, 507),
    "502 unavailable": Row(Reply.error(502), 6, 502),
    "503 unavailable": Row(Reply.error(503), 6, 503),
    "504 unavailable": Row(Reply.error(504), 6, 504),
    "connect failure": Row(None, 6, None, httpx.ConnectError),
    "read timeout": Row(
        Reply.ok(delay=30),
        3,
        None,
        httpx.ReadTimeout,
        client={"timeout": httpx.Timeout(5, read=0.1)},
    ),
    "closed without response": Row(
        Reply.close_without_response(), 3, None, httpx.RemoteProtocolError
    ),
    "stream upstream_timeout": Row(
        error_first("upstream_timeout"), 4, 200, rp.StreamError, "upstream_timeout"
    ),
    "stream upstream_error": Row(
        error_first("upstream_error"), 4, 200, rp.StreamError, "upstream_error"
    ),
    "stream internal_error": Row(
        error_first("internal_error"), 2, 200, rp.StreamError, "internal_error"
    ),
    "stream cancelled": Row(error_first("cancelled"), 1, 200, rp.StreamError, "cancelled"),
    "stream undocumented code": Row(
        error_first("gremlins"), 1, 200, rp.StreamError, "stream_error"
    ),
    "stream empty": Row(sse(""), 3, 200, rp.StreamError, "incomplete_stream"),
    "stream cut before its first event": Row(
        sse(GOOD_STREAM[:30]), 3, 200, rp.StreamError, "incomplete_stream"
    ),
    "200 json": Row(Reply.ok(), 1, 200),
    "200 stream completed": Row(Reply.stream(2), 1, 200),
}


@pytest.mark.parametrize("path", ["loop", "direct"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_contract_table(server: FakeEUGPT, mode: Mode, row: Row, path: str) -> None:
    """Each row of the EU GPT table: the attempts made and what the caller finally gets.

    Both ways a first attempt can go: with a ``before_attempt`` hook the loop exists
    from the start; without one the transport sends the first attempt itself and
    hands anything but a plain success to the loop afterwards.
    """
    if row.reply is None:
        url = closed_port_url()
    else:
        url = server.responses_url
        server.script(*[row.reply] * (row.attempts + 3))
    hooks: dict[str, Any] = {"before_attempt": None} if path == "direct" else {}
    result = exchange(mode, url, client=row.client, **hooks)
    if path == "loop":
        assert len(result.tries) == row.attempts
    elif row.status is None:  # the exception given up on says how many attempts it took
        assert getattr(result.error, "retry_attempts", None) == row.attempts
    if row.reply is not None:
        assert server.request_count == row.attempts
    assert result.status == row.status
    if row.status is not None:
        assert result.attempts_extension == row.attempts
    if row.error is None:
        assert result.error is None
    else:
        assert type(result.error) is row.error
    if row.kind is not None:
        assert isinstance(result.error, rp.StreamError)
        assert result.error.kind == row.kind
        assert result.error.status == 200
        assert result.error.attempts == row.attempts


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize("mode", MODES)
def test_completed_stream_passes_through_byte_identical(server: FakeEUGPT, mode: Mode) -> None:
    """A completed stream reaches the caller exactly as the server sent it."""
    server.script(sse(GOOD_STREAM), Reply.stream(5), Reply.stream(5))
    assert exchange(mode, server.responses_url).body == GOOD_STREAM.encode()
    raw = httpx.post(server.responses_url, json=BODY).content  # the bytes without us
    result = exchange(mode, server.responses_url)
    assert result.error is None
    # the stream embeds its response id (resp_<request number>): the rest is identical
    assert re.sub(rb"resp_\d+", b"resp_N", result.body) == re.sub(rb"resp_\d+", b"resp_N", raw)


@pytest.mark.parametrize("mode", MODES)
def test_stream_that_completes_in_its_preamble_passes_through(
    server: FakeEUGPT, mode: Mode
) -> None:
    """A stream that completes while still in its preamble (nothing to commit to: here the
    caller counts its completion event as preamble too) was read whole while checked: it
    reaches the caller exactly as sent, once, without an error."""
    empty = EMPTY_COMPLETED_STREAM
    server.script(sse(empty), sse(empty))
    preamble = ("response.created", "response.completed")
    result = exchange(mode, server.responses_url, preamble=preamble)
    assert server.request_count == 1
    assert result.error is None
    assert result.body == empty.encode()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("code", ["upstream_timeout", "internal_error", "cancelled"])
def test_error_event_after_deltas_raises_while_reading(
    server: FakeEUGPT, mode: Mode, code: str
) -> None:
    """Once deltas reached the caller an error event is not retried: StreamError, after them."""
    server.script(Reply.stream(2, end="error", code=code), Reply.stream(2))
    result = exchange(mode, server.responses_url)
    assert server.request_count == 1
    assert result.status == 200
    assert b'"delta":"chunk 0. "' in result.body
    assert b'"delta":"chunk 1. "' in result.body
    assert b'"type":"error"' not in result.body  # raised in place of the error event
    error = result.error
    assert isinstance(error, rp.StreamError)
    assert error.code == code
    assert error.kind == code
    assert error.retryable is (code != "cancelled")
    assert error.attempts == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("end", ["cut", "cut_mid_frame"])
def test_truncated_stream_raises_incomplete(server: FakeEUGPT, mode: Mode, end: str) -> None:
    """A stream cut after its first event raises StreamError(incomplete_stream) while read."""
    server.script(Reply.stream(2, end=end))  # type: ignore[arg-type]
    result = exchange(mode, server.responses_url)
    assert server.request_count == 1
    assert b"chunk 1. " in result.body
    assert isinstance(result.error, rp.StreamError)
    assert result.error.kind == "incomplete_stream"
    assert result.error.retryable


@pytest.mark.parametrize("mode", MODES)
def test_reset_mid_stream_raises_stream_error(server: FakeEUGPT, mode: Mode) -> None:
    """A TCP reset after some events becomes a StreamError, raised from the transport error."""
    server.script(Reply.stream(2, end="reset", interval=0.05))
    result = exchange(mode, server.responses_url)
    assert server.request_count == 1
    assert isinstance(result.error, rp.StreamError)
    assert result.error.kind == "incomplete_stream"
    assert isinstance(result.error.__cause__, httpx.TransportError)


@pytest.mark.parametrize("mode", MODES)
def test_first_event_error_is_retried_transparently(server: FakeEUGPT, mode: Mode) -> None:
    """An error as the first event never reaches the caller: it sees only the good stream."""
    server.script(error_first("upstream_error"), sse(""), sse(GOOD_STREAM))
    result = exchange(mode, server.responses_url)
    assert server.request_count == 3
    assert result.error is None
    assert result.body == GOOD_STREAM.encode()
    assert result.attempts_extension == 3


@pytest.mark.parametrize("mode", MODES)
def test_response_created_does_not_commit_the_stream(server: FakeEUGPT, mode: Mode) -> None:
    """An error right after ``response.created`` (no content yet) is retried transparently."""
    server.script(Reply.stream(0, end="error", code="upstream_timeout"), Reply.stream(2))
    result = exchange(mode, server.responses_url)
    assert server.request_count == 2
    assert result.error is None
    assert b"response.completed" in result.body
    assert b'"type":"error"' not in result.body


@pytest.mark.parametrize(
    "failure",
    [
        Reply.stream(2, end="error", code="upstream_error"),
        Reply.stream(2, end="error", code="internal_error"),
        Reply.stream(2, end="cut"),
    ],
    ids=["upstream_error", "internal_error", "cut"],
)
def test_retry_decorator_restarts_the_exchange(server: FakeEUGPT, failure: Reply) -> None:
    """A StreamError raised while reading is retried by @rp.retry around the consumer."""
    client = httpx.Client(transport=RetryTransport())

    @rp.retry
    def consume() -> bytes:
        with client.stream("POST", server.responses_url, json=BODY) as response:
            return b"".join(response.iter_raw())

    server.script(failure, Reply.stream(2))
    with client:
        body = consume()
    assert server.request_count == 2
    assert b"response.completed" in body


@pytest.mark.parametrize("mode", MODES)
def test_mid_stream_error_reports_all_attempts(server: FakeEUGPT, mode: Mode) -> None:
    """A StreamError raised while reading counts the attempts that led to the stream."""
    server.script(Reply.error(503), Reply.stream(1, end="error", code="upstream_error"))
    result = exchange(mode, server.responses_url)
    assert isinstance(result.error, rp.StreamError)
    assert result.error.attempts == 2


# --------------------------------------------------------------------------- waits and give-up


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("reply", "at_least"),
    [
        (Reply.error(429, retry_after=7), 7.0),
        (Reply.error(503, retry_after=3), 3.0),
        (Reply.error(429, retry_after_ms=1500), 1.5),
    ],
)
def test_retry_after_is_honoured(
    server: FakeEUGPT, instant: rp.testing.Instant, mode: Mode, reply: Reply, at_least: float
) -> None:
    """The wait before the retry is never shorter than the server's hint."""
    server.script(reply, Reply.ok())
    result = exchange(mode, server.responses_url)
    assert result.status == 200
    assert server.request_count == 2
    assert len(instant.waits) == 1
    assert instant.waits[0] >= at_least


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_beyond_max_gives_up_at_once(
    server: FakeEUGPT, instant: rp.testing.Instant, mode: Mode
) -> None:
    """A hint above max_retry_after means give up now: one request, the 429 returned."""
    server.script(Reply.error(429, retry_after=3600), Reply.ok())
    result = exchange(mode, server.responses_url)
    assert server.request_count == 1
    assert result.status == 429
    assert instant.waits == []
    server.clear()
    server.script(Reply.error(429, retry_after=3600))
    raised = exchange(mode, server.responses_url, raise_on_give_up=True).error
    assert isinstance(raised, rp.RateLimitError)
    assert raised.retry_after == 3600


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("reply", "error", "attempts"),
    [
        (Reply.error(400), rp.BadRequestError, 1),
        (Reply.error(401), rp.AuthenticationError, 1),
        (Reply.error(403), rp.PermissionDeniedError, 1),
        (Reply.error(404), rp.NotFoundError, 1),
        (Reply.error(409), rp.ClientError, 1),
        (Reply.error(429), rp.RateLimitError, 7),
        (Reply.error(500), rp.InternalServerError, 3),
        (Reply.error(503), rp.ServiceUnavailableError, 6),
        (error_first("internal_error"), rp.StreamError, 2),
        (sse(""), rp.StreamError, 3),
    ],
)
def test_raise_on_give_up(
    server: FakeEUGPT, mode: Mode, reply: Reply, error: type[rp.APIError], attempts: int
) -> None:
    """raise_on_give_up=True raises the matching APIError, carrying the attempts made."""
    server.script(*[reply] * (attempts + 2))
    result = exchange(mode, server.responses_url, raise_on_give_up=True)
    assert type(result.error) is error
    assert isinstance(result.error, rp.APIError)
    assert result.error.attempts == attempts
    assert server.request_count == attempts


@pytest.mark.parametrize("mode", MODES)
def test_raise_on_give_up_leaves_transport_errors_unchanged(mode: Mode) -> None:
    """An exception from the inner transport is re-raised as it is, never wrapped."""
    result = exchange(mode, closed_port_url(), raise_on_give_up=True)
    assert type(result.error) is httpx.ConnectError


@pytest.mark.parametrize("mode", MODES)
def test_raise_for_status_works_on_the_final_response(server: FakeEUGPT, mode: Mode) -> None:
    """Without raise_on_give_up the caller's own raise_for_status() sees the final status."""
    server.script(*[Reply.error(404)] * 2)
    transport = transport_for(mode)

    async def post_async() -> httpx.Response:
        assert isinstance(transport, httpx.AsyncBaseTransport)
        async with httpx.AsyncClient(transport=transport) as c:
            return await c.post(server.responses_url, json=BODY)

    if mode == "sync":
        assert isinstance(transport, httpx.BaseTransport)
        with httpx.Client(transport=transport) as c:
            response = c.post(server.responses_url, json=BODY)
    else:
        response = asyncio.run(post_async())
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()
    assert response.json()["error"]["code"] == "not_found"


# --------------------------------------------------------------------------- bodies and connections


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [400, 503])
def test_final_error_body_readable_in_full(server: FakeEUGPT, mode: Mode, status: int) -> None:
    """The adapter peeks at a bounded prefix; the caller still reads the whole 200 KB body."""
    text = "".join(f"line {i:06d}\n" for i in range(200_000 // 12))
    server.script(*[Reply.text(status, text)] * 6)
    result = exchange(mode, server.responses_url)
    assert result.status == status
    assert result.body == text.encode()
    assert len(result.body) > 3 * 64 * 1024


@pytest.mark.parametrize("mode", MODES)
def test_error_body_is_not_read_to_its_end(server: FakeEUGPT, mode: Mode) -> None:
    """A 503 whose body never ends is still classified (as 503) without waiting for the rest."""
    endless = Reply.text(503, "x" * 100_000, headers={"Content-Length": str(10**9)})
    server.script(endless, Reply.ok())
    retries: list[RetryEvent] = []
    result = exchange(
        mode,
        server.responses_url,
        on_retry=retries.append,
        client={"timeout": httpx.Timeout(5, read=2)},
    )
    assert result.status == 200
    assert [(e.status, e.kind) for e in retries] == [(503, "unavailable")]


class _Breaking(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that breaks after its first bytes, as a connection reset would."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"detail": "Service unav'
        raise httpx.ReadError("connection reset")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"detail": "Service unav'
        raise httpx.ReadError("connection reset")


@pytest.mark.parametrize("mode", MODES)
def test_error_body_that_breaks_is_classified_by_its_status(mode: Mode) -> None:
    """A 503 whose body read fails is still a 503; the caller meets the read error later."""
    transport = httpx.MockTransport(lambda request: httpx.Response(503, stream=_Breaking()))
    result = exchange(mode, "http://api.invalid/v1/responses", transport=transport)
    assert len(result.tries) == 6
    assert result.status == 503
    assert result.body == b'{"detail": "Service unav'
    assert type(result.error) is httpx.ReadError


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "failure",
    [
        Reply.error(503),
        Reply.text(503, "y" * 200_000),  # larger than the peek: held open until the retry
        error_first("upstream_error"),
    ],
    ids=["small body", "large body", "stream"],
)
def test_discarded_responses_free_their_connection(
    server: FakeEUGPT, mode: Mode, failure: Reply
) -> None:
    """With a pool of one connection, three failures then a success still complete."""
    server.script(*[failure] * 3, Reply.ok())
    one = httpx.Limits(max_connections=1)
    inner = (
        httpx.HTTPTransport(limits=one) if mode == "sync" else httpx.AsyncHTTPTransport(limits=one)
    )
    tries: list[RetryEvent] = []
    result = exchange(
        mode,
        server.responses_url,
        transport=inner,
        before_attempt=tries.append,
        client={"timeout": httpx.Timeout(5, pool=1)},
    )
    assert len(tries) == 4  # no PoolTimeout in between
    assert result.error is None
    assert result.status == 200
    assert server.request_count == 4


class _Tracked(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An inner response stream that remembers whether it was closed."""

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> None:
        self.stream = stream
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self.stream, httpx.SyncByteStream)
        yield from self.stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self.stream, httpx.AsyncByteStream)
        async for chunk in self.stream:
            yield chunk

    def close(self) -> None:
        self.closed = True
        assert isinstance(self.stream, httpx.SyncByteStream)
        self.stream.close()

    async def aclose(self) -> None:
        self.closed = True
        assert isinstance(self.stream, httpx.AsyncByteStream)
        await self.stream.aclose()


class Recording(httpx.BaseTransport):
    """A custom inner transport: real HTTP underneath, every response stream tracked."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.streams: list[_Tracked] = []
        self.closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        tracked = _Tracked(response.stream)
        self.streams.append(tracked)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=tracked,
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.closed = True
        self.inner.close()


class AsyncRecording(httpx.AsyncBaseTransport):
    """:class:`Recording` for the async client."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.streams: list[_Tracked] = []
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        tracked = _Tracked(response.stream)
        self.streams.append(tracked)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=tracked,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("raise_on_give_up", [False, True])
def test_every_inner_response_is_closed(
    server: FakeEUGPT, mode: Mode, raise_on_give_up: bool
) -> None:
    """Around a custom inner transport, every response it returned is closed in the end."""
    server.script(
        Reply.error(503),
        Reply.text(502, "z" * 200_000),
        error_first("upstream_timeout"),
        sse(""),
        Reply.error(500),
        Reply.error(500),
        Reply.error(500),
    )
    inner: Recording | AsyncRecording = Recording() if mode == "sync" else AsyncRecording()
    result = exchange(
        mode, server.responses_url, transport=inner, raise_on_give_up=raise_on_give_up
    )
    assert server.request_count == 7
    if raise_on_give_up:
        assert isinstance(result.error, rp.InternalServerError)
    else:
        assert result.status == 500
    assert len(inner.streams) == 7
    assert all(s.closed for s in inner.streams)
    assert inner.closed  # the client closed our transport, which closed the inner one


def one_shot(mode: Mode, payload: list[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    """A generator request body: it can be read only once."""

    def chunks() -> Iterator[bytes]:
        yield from payload

    async def achunks() -> AsyncIterator[bytes]:
        for part in payload:
            yield part

    return chunks() if mode == "sync" else achunks()


@pytest.mark.parametrize("mode", MODES)
def test_one_shot_request_body_is_sent_once(server: FakeEUGPT, mode: Mode) -> None:
    """A generator request body is sent once, whole and unbuffered: a 503 is not retried."""
    payload = [b'{"input": ', b'"hello"}']
    server.script(Reply.error(503), Reply.ok())
    result = exchange(mode, server.responses_url, content=one_shot(mode, payload))
    assert result.status == 503
    assert [r.body for r in server.requests] == [b"".join(payload)]
    assert result.attempts_extension == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (error_first("upstream_error"), "upstream_error"),
        (Reply.stream(2, end="error", code="upstream_timeout"), "upstream_timeout"),
        (Reply.stream(2, end="cut"), "incomplete_stream"),
    ],
    ids=["failed before content", "failed after content", "cut"],
)
def test_one_shot_request_stream_is_still_checked(
    server: FakeEUGPT, mode: Mode, reply: Reply, kind: str
) -> None:
    """The event stream answering a one-shot request is checked to its end, never resent."""
    server.script(reply, Reply.stream(2))
    result = exchange(mode, server.responses_url, content=one_shot(mode, [b'{"input": 1}']))
    assert server.request_count == 1
    assert isinstance(result.error, rp.StreamError)
    assert result.error.kind == kind
    assert result.error.attempts == 1
    server.clear()
    server.script(Reply.stream(2))
    assert exchange(mode, server.responses_url, content=one_shot(mode, [b"{}"])).error is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("methods", "requests"),
    [
        (None, 2),
        ("POST", 2),
        ("post", 2),
        (["GET", "POST"], 2),
        ("GET", 1),
        (["get"], 1),
    ],
)
def test_methods_limits_what_is_retried(
    server: FakeEUGPT, mode: Mode, methods: object, requests: int
) -> None:
    """methods="POST" is the one method POST; a POST outside methods is sent once."""
    server.script(Reply.error(503), Reply.ok())
    result = exchange(mode, server.responses_url, methods=methods)
    assert server.request_count == requests
    assert result.status == (200 if requests == 2 else 503)
    assert result.attempts_extension == requests


@pytest.mark.parametrize("mode", MODES)
def test_method_outside_methods_still_has_its_stream_checked(server: FakeEUGPT, mode: Mode) -> None:
    """A request the policy does not retry still gets a StreamError for a failed stream."""
    server.script(error_first("upstream_error"), Reply.stream(2))
    result = exchange(mode, server.responses_url, methods="GET")
    assert server.request_count == 1
    assert isinstance(result.error, rp.StreamError)
    assert result.error.kind == "upstream_error"


# --------------------------------------------------------------------------- the wire rules


def on_wire(mode: Mode, *script: Wire, **kwargs: Any) -> tuple[Result, WireServer]:
    """:func:`exchange` against a byte-exact server playing *script* (tests/adapters/wire.py)."""
    with WireServer(script) as srv:
        result = exchange(mode, srv.url, **kwargs)
    return result, srv


def deflated(data: bytes) -> bytes:
    return zlib.compress(data)


JSON = (("Content-Type", "application/json"),)
CODINGS = {"gzip": wire.gzipped, "deflate": deflated}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize(
    ("status", "code", "error", "attempts"),
    [
        (403, "project_forbidden", rp.PermissionDeniedError, 1),
        (429, "rate_limit_exceeded", rp.RateLimitError, 7),
        (503, "overloaded", rp.ServiceUnavailableError, 6),
    ],
)
def test_encoded_error_envelope_keeps_its_code(
    mode: Mode, coding: str, status: int, code: str, error: type[rp.APIError], attempts: int
) -> None:
    """An error envelope sent gzip- or deflate-encoded is judged decoded: its code is kept."""
    body = CODINGS[coding](wire.envelope(status, code))
    reply = Wire(status, (*JSON, ("Content-Encoding", coding)), (body[:7], body[7:]))
    result, srv = on_wire(mode, reply, raise_on_give_up=True, policy=FAST)
    assert type(result.error) is error
    assert (result.error.status, result.error.code) == (status, code)
    assert srv.hits == result.error.attempts == attempts


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("decode", [False, True], ids=["raw", "decoded"])
def test_encoded_error_body_reaches_the_caller_as_sent(mode: Mode, decode: bool) -> None:
    """The caller reads the final error body exactly as the bare transport would give it."""
    plain = wire.envelope(404, "not_found")
    body = wire.gzipped(plain)
    result, srv = on_wire(mode, Wire(404, (*JSON, *GZ), (body,)), decode=decode)
    assert result.status == 404
    assert result.body == (plain if decode else body)
    assert srv.hits == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("pieces", [1, 3, 40], ids=["one chunk", "3 chunks", "40 chunks"])
def test_encoded_complete_stream_is_one_success(mode: Mode, coding: str, pieces: int) -> None:
    """An encoded stream ending in response.completed is a success at the first attempt."""
    body = CODINGS[coding](wire.completed_stream())
    size = -(-len(body) // pieces)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    result, srv = on_wire(mode, wire.stream(*chunks, headers=(("Content-Encoding", coding),)))
    assert result.error is None
    assert result.body == body  # raw, as sent: httpx decodes it for the caller
    assert srv.hits == 1
    decoded, _ = on_wire(
        mode, wire.stream(*chunks, headers=(("Content-Encoding", coding),)), decode=True
    )
    assert decoded.body == wire.completed_stream()


@pytest.mark.parametrize("mode", MODES)
def test_encoded_stream_error_before_content_is_retried(mode: Mode) -> None:
    """A gzip-encoded stream failing before content is seen decoded and retried transparently."""
    failing = wire.events(
        wire.CREATED, {"type": "error", "code": "upstream_timeout", "message": "slow"}
    )
    script = (
        wire.stream(wire.gzipped(failing), headers=GZ),
        wire.stream(wire.gzipped(wire.completed_stream()), headers=GZ),
    )
    result, srv = on_wire(mode, *script, decode=True)
    assert result.error is None
    assert result.body == wire.completed_stream()
    assert srv.hits == result.attempts_extension == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("end", ["close", "reset"])
@pytest.mark.parametrize("split", [False, True], ids=["one chunk", "one event a chunk"])
def test_completed_stream_then_cut_is_a_success(mode: Mode, end: str, split: bool) -> None:
    """A connection cut or reset after response.completed: no StreamError, no retry."""
    chunks = (
        (wire.event(wire.CREATED), wire.event(wire.DELTA), wire.event(wire.COMPLETED))
        if split
        else (wire.completed_stream(),)
    )
    result, srv = on_wire(mode, wire.stream(*chunks, end=end), decode=True)  # type: ignore[arg-type]
    assert result.error is None
    assert result.body == wire.completed_stream()
    assert srv.hits == 1


@pytest.mark.parametrize("mode", MODES)
def test_completed_stream_then_cut_is_not_retried_by_an_outer_layer(mode: Mode) -> None:
    """Inside @rp.retry, a completed stream whose connection is then reset is one generation."""
    with WireServer(
        [
            wire.stream(
                wire.event(wire.CREATED),
                wire.event(wire.DELTA),
                wire.event(wire.COMPLETED),
                end="reset",
            )
        ]
    ) as srv:

        @rp.retry(FAST)
        def consume() -> Result:
            result = exchange(mode, srv.url, decode=True)
            if result.error is not None:
                raise result.error
            return result

        assert consume().body == wire.completed_stream()
    assert srv.hits == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("before_content", [True, False], ids=["first", "after content"])
@pytest.mark.parametrize(
    "data",
    [
        '{"type":"error","message":"no code"}',
        '{"type":"error","code":null}',
        '{"type":"error","code":""}',
        '{"type":"error","code":{"nested":1}}',
        "{not json",
    ],
    ids=["no code", "null code", "empty code", "object code", "not json"],
)
def test_error_event_without_usable_code_is_a_stream_failure(
    mode: Mode, before_content: bool, data: str
) -> None:
    """An error event without a usable code is a stream_error: not retried, never success."""
    frame = f"event: error\ndata: {data}\n\n".encode()
    body = (
        wire.events(wire.CREATED) + frame
        if before_content
        else wire.events(wire.CREATED, wire.DELTA) + frame
    )
    result, srv = on_wire(mode, wire.stream(body), wire.stream(wire.completed_stream()))
    assert isinstance(result.error, rp.StreamError)
    assert result.error.kind == rp.Kind.STREAM_ERROR
    assert not result.error.retryable
    assert srv.hits == 1
    raised, _ = on_wire(mode, wire.stream(body), raise_on_give_up=True)
    assert isinstance(raised.error, rp.StreamError)
    assert raised.error.kind == rp.Kind.STREAM_ERROR


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "hint",
    [
        ("Retry-After", "31536000"),  # a year
        ("Retry-After", "999999999999999999999999"),
        ("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT"),
        ("retry-after-ms", "86400000"),
    ],
    ids=["a year", "huge", "next century", "a day in ms"],
)
def test_retry_after_beyond_the_ceiling_gives_up_now(
    mode: Mode, instant: rp.testing.Instant, hint: tuple[str, str]
) -> None:
    """A wait hint beyond max_retry_after, however large, gives up at once, hint on the error."""
    reply = Wire(429, (*JSON, hint), (wire.envelope(429, "rate_limit_exceeded"),))
    result, srv = on_wire(mode, reply, raise_on_give_up=True)
    assert isinstance(result.error, rp.RateLimitError)
    assert result.error.retry_after is not None
    assert result.error.retry_after > rp.EUGPT.backoff.max_retry_after
    assert srv.hits == 1
    assert instant.waits == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("retry_after", "retry_after_ms", "at_least"),
    [(2, 500, 2.0), (1, 3000, 3.0), (4, 4000, 4.0)],
)
def test_disagreeing_wait_hints_the_later_wins(
    server: FakeEUGPT,
    instant: rp.testing.Instant,
    mode: Mode,
    retry_after: int,
    retry_after_ms: int,
    at_least: float,
) -> None:
    """When Retry-After and retry-after-ms disagree, the wait is never shorter than the later."""
    server.script(
        Reply.error(503, retry_after=retry_after, retry_after_ms=retry_after_ms), Reply.ok()
    )
    result = exchange(mode, server.responses_url)
    assert result.status == 200
    assert len(instant.waits) == 1
    assert instant.waits[0] >= at_least


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("raise_on_give_up", [False, True])
def test_layers_add_up_against_a_failing_server(
    server: FakeEUGPT, mode: Mode, raise_on_give_up: bool
) -> None:
    """Inside @rp.retry, always-503 makes the policy's 6 attempts in total, not 6 x 6."""
    server.script(*[Reply.error(503)] * 50)
    transport = transport_for(mode, policy=FAST, raise_on_give_up=raise_on_give_up)

    @rp.retry(FAST)
    def sync_call() -> httpx.Response:
        assert isinstance(transport, httpx.BaseTransport)
        with httpx.Client(transport=transport) as client:
            return client.post(server.responses_url, json=BODY)

    @rp.retry(FAST)
    async def async_call() -> httpx.Response:
        assert isinstance(transport, httpx.AsyncBaseTransport)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post(server.responses_url, json=BODY)

    def call() -> httpx.Response:
        return sync_call() if mode == "sync" else asyncio.run(async_call())

    if raise_on_give_up:
        with pytest.raises(rp.ServiceUnavailableError) as raised:
            call()
        assert raised.value.attempts == 6
    else:
        assert call().status_code == 503
    assert server.request_count == 6


@pytest.mark.parametrize("mode", MODES)
def test_layers_add_up_against_a_closed_port(mode: Mode) -> None:
    """Inside @rp.retry, a closed port is tried the policy's 6 times in total, then raised."""
    tries: list[RetryEvent] = []
    url = closed_port_url()
    transport = transport_for(mode, policy=FAST, before_attempt=tries.append)

    @rp.retry(FAST)
    def sync_call() -> httpx.Response:
        assert isinstance(transport, httpx.BaseTransport)
        with httpx.Client(transport=transport) as client:
            return client.post(url, json=BODY)

    @rp.retry(FAST)
    async def async_call() -> httpx.Response:
        assert isinstance(transport, httpx.AsyncBaseTransport)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post(url, json=BODY)

    with pytest.raises(httpx.ConnectError):
        sync_call() if mode == "sync" else asyncio.run(async_call())
    assert len(tries) == 6


# --------------------------------------------------------------------------- hooks and API


@pytest.mark.parametrize("mode", MODES)
def test_hooks_receive_events(server: FakeEUGPT, mode: Mode) -> None:
    """before_attempt, on_retry, on_success and on_give_up see the loop's events."""
    seen: dict[str, list[RetryEvent]] = {"attempt": [], "retry": [], "success": [], "give_up": []}
    hooks: dict[str, Any] = {
        "before_attempt": seen["attempt"].append,
        "on_retry": seen["retry"].append,
        "on_success": seen["success"].append,
        "on_give_up": seen["give_up"].append,
    }
    server.script(Reply.error(503), error_first("upstream_error"), Reply.ok())
    assert exchange(mode, server.responses_url, **hooks).status == 200
    assert [e.attempt for e in seen["attempt"]] == [1, 2, 3]
    assert [(e.name, e.status, e.kind) for e in seen["retry"]] == [
        ("retry.scheduled", 503, "unavailable"),
        ("retry.scheduled", 200, "upstream_error"),
    ]
    assert [e.attempt for e in seen["success"]] == [3]
    assert seen["give_up"] == []
    name = "RetryTransport" if mode == "sync" else "AsyncRetryTransport"
    assert {e.call for e in seen["retry"]} == {name}
    server.clear()
    server.script(Reply.error(404))
    assert exchange(mode, server.responses_url, **hooks).status == 404
    assert [(e.name, e.status, e.kind) for e in seen["give_up"]] == [
        ("retry.gave_up", 404, "not_found")
    ]


def test_constructor_checks_its_arguments() -> None:
    """A transport of the wrong kind, a bad method name or policy fail at construction."""
    with pytest.raises(TypeError, match="BaseTransport"):
        RetryTransport(transport=httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AsyncBaseTransport"):
        AsyncRetryTransport(transport=httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="methods"):
        RetryTransport(methods=["POST", 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="methods"):
        AsyncRetryTransport(methods=[])
    with pytest.raises(TypeError, match="preamble"):
        RetryTransport(preamble="response.created")
    with pytest.raises(TypeError, match="Policy"):
        RetryTransport("eugpt")  # type: ignore[arg-type]


def test_repr_and_policy() -> None:
    """The transport shows its policy and inner transport, and exposes the policy."""
    policy = rp.EUGPT.evolve(name="custom")
    with RetryTransport(policy) as transport:
        assert transport.policy is policy
        assert repr(transport).startswith("<RetryTransport policy='custom' transport=<httpx.")
    assert RetryTransport().policy is rp.EUGPT


def test_context_managers_close_the_inner_transport() -> None:
    """Leaving ``with`` / ``async with`` closes the wrapped transport."""
    inner = Recording()
    with RetryTransport(transport=inner):
        pass
    assert inner.closed
    ainner = AsyncRecording()

    async def main() -> None:
        async with AsyncRetryTransport(transport=ainner):
            pass

    asyncio.run(main())
    assert ainner.closed


def test_all_is_sorted_and_complete() -> None:
    """``__all__`` lists exactly the package's public names, sorted."""
    assert retrypolicy_httpx.__all__ == sorted(retrypolicy_httpx.__all__)
    assert set(retrypolicy_httpx.__all__) == {"AsyncRetryTransport", "RetryTransport"}
    assert all(isinstance(getattr(retrypolicy_httpx, n), type) for n in retrypolicy_httpx.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = retrypolicy_httpx.Nope
    assert retrypolicy_httpx._transport.ATTEMPTS_EXTENSION == ATTEMPTS


def test_import_without_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without httpx, importing the adapter fails with the command that installs it."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    for name in [n for n in sys.modules if n.startswith("retrypolicy_httpx")]:
        monkeypatch.delitem(sys.modules, name)
    package = importlib.import_module("retrypolicy_httpx")  # httpx is needed on first use
    with pytest.raises(ImportError, match=re.escape("pip install 'retrypolicy[httpx]'")):
        _ = package.RetryTransport
    # the httpx2 transports (the openai SDK's library) need httpx2 only
    on_httpx2 = importlib.import_module("retrypolicy_httpx.httpx2")
    assert issubclass(on_httpx2.RetryTransport, importlib.import_module("httpx2").BaseTransport)


def test_import_without_httpx2_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without httpx2, importing ``retrypolicy_httpx.httpx2`` says what to install."""
    monkeypatch.setitem(sys.modules, "httpx2", None)
    monkeypatch.delitem(sys.modules, "retrypolicy_httpx.httpx2", raising=False)
    with pytest.raises(ImportError, match=re.escape("pip install httpx2")):
        importlib.import_module("retrypolicy_httpx.httpx2")


# --------------------------------------------------------------------------- memory


def test_one_gigabyte_stream_in_constant_memory(server: FakeEUGPT) -> None:
    """1 GB of event stream goes through the guard without being kept: peak memory stays low."""
    server.script(Reply.large_stream(1_000_000_000))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        total = 0
        with (
            httpx.Client(transport=RetryTransport(), timeout=60) as client,
            client.stream("POST", server.responses_url, json=BODY) as response,
        ):
            for chunk in response.iter_raw():
                total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert total >= 1_000_000_000
    assert peak < 50 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert elapsed < 60, f"{elapsed:.1f}s for 1 GB"
