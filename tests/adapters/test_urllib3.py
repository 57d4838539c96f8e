"""retrypolicy_urllib3: PolicyRetry in urllib3 pools and requests' HTTPAdapter, and guard_stream.

Real HTTP against FakeEUGPT on 127.0.0.1; no urllib3 internals are mocked and
nothing sleeps: waits are recorded by ``rp.testing.instant()``.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import json
import pickle
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter
from structlog.testing import capture_logs
from urllib3.exceptions import (
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util.retry import RequestHistory, Retry

import retrypolicy as rp
import retrypolicy_urllib3
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy.transport import ATTEMPTS_ATTRIBUTE, EXHAUSTED
from retrypolicy_urllib3 import PolicyRetry, guard_stream

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))
"""EU GPT with un-jittered backoff (0.5, 1, 2, ...) except 429, whose rule has its own."""
BODY = b'{"input": "hi", "stream": false}'
NOW = 1_800_000_000.0  # a fixed wall clock, for HTTP-date hints


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fresh fake EU GPT API for the test."""
    with FakeEUGPT() as fake:
        yield fake


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(pm: urllib3.PoolManager, url: str, **kw: Any) -> urllib3.BaseHTTPResponse:
    """POST the API's JSON body, as a client would."""
    return pm.request("POST", url, body=BODY, headers={"content-type": "application/json"}, **kw)


def session(retry: Retry) -> requests.Session:
    s = requests.Session()
    s.mount("http://", HTTPAdapter(max_retries=retry))
    return s


# -- the contract table, through PoolManager --------------------------------------------

STATUS_TABLE = [
    # status, requests made (first try + retries), per DESIGN.md
    (400, 1),
    (401, 1),
    (403, 1),
    (404, 1),
    (409, 1),
    (429, 7),
    (500, 3),
    (502, 6),
    (503, 6),
    (504, 6),
    (507, 3),
]


@pytest.mark.parametrize(("status", "requests_made"), STATUS_TABLE)
def test_status_table_pool_manager(
    server: FakeEUGPT, instant: rp.testing.Instant, status: int, requests_made: int
) -> None:
    """Each status is retried as often as the contract says; the final response is returned."""
    server.script(*[Reply.error(status)] * (requests_made + 1))
    r = post(urllib3.PoolManager(retries=PolicyRetry()), server.responses_url)
    assert r.status == status
    assert server.request_count == requests_made
    assert len(instant.waits) == requests_made - 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply.delay(5, Reply.ok()), ReadTimeoutError),
        (Reply.reset(), ProtocolError),
        (Reply.close_without_response(), ProtocolError),
    ],
    ids=["read-timeout", "reset", "closed-without-response"],
)
def test_after_sending_failures_are_timeouts(
    server: FakeEUGPT, instant: rp.testing.Instant, reply: Reply, reason: type[Exception]
) -> None:
    """A read timeout or a dropped connection is retried twice, then MaxRetryError as urllib3's."""
    server.script(*[reply] * 4)
    pm = urllib3.PoolManager(retries=PolicyRetry(), timeout=urllib3.Timeout(connect=2, read=0.2))
    with pytest.raises(MaxRetryError) as caught:
        post(pm, server.responses_url)
    assert isinstance(caught.value.reason, reason)
    assert caught.value.__cause__ is caught.value.reason
    assert server.request_count == 3
    assert len(instant.waits) == 2


def test_connection_refused(
    closed_port: int, instant: rp.testing.Instant, events: list[RetryEvent]
) -> None:
    """A refused connection is retried five times (six attempts), then MaxRetryError."""
    pm = urllib3.PoolManager(retries=PolicyRetry())
    with pytest.raises(MaxRetryError) as caught:
        post(pm, f"http://127.0.0.1:{closed_port}/v1/responses")
    assert isinstance(caught.value.reason, NewConnectionError)
    assert len(instant.waits) == 5
    assert [(e.name, e.attempt, e.kind) for e in events][-1] == ("retry.gave_up", 6, "connection")


def test_pool_urlopen_per_call(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """``retries=PolicyRetry()`` on one ``urlopen`` call works as on the pool."""
    server.script(Reply.error(503), Reply.error(502), Reply.ok())
    with urllib3.HTTPConnectionPool("127.0.0.1", server.port) as pool:
        r = pool.urlopen("POST", "/v1/responses", body=BODY, retries=PolicyRetry(FAST))
    assert (r.status, server.request_count, instant.waits) == (200, 3, [0.5, 1.0])
    assert isinstance(r.retries, PolicyRetry)
    assert [h.status for h in r.retries.history] == [503, 502]


# -- Retry-After --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "at_least"),
    [
        (Reply.error(429, retry_after=3), 3.0),
        (Reply.error(503, retry_after="4"), 4.0),
        (Reply.error(429, retry_after_ms=2500), 2.5),
        (Reply.error(503, retry_after=formatdate(NOW + 30, usegmt=True)), 30.0),
    ],
    ids=["429-seconds", "503-seconds", "retry-after-ms", "http-date"],
)
def test_retry_after_is_a_floor(
    server: FakeEUGPT, instant: rp.testing.Instant, first: Reply, at_least: float
) -> None:
    """A server wait hint is honoured: the one wait is at least the hint."""
    server.script(first, Reply.ok())
    pm = urllib3.PoolManager(retries=PolicyRetry(FAST, wall_clock=lambda: NOW))
    r = post(pm, server.responses_url)
    assert (r.status, server.request_count) == (200, 2)
    assert len(instant.waits) == 1
    assert at_least <= instant.waits[0] <= at_least + 2


def test_retry_after_above_cap_gives_up_at_once(
    server: FakeEUGPT, instant: rp.testing.Instant, events: list[RetryEvent]
) -> None:
    """A hint above max_retry_after ends the call at once: one request, the 429 returned."""
    server.script(Reply.error(429, retry_after=120), Reply.ok())
    r = post(urllib3.PoolManager(retries=PolicyRetry()), server.responses_url)
    assert (r.status, server.request_count, instant.waits) == (429, 1, [])
    assert "max_retry_after" in events[-1].reason


@pytest.mark.parametrize(
    ("replies", "in_reason"),
    [
        ([Reply.error(503)] * 6, "5 of 5 retries used"),
        ([Reply.error(429, retry_after=120)], "max_retry_after"),
    ],
    ids=["exhausted", "hint-above-cap"],
)
def test_raise_on_status(
    server: FakeEUGPT, instant: rp.testing.Instant, replies: list[Reply], in_reason: str
) -> None:
    """With raise_on_status=True, giving up on a response raises MaxRetryError(ResponseError)."""
    server.script(*replies)
    pm = urllib3.PoolManager(retries=PolicyRetry(raise_on_status=True))
    with pytest.raises(MaxRetryError) as caught:
        post(pm, server.responses_url)
    assert isinstance(caught.value.reason, ResponseError)
    assert in_reason in str(caught.value.reason)
    assert server.request_count == len(replies)


# -- requests' HTTPAdapter ----------------------------------------------------------


@pytest.mark.parametrize(("status", "requests_made"), [(404, 1), (429, 7), (500, 3), (503, 6)])
def test_status_table_requests(
    server: FakeEUGPT, instant: rp.testing.Instant, status: int, requests_made: int
) -> None:
    """Through ``HTTPAdapter(max_retries=PolicyRetry())`` the same table holds."""
    server.script(*[Reply.error(status)] * (requests_made + 1))
    resp = session(PolicyRetry()).post(server.responses_url, data=BODY, timeout=5)
    assert resp.status_code == status
    assert server.request_count == requests_made
    assert len(instant.waits) == requests_made - 1


def test_requests_keeps_the_object_and_recovers(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """HTTPAdapter uses the PolicyRetry as given; a retried 503 then 200 gives the 200."""
    retry = PolicyRetry(FAST)
    adapter = HTTPAdapter(max_retries=retry)
    assert adapter.max_retries is retry
    s = requests.Session()
    s.mount("http://", adapter)
    server.script(Reply.error(503), Reply.ok())
    resp = s.post(server.responses_url, data=BODY, timeout=5)
    assert (resp.status_code, resp.json()["status"]) == (200, "completed")
    assert instant.waits == [0.5]


@pytest.mark.parametrize(
    ("retry", "target", "error"),
    [
        (PolicyRetry(), "closed", requests.ConnectionError),
        (PolicyRetry(raise_on_status=True), "429s", requests.exceptions.RetryError),
    ],
    ids=["refused", "raise-on-status"],
)
def test_requests_give_up_errors(
    server: FakeEUGPT,
    closed_port: int,
    instant: rp.testing.Instant,
    retry: PolicyRetry,
    target: str,
    error: type[Exception],
) -> None:
    """requests maps a give-up's MaxRetryError to its own exceptions, as for urllib3's Retry."""
    server.script(*[Reply.error(429)] * 7)
    url = server.responses_url if target == "429s" else f"http://127.0.0.1:{closed_port}/"
    with pytest.raises(error):
        session(retry).post(url, data=BODY, timeout=5)
    assert len(instant.waits) == (6 if target == "429s" else 5)


# -- the object: immutable steps, copies, questions ----------------------------------


def reset() -> ProtocolError:
    return ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))


def test_increment_returns_a_new_object() -> None:
    """increment() leaves the original alone and returns the next state, wait and history."""
    r0 = PolicyRetry(FAST, clock=lambda: 10.0)
    err = reset()
    r1 = r0.increment("POST", "/v1/responses", error=err)
    assert r1 is not r0
    assert type(r1) is PolicyRetry
    assert (r0.state, r0.delay, r0.history) == (None, None, ())
    assert r1.state == rp.transport.AttemptState(
        started=10.0, attempt=2, retries=(("timeout", 1),), last_delay=0.5
    )
    assert r1.delay == 0.5
    assert r1.history == (RequestHistory("POST", "/v1/responses", err, None, None),)
    assert r1.policy is r0.policy is FAST
    r2 = r1.increment("POST", "/v1/responses", error=reset())
    assert (r2.state and r2.state.attempt, r2.delay, len(r2.history)) == (3, 1.0, 2)
    assert (r1.state.attempt, len(r1.history)) == (2, 1)


def test_increment_gives_up_with_max_retry_error() -> None:
    """Past the kind's limit, increment raises MaxRetryError with the error as reason and cause."""
    r = PolicyRetry(FAST)
    for _ in range(2):
        r = r.increment("POST", "/v1/responses", error=reset())
    last = reset()
    with pytest.raises(MaxRetryError) as caught:
        r.increment("POST", "/v1/responses", error=last)
    assert caught.value.reason is last
    assert caught.value.__cause__ is last


def test_new_keeps_policy_state_and_options() -> None:
    """new() copies everything and changes only what it is given."""
    hook_calls: list[RetryEvent] = []
    r = PolicyRetry(
        rp.HTTP,
        methods=["get", "post"],
        raise_on_status=True,
        redirect=3,
        on_retry=hook_calls.append,
    ).increment("POST", "/x", error=reset())
    assert hook_calls
    copy = r.new()
    assert copy is not r
    assert (copy.policy, copy.state, copy.delay, copy.history) == (
        r.policy,
        r.state,
        r.delay,
        r.history,
    )
    assert (copy.allowed_methods, copy.raise_on_status, copy.redirect) == (
        frozenset({"GET", "POST"}),
        True,
        3,
    )
    assert copy.new(history=()).history == ()
    assert copy.history == r.history
    other = r.new(policy=rp.EUGPT, redirect=False)  # other options: a fresh attempt loop
    assert (other.policy, other.state, other.redirect, other.raise_on_redirect) == (
        rp.EUGPT,
        None,
        0,
        False,
    )
    assert r.policy is rp.HTTP
    copy.increment("POST", "/x", error=reset())  # the hook survived the copy
    assert len(hook_calls) == 2


@pytest.mark.parametrize("key", ["total", "status_forcelist", "backoff_factor", "connect"])
def test_new_refuses_urllib3_counters(key: str) -> None:
    """urllib3's own limits would be silently ignored, so new() refuses them."""
    with pytest.raises(TypeError, match="policy"):
        PolicyRetry().new(**{key: 3})


def test_from_int() -> None:
    """Retry.from_int passes a PolicyRetry through; PolicyRetry.from_int(None) builds one."""
    r = PolicyRetry()
    assert Retry.from_int(r) is r
    assert PolicyRetry.from_int(r) is r
    assert type(PolicyRetry.from_int(None)) is PolicyRetry
    plain = PolicyRetry.from_int(3)
    assert (type(plain), plain.total) == (Retry, 3)


@pytest.mark.parametrize(
    ("methods", "method", "status", "expected"),
    [
        (None, "POST", 429, True),
        (None, "POST", 503, True),
        (None, "POST", 500, True),
        (None, "POST", 404, False),
        (None, "POST", 400, False),
        (None, "POST", 200, False),
        (None, "POST", 302, False),
        (["GET"], "POST", 503, False),
        (["GET"], "get", 503, True),
    ],
)
def test_is_retry(methods: list[str] | None, method: str, status: int, expected: bool) -> None:
    """is_retry is True for a status the policy retries, when the method may be retried."""
    assert PolicyRetry(methods=methods).is_retry(method, status) is expected


def test_methods_restrict_all_but_connection_failures() -> None:
    """A method outside *methods*: a read error is re-raised as is, a connect failure retried."""
    r = PolicyRetry(methods=["GET"])
    timeout = ReadTimeoutError(None, "/x", "Read timed out.")  # type: ignore[arg-type]
    with pytest.raises(ReadTimeoutError) as caught:
        r.increment("POST", "/x", error=timeout)
    assert caught.value is timeout
    refused = NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    assert r.increment("POST", "/x", error=refused).state is not None


def test_is_exhausted_only_counts_redirects() -> None:
    """The loop's give-up is increment's MaxRetryError; is_exhausted only says redirects ran out."""
    one = rp.Policy(rules=(rp.Rule(kind="unavailable", retry=True, max_retries=1, status=503),))
    done = PolicyRetry(one).increment("POST", "/x", response=urllib3.HTTPResponse(b"", status=503))
    assert not done.is_exhausted()
    with pytest.raises(MaxRetryError, match="1 of 1 retries used"):
        done.increment("POST", "/x", response=urllib3.HTTPResponse(b"", status=503))
    assert PolicyRetry(redirect=0).new(redirect=-1).is_exhausted()


def test_body_code_only_when_in_memory(events: list[RetryEvent]) -> None:
    """The error code is read from a preloaded body; a streamed body is never read by increment."""
    busy = rp.Policy(
        rules=(rp.Rule(kind="busy", retry=True, max_retries=1, status=409, code="busy"),)
    )
    body = b'{"detail": "try later", "error": "busy"}'
    preloaded = urllib3.HTTPResponse(body, status=409, preload_content=True)
    assert PolicyRetry(busy).increment("POST", "/x", response=preloaded).state is not None
    assert (events[-1].name, events[-1].code) == ("retry.scheduled", "busy")
    streamed = urllib3.HTTPResponse(io.BytesIO(body), status=409, preload_content=False)
    with pytest.raises(MaxRetryError):
        PolicyRetry(busy).increment("POST", "/x", response=streamed)
    assert events[-1].code is None
    assert streamed.read() == body  # untouched


def test_sleep_waits_the_decided_delay() -> None:
    """sleep() waits exactly the decided delay, via the injected sleeper; none before a failure."""
    slept: list[float] = []
    r0 = PolicyRetry(FAST, sleep=slept.append)
    r0.sleep()
    assert (slept, r0.sleep_for_retry(urllib3.HTTPResponse()), r0.get_backoff_time()) == (
        [],
        False,
        0.0,
    )
    r1 = r0.increment("POST", "/x", response=urllib3.HTTPResponse(b"", status=503))
    r1.sleep()
    assert slept == [0.5] == [r1.get_backoff_time()]
    with rp.testing.instant() as rec:  # the loop records the wait when it decides it
        r2 = r1.increment("POST", "/x", response=urllib3.HTTPResponse(b"", status=503))
        r2.sleep()
    assert (rec.waits, slept, r2.delay) == ([1.0], [0.5], 0)


def test_retry_after_readers() -> None:
    """get_retry_after and parse_retry_after read hints as the policy does (ms first, dates)."""
    r = PolicyRetry(wall_clock=lambda: NOW)
    headers = {"Retry-After": "9", "retry-after-ms": "1500"}  # they disagree: the later wins
    assert r.get_retry_after(urllib3.HTTPResponse(b"", headers=headers)) == 9.0
    assert r.parse_retry_after(formatdate(NOW + 12, usegmt=True)) == 12.0
    with pytest.raises(urllib3.exceptions.InvalidHeader):
        r.parse_retry_after("soon")


def test_pickles_with_a_requests_session() -> None:
    """A session whose adapter holds a PolicyRetry pickles, and the copy keeps its policy."""
    s = session(PolicyRetry(rp.HTTP, methods=["GET"]))
    copied = pickle.loads(pickle.dumps(s))  # noqa: S301 - our own data
    retry = copied.get_adapter("http://x").max_retries
    assert isinstance(retry, PolicyRetry)
    assert (retry.policy, retry.allowed_methods) == (rp.HTTP, frozenset({"GET"}))


def test_repr_is_informative() -> None:
    """The repr names the policy, the attempt, the retries per kind and the wait."""
    r = PolicyRetry(FAST).increment("POST", "/x?key=eugpt_secret", error=reset())
    assert repr(r) == (
        "PolicyRetry(policy='eugpt', attempt=2, retries={'timeout': 1}, delay=0.5, "
        "methods='all', redirect=10)"
    )


@pytest.mark.parametrize(
    ("redirect", "outcome"), [(10, 200), (0, MaxRetryError)], ids=["followed", "limit"]
)
def test_redirects_are_not_failures(
    server: FakeEUGPT,
    instant: rp.testing.Instant,
    events: list[RetryEvent],
    redirect: int,
    outcome: object,
) -> None:
    """A redirect steps the redirect counter, without a wait or an event."""
    server.script(Reply.json(307, {}, headers={"Location": "/v1/responses"}), Reply.ok())
    pm = urllib3.PoolManager(retries=PolicyRetry(redirect=redirect))
    if outcome is MaxRetryError:
        with pytest.raises(MaxRetryError, match="too many redirects"):
            post(pm, server.responses_url)
    else:
        r = post(pm, server.responses_url)
        assert r.status == 200
        assert isinstance(r.retries, PolicyRetry)
        assert r.retries.redirect == redirect - 1
        assert r.retries.history[0].redirect_location == "/v1/responses"
    assert (instant.waits, events) == ([], [])


# -- events -------------------------------------------------------------------------


def test_structlog_events_exact(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """The same events and keys as @rp.retry: one per decision; none for a success."""
    server.script(Reply.error(503), Reply.error(502), Reply.ok())
    pm = urllib3.PoolManager(retries=PolicyRetry(FAST, clock=lambda: 0.0))
    with capture_logs() as logs:
        post(pm, server.responses_url)
    common = {"log_level": "warning", "call": "urllib3.urlopen", "policy": "eugpt"}
    assert logs == [
        {
            "event": "retry.scheduled",
            **common,
            "attempt": 1,
            "kind": "unavailable",
            "status": 503,
            "code": "service_unavailable",
            "delay": 0.5,
            "elapsed": 0.0,
            "reason": "unavailable: retry 1 of 5",
        },
        {
            "event": "retry.scheduled",
            **common,
            "attempt": 2,
            "kind": "unavailable",
            "status": 502,
            "code": "bad_gateway",
            "delay": 1.0,
            "elapsed": 0.5,
            "reason": "unavailable: retry 2 of 5",
        },
    ]


def test_gave_up_event(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """Giving up logs retry.gave_up at error level with the reason."""
    server.script(*[Reply.error(500)] * 3)
    with capture_logs() as logs:
        post(urllib3.PoolManager(retries=PolicyRetry(FAST)), server.responses_url)
    assert [log["event"] for log in logs] == ["retry.scheduled"] * 2 + ["retry.gave_up"]
    assert logs[-1]["log_level"] == "error"
    assert (logs[-1]["attempt"], logs[-1]["reason"]) == (3, "server_error: 2 of 2 retries used")


# -- event streams ------------------------------------------------------------------


def stream(server: FakeEUGPT, retry: PolicyRetry | None = None) -> urllib3.BaseHTTPResponse:
    pm = urllib3.PoolManager(retries=retry or PolicyRetry())
    return pm.request("POST", server.responses_url, body=b"{}", preload_content=False)


@pytest.mark.parametrize(
    ("reply", "kind", "retryable"),
    [
        (Reply.stream(2, end="error", code="upstream_timeout"), "upstream_timeout", True),
        (Reply.stream(2, end="error", code="cancelled"), "cancelled", False),
        (Reply.stream(2, end="error", code="new_code"), "stream_error", False),
        (Reply.stream(2, end="cut"), "incomplete_stream", True),
        (Reply.stream(2, end="cut_mid_frame"), "incomplete_stream", True),
        (Reply.stream(2, end="reset"), "incomplete_stream", True),
        (Reply.stream(2, skip_sequence=True), "incomplete_stream", True),
    ],
    ids=["upstream_timeout", "cancelled", "undocumented", "cut", "cut-mid-frame", "reset", "gap"],
)
def test_guard_stream_failures(server: FakeEUGPT, reply: Reply, kind: str, retryable: bool) -> None:
    """An error event, a truncated stream or a sequence gap raises a classified StreamError."""
    server.script(reply)
    chunks: list[bytes] = []
    with pytest.raises(rp.StreamError) as caught:
        chunks.extend(guard_stream(stream(server)))
    assert (caught.value.kind, caught.value.retryable, caught.value.status) == (
        kind,
        retryable,
        200,
    )
    assert b"response.created" in b"".join(chunks)  # the bytes before the problem came through


@pytest.mark.parametrize("preload", [False, True], ids=["streamed", "preloaded"])
def test_guard_stream_completed(server: FakeEUGPT, preload: bool) -> None:
    """A completed stream passes through unchanged, streamed or already in memory."""
    server.script(Reply.stream(3))
    pm = urllib3.PoolManager(retries=PolicyRetry())
    r = pm.request("POST", server.responses_url, body=b"{}", preload_content=preload)
    body = b"".join(guard_stream(r))
    assert body.count(b"event: message") == 5
    assert b'"type":"response.completed"' in body


def test_guard_stream_other_bodies(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """A 200 that is not an event stream passes unchecked; a failed response raises its APIError."""
    server.script(Reply.ok("fine"), *[Reply.error(429, retry_after=2)] * 7, Reply.error(404))
    assert b'"output_text":"fine"' in b"".join(guard_stream(stream(server)))
    with pytest.raises(rp.RateLimitError) as limited:
        guard_stream(stream(server))
    assert (limited.value.attempts, limited.value.retry_after) == (7, 2.0)
    with pytest.raises(rp.NotFoundError) as missing:
        guard_stream(stream(server))
    assert (missing.value.code, missing.value.attempts) == ("not_found", 1)


def test_guard_stream_uses_the_retry_policy(server: FakeEUGPT) -> None:
    """Without a policy, guard_stream classifies by the PolicyRetry that made the request."""
    server.script(*[Reply.stream(1, end="error", code="upstream_timeout")] * 2)
    with pytest.raises(rp.StreamError) as eugpt:
        list(guard_stream(stream(server, PolicyRetry(rp.EUGPT))))
    with pytest.raises(rp.StreamError) as http:
        list(guard_stream(stream(server, PolicyRetry(rp.HTTP))))
    assert (eugpt.value.kind, http.value.kind) == ("upstream_timeout", "unknown")


def test_guard_stream_with_retry_restarts_the_exchange(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """@rp.retry around the consumer retries the whole exchange after a stream error."""
    server.script(Reply.stream(2, end="error", code="upstream_error"), Reply.stream(2))
    pm = urllib3.PoolManager(retries=PolicyRetry())

    @rp.retry
    def answer() -> bytes:
        r = pm.request("POST", server.responses_url, body=b"{}", preload_content=False)
        return b"".join(guard_stream(r))

    assert b"response.completed" in answer()
    assert (server.request_count, len(instant.waits)) == (2, 1)


def test_guard_stream_releases_when_stopped_early(server: FakeEUGPT) -> None:
    """A consumer that stops early closes the response: its connection is not reused half-read."""
    server.script(Reply.stream(50, interval=0.01))
    r = stream(server)
    chunks = guard_stream(r)
    next(chunks)
    chunks.close()  # type: ignore[attr-defined]
    assert r.closed


# -- the contract's sharper edges (issue 8), against a raw local server ------------------


def sse(*events: dict[str, object]) -> bytes:
    """Event-stream frames as the API sends them: ``event: message`` and the JSON data."""
    return b"".join(b"event: message\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events)


CREATED = {"type": "response.created", "sequence_number": 0}
DELTA = {"type": "response.output_text.delta", "sequence_number": 1, "delta": "hi"}
COMPLETED = {"type": "response.completed", "sequence_number": 2}
COMPLETE_STREAM = sse(CREATED, DELTA, COMPLETED)


def head(status: int, *headers: str) -> bytes:
    """A status line and headers; the server closes the connection after the body."""
    return "".join([f"HTTP/1.1 {status} X\r\n", *(h + "\r\n" for h in headers), "\r\n"]).encode()


@contextlib.contextmanager
def raw_server(*payloads: bytes, end: str = "close") -> Iterator[tuple[str, list[int]]]:
    """Serves each payload as is on its own connection, then closes it cleanly or resets it.

    Yields the URL and a one-item list counting the requests seen.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    seen = [0]

    def serve() -> None:
        for payload in payloads:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                seen[0] += 1
                conn.sendall(payload)
                if end == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/responses", seen
    finally:
        listener.close()
        thread.join(5)


EVENT_STREAM = "content-type: text/event-stream"


@pytest.mark.parametrize("end", ["close", "reset"])
def test_completed_stream_is_a_success_whatever_follows(end: str) -> None:
    """After response.completed a cut or reset connection is no StreamError (and no retry)."""
    chunked = b"%x\r\n%s\r\n" % (len(COMPLETE_STREAM), COMPLETE_STREAM)  # no final 0-chunk
    with raw_server(head(200, EVENT_STREAM, "transfer-encoding: chunked") + chunked, end=end) as (
        url,
        seen,
    ):
        r = urllib3.PoolManager(retries=PolicyRetry()).request("POST", url, preload_content=False)
        assert b"".join(guard_stream(r)) == COMPLETE_STREAM
    assert seen == [1]


@pytest.mark.parametrize(
    "body",
    [
        sse(CREATED, {"type": "error", "message": "no code", "sequence_number": 1}),
        sse(CREATED, {"type": "error", "code": "", "message": "empty code"}),
        sse(CREATED) + b"event: message\ndata: {not json\n\n",
    ],
    ids=["no-code", "empty-code", "not-json"],
)
def test_unusable_error_events_are_stream_failures(body: bytes) -> None:
    """An error event without a usable code, or data that is not JSON, is never a success."""
    with raw_server(head(200, EVENT_STREAM) + body) as (url, _):
        r = urllib3.PoolManager(retries=PolicyRetry()).request("POST", url, preload_content=False)
        with pytest.raises(rp.StreamError) as caught:
            b"".join(guard_stream(r))
    assert caught.value.kind != rp.Kind.SUCCESS


@pytest.mark.parametrize("decode", [True, False], ids=["decoded", "as-on-the-wire"])
def test_gzip_stream_is_judged_decoded(decode: bool) -> None:
    """A gzip-encoded complete stream is a success; the caller gets what urllib3 gives."""
    wire = gzip.compress(COMPLETE_STREAM)
    payload = head(200, EVENT_STREAM, "content-encoding: gzip") + wire
    with raw_server(payload) as (url, _):
        pm = urllib3.PoolManager(retries=PolicyRetry())
        r = pm.request("POST", url, preload_content=False, decode_content=decode)
        body = b"".join(guard_stream(r))
    assert body == (COMPLETE_STREAM if decode else wire)


@pytest.mark.parametrize("decode", [True, False], ids=["decoded", "as-on-the-wire"])
def test_gzip_error_envelope_keeps_its_code(decode: bool) -> None:
    """A gzip-encoded error envelope keeps its code, for increment and on the final error."""
    busy = rp.Policy(
        rules=(rp.Rule(kind="busy", retry=True, max_retries=1, status=409, code="busy"),)
    )
    envelope = gzip.compress(b'{"detail": "try later", "error": "busy"}')
    reply = head(409, "content-encoding: gzip", f"content-length: {len(envelope)}") + envelope
    with raw_server(reply) as (url, _):
        pm = urllib3.PoolManager(retries=PolicyRetry(busy))
        r = pm.request("POST", url, preload_content=decode, decode_content=decode)
        if decode:  # in memory, decoded by urllib3: increment reads the code and retries
            assert PolicyRetry(busy).increment("POST", url, response=r).delay is not None
        with pytest.raises(rp.APIError) as caught:
            guard_stream(r)
    assert caught.value.code == "busy"


@pytest.mark.parametrize(
    ("methods", "requests_made"), [("POST", 6), ("GET", 1), (["get", "post"], 6), (None, 6)]
)
def test_methods_string_is_one_method(
    server: FakeEUGPT,
    instant: rp.testing.Instant,
    methods: str | list[str] | None,
    requests_made: int,
) -> None:
    """methods="POST" is one method (not P, O, S, T), read as on every adapter."""
    server.script(*[Reply.error(503)] * 8)
    pm = urllib3.PoolManager(retries=PolicyRetry(methods=methods))
    assert post(pm, server.responses_url).status == 503
    assert server.request_count == requests_made


def test_one_shot_body_is_sent_once_and_its_stream_checked(server: FakeEUGPT) -> None:
    """urllib3 cannot tell a Retry about the body: a generator goes with retries=False, and
    guard_stream still checks its stream."""
    server.script(Reply.stream(1, end="error", code="upstream_error"), Reply.stream(1))
    pm = urllib3.PoolManager(retries=PolicyRetry())
    r = pm.request(
        "POST", server.responses_url, body=iter([b"{}"]), retries=False, preload_content=False
    )
    with pytest.raises(rp.StreamError) as caught:
        b"".join(guard_stream(r))
    assert (caught.value.kind, server.request_count) == ("upstream_error", 1)


@pytest.mark.parametrize(
    ("reply", "error", "attempts", "retry_after"),
    [
        (Reply.error(503), rp.ServiceUnavailableError, 6, None),
        (Reply.error(429, retry_after=3600 * 24 * 365 * 3), rp.RateLimitError, 1, 94608000.0),
        (Reply.error(404), None, 1, None),
    ],
    ids=["exhausted", "hint-beyond-the-ceiling", "not-retried"],
)
def test_raise_on_give_up(
    server: FakeEUGPT,
    instant: rp.testing.Instant,
    reply: Reply,
    error: type[rp.APIError] | None,
    attempts: int,
    retry_after: float | None,
) -> None:
    """raise_on_give_up=True raises the matching APIError (hint and attempts on it) at give-up."""
    server.script(*[reply] * 8)
    pm = urllib3.PoolManager(retries=PolicyRetry(raise_on_give_up=True))
    if error is None:  # never retried, so never given up on: the response comes back
        assert post(pm, server.responses_url).status == 404
    else:
        with pytest.raises(error) as caught:
            post(pm, server.responses_url)
        assert (caught.value.attempts, caught.value.retry_after) == (attempts, retry_after)
        assert getattr(caught.value, EXHAUSTED, False) is True
    assert server.request_count == attempts


def test_give_up_marks_the_error_and_its_reason(
    closed_port: int, instant: rp.testing.Instant
) -> None:
    """The MaxRetryError of a give-up and its reason are marked: an outer layer adds up."""
    with pytest.raises(MaxRetryError) as caught:
        post(urllib3.PoolManager(retries=PolicyRetry()), f"http://127.0.0.1:{closed_port}/")
    assert getattr(caught.value, EXHAUSTED) is True
    assert getattr(caught.value.reason, EXHAUSTED) is True


def test_give_up_marks_the_returned_response(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """The final response of a give-up carries its attempts and the exhaustion mark."""
    server.script(*[Reply.error(500)] * 3)
    r = post(urllib3.PoolManager(retries=PolicyRetry()), server.responses_url)
    assert (r.status, getattr(r, ATTEMPTS_ATTRIBUTE), getattr(r, EXHAUSTED)) == (500, 3, True)


def test_before_attempt_counts_every_attempt(closed_port: int, instant: rp.testing.Instant) -> None:
    """before_attempt is told of each attempt, the first one included (late: at its failure)."""
    seen: list[int] = []
    retry = PolicyRetry(before_attempt=lambda e: seen.append(e.attempt))
    with pytest.raises(MaxRetryError):
        post(urllib3.PoolManager(retries=retry), f"http://127.0.0.1:{closed_port}/")
    assert seen == [1, 2, 3, 4, 5, 6]


def test_pool_object_is_shared_not_changed(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """The pool's PolicyRetry holds no loop: each request starts its own count."""
    retry = PolicyRetry()
    pm = urllib3.PoolManager(retries=retry)
    server.script(*[Reply.error(503)] * 6, *[Reply.error(503)] * 6)
    assert post(pm, server.responses_url).status == 503
    assert post(pm, server.responses_url).status == 503
    assert (server.request_count, retry.loop, retry.state) == (12, None, None)


# -- the package --------------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and names exactly the package's public names."""
    names = {n for n in vars(retrypolicy_urllib3) if not n.startswith("_")} - {"annotations"}
    assert retrypolicy_urllib3.__all__ == sorted(names) == ["PolicyRetry", "guard_stream"]


def test_import_without_urllib3_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without urllib3 the import fails with an ImportError that says what to install."""
    monkeypatch.setitem(sys.modules, "urllib3", None)
    for name in [m for m in sys.modules if m.startswith("retrypolicy_urllib3")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"pip install retrypolicy"):
        importlib.import_module("retrypolicy_urllib3")


def test_no_direct_clock_or_sleep_in_the_adapter() -> None:
    """The adapter takes its clocks and sleeper from the apply layer, never from time."""
    source = sys.modules["retrypolicy_urllib3._retry"].__file__
    assert source is not None
    with open(source, encoding="utf-8") as f:
        text = f.read()
    for call in ("time.sleep(", "time.monotonic(", "time.time(", "import time"):
        assert call not in text
