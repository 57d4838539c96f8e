"""retrypolicy_aiohttp.RetryMiddleware in a real ``aiohttp.ClientSession`` on 127.0.0.1.

Scripted replies come from :class:`~retrypolicy.testing.FakeEUGPT`, exact wire shapes
(gzip, cuts after ``response.completed``, malformed error events) from ``wire.py``.
Every retry wait is zeroed and recorded by instant mode: nothing here sleeps on a retry.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import socket
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.http_exceptions import LineTooLong

import retrypolicy as rp
import retrypolicy_aiohttp
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_aiohttp import CheckedContent, RetryMiddleware

from .wire import CREATED, DELTA, Wire, WireServer, completed_stream, envelope, events, gzipped

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))
BODY = {"model": "auto", "input": "hello"}
GZ = (("Content-Encoding", "gzip"),)
SSE = (("Content-Type", "text/event-stream"),)
GAP = 0.03  # seconds between stream events, so content arrives in its own read


@pytest.fixture(autouse=True)
def _no_waits(instant: rp.testing.Instant) -> rp.testing.Instant:
    """No test in this module sleeps on a retry: every wait is recorded instead."""
    return instant


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fake EU GPT server of the test's own."""
    with FakeEUGPT() as srv:
        yield srv


# --------------------------------------------------------------------------- helpers


@dataclass
class Result:
    """What the caller ended with: status and body read to the end, or the error raised."""

    status: int | None = None
    body: bytes = b""
    error: BaseException | None = None
    attempts: int | None = None
    events: list[RetryEvent] = field(default_factory=list)


Reader = Callable[[aiohttp.ClientResponse], Awaitable[bytes]]


async def _read_all(r: aiohttp.ClientResponse) -> bytes:
    return await r.read()


async def call_async(
    url: str,
    *,
    method: str = "POST",
    data: Any = None,
    read: Reader = _read_all,
    sock_read: float = 5.0,
    **options: Any,
) -> Result:
    """One request through a fresh session with the middleware; what the caller got."""
    result = Result()
    options.setdefault("on_retry", result.events.append)
    mw = RetryMiddleware(options.pop("policy", FAST), **options)
    timeout = aiohttp.ClientTimeout(total=30, sock_read=sock_read)
    async with aiohttp.ClientSession(middlewares=(mw,), timeout=timeout) as session:
        kwargs: dict[str, Any] = {"json": BODY} if data is None else {"data": data}
        try:
            async with session.request(method, url, **kwargs) as r:
                result.status, result.attempts = r.status, getattr(r, "retry_attempts", None)
                result.body = await read(r)
        except Exception as e:  # noqa: BLE001 - the test checks what the caller got
            result.error = e
    return result


def call(url: str, **kwargs: Any) -> Result:
    return asyncio.run(call_async(url, **kwargs))


def wire(*script: Wire, **kwargs: Any) -> tuple[Result, int]:
    """Play *script* (exact bytes) to one call; what the caller got and the requests seen."""
    with WireServer(script) as srv:
        return call(srv.url, **kwargs), srv.hits


def sse(*chunks: bytes, end: Any = "keep", headers: tuple[tuple[str, str], ...] = ()) -> Wire:
    return Wire(200, (*SSE, *headers), chunks, end)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/responses"


def stream_error(result: Result) -> rp.StreamError:
    assert isinstance(result.error, rp.StreamError), result
    return result.error


# --------------------------------------------------------------------------- the front door


def test_all_is_sorted_and_complete() -> None:
    """The package exports exactly its public names, sorted."""
    public = {n for n in vars(retrypolicy_aiohttp) if not n.startswith("_")} - {"annotations"}
    assert retrypolicy_aiohttp.__all__ == sorted(retrypolicy_aiohttp.__all__)
    assert set(retrypolicy_aiohttp.__all__) == public


def test_import_without_aiohttp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aiohttp, importing the adapter says what to install."""
    for name in [m for m in sys.modules if m.startswith("retrypolicy_aiohttp")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(ImportError, match=r"pip install 'retrypolicy\[aiohttp\]'"):
        importlib.import_module("retrypolicy_aiohttp")


def test_repr_and_options() -> None:
    """The middleware's repr names its policy; a single methods string is one method."""
    mw = RetryMiddleware(FAST, methods="post")
    assert repr(mw) == f"<RetryMiddleware policy={FAST.name!r}>"
    assert mw.options.methods == frozenset({"POST"})


# --------------------------------------------------------------------------- statuses


@pytest.mark.parametrize(
    ("reply", "hits"),
    [(Reply.error(401), 1), (Reply.text(500, "upstream connect error"), 3), (Reply.error(503), 6)],
    ids=["401", "500-text", "503"],
)
def test_final_response_is_whole_and_marked(server: FakeEUGPT, reply: Reply, hits: int) -> None:
    """On give-up the caller gets the last response, its body intact (the bytes read to
    judge it are given back) and retry_attempts set; the full table is in the matrix."""
    server.script(*[reply] * hits)
    result = call(server.responses_url)
    assert (result.status, result.error, server.request_count) == (reply.status, None, hits)
    assert result.attempts == hits
    server.script(reply)
    assert _no_ids(result.body) == _no_ids(asyncio.run(_bare(server.responses_url)))


def test_503_then_200(server: FakeEUGPT) -> None:
    """A 503 is retried (one retry event, named aiohttp) and the 200 that follows is the
    caller's, body and all."""
    server.script(Reply.error(503), Reply.ok("fine"))
    result = call(server.responses_url)
    assert (result.status, server.request_count, result.attempts) == (200, 2, 2)
    assert json.loads(result.body)["output_text"] == "fine"
    assert [(e.call, e.status, e.kind) for e in result.events] == [
        ("aiohttp", 503, rp.Kind.UNAVAILABLE)
    ]


def test_401_is_not_retried(server: FakeEUGPT) -> None:
    """401 means fix the credentials: one request, the envelope readable by the caller."""
    server.script(Reply.error(401, detail="Invalid API key"))
    result = call(server.responses_url)
    assert (result.status, server.request_count) == (401, 1)
    assert json.loads(result.body)["detail"] == "Invalid API key"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply.error(401), rp.AuthenticationError),
        (Reply.error(503), rp.ServiceUnavailableError),
        (Reply.error(429), rp.RateLimitError),
    ],
    ids=["401", "503", "429"],
)
def test_raise_on_give_up(server: FakeEUGPT, reply: Reply, error: type[rp.APIError]) -> None:
    """raise_on_give_up=True raises the matching rp.APIError, with its code and attempts."""
    server.script(*[reply] * 8)
    result = call(server.responses_url, raise_on_give_up=True)
    assert isinstance(result.error, error), result
    assert result.error.code == reply.to_data().get("code", result.error.code)
    assert result.error.attempts == server.request_count


def test_large_error_body_is_given_back_whole(server: FakeEUGPT) -> None:
    """An error body larger than the bounded prefix read to judge it reaches the caller whole."""
    text = "upstream connect error " * 10_000
    server.script(*[Reply.text(500, text)] * 3)
    result = call(server.responses_url)
    assert (result.status, server.request_count) == (500, 3)
    assert result.body.decode() == text


def test_retried_responses_are_released(server: FakeEUGPT) -> None:
    """Responses retried past go back to the pool: with one connection, retries still flow."""

    async def main() -> int:
        connector = aiohttp.TCPConnector(limit=1)
        mw = RetryMiddleware(FAST)
        timeout = aiohttp.ClientTimeout(total=5)
        session = aiohttp.ClientSession(connector=connector, middlewares=(mw,), timeout=timeout)
        async with session, session.post(server.responses_url, json=BODY) as r:
            await r.read()
            return r.status

    server.script(Reply.error(503), Reply.error(502), Reply.ok())
    assert asyncio.run(main()) == 200
    assert server.request_count == 3


# --------------------------------------------------------------------------- wait hints


def test_retry_after_is_honoured(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """A 429's Retry-After is waited (recorded in instant mode), never less."""
    server.script(Reply.error(429, retry_after=3), Reply.ok())
    result = call(server.responses_url)
    assert (result.status, server.request_count) == (200, 2)
    assert instant.waits == [3.0]


def test_later_hint_wins(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """When Retry-After and retry-after-ms disagree, the later moment is waited."""
    server.script(Reply.error(503, retry_after=1, retry_after_ms=4500), Reply.ok())
    assert call(server.responses_url).status == 200
    assert instant.waits == [pytest.approx(4.5)]


@pytest.mark.parametrize(
    "hint", ["999999999999999999999999", "Fri, 01 Jan 2100 00:00:00 GMT"], ids=["huge", "2100"]
)
def test_retry_after_beyond_ceiling_gives_up_now(server: FakeEUGPT, hint: str) -> None:
    """A hint beyond max_retry_after, however large, means give up now, the hint on the error."""
    server.script(*[Reply.error(429, retry_after=hint)] * 3)
    result = call(server.responses_url, raise_on_give_up=True)
    assert isinstance(result.error, rp.RateLimitError), result
    assert result.error.retry_after is not None
    assert result.error.retry_after > FAST.backoff.max_retry_after
    assert server.request_count == 1


# --------------------------------------------------------------------------- transport failures


def test_connection_refused() -> None:
    """A closed port is a connection failure: 1 + 5 attempts, then aiohttp's own error."""
    seen: list[RetryEvent] = []
    result = call(closed_port_url(), before_attempt=seen.append)
    assert isinstance(result.error, aiohttp.ClientConnectorError), result
    assert len(seen) == 6


def test_read_timeout(server: FakeEUGPT) -> None:
    """A read timeout is a timeout: 1 + 2 attempts, then aiohttp's timeout error."""
    server.script(*[Reply.ok(delay=2.0)] * 3)
    with rp.testing.instant():
        result = call(server.responses_url, sock_read=0.1)
    assert isinstance(result.error, aiohttp.ServerTimeoutError), result
    # the third request may still be on its way in when the client's timeout fires
    assert server.wait_for_requests(3)
    assert server.request_count == 3


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (aiohttp.ServerDisconnectedError(), rp.Failure.TIMEOUT),
        (aiohttp.ClientPayloadError("cut"), rp.Failure.TIMEOUT),
        (aiohttp.SocketTimeoutError(), rp.Failure.TIMEOUT),
        (aiohttp.ClientConnectionResetError(), rp.Failure.TIMEOUT),
        (aiohttp.ClientOSError(), rp.Failure.TIMEOUT),
        (aiohttp.ConnectionTimeoutError(), rp.Failure.CONNECTION),
        (TimeoutError(), rp.Failure.TIMEOUT),
        (aiohttp.InvalidURL("x"), None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_exceptions_are_mapped_once(exc: BaseException, failure: rp.Failure | None) -> None:
    """aiohttp's exceptions mean what they say: never connected, sent then lost, or neither."""
    loop = RetryMiddleware(FAST).options.loop("POST")
    assert loop.judge_exception(exc).failure == failure


# --------------------------------------------------------------------------- event streams


def test_completed_stream_is_a_success(server: FakeEUGPT) -> None:
    """A stream that ends in response.completed is one success, read whole by the caller."""
    server.script(Reply.stream(3))
    result = call(server.responses_url)
    assert (result.error, server.request_count, result.attempts) == (None, 1, 1)
    assert result.body.count(b"event: message") == 5


STREAM_CODES = [  # code, its kind, retried when it comes before any content
    ("upstream_timeout", rp.Kind.UPSTREAM_TIMEOUT, True),
    ("upstream_error", rp.Kind.UPSTREAM_ERROR, True),
    ("internal_error", rp.Kind.INTERNAL_ERROR, True),
    ("cancelled", rp.Kind.CANCELLED, False),
    ("model_on_fire", rp.Kind.STREAM_ERROR, False),
]


@pytest.mark.parametrize(("code", "kind", "retried"), STREAM_CODES)
def test_error_before_content(server: FakeEUGPT, code: str, kind: rp.Kind, retried: bool) -> None:
    """An error event before any content is retried transparently when its code allows;
    otherwise the caller gets the StreamError at once."""
    server.script(Reply.stream(0, end="error", code=code), Reply.stream(2))
    result = call(server.responses_url)
    assert server.request_count == (2 if retried else 1)
    if retried:
        assert result.error is None
        assert b"response.completed" in result.body
    else:
        assert (stream_error(result).code, stream_error(result).kind) == (code, kind)


@pytest.mark.parametrize(("code", "kind", "retried"), STREAM_CODES)
def test_error_after_content(server: FakeEUGPT, code: str, kind: rp.Kind, retried: bool) -> None:
    """After content reached the caller, an error event surfaces as a classified StreamError,
    retryable or not, and is never retried by the middleware."""
    server.script(Reply.stream(2, end="error", code=code, interval=GAP))
    err = stream_error(call(server.responses_url))
    assert (err.code, err.kind, err.attempts, err.retryable) == (code, kind, 1, retried)
    assert server.request_count == 1


@pytest.mark.parametrize(
    ("reply", "hits"),
    [
        (Reply.stream(0, end="cut"), 3),  # only the preamble: retried, then given up
        (Reply.stream(2, skip_sequence=True), 3),  # the gap shows at the first delta
        (Reply.stream(2, end="cut", interval=GAP), 1),
        (Reply.stream(2, end="cut_mid_frame", interval=GAP), 1),
        (Reply.stream(2, end="reset", interval=GAP), 1),
    ],
    ids=["cut-before-content", "gap", "cut-after-content", "cut-mid-frame", "reset"],
)
def test_broken_streams(server: FakeEUGPT, reply: Reply, hits: int) -> None:
    """A stream cut, reset or with a sequence gap is never a success: an incomplete_stream
    (retried before content) or a StreamError for the caller."""
    server.script(*[reply] * 4)
    err = stream_error(call(server.responses_url))
    assert err.kind == rp.Kind.INCOMPLETE_STREAM
    assert server.request_count == hits


def test_stream_give_up_raises_with_raise_on_give_up(server: FakeEUGPT) -> None:
    """A stream failing before content to the end raises StreamError with raise_on_give_up."""
    server.script(*[Reply.stream(0, end="error", code="upstream_error")] * 5)
    err = stream_error(call(server.responses_url, raise_on_give_up=True))
    assert (err.kind, err.attempts, server.request_count) == (rp.Kind.UPSTREAM_ERROR, 4, 4)


def test_gzip_error_envelope_keeps_its_code() -> None:
    """A gzip-encoded error envelope is judged decoded: its code reaches the error."""
    reply = Wire(403, (("Content-Type", "application/json"), *GZ), (gzipped(envelope(403, "p")),))
    result, hits = wire(reply, raise_on_give_up=True)
    assert isinstance(result.error, rp.PermissionDeniedError), result
    assert (result.error.code, hits) == ("p", 1)


def test_gzip_error_body_reaches_the_caller_as_aiohttp_gives_it() -> None:
    """The caller reads a gzip-encoded error body decoded, as bare aiohttp would give it."""
    reply = Wire(503, (("Content-Type", "application/json"), *GZ), (gzipped(envelope(503, "b")),))
    result, hits = wire(reply)
    assert (result.status, hits) == (503, 6)
    assert json.loads(result.body)["error"]["code"] == "b"


def test_gzip_complete_stream_is_a_success() -> None:
    """A gzip-encoded stream that ends in response.completed is one success, not three."""
    result, hits = wire(sse(gzipped(completed_stream()), headers=GZ))
    assert (result.error, hits) == (None, 1)
    assert result.body == completed_stream()


@pytest.mark.parametrize("end", ["reset", "close"])
def test_completed_stream_then_cut_is_a_success(end: str) -> None:
    """The connection cut after response.completed changes nothing: no error, no retry."""
    result, hits = wire(sse(completed_stream(), end=end))
    assert (result.error, hits) == (None, 1)
    assert result.body.endswith(b"\n\n")


@pytest.mark.parametrize(
    "data",
    ['{"type":"error","message":"no code"}', '{"type":"error","code":null}', "{not json"],
    ids=["no-code", "null-code", "not-json"],
)
def test_error_event_without_usable_code_is_a_stream_failure(data: str) -> None:
    """An error event without a usable code is a stream_error, not retried, never success."""
    frame = f"event: error\ndata: {data}\n\n".encode()
    result, hits = wire(sse(events(CREATED, DELTA) + frame))
    err = stream_error(result)
    assert (err.kind, err.retryable, hits) == (rp.Kind.STREAM_ERROR, False, 1)


# --------------------------------------------------------------------------- what is retried


async def _one_shot() -> AsyncIterator[bytes]:
    yield json.dumps(BODY).encode()


def test_one_shot_body_is_sent_once(server: FakeEUGPT) -> None:
    """An async-generator body is sent once, even on a retryable 503."""
    server.script(*[Reply.error(503)] * 3)
    result = call(server.responses_url, data=_one_shot())
    assert (result.status, server.request_count) == (503, 1)


def test_one_shot_body_stream_is_still_checked(server: FakeEUGPT) -> None:
    """The stream answering a one-shot request is still checked to its last event."""
    server.script(Reply.stream(0, end="error", code="upstream_error"), Reply.stream(1))
    result = call(server.responses_url, data=_one_shot())
    assert (stream_error(result).code, server.request_count) == ("upstream_error", 1)


@pytest.mark.parametrize(
    ("methods", "hits"),
    [("POST", 3), ("post", 3), (["GET", "POST"], 3), ("GET", 1)],
    ids=["POST", "post", "list", "GET"],
)
def test_methods(server: FakeEUGPT, methods: Any, hits: int) -> None:
    """methods="POST" is the one method POST (not its letters); others are sent once."""
    server.script(Reply.error(503), Reply.error(503), Reply.ok())
    result = call(server.responses_url, methods=methods)
    assert server.request_count == hits
    assert result.status == (200 if hits == 3 else 503)


# --------------------------------------------------------------------------- layering


def test_layers_add_up_on_status(server: FakeEUGPT) -> None:
    """Inside @rp.retry, an always-503 server sees 1 + 5 requests in all, not 6 x 6."""
    server.script(*[Reply.error(503)] * 40)

    @rp.retry(FAST)
    async def ask() -> aiohttp.ClientResponse:
        session = aiohttp.ClientSession(middlewares=(RetryMiddleware(FAST),))
        async with session, session.post(server.responses_url, json=BODY) as r:
            await r.read()
            return r  # marked as retried to the end: the outer layer returns it as is

    assert asyncio.run(ask()).status == 503
    assert server.request_count == 6


def test_layers_add_up_on_connection_failure() -> None:
    """Inside @rp.retry, a closed port is tried 1 + 5 times in all, not 36."""
    seen: list[RetryEvent] = []
    url = closed_port_url()

    @rp.retry(FAST)
    async def ask() -> bytes:
        mw = RetryMiddleware(FAST, before_attempt=seen.append)
        session = aiohttp.ClientSession(middlewares=(mw,))
        async with session, session.post(url, json=BODY) as r:
            return await r.read()

    with pytest.raises(aiohttp.ClientConnectorError):
        asyncio.run(ask())
    assert len(seen) == 6


def test_layers_add_up_on_streams(server: FakeEUGPT) -> None:
    """Inside @rp.retry, a stream failing before content is attempted 1 + 3 times in all."""
    server.script(*[Reply.stream(0, end="error", code="upstream_error")] * 20)

    @rp.retry(FAST)
    async def consume() -> bytes:
        result = await call_async(server.responses_url)
        if result.error is not None:
            raise result.error
        return result.body

    with pytest.raises(rp.StreamError):
        asyncio.run(consume())
    assert server.request_count == 4


def test_late_stream_error_restarts_the_exchange(server: FakeEUGPT) -> None:
    """A StreamError after content is the outer @rp.retry's to retry: a fresh exchange."""
    server.script(Reply.stream(2, end="error", code="upstream_error", interval=GAP))

    @rp.retry(FAST)
    async def consume() -> Result:
        result = await call_async(server.responses_url)
        if result.error is not None:
            raise result.error
        return result

    assert asyncio.run(consume()).error is None
    assert server.request_count == 2


# --------------------------------------------------------------------------- reading the body


async def _read_n(r: aiohttp.ClientResponse) -> bytes:
    parts = []
    while chunk := await r.content.read(7):
        parts.append(chunk)
    assert r.content.at_eof()
    return b"".join(parts)


async def _readany(r: aiohttp.ClientResponse) -> bytes:
    return b"".join([c async for c in r.content.iter_any()])


async def _lines(r: aiohttp.ClientResponse) -> bytes:
    return b"".join([line async for line in r.content])


async def _readline(r: aiohttp.ClientResponse) -> bytes:
    parts = []
    while line := await r.content.readline():
        parts.append(line)
    return b"".join(parts)


async def _readuntil(r: aiohttp.ClientResponse) -> bytes:
    parts = []
    while frame := await r.content.readuntil(b"\n\n"):
        parts.append(frame)
    return b"".join(parts)


async def _chunked(r: aiohttp.ClientResponse) -> bytes:
    return b"".join([c async for c in r.content.iter_chunked(5)])


async def _exactly(r: aiohttp.ClientResponse) -> bytes:
    head = await r.content.readexactly(10)
    with pytest.raises(asyncio.IncompleteReadError):
        await r.content.readexactly(10**6)
    return head


async def _text(r: aiohttp.ClientResponse) -> bytes:
    return (await r.text()).encode()


READERS: dict[str, Reader] = {
    "read": _read_all,
    "read(n)": _read_n,
    "iter_any": _readany,
    "async-for": _lines,
    "readline": _readline,
    "readuntil": _readuntil,
    "iter_chunked": _chunked,
    "readexactly": _exactly,
    "text": _text,
}


@pytest.mark.parametrize("how", list(READERS))
def test_every_reading_call_sees_the_whole_stream(server: FakeEUGPT, how: str) -> None:
    """Each StreamReader reading call gives the stream as bare aiohttp would."""
    server.script(Reply.stream(3, interval=GAP))
    bare = asyncio.run(_bare(server.responses_url))
    server.script(Reply.stream(3, interval=GAP))
    result = call(server.responses_url, read=READERS[how])
    assert result.error is None, result.error
    expected = bare[:10] if how == "readexactly" else bare
    assert _no_ids(result.body) == _no_ids(expected)


@pytest.mark.parametrize("how", ["read", "async-for", "iter_any", "text"])
def test_every_reading_call_raises_the_stream_error(server: FakeEUGPT, how: str) -> None:
    """Each reading call raises the StreamError of an error after content."""
    server.script(Reply.stream(2, end="error", code="internal_error", interval=GAP))
    assert stream_error(call(server.responses_url, read=READERS[how])).code == "internal_error"


@pytest.mark.parametrize("name", ["readchunk", "iter_chunks", "read_nowait", "unread_data"])
def test_calls_that_would_skip_the_check_are_refused(server: FakeEUGPT, name: str) -> None:
    """Chunk-boundary and buffer calls would bypass the replay: they are refused by name."""

    async def use(r: aiohttp.ClientResponse) -> bytes:
        assert isinstance(r.content, CheckedContent)
        with pytest.raises(AttributeError, match=name):
            getattr(r.content, name)
        assert r.content.exception() is None  # everything else is aiohttp's reader
        return await r.read()

    server.script(Reply.stream(1))
    assert call(server.responses_url, read=use).error is None


async def _lines_until_too_long(
    url: str, middlewares: tuple[RetryMiddleware, ...], read: Callable[[Any], Awaitable[bytes]]
) -> tuple[list[bytes], tuple[Any, ...] | None]:
    """Read *url*'s body with *read* until it ends or raises LineTooLong: the pieces read
    (ids blanked) and the error's args (its head of the line blanked too)."""
    pieces: list[bytes] = []
    timeout = aiohttp.ClientTimeout(total=30, sock_read=5)
    async with (
        aiohttp.ClientSession(middlewares=middlewares, timeout=timeout) as session,
        session.post(url, json=BODY) as r,
    ):
        try:
            while piece := await read(r.content):
                pieces.append(_no_ids(piece))
        except LineTooLong as e:
            return pieces, (_no_ids(e.args[0]), *e.args[1:])
    return pieces, None


LIMITED_READS: dict[str, Callable[[Any], Awaitable[bytes]]] = {
    "readline(max_line_length=64)": lambda c: c.readline(max_line_length=64),
    "readuntil(max_size=200)": lambda c: c.readuntil(b"\n\n", max_size=200),
    "readuntil(max_size=400)": lambda c: c.readuntil(b"\n\n", max_size=400),
}


@pytest.mark.parametrize("how", list(LIMITED_READS))
def test_line_limits_are_aiohttps(server: FakeEUGPT, how: str) -> None:
    """readline(max_line_length=) and readuntil(max_size=) hand out what bare aiohttp's
    StreamReader does, and raise its LineTooLong, with the same arguments, at the same line."""
    read = LIMITED_READS[how]
    server.script(Reply.stream(3, interval=GAP))
    bare = asyncio.run(_lines_until_too_long(server.responses_url, (), read))
    server.script(Reply.stream(3, interval=GAP))
    checked = asyncio.run(_lines_until_too_long(server.responses_url, (RetryMiddleware(),), read))
    assert bare[1] is not None  # the limit is met: the test compares the two raising
    assert checked == bare


def test_default_line_limit_is_the_readers(server: FakeEUGPT) -> None:
    """With no limit given, a line longer than the reader's high-water mark (the session's
    read_bufsize, doubled) raises LineTooLong, as bare aiohttp does."""

    async def first_too_long_line(middlewares: tuple[RetryMiddleware, ...]) -> object:
        async with (
            aiohttp.ClientSession(middlewares=middlewares, read_bufsize=4096) as session,
            session.post(server.responses_url, json=BODY) as r,
        ):
            with pytest.raises(LineTooLong) as info:
                while await r.content.readline():
                    pass
            return info.value.args[1]

    server.script(Reply.large_stream(200_000))
    assert asyncio.run(first_too_long_line(())) == 8192
    server.script(Reply.large_stream(200_000))
    assert asyncio.run(first_too_long_line((RetryMiddleware(),))) == 8192


def test_a_line_past_its_limit_is_not_buffered(server: FakeEUGPT) -> None:
    """readline() with a limit on a body with no newline raises once the limit is passed,
    holding about the limit in memory, never the whole body (8 MB here)."""

    async def peak_of_a_long_line(r: aiohttp.ClientResponse) -> bytes:
        assert isinstance(r.content, CheckedContent)  # a failure handed back: its body replayed
        tracemalloc.start()
        try:
            with pytest.raises(LineTooLong):
                await r.content.readline(max_line_length=1000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return str(peak).encode()

    server.script(Reply.text(400, "x" * 8_000_000))
    result = call(server.responses_url, read=peak_of_a_long_line)
    assert result.error is None, result.error
    assert int(result.body) < 2_000_000


def test_an_empty_separator_is_refused_as_aiohttp_refuses_it(server: FakeEUGPT) -> None:
    """readuntil(b"") raises aiohttp's ValueError instead of handing out empty lines forever."""

    async def empty(r: aiohttp.ClientResponse) -> bytes:
        with pytest.raises(ValueError, match="at least one-byte"):
            await r.content.readuntil(b"")
        return await r.read()

    server.script(Reply.stream(1))
    assert call(server.responses_url, read=empty).error is None


def test_plain_success_is_untouched(server: FakeEUGPT) -> None:
    """A non-stream success keeps aiohttp's own StreamReader: nothing is read or wrapped."""

    async def kind(r: aiohttp.ClientResponse) -> bytes:
        return type(r.content).__name__.encode()

    server.script(Reply.ok())
    assert call(server.responses_url, read=kind).body == b"StreamReader"


async def _bare(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.post(url, json=BODY) as r:
        return await r.read()


def _no_ids(body: bytes) -> bytes:
    """The body with its per-request ids blanked (two requests never share them)."""
    return re.sub(rb'"resp_[0-9]+"', b'"resp"', body)
