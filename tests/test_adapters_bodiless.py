"""A response with no body by definition is no event stream, on every adapter.

A ``HEAD`` gets the headers a ``POST`` would (``Content-Type: text/event-stream``), and a
204, 205 or 304 never has content: an adapter that took such a response for a stream saw
an empty body, called it a stream that ended without ``response.completed``, and retried
the request twice (a POST that succeeded, sent three times) before raising
``rp.StreamError``. The spec's stream rules are about a stream's events; these have none.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import urllib3

import retrypolicy as rp
from retrypolicy.transport import is_event_stream
from retrypolicy_urllib3 import guard_stream

from .adapters.test_wire_contract import CLIENTS, Call, Result, run
from .adapters.wire import SSE, Wire, WireServer

NO_BODY = [
    pytest.param("HEAD", 200, id="HEAD-200"),
    pytest.param("POST", 204, id="POST-204"),
    pytest.param("POST", 205, id="POST-205"),
    pytest.param("GET", 304, id="GET-304"),
]


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Callable[[str, Call], Result]:
    return CLIENTS[request.param]


@pytest.mark.parametrize(("method", "status"), NO_BODY)
def test_bodiless_response_with_event_stream_type_is_one_success(
    client: Callable[[str, Call], Result], method: str, status: int
) -> None:
    """A HEAD, 204, 205 or 304 labelled text/event-stream is handed over after one request,
    with no rp.StreamError (it used to be retried as an incomplete stream)."""
    result, server = run(client, Wire(status, SSE, (), chunked=False), call=Call(method=method))
    assert result.error is None, result.error
    assert (result.status, result.body) == (status, b"")
    assert server.hits == 1


def test_empty_post_stream_is_still_incomplete(client: Callable[[str, Call], Result]) -> None:
    """The same empty text/event-stream answering a POST with 200 is still a stream that
    never completed: retried where the adapter owns it, an rp.StreamError in the end."""
    result, server = run(client, Wire(200, SSE, (), chunked=False))
    assert isinstance(result.error, rp.StreamError), result
    assert result.error.kind == rp.Kind.INCOMPLETE_STREAM
    assert server.hits in {1, 3}  # 1: urllib3's Retry never sees a 200's body


IS_EVENT_STREAM = [
    # (method, status, is a stream)
    (None, None, True),
    ("POST", 200, True),
    ("post", 200, True),
    ("GET", 206, True),
    ("HEAD", 200, False),
    ("head", 200, False),
    ("POST", 204, False),
    ("POST", 205, False),
    ("GET", 304, False),
    ("POST", 101, False),
]


@pytest.mark.parametrize(("method", "status", "expected"), IS_EVENT_STREAM)
def test_is_event_stream_knows_responses_without_body(
    method: str | None, status: int | None, expected: bool
) -> None:
    """The seam's is_event_stream says no for a response that cannot carry a body."""
    headers = {"Content-Type": "text/event-stream"}
    assert is_event_stream(headers, method=method, status=status) is expected


def test_guard_stream_passes_a_head_response() -> None:
    """urllib3's guard_stream reads the method off the response: a HEAD's empty body
    passes, where it used to raise rp.StreamError."""
    with WireServer([Wire(200, SSE, (), chunked=False)]) as server, urllib3.PoolManager() as http:
        r = http.request("HEAD", server.url, preload_content=False, retries=False)
        assert b"".join(guard_stream(r)) == b""
