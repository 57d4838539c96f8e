"""retrypolicy_requests.RetryAdapter against the fake EU GPT server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import re
import socket
import sys
import tracemalloc
from collections.abc import Iterator

import pytest
import requests
from structlog.testing import capture_logs

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_requests import RetryAdapter

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fresh fake EU GPT server."""
    with FakeEUGPT() as srv:
        yield srv


def session(adapter: RetryAdapter | None = None) -> requests.Session:
    s = requests.Session()
    s.mount("http://", adapter or RetryAdapter(FAST))
    return s


def post(s: requests.Session, server: FakeEUGPT, **kwargs: object) -> requests.Response:
    return s.post(server.responses_url, json={"input": "hi"}, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "requests_seen", "final_status"),
    [
        (Reply.error(400, detail="input is required"), 1, 400),
        (Reply.error(401, detail="Invalid API key"), 1, 401),
        (Reply.error(403, detail="Project membership required", code="project_forbidden"), 1, 403),
        (Reply.error(404), 1, 404),
        (Reply.error(409), 1, 409),
        (Reply.error(429), 7, 429),
        (Reply.error(500), 3, 500),
        (Reply.text(500, "upstream connect error"), 3, 500),
        (Reply.error(502), 6, 502),
        (Reply.error(503), 6, 503),
        (Reply.error(504), 6, 504),
        (Reply.error(507), 3, 507),
    ],
)
def test_status_table(
    server: FakeEUGPT,
    instant: rp.testing.Instant,
    reply: Reply,
    requests_seen: int,
    final_status: int,
) -> None:
    """Each status of the contract is retried its number of times; the last response is returned."""
    server.script(*[reply] * 10)
    response = post(session(), server)
    assert server.request_count == requests_seen
    assert response.status_code == final_status
    assert response.retry_attempts == requests_seen  # type: ignore[attr-defined]
    assert len(instant.waits) == requests_seen - 1


def test_final_error_body_readable_in_full(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """The adapter peeks at a bounded prefix; the caller still reads the whole body."""
    detail = "x" * 200_000
    server.script(Reply.error(400, detail=detail))
    response = post(session(), server)
    assert response.json()["detail"] == detail


def test_final_error_body_readable_in_parts_from_raw(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """With stream=True, response.raw.read(n) serves the peeked prefix and then the rest,
    n bytes at a time, like urllib3's HTTPResponse.read: nothing lost, nothing doubled."""
    detail = "y" * 100_000
    server.script(Reply.error(400, detail=detail))
    response = post(session(), server, stream=True)
    raw = response.raw
    parts = [raw.read(10), raw.read(70_000)]
    parts.append(raw.read())
    assert [len(p) for p in parts[:2]] == [10, 70_000]
    assert raw.read() == b""
    body = b"".join(parts)
    assert len(body) > 100_000
    assert json.loads(body)["detail"] == detail


def test_iter_content_pieces_are_at_most_the_chunk_size_asked(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """iter_content(n) on a response the adapter peeked at gives pieces of at most n bytes,
    as urllib3's stream(n) does, the whole body in order; stopping early leaves the rest
    for raw.read()."""
    detail = "z" * 50_000
    server.script(Reply.error(400, detail=detail))
    response = post(session(), server, stream=True)
    pieces = []
    for piece in response.iter_content(1000):
        pieces.append(piece)
        if len(pieces) == 3:
            break
    assert [len(p) for p in pieces] == [1000, 1000, 1000]
    rest = response.raw.read()
    body = b"".join(pieces) + rest
    assert json.loads(body)["detail"] == detail
    server.script(Reply.error(400, detail=detail))
    response = post(session(), server, stream=True)
    pieces = list(response.iter_content(777))
    assert max(len(p) for p in pieces) == 777
    assert json.loads(b"".join(pieces))["detail"] == detail


def test_raise_on_give_up(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """With raise_on_give_up, the matching APIError is raised, carrying the attempts."""
    server.script(*[Reply.error(503)] * 6)
    with pytest.raises(rp.ServiceUnavailableError) as info:
        post(session(RetryAdapter(FAST, raise_on_give_up=True)), server)
    assert info.value.attempts == 6
    server.script(
        Reply.error(403, detail="Project membership required", bare=True, code="project_forbidden")
    )
    with pytest.raises(rp.PermissionDeniedError) as denied:
        post(session(RetryAdapter(FAST, raise_on_give_up=True)), server)
    assert denied.value.code == "project_forbidden"
    assert "membership" in str(denied.value)


def test_retry_after_honoured(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """Retry-After sets the wait (never less), retry-after-ms too."""
    server.script(Reply.error(429, retry_after=3), Reply.error(429, retry_after_ms=1500))
    assert post(session(), server).status_code == 200
    assert instant.waits[0] == 3.0
    assert 1.5 <= instant.waits[1] <= 2.0  # at least the hint; at most 429's backoff cap


def test_retry_after_above_cap_gives_up_now(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """A Retry-After above max_retry_after gives up at once: one request, no wait."""
    server.script(Reply.error(429, retry_after=3600))
    response = post(session(), server)
    assert (response.status_code, server.request_count, instant.waits) == (429, 1, [])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused(instant: rp.testing.Instant) -> None:
    """A refused connection is a connection failure: 5 retries, then the exception unchanged."""
    starts: list[int] = []
    adapter = RetryAdapter(FAST, before_attempt=lambda e: starts.append(e.attempt))
    with pytest.raises(requests.ConnectionError):
        session(adapter).post(f"http://127.0.0.1:{closed_port()}/v1/responses", json={})
    assert starts == [1, 2, 3, 4, 5, 6]


def test_read_timeout(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """A read timeout is retried twice, then raised unchanged."""
    server.script(*[Reply.ok(delay=5.0)] * 3)
    with pytest.raises(requests.ReadTimeout):
        post(session(), server, timeout=(2.0, 0.1))
    assert server.request_count == 3


def test_reset_before_headers(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """A reset after sending is a timeout-class failure: retried, then the call succeeds."""
    server.script(Reply.reset(), Reply.close_without_response())
    assert post(session(), server).status_code == 200
    assert server.request_count == 3


STREAM_ERRORS = [
    ("upstream_timeout", 4, True),
    ("upstream_error", 4, True),
    ("internal_error", 2, True),
    ("cancelled", 1, False),
    ("model_on_fire", 1, False),
]


@pytest.mark.parametrize(("code", "requests_seen", "retryable"), STREAM_ERRORS)
def test_stream_error_before_content_is_retried_transparently(
    server: FakeEUGPT, instant: rp.testing.Instant, code: str, requests_seen: int, retryable: bool
) -> None:
    """An error before any content reached the caller is retried inside send, per its code."""
    server.script(*[Reply.stream(0, end="error", code=code)] * 5)
    with pytest.raises(rp.StreamError) as info:
        post(session(), server)  # stream=False: requests reads the body inside post()
    assert server.request_count == requests_seen
    assert (info.value.code, info.value.retryable) == (code, retryable)
    assert info.value.attempts == requests_seen


def test_stream_error_after_content_surfaces(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """After deltas reached the caller, an error event raises StreamError while reading."""
    server.script(Reply.stream(3, end="error", code="upstream_timeout"))
    response = post(session(), server, stream=True)
    lines = []
    with pytest.raises(rp.StreamError) as info:
        for line in response.iter_lines():
            lines.append(line)
    assert server.request_count == 1
    assert sum(b"output_text.delta" in line for line in lines) == 3
    assert (info.value.kind, info.value.retryable) == (rp.Kind.UPSTREAM_TIMEOUT, True)


@pytest.mark.parametrize("end", ["cut", "cut_mid_frame", "reset"])
def test_truncated_stream(server: FakeEUGPT, instant: rp.testing.Instant, end: str) -> None:
    """A stream cut short after content raises StreamError incomplete_stream, retryable."""
    server.script(Reply.stream(3, end=end))  # type: ignore[arg-type]
    response = post(session(), server, stream=True)
    with pytest.raises(rp.StreamError) as info:
        for _ in response.iter_content(None):
            pass
    assert (info.value.kind, info.value.retryable) == (rp.Kind.INCOMPLETE_STREAM, True)


def test_completed_stream_bytes_unchanged(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """A completed stream reaches the caller byte for byte as the server sent it."""
    server.script(Reply.stream(5))
    plain = requests.post(server.responses_url, json={"input": "hi"}, timeout=10).content
    server.script(Reply.stream(5))
    ours = post(session(), server).content
    response_id = re.compile(rb'"id": ?"[^"]*"')  # the only part that differs per request
    assert response_id.sub(b"", ours) == response_id.sub(b"", plain)
    assert len(ours) == len(plain)


def test_retry_whole_exchange_with_decorator(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """@rp.retry around the consuming function restarts the exchange after a late stream error."""
    server.script(Reply.stream(2, end="error", code="upstream_error"), Reply.stream(2))
    s = session()

    @rp.retry(FAST)
    def consume() -> int:
        with post(s, server, stream=True) as response:
            return sum(1 for _ in response.iter_lines())

    assert consume() > 0
    assert server.request_count == 2


def test_discarded_connections_return_to_the_pool(
    server: FakeEUGPT, instant: rp.testing.Instant
) -> None:
    """With a pool of one connection, retried-past responses release it: all on one connection."""
    server.script(*[Reply.error(503)] * 4)
    s = session(RetryAdapter(FAST, pool_connections=1, pool_maxsize=1, pool_block=True))
    assert post(s, server, timeout=5).status_code == 200
    assert len({r.client for r in server.requests}) == 1


def test_methods_allow_list(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """Methods outside the allow-list are sent once, as by a plain HTTPAdapter."""
    server.script(*[Reply.error(503)] * 3)
    response = post(session(RetryAdapter(FAST, methods=["GET"])), server)
    assert (response.status_code, server.request_count) == (503, 1)


def test_file_body_is_rewound(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """A seekable file body is rewound before each attempt, so every attempt sends it whole."""
    server.script(Reply.error(503))
    body = io.BytesIO(b'{"input": "from a file"}')
    response = session().post(server.responses_url, data=body)
    assert response.status_code == 200
    assert [r.body for r in server.requests] == [b'{"input": "from a file"}'] * 2


def test_generator_body_is_sent_once(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """A one-shot generator body cannot be re-sent: the request goes out once, unretried."""
    server.script(Reply.error(503))
    response = session().post(server.responses_url, data=(b for b in [b"{}"]))
    assert (response.status_code, server.request_count) == (503, 1)


def test_events_logged(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """The adapter's retries log the same structlog events as the decorator."""
    server.script(Reply.error(503))
    with capture_logs() as logs:
        post(session(), server)
    assert [(e["event"], e["status"], e["call"]) for e in logs] == [
        ("retry.scheduled", 503, "requests.send"),
        ("retry.succeeded", None, "requests.send"),
    ]


def test_key_never_logged(server: FakeEUGPT, instant: rp.testing.Instant) -> None:
    """Authorization headers and keys in URLs never reach the events."""
    key = "eugpt_live_SECRETSECRET"
    server.script(Reply.error(503))
    with capture_logs() as logs:
        session().post(
            server.responses_url + f"?key={key}",
            json={"input": "hi"},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert "SECRETSECRET" not in repr(logs)


def test_max_retries_refused() -> None:
    """max_retries would stack urllib3's retries on the policy's: refused with an explanation."""
    with pytest.raises(TypeError, match="policy decides"):
        RetryAdapter(max_retries=3)


def test_large_stream_constant_memory(server: FakeEUGPT) -> None:
    """A 1 GB stream, generated on the fly, passes through the guard in constant memory."""
    server.script(Reply.large_stream(1_000_000_000))
    tracemalloc.start()
    try:
        response = post(session(), server, stream=True)
        total = sum(len(c) for c in response.iter_content(None))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total >= 1_000_000_000
    assert peak < 20 * 1024 * 1024


def test_import_error_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without requests, importing the adapter says what to install."""
    monkeypatch.setitem(sys.modules, "requests", None)
    monkeypatch.delitem(sys.modules, "retrypolicy_requests", raising=False)
    with pytest.raises(ImportError, match="pip install retrypolicy"):
        __import__("retrypolicy_requests")
