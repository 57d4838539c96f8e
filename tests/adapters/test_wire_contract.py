"""The contract's wire rules, on every adapter: one row per rule, every transport.

Each row scripts exact bytes (tests/adapters/wire.py) — gzip-encoded bodies and
streams, connections cut after ``response.completed``, malformed error events,
one-shot request bodies — and checks what the caller ends with and how many
requests the server saw.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests
import urllib3

import retrypolicy as rp
from retrypolicy_aiohttp import RetryMiddleware
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
from retrypolicy_httpx import httpx2 as on_httpx2
from retrypolicy_requests import RetryAdapter
from retrypolicy_urllib3 import PolicyRetry, guard_stream

from .wire import (
    CREATED,
    DELTA,
    Wire,
    WireServer,
    completed_stream,
    envelope,
    events,
    gzipped,
    stream,
)

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none", initial=0.001, max_delay=0.001))
GZ = (("Content-Encoding", "gzip"),)


@dataclass
class Result:
    """What the caller ended with: the body it read, or the error raised at it."""

    status: int | None = None
    body: bytes = b""
    error: BaseException | None = None


@dataclass(frozen=True)
class Call:
    """How a row calls: the options the adapter gets, and the request body."""

    methods: str | None = None
    raise_on_give_up: bool = False
    one_shot: bool = False
    method: str = "POST"
    read_timeout: float = 5.0
    """Seconds to wait for a response once the request is sent (connecting: 5 s)."""


def _body(call: Call) -> Any:
    payload = json.dumps({"input": "hi"}).encode()
    if call.one_shot:
        return iter([payload])  # a generator-like one-shot body
    return payload


def _via_requests(url: str, call: Call) -> Result:
    adapter = RetryAdapter(FAST, methods=call.methods, raise_on_give_up=call.raise_on_give_up)
    with requests.Session() as s:
        s.mount("http://", adapter)
        got = Result()
        try:
            timeout = (5, call.read_timeout)
            r = s.request(call.method, url, data=_body(call), stream=True, timeout=timeout)
            got.status = r.status_code
            for chunk in r.iter_content(None):
                got.body += chunk
        except Exception as e:  # noqa: BLE001 - the row checks what the caller got
            got.error = e
        return got


def _via_urllib3(url: str, call: Call) -> Result:
    retries = PolicyRetry(FAST, methods=call.methods, raise_on_give_up=call.raise_on_give_up)
    with urllib3.PoolManager(retries=retries) as http:
        got = Result()
        try:
            timeout = urllib3.Timeout(connect=5, read=call.read_timeout)
            r = http.request(
                call.method, url, body=_body(call), preload_content=False, timeout=timeout
            )
            got.status = r.status
            if r.status >= 400 and not call.raise_on_give_up:
                got.body = r.read()
                r.release_conn()
                return got
            for chunk in guard_stream(r):
                got.body += chunk
        except Exception as e:  # noqa: BLE001
            got.error = e
        return got


def _httpx_content(call: Call) -> Any:
    payload = json.dumps({"input": "hi"}).encode()
    if call.one_shot:
        return iter([payload])  # a one-shot body (httpx streams an iterator)
    return payload


def _via_httpx(
    url: str, call: Call, lib: ModuleType = httpx, transport_cls: Any = RetryTransport
) -> Result:
    transport = transport_cls(FAST, methods=call.methods, raise_on_give_up=call.raise_on_give_up)
    with lib.Client(transport=transport, timeout=lib.Timeout(5, read=call.read_timeout)) as c:
        got = Result()
        try:
            with c.stream(call.method, url, content=_httpx_content(call)) as r:
                got.status = r.status_code
                for chunk in r.iter_bytes():
                    got.body += chunk
        except Exception as e:  # noqa: BLE001
            got.error = e
        return got


def _via_httpx_async(
    url: str, call: Call, lib: ModuleType = httpx, transport_cls: Any = AsyncRetryTransport
) -> Result:
    async def content() -> Any:
        yield json.dumps({"input": "hi"}).encode()

    async def main() -> Result:
        transport = transport_cls(
            FAST, methods=call.methods, raise_on_give_up=call.raise_on_give_up
        )
        body = content() if call.one_shot else json.dumps({"input": "hi"}).encode()
        timeout = lib.Timeout(5, read=call.read_timeout)
        async with lib.AsyncClient(transport=transport, timeout=timeout) as c:
            got = Result()
            try:
                async with c.stream(call.method, url, content=body) as r:
                    got.status = r.status_code
                    async for chunk in r.aiter_bytes():
                        got.body += chunk
            except Exception as e:  # noqa: BLE001
                got.error = e
            return got

    return asyncio.run(main())


def _via_aiohttp(url: str, call: Call) -> Result:
    async def content() -> Any:
        yield json.dumps({"input": "hi"}).encode()

    async def main() -> Result:
        middleware = RetryMiddleware(
            FAST, methods=call.methods, raise_on_give_up=call.raise_on_give_up
        )
        body = content() if call.one_shot else json.dumps({"input": "hi"}).encode()
        timeout = aiohttp.ClientTimeout(total=5, sock_read=call.read_timeout)
        async with aiohttp.ClientSession(middlewares=(middleware,), timeout=timeout) as s:
            got = Result()
            try:
                async with s.request(call.method, url, data=body) as r:
                    got.status = r.status
                    async for chunk in r.content.iter_any():
                        got.body += chunk
            except Exception as e:  # noqa: BLE001
                got.error = e
            return got

    return asyncio.run(main())


CLIENTS: dict[str, Callable[[str, Call], Result]] = {
    "requests": _via_requests,
    "urllib3": _via_urllib3,
    "httpx": _via_httpx,
    "httpx-async": _via_httpx_async,
    "httpx2": functools.partial(_via_httpx, lib=httpx2, transport_cls=on_httpx2.RetryTransport),
    "httpx2-async": functools.partial(
        _via_httpx_async, lib=httpx2, transport_cls=on_httpx2.AsyncRetryTransport
    ),
    "aiohttp": _via_aiohttp,
}
RESENDING = {k: v for k, v in CLIENTS.items() if k != "urllib3"}
"""Adapters that see the request body: urllib3's Retry never does, so a one-shot body there
needs ``retries=False`` (tests/adapters/test_urllib3.py covers that documented limit)."""


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Callable[[str, Call], Result]:
    return CLIENTS[request.param]


@pytest.fixture(params=sorted(RESENDING))
def body_aware(request: pytest.FixtureRequest) -> Callable[[str, Call], Result]:
    return RESENDING[request.param]


def run(
    client: Callable[[str, Call], Result], *script: Wire, call: Call = Call()
) -> tuple[Result, WireServer]:
    with WireServer(script) as server, rp.testing.instant():
        result = client(server.url, call)
    return result, server


def _stream_error(result: Result) -> rp.StreamError:
    assert isinstance(result.error, rp.StreamError), result
    return result.error


# -- bodies and streams are judged decoded ----------------------------------------------


def test_gzip_error_envelope_keeps_its_code(client: Callable[[str, Call], Result]) -> None:
    """A gzip-encoded error envelope is judged decoded: its code reaches the error."""
    body = gzipped(envelope(403, "project_forbidden"))
    result, server = run(
        client,
        Wire(403, (("Content-Type", "application/json"), *GZ), (body,)),
        call=Call(raise_on_give_up=True),
    )
    assert isinstance(result.error, rp.APIError), result
    assert (result.error.status, result.error.code) == (403, "project_forbidden")
    assert server.hits == 1


def test_gzip_complete_stream_is_a_success(client: Callable[[str, Call], Result]) -> None:
    """A gzip-encoded stream that ends in response.completed is one success, not three."""
    result, server = run(client, stream(gzipped(completed_stream()), headers=GZ))
    assert result.error is None, result.error
    assert b"response.completed" in result.body
    assert server.hits == 1


def test_gzip_stream_error_before_content_is_retried(
    client: Callable[[str, Call], Result], request: pytest.FixtureRequest
) -> None:
    """A gzip-encoded stream failing before content is judged decoded: its error code is
    seen, and it is retried transparently where the adapter owns the stream (urllib3's
    Retry never sees a 200's body: there the caller gets the classified StreamError)."""
    failing = events(CREATED, {"type": "error", "code": "upstream_timeout", "message": "slow"})
    result, server = run(
        client,
        stream(gzipped(failing), headers=GZ),
        stream(gzipped(completed_stream()), headers=GZ),
    )
    if request.node.callspec.params["client"] == "urllib3":
        assert _stream_error(result).code == "upstream_timeout"
        assert server.hits == 1
        return
    assert result.error is None, result.error
    assert server.hits == 2


# -- a completed stream is a success whatever the connection does next -------------------


@pytest.mark.parametrize("end", ["reset", "close"])
def test_completed_stream_then_cut_is_a_success(
    client: Callable[[str, Call], Result], end: str
) -> None:
    """The connection cut (reset, or closed mid-chunked-body) after response.completed
    changes nothing: no StreamError, no second generation."""
    result, server = run(client, stream(completed_stream(), end=end))  # type: ignore[arg-type]
    assert result.error is None, result.error
    assert b"response.completed" in result.body
    assert server.hits == 1


# -- every failure has a failure kind -------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        '{"type":"error","message":"no code"}',
        '{"type":"error","code":null}',
        '{"type":"error","code":{"nested":1}}',
        "{not json",
    ],
    ids=["no-code", "null-code", "object-code", "not-json"],
)
def test_error_event_without_usable_code_is_a_stream_failure(
    client: Callable[[str, Call], Result], data: str
) -> None:
    """An error event without a usable code is a stream_error (not retried), never success."""
    frame = f"event: error\ndata: {data}\n\n".encode()
    result, server = run(client, stream(events(CREATED, DELTA) + frame))
    err = _stream_error(result)
    assert err.kind == rp.Kind.STREAM_ERROR
    assert not err.retryable
    assert server.hits == 1


# -- the error is raised in place of the error event ----------------------------------------

DELTA2 = {"type": "response.output_text.delta", "sequence_number": 2, "delta": "lo"}
FAILED = {"type": "error", "sequence_number": 3, "code": "upstream_error", "message": "x"}
OPENING = events(CREATED, DELTA)  # one chunk that commits the stream: the caller has it


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


@pytest.mark.parametrize(
    "chunks",
    [
        (OPENING, events(DELTA2), events(FAILED)),
        (OPENING, events(DELTA2, FAILED)),
        (OPENING, events(DELTA2) + events(FAILED)[:9], events(FAILED)[9:]),
        (OPENING, events(DELTA2)[:-1], b"\n" + events(FAILED)),
        (_crlf(OPENING), _crlf(events(DELTA2, FAILED))),
    ],
    ids=["own-chunk", "same-chunk", "split-frame", "straddling-blank-line", "crlf"],
)
def test_stream_error_replaces_the_error_event(
    client: Callable[[str, Call], Result], chunks: tuple[bytes, ...]
) -> None:
    """The caller gets every event before the error event, never the error event itself
    (at most the start of its frame, which no parser dispatches), then rp.StreamError —
    however the frames fall into chunks."""
    result, server = run(client, stream(*chunks, pause=0.02))
    err = _stream_error(result)
    assert (err.code, err.kind, err.attempts) == ("upstream_error", rp.Kind.UPSTREAM_ERROR, 1)
    before = events(CREATED, DELTA, DELTA2)
    if b"\r\n" in chunks[0]:
        before = _crlf(before)
    assert result.body.startswith(before), result.body
    rest = result.body[len(before) :]
    assert b"\n\n" not in rest, rest  # no frame of it is complete
    assert b"\r\n\r\n" not in rest, rest
    assert b"error" not in rest, rest
    assert server.hits == 1


def test_stream_error_before_content_on_give_up_withholds_the_event(
    client: Callable[[str, Call], Result],
) -> None:
    """A stream that fails before content with a code never retried (cancelled): the
    caller reads the preamble, not the error event, then gets rp.StreamError."""
    cancelled = {"type": "error", "sequence_number": 1, "code": "cancelled", "message": "x"}
    result, server = run(client, stream(events(CREATED, cancelled)))
    err = _stream_error(result)
    assert (err.code, err.kind) == ("cancelled", rp.Kind.CANCELLED)
    assert result.body == events(CREATED)
    assert server.hits == 1


# -- one-shot bodies, methods ----------------------------------------------------------------


def test_one_shot_body_is_sent_once(body_aware: Callable[[str, Call], Result]) -> None:
    """A request body that can be read only once is sent once, even on a retryable 503."""
    result, server = run(
        body_aware, Wire(503, (), (envelope(503, "busy"),)), call=Call(one_shot=True)
    )
    assert result.status == 503
    assert server.hits == 1


def test_one_shot_body_stream_is_still_checked(
    body_aware: Callable[[str, Call], Result],
) -> None:
    """The response stream of a one-shot request is still checked to its last event."""
    failing = events(CREATED, DELTA, {"type": "error", "code": "upstream_error", "message": "x"})
    result, server = run(body_aware, stream(failing), call=Call(one_shot=True))
    assert _stream_error(result).code == "upstream_error"
    assert server.hits == 1


@pytest.mark.parametrize(
    ("methods", "hits"), [("POST", 3), ("post", 3), ("GET", 1)], ids=["POST", "post", "GET"]
)
def test_methods_string_is_one_method(
    client: Callable[[str, Call], Result], methods: str, hits: int
) -> None:
    """methods="POST" means the one method POST (not the letters P, O, S, T), everywhere."""
    unavailable = Wire(503, (), (envelope(503, "busy"),))
    ok = stream(completed_stream())
    result, server = run(client, unavailable, unavailable, ok, call=Call(methods=methods))
    assert server.hits == hits
    assert result.status == (200 if hits == 3 else 503)


# -- a server's wait hint is never undercut ---------------------------------------------------


@pytest.mark.parametrize(
    "hint",
    [("Retry-After", "999999999999999999999999"), ("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT")],
    ids=["huge-seconds", "next-century"],
)
def test_retry_after_beyond_ceiling_gives_up_now(
    client: Callable[[str, Call], Result], hint: tuple[str, str]
) -> None:
    """A Retry-After beyond max_retry_after, however large, means give up at once."""
    result, server = run(
        client, Wire(429, (hint,), (envelope(429, "rate"),)), call=Call(raise_on_give_up=True)
    )
    assert isinstance(result.error, rp.RateLimitError), result
    assert result.error.retry_after is not None
    assert result.error.retry_after > FAST.backoff.max_retry_after
    assert server.hits == 1
