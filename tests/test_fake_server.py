"""FakeEUGPT over real sockets, seen by requests, httpx (sync and async), urllib3 and the
official openai SDK (with its strict response validation)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import requests
import urllib3

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, RecordedRequest, Reply
from retrypolicy.testing._replies import load_script

TIMEOUT = 5.0
GOOD_KEY = "eugpt_test_0123456789"


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A running server that must not have hit an internal error by the end."""
    with FakeEUGPT() as fake:
        yield fake
    assert fake.errors == []


def sse(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of complete SSE frames, checking each is an ``event: message``."""
    payloads = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0] == "event: message", block
        assert lines[1].startswith("data: "), block
        payloads.append(json.loads(lines[1][len("data: ") :]))
    return payloads


def post(
    server: FakeEUGPT, body: object = None, *, timeout: float = TIMEOUT, **kwargs: Any
) -> requests.Response:
    """POST to the endpoint with requests."""
    json_body = {"input": "hi"} if body is None else body
    return requests.post(server.responses_url, json=json_body, timeout=timeout, **kwargs)


def read_until_error(response: requests.Response) -> tuple[bytes, BaseException | None]:
    """Everything a streamed requests response yields, and the exception that ended it."""
    received = b""
    try:
        for piece in response.iter_content(chunk_size=None):
            received += piece
    except requests.RequestException as exc:
        return received, exc
    return received, None


# --------------------------------------------------------------------------- lifecycle


def test_url_port_and_lifecycle() -> None:
    """url/port name the bound port, the context manager stops it, and it can restart."""
    fake = FakeEUGPT()
    with pytest.raises(RuntimeError, match="not been started"):
        _ = fake.url
    with fake:
        assert fake.running
        assert fake.url == f"http://127.0.0.1:{fake.port}"
        assert fake.responses_url == fake.url + "/v1/responses"
        with pytest.raises(RuntimeError, match="already running"):
            fake.start()
        assert post(fake).status_code == 200
    assert not fake.running
    with pytest.raises(requests.ConnectionError):
        post(fake)
    fake.stop()  # idempotent
    with fake:
        assert post(fake).status_code == 200
        assert "running" in repr(fake)


def test_default_reply_streams_when_stream_is_not_false(server: FakeEUGPT) -> None:
    """With an empty script a request without "stream": false gets a chunked SSE stream."""
    response = post(server)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["x-request-id"] == "req_1"
    events = sse(response.text)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == [0, 1, 2, 3, 4]
    assert [list(e)[:2] for e in events] == [["type", "sequence_number"]] * 5  # monitor layout
    text = "".join(e["delta"] for e in events[1:-1])
    assert events[1] == {
        "type": "response.output_text.delta",
        "sequence_number": 1,
        "item_id": "msg_0",
        "output_index": 0,
        "content_index": 0,
        "logprobs": [],
        "delta": "chunk 0. ",
    }
    created, done = events[0]["response"], events[-1]["response"]
    assert (created["status"], created["output"]) == ("in_progress", [])
    assert done["output_text"] == text
    assert done["output"][0]["content"][0]["text"] == text
    assert done["status"] == "completed"
    assert created["id"] == done["id"] == "resp_1"


def test_default_reply_is_json_when_stream_is_false(server: FakeEUGPT) -> None:
    """ "stream": false gets a 200 JSON response object."""
    response = httpx.post(
        server.responses_url, json={"input": "x", "stream": False}, timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "id": "resp_1",
        "object": "response",
        "created_at": 1767225600,
        "status": "completed",
        "model": "auto",
        "output": [
            {
                "type": "message",
                "id": "msg_0",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Hello from FakeEUGPT.", "annotations": []}
                ],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "output_text": "Hello from FakeEUGPT.",
    }


def test_default_option_replaces_the_automatic_reply() -> None:
    """FakeEUGPT(default=...) answers every unscripted request with that reply."""
    with FakeEUGPT(default=Reply.error(503)) as fake:
        assert post(fake).status_code == 503
        assert post(fake).status_code == 503
        assert [r.source for r in fake.requests] == ["default", "default"]


def test_unknown_path_is_404_and_other_methods_405(server: FakeEUGPT) -> None:
    """Routing errors use the envelope and never take a scripted reply."""
    server.script(Reply.ok())
    missing = requests.post(server.url + "/v1/nope", json={}, timeout=TIMEOUT)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = requests.get(server.responses_url, timeout=TIMEOUT)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert server.pending == 1
    assert [r.source for r in server.requests] == ["route", "route"]


# --------------------------------------------------------------------------- error replies


def test_error_envelope_with_wait_hints(server: FakeEUGPT) -> None:
    """Reply.error sends the JSON envelope, Retry-After and retry-after-ms."""
    server.script(Reply.error(429, retry_after=2, retry_after_ms=1500, headers={"X-Extra": "1"}))
    response = post(server)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"
    assert response.headers["x-extra"] == "1"
    assert response.headers["x-request-id"] == "req_1"
    assert response.json() == {
        "detail": "Rate limit exceeded",
        "error": {
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "message": "Rate limit exceeded",
        },
    }


def test_error_envelope_fields_are_settable(server: FakeEUGPT) -> None:
    """detail, code, type and message override the per-status defaults."""
    server.script(Reply.error(500, detail="boom", code="c", type="t", message="m"))
    assert post(server).json() == {
        "detail": "boom",
        "error": {"type": "t", "code": "c", "message": "m"},
    }


def test_error_bare_string_form(server: FakeEUGPT) -> None:
    """bare=True gives {"detail": ..., "error": "code"} like the 403 example."""
    server.script(Reply.error(403, bare=True))
    response = post(server)
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Project membership required",
        "error": "project_forbidden",
    }


def test_error_detail_may_be_an_object(server: FakeEUGPT) -> None:
    """A non-string detail is sent as JSON and the message falls back to the phrase."""
    detail = [{"loc": ["body", "input"], "msg": "field required"}]
    server.script(Reply.error(422, detail=detail))
    body = post(server).json()
    assert body["detail"] == detail
    assert body["error"]["message"] == "Unprocessable Entity"


@pytest.mark.parametrize(
    ("hint", "sent"),
    [
        (1.5, "1.5"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("soon-ish", "soon-ish"),
        (-3, "-3"),
    ],
)
def test_retry_after_is_sent_verbatim(server: FakeEUGPT, hint: float | str, sent: str) -> None:
    """Retry-After carries numbers, HTTP-dates and garbage unchanged."""
    server.script(Reply.error(503, retry_after=hint))
    assert post(server).headers["retry-after"] == sent


def test_text_reply_bypasses_the_envelope(server: FakeEUGPT) -> None:
    """Reply.text sends a plain-text body (the 'some 5xx bypass the envelope' case)."""
    server.script(Reply.text(502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"}))
    response = post(server)
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert response.text == "<html>Bad Gateway</html>"


def test_json_and_ok_replies(server: FakeEUGPT) -> None:
    """Reply.json sends any JSON body, Reply.ok a completed response object."""
    obj = {"detail": "input is required"}
    server.script(Reply.json(400, obj), Reply.ok("hi there"))
    first = post(server)
    assert (first.status_code, first.json()) == (400, obj)
    second = post(server)
    assert second.json()["output_text"] == "hi there"
    assert second.json()["id"] == "resp_2"


# --------------------------------------------------------------------------- streams


def test_stream_ending_in_error_event(server: FakeEUGPT) -> None:
    """end="error" finishes with the contract's error event and a complete chunked body."""
    server.script(Reply.stream(2, end="error", code="upstream_error"))
    response = post(server)
    events = sse(response.text)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "error",
    ]
    assert events[-1] == {
        "type": "error",
        "sequence_number": 3,
        "code": "upstream_error",
        "message": "Model returned an internal error",
    }


def test_stream_error_default_code_and_custom_message(server: FakeEUGPT) -> None:
    """The default in-stream code is upstream_timeout; message is settable."""
    server.script(Reply.stream(0, end="error"), Reply.stream(0, end="error", message="slow"))
    assert sse(post(server).text)[-1] == {
        "type": "error",
        "sequence_number": 1,
        "code": "upstream_timeout",
        "message": "Model timed out",
    }
    assert sse(post(server).text)[-1]["message"] == "slow"


def test_stream_skip_sequence(server: FakeEUGPT) -> None:
    """skip_sequence=True makes sequence_number jump from 0 to 2."""
    server.script(
        Reply.stream(3, skip_sequence=True), Reply.stream(1, end="error", skip_sequence=True)
    )
    assert [e["sequence_number"] for e in sse(post(server).text)] == [0, 2, 3, 4, 5]
    assert [e["sequence_number"] for e in sse(post(server).text)] == [0, 2, 3]


def test_stream_cut_seen_by_requests(server: FakeEUGPT) -> None:
    """end="cut" closes mid-body: requests gets the deltas, then ChunkedEncodingError."""
    server.script(Reply.stream(2, end="cut"))
    with post(server, stream=True) as response:
        assert response.status_code == 200
        received, error = read_until_error(response)
    assert isinstance(error, requests.exceptions.ChunkedEncodingError)
    assert [e["type"] for e in sse(received.decode())] == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
    ]


def test_stream_cut_seen_by_httpx(server: FakeEUGPT) -> None:
    """end="cut" makes httpx raise RemoteProtocolError after the deltas."""
    server.script(Reply.stream(1, end="cut"))
    lines: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", server.responses_url, json={}, timeout=TIMEOUT) as response,
    ):
        lines.extend(response.iter_lines())
    assert any("response.output_text.delta" in line for line in lines)


def test_stream_cut_mid_frame(server: FakeEUGPT) -> None:
    """end="cut_mid_frame" leaves half an SSE frame before the connection closes."""
    server.script(Reply.stream(1, end="cut_mid_frame"))
    with post(server, stream=True) as response:
        received, error = read_until_error(response)
    assert isinstance(error, requests.exceptions.ChunkedEncodingError)
    complete, _, partial = received.decode().rpartition("\n\n")
    assert [e["type"] for e in sse(complete)] == ["response.created", "response.output_text.delta"]
    assert partial.startswith("event: message\ndata: {")
    with pytest.raises(json.JSONDecodeError):
        json.loads(partial.split("data: ", 1)[1])


def test_stream_reset(server: FakeEUGPT) -> None:
    """end="reset" resets the connection: requests and httpx both fail while reading."""
    server.script(Reply.stream(2, end="reset"), Reply.stream(2, end="reset"))
    with post(server, stream=True) as response:
        assert response.status_code == 200
        _, error = read_until_error(response)
    assert isinstance(error, requests.exceptions.ChunkedEncodingError)
    assert "reset" in str(error).lower()
    with (
        pytest.raises(httpx.ReadError),
        httpx.stream("POST", server.responses_url, json={}, timeout=TIMEOUT) as streamed,
    ):
        streamed.read()


def test_stream_events_arrive_incrementally_and_hang_stops_promptly(server: FakeEUGPT) -> None:
    """Events are flushed one by one; a hanging stream ends promptly when the server stops."""
    server.script(Reply.stream(2, end="hang"))
    seen: list[str] = []
    with httpx.stream("POST", server.responses_url, json={}, timeout=TIMEOUT) as response:
        lines = response.iter_lines()
        while len(seen) < 3:  # created + 2 deltas arrive although the stream never completes
            line = next(lines)
            if line.startswith("data: "):
                seen.append(json.loads(line[6:])["type"])
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)
    assert seen == ["response.created", "response.output_text.delta", "response.output_text.delta"]


def test_stream_interval_spaces_events(server: FakeEUGPT) -> None:
    """interval= waits between events, so the stream takes at least n * interval."""
    server.script(Reply.stream(2, interval=0.02))
    started = time.monotonic()
    events = sse(post(server).text)
    assert time.monotonic() - started >= 0.06
    assert events[-1]["type"] == "response.completed"


def test_large_stream_small(server: FakeEUGPT) -> None:
    """large_stream sends about total_bytes of deltas, then response.completed."""
    total = 5 * 1024 * 1024
    server.script(Reply.large_stream(total))
    size = 0
    tail = b""
    with post(server, stream=True) as response:
        for piece in response.iter_content(chunk_size=256 * 1024):
            size += len(piece)
            tail = (tail + piece)[-2048:]
    assert total <= size <= total + 1024
    last = sse("event: message" + tail.decode().rsplit("event: message", 1)[1])[-1]
    assert last["type"] == "response.completed"
    assert last["response"]["output_chars"] > total * 0.99


def test_large_stream_sequence_numbers_are_contiguous(server: FakeEUGPT) -> None:
    """A large stream's events count up without gaps."""
    server.script(Reply.large_stream(300_000))
    events = sse(post(server).text)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    chars = sum(len(e["delta"]) for e in events if e["type"] == "response.output_text.delta")
    assert events[-1]["response"]["output_chars"] == chars
    assert events[-1]["response"]["output"] == []  # the text is not sent twice
    assert {e["item_id"] for e in events[1:-1]} == {"msg_0"}


# --------------------------------------------------------------------------- connection faults


def test_reset_before_headers(server: FakeEUGPT) -> None:
    """Reply.reset() reads the request then resets: every client sees a connection error."""
    server.script(Reply.reset(), Reply.reset(), Reply.reset())
    with pytest.raises(requests.ConnectionError):
        post(server)
    with pytest.raises(httpx.TransportError):
        httpx.post(server.responses_url, json={}, timeout=TIMEOUT)
    with (
        urllib3.PoolManager(retries=False) as pool,
        pytest.raises(urllib3.exceptions.ProtocolError),
    ):
        pool.request("POST", server.responses_url, json={})
    assert server.request_count == 3


def test_reset_after_headers(server: FakeEUGPT) -> None:
    """Reply.reset(before_headers=False) sends a 200 head, then resets during the body."""
    server.script(Reply.reset(before_headers=False))
    with post(server, stream=True) as response:
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "req_1"
        received, error = read_until_error(response)
    assert received == b""
    assert isinstance(error, requests.exceptions.ChunkedEncodingError)


def test_close_without_response(server: FakeEUGPT) -> None:
    """close_without_response: requests sees RemoteDisconnected, httpx 'disconnected'."""
    server.script(Reply.close_without_response(), Reply.close_without_response())
    with pytest.raises(requests.ConnectionError, match="RemoteDisconnected"):
        post(server)
    with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
        httpx.post(server.responses_url, json={}, timeout=TIMEOUT)
    assert post(server).status_code == 200  # the server is fine afterwards


def test_delay_then_reply(server: FakeEUGPT) -> None:
    """Reply.delay(seconds, then) and delay= both wait before answering."""
    server.script(Reply.delay(0.05, Reply.ok()), Reply.error(500, delay=0.05))
    started = time.monotonic()
    assert post(server).status_code == 200
    assert post(server).status_code == 500
    assert time.monotonic() - started >= 0.1
    assert server.requests[0].reply.delay_seconds == 0.05


def test_delay_trips_the_client_read_timeout(server: FakeEUGPT) -> None:
    """A long delay makes the client's read timeout fire; the next reply is unaffected."""
    server.script(Reply.delay(60, Reply.ok()), Reply.ok("after"))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.responses_url, json={"stream": False}, timeout=httpx.Timeout(TIMEOUT, read=0.2)
        )
    response = httpx.post(server.responses_url, json={}, timeout=TIMEOUT)
    assert response.json()["output_text"] == "after"


def test_stop_is_prompt_while_a_delayed_reply_is_pending() -> None:
    """stop() returns within a couple of seconds although a reply is still delaying."""
    outcome: list[BaseException | requests.Response] = []
    fake = FakeEUGPT().start()
    fake.script(Reply.delay(60, Reply.ok()))

    def client() -> None:
        try:
            outcome.append(post(fake, timeout=30))
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    assert fake.wait_for_requests(1, timeout=TIMEOUT)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 2.0
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert isinstance(outcome[0], requests.ConnectionError)


def test_stop_is_prompt_with_idle_keep_alive_connections() -> None:
    """Open keep-alive connections from all three clients do not hold up stop()."""
    with (
        FakeEUGPT() as fake,
        requests.Session() as session,
        httpx.Client(timeout=TIMEOUT) as client,
        urllib3.PoolManager(retries=False) as pool,
    ):
        session.post(fake.responses_url, json={}, timeout=TIMEOUT)
        client.post(fake.responses_url, json={})
        pool.request("POST", fake.responses_url, json={})
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 2.0
        assert fake.errors == []


def test_client_leaving_mid_stream_is_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    """Clients that hang up mid-stream cause no traceback, no error, and no harm."""
    with FakeEUGPT() as fake:
        fake.script(Reply.stream(1, end="hang"), Reply.large_stream(50 * 1024 * 1024))
        for _ in range(2):
            with httpx.stream("POST", fake.responses_url, json={}, timeout=TIMEOUT) as response:
                next(response.iter_bytes())
        assert post(fake).status_code == 200
    assert fake.errors == []
    assert capfd.readouterr().err == ""


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("authorization", "message", "secret"),
    [
        (None, "Missing Authorization", None),
        ("Bearer sk-live-abcdef", "start with 'eugpt_'", "sk-live-abcdef"),
        ("Token eugpt_abcdef", "Malformed", "eugpt_abcdef"),
        ("Bearer", "Malformed", None),
        ("Bearer eugpt_", "start with 'eugpt_'", None),
        ("bearer  sk_x eugpt_tail", "start with 'eugpt_'", "sk_x"),
    ],
)
def test_require_key_refuses_bad_credentials(
    authorization: str | None, message: str, secret: str | None
) -> None:
    """A missing, non-Bearer or non-eugpt_ key gets the 401 envelope, not a script reply."""
    headers = {} if authorization is None else {"Authorization": authorization}
    with FakeEUGPT(require_key=True) as fake:
        fake.script(Reply.ok())
        response = post(fake, headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert body["detail"] == "Invalid API key"
        assert body["error"]["type"] == "authentication_error"
        assert body["error"]["code"] == "invalid_api_key"
        assert message in body["error"]["message"]
        if secret is not None:
            assert secret not in response.text
        assert fake.pending == 1
        assert fake.requests[0].source == "auth"


def test_require_key_accepts_a_good_key() -> None:
    """A Bearer eugpt_ key passes and takes the scripted reply."""
    with FakeEUGPT(require_key=True) as fake:
        fake.script(Reply.error(429))
        response = post(fake, headers={"Authorization": f"Bearer {GOOD_KEY}"})
        assert response.status_code == 429
        assert fake.pending == 0


def test_valid_keys_refuse_revoked_keys() -> None:
    """valid_keys= refuses well-formed keys outside the set, without echoing them."""
    with FakeEUGPT(valid_keys={GOOD_KEY}) as fake:
        refused = post(fake, headers={"Authorization": "Bearer eugpt_revoked_key"})
        assert refused.status_code == 401
        assert "revoked" in refused.json()["error"]["message"]
        assert "eugpt_revoked_key" not in refused.text
        assert post(fake, headers={"Authorization": f"Bearer {GOOD_KEY}"}).status_code == 200


# --------------------------------------------------------------------------- recording


def test_requests_are_recorded(server: FakeEUGPT) -> None:
    """RecordedRequest keeps method, path, lower-cased headers, body, json and the reply."""
    reply = Reply.error(500)
    server.script(reply)
    response = requests.post(
        server.responses_url + "?trace=1",
        json={"input": "hello", "stream": False},
        headers={"X-Custom": "yes", "Authorization": f"Bearer {GOOD_KEY}"},
        timeout=TIMEOUT,
    )
    (record,) = server.requests
    assert isinstance(record, RecordedRequest)
    assert record.method == "POST"
    assert record.path == "/v1/responses?trace=1"
    assert record.headers["x-custom"] == "yes"
    assert record.headers["authorization"] == f"Bearer {GOOD_KEY}"
    assert all(name == name.lower() for name in record.headers)
    assert json.loads(record.body) == {"input": "hello", "stream": False}
    assert record.json == {"input": "hello", "stream": False}
    assert record.reply == reply
    assert record.source == "script"
    assert record.request_id == response.headers["x-request-id"]
    assert server.request_count == 1


def test_recorded_request_repr_hides_keys(server: FakeEUGPT) -> None:
    """The repr of a RecordedRequest redacts Authorization and eugpt_ keys anywhere."""
    post(
        server,
        body={"input": f"my key is {GOOD_KEY}", "stream": False},
        headers={"Authorization": f"Bearer {GOOD_KEY}"},
    )
    text = repr(server.requests[0])
    assert GOOD_KEY not in text
    assert "[redacted]" in text
    assert "RecordedRequest(method='POST'" in text


def test_non_json_and_chunked_bodies_are_recorded(server: FakeEUGPT) -> None:
    """A chunked request body is decoded; a non-JSON body records json=None and streams."""
    response = httpx.post(
        server.responses_url, content=iter([b'{"stream":', b"false}"]), timeout=TIMEOUT
    )
    assert response.json()["object"] == "response"
    assert post(server, data=b"not json").headers["content-type"].startswith("text/event-stream")
    first, second = server.requests
    assert first.headers["transfer-encoding"] == "chunked"
    assert (first.body, first.json) == (b'{"stream":false}', {"stream": False})
    assert (second.body, second.json) == (b"not json", None)


def test_wait_for_requests_times_out(server: FakeEUGPT) -> None:
    """wait_for_requests returns False when the count is not reached in time."""
    assert not server.wait_for_requests(1, timeout=0.01)


# --------------------------------------------------------------------------- scripting


def test_script_order_and_clear(server: FakeEUGPT) -> None:
    """Scripted replies are taken one per request in order; clear() drops them."""
    server.script(Reply.error(500), Reply.error(503))
    server.script(Reply.error(429))
    assert [post(server).status_code for _ in range(2)] == [500, 503]
    assert server.pending == 1
    server.clear()
    assert (server.pending, server.request_count) == (0, 0)
    assert post(server).status_code == 200
    assert server.requests[0].request_id == "req_3"  # ids keep counting


def test_script_rejects_non_replies(server: FakeEUGPT) -> None:
    """script() and the constructor refuse things that are not a Reply."""
    with pytest.raises(TypeError, match="Reply"):
        server.script("oops")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="default"):
        FakeEUGPT(default=503)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="constructor"):
        Reply()


def test_concurrent_clients_each_take_one_reply(server: FakeEUGPT) -> None:
    """Many clients at once take each scripted reply exactly once."""
    server.script(*(Reply.json(200, {"i": i}) for i in range(20)))
    with ThreadPoolExecutor(max_workers=10) as pool:
        bodies = list(pool.map(lambda _: post(server).json()["i"], range(20)))
    assert sorted(bodies) == list(range(20))
    assert server.request_count == 20


def test_slow_reply_does_not_block_other_clients(server: FakeEUGPT) -> None:
    """While one stream hangs, another connection is answered at once."""
    server.script(Reply.stream(0, end="hang"))
    with httpx.stream("POST", server.responses_url, json={}, timeout=TIMEOUT) as hanging:
        assert hanging.status_code == 200
        other = httpx.post(server.responses_url, json={"stream": False}, timeout=TIMEOUT)
        assert other.status_code == 200


# --------------------------------------------------------------------------- keep-alive


def _via_requests(fake: FakeEUGPT, replies: list[Reply]) -> list[int]:
    with requests.Session() as session:
        return [
            session.post(fake.responses_url, json={"stream": False}, timeout=TIMEOUT).status_code
            for _ in replies
        ]


def _via_httpx(fake: FakeEUGPT, replies: list[Reply]) -> list[int]:
    with httpx.Client(timeout=TIMEOUT) as client:
        return [client.post(fake.responses_url, json={}).status_code for _ in replies]


def _via_urllib3(fake: FakeEUGPT, replies: list[Reply]) -> list[int]:
    with urllib3.PoolManager(retries=False) as pool:
        return [pool.request("POST", fake.responses_url, json={}).status for _ in replies]


@pytest.mark.parametrize("send", [_via_requests, _via_httpx, _via_urllib3])
def test_keep_alive_reuses_one_connection(
    server: FakeEUGPT, send: Callable[[FakeEUGPT, list[Reply]], list[int]]
) -> None:
    """Successive requests on one client share a connection, across every reply shape."""
    replies = [
        Reply.ok(),
        Reply.error(429, retry_after=0),
        Reply.stream(2),
        Reply.stream(1, end="error"),
        Reply.text(503, "busy"),
        Reply.large_stream(200_000),
    ]
    server.script(*replies)
    assert send(server, replies) == [200, 429, 200, 200, 503, 200]
    assert len({record.client for record in server.requests}) == 1


def test_async_httpx_client(server: FakeEUGPT) -> None:
    """httpx.AsyncClient streams SSE and reuses its connection."""
    server.script(Reply.stream(2), Reply.error(504))

    async def main() -> tuple[list[str], int]:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            async with client.stream("POST", server.responses_url, json={}) as response:
                text = "".join([part async for part in response.aiter_text()])
            failed = await client.post(server.responses_url, json={})
            return [e["type"] for e in sse(text)], failed.status_code

    types, status = asyncio.run(main())
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert status == 504
    assert len({record.client for record in server.requests}) == 1


# --------------------------------------------------------------------------- raw HTTP


def _raw(fake: FakeEUGPT, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", fake.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_http_1_0_stream_ends_with_the_connection(server: FakeEUGPT) -> None:
    """An HTTP/1.0 client gets the stream unchunked, ended by closing the connection."""
    raw = _raw(server, b"POST /v1/responses HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in head
    assert b"Transfer-Encoding" not in head
    assert sse(body.decode())[-1]["type"] == "response.completed"


def test_malformed_request_gets_an_envelope(server: FakeEUGPT) -> None:
    """A request the server cannot parse gets a 400 JSON envelope with an x-request-id."""
    raw = _raw(server, b"NONSENSE\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"x-request-id: req_" in head
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert server.request_count == 0


# --------------------------------------------------------------------------- plain data


ROUND_TRIP = [
    Reply.error(429, retry_after=2, retry_after_ms=1500),
    Reply.error(403, bare=True, detail="Project membership required"),
    Reply.error(422, detail={"field": "input"}, code="x", type="y", message="z"),
    Reply.error(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", headers={"X-A": "1"}),
    Reply.text(502, "Bad Gateway", retry_after=1.5),
    Reply.json(200, {"a": [1, 2, None]}, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]),
    Reply.ok("hello"),
    Reply.stream(),
    Reply.stream(5, end="error", code="cancelled", skip_sequence=True, interval=0.5),
    Reply.stream(1, end="cut_mid_frame"),
    Reply.large_stream(1_000_000_000),
    Reply.reset(),
    Reply.reset(before_headers=False, delay=0.25),
    Reply.close_without_response(delay=1),
    Reply.delay(2, Reply.stream(end="hang")),
]


@pytest.mark.parametrize("reply", ROUND_TRIP, ids=lambda r: r.kind)
def test_to_data_from_data_round_trip(reply: Reply) -> None:
    """to_data() is plain JSON-able data and from_data() rebuilds an equal reply."""
    data = json.loads(json.dumps(reply.to_data()))
    assert data["kind"] == reply.kind
    assert None not in data.values()
    rebuilt = Reply.from_data(data)
    assert rebuilt == reply
    assert hash(rebuilt) == hash(reply)
    assert repr(rebuilt) == repr(reply)


def test_from_data_example_shapes() -> None:
    """The documented examples build the replies they describe."""
    assert Reply.from_data({"kind": "error", "status": 429, "retry_after": 2}) == Reply.error(
        429, retry_after=2
    )
    assert Reply.from_data(
        {"kind": "stream", "n_deltas": 2, "end": "error", "code": "upstream_error"}
    ) == Reply.stream(2, end="error", code="upstream_error")
    assert Reply.from_data(
        {"kind": "text", "status": 502, "text": "Bad Gateway", "delay": 0.5}
    ) == Reply.text(502, "Bad Gateway", delay=0.5)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("error", "expected a table with a 'kind' key; found 'error'"),
        ({}, "kind: expected one of: .*; found none"),
        ({"kind": "teapot"}, "kind: expected one of: close_without_response, error"),
        ({"kind": "eror"}, "found 'eror'; did you mean \"error\""),
        ({"kind": ["error"]}, "kind: expected"),
        ({"kind": "error"}, "status: expected a value \\(required for kind 'error'\\)"),
        ({"kind": "error", "status": "429"}, "status: expected an HTTP status"),
        ({"kind": "error", "status": 700}, "status: expected an HTTP status"),
        ({"kind": "error", "status": True}, "status: expected"),
        ({"kind": "error", "status": 500, "bare": "yes"}, "bare: expected true or false"),
        ({"kind": "error", "status": 500, "retry_after": [1]}, "retry_after: expected"),
        ({"kind": "error", "status": 500, "delay": -1}, "delay: expected a non-negative"),
        ({"kind": "error", "status": 500, "delay": float("nan")}, "delay: expected"),
        ({"kind": "text", "status": 502}, "text: expected a value"),
        ({"kind": "text", "status": 502, "text": 5}, "text: expected a string"),
        ({"kind": "json", "status": 200, "body": object()}, "body: expected a JSON"),
        ({"kind": "ok", "colour": "red"}, "colour: unknown key for kind 'ok'; expected one of"),
        ({"kind": "ok", "txt": "hi"}, 'txt: unknown key .*; did you mean "text"'),
        ({"kind": "stream", "end": ["x"]}, "end: expected one of"),
        ({"kind": "stream", "end": "sideways"}, "end: expected one of"),
        ({"kind": "stream", "n_deltas": -1}, "n_deltas: expected a non-negative integer"),
        ({"kind": "stream", "interval": "1s"}, "interval: expected"),
        ({"kind": "large_stream"}, "total_bytes: expected a value"),
        ({"kind": "reset", "before_headers": 1}, "before_headers: expected"),
        ({"kind": "close_without_response", "headers": {}}, "headers: unknown key"),
        (
            {"kind": "ok", "headers": {"X-A": "a\r\nb"}},
            r"headers\['X-A'\]: expected a header value",
        ),
        ({"kind": "ok", "headers": {"bad name": "v"}}, "headers: expected header names"),
        ({"kind": "ok", "headers": {"X-A": 1}}, r"headers\['X-A'\]: expected a string"),
        ({"kind": "ok", "headers": "X-A: 1"}, "headers: expected a mapping"),
    ],
)
def test_from_data_rejects_bad_data(data: Any, match: str) -> None:
    """Bad data raises ValueError naming the key and what was expected."""
    with pytest.raises(ValueError, match=match):
        Reply.from_data(data)


def test_constructors_validate_too() -> None:
    """The constructors apply the same checks as from_data."""
    with pytest.raises(ValueError, match="status"):
        Reply.error(99)
    with pytest.raises(ValueError, match="header value"):
        Reply.text(503, "x", {"Retry-After": "1\nInjected: yes"})
    with pytest.raises(ValueError, match="seconds"):
        Reply.delay(-1, Reply.ok())


# -- what it served: on_request ----------------------------------------------------------


def test_on_request_reports_each_reply_and_how_it_ended() -> None:
    """on_request gets every recorded request, the status sent, and how the response ended."""
    seen: list[tuple[str, str, int | None, str]] = []
    done = threading.Event()

    def note(request: RecordedRequest, status: int | None, outcome: str) -> None:
        seen.append((request.request_id, request.reply.kind, status, outcome))
        if len(seen) == 5:
            done.set()

    with FakeEUGPT(on_request=note) as fake:
        fake.script(
            Reply.error(503),
            Reply.stream(2, end="error", code="upstream_timeout"),
            Reply.stream(1, end="cut"),
            Reply.reset(),
        )
        url = fake.responses_url
        with requests.Session() as session:
            assert session.post(url, json={}, timeout=5).status_code == 503
            post_text = session.post(url, json={}, timeout=5).text
            assert "upstream_timeout" in post_text
            with pytest.raises(requests.RequestException):
                session.post(url, json={}, timeout=5).raise_for_status()
        with pytest.raises(requests.ConnectionError):
            requests.post(url, json={}, timeout=5)
        assert requests.post(url, json={}, timeout=5).status_code == 200
        assert done.wait(5)
    assert seen == [
        ("req_1", "error", 503, "sent"),
        ("req_2", "stream", 200, "error upstream_timeout after 2 deltas"),
        ("req_3", "stream", 200, "cut after 1 delta"),
        ("req_4", "reset", None, "reset before the response"),
        ("req_5", "stream", 200, "completed"),
    ]
    assert fake.errors == []


def test_on_request_failure_is_recorded_not_raised() -> None:
    """A callback that raises lands in errors; the client still gets its response."""

    def broken(request: RecordedRequest, status: int | None, outcome: str) -> None:
        raise RuntimeError("callback bug")

    with FakeEUGPT(on_request=broken) as fake:
        assert requests.post(fake.responses_url, json={"stream": False}, timeout=5).ok
        assert fake.wait_for_requests(1)
    assert [str(e) for e in fake.errors] == ["callback bug"]
    with pytest.raises(TypeError, match="on_request"):
        FakeEUGPT(on_request="print")  # type: ignore[arg-type]


def test_fake_is_silent_by_default(capfd: pytest.CaptureFixture[str]) -> None:
    """Without on_request, serving prints nothing on stdout or stderr."""
    with FakeEUGPT() as fake:
        fake.script(Reply.error(503))
        requests.post(fake.responses_url, json={}, timeout=5)
        requests.get(fake.url + "/nope", timeout=5)
    assert capfd.readouterr() == ("", "")


# -- script files: load_script ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "problems"),
    [
        ("s.json", '[{"kind": "error"}]', ["replies[0].status: expected a value"]),
        (
            "s.json",
            '{"replys": [{"kind": "error", "status": 503}]}',
            ['replys: unknown key; expected one of: replies; did you mean "replies"?'],
        ),
        ("s.json", '{"kind": "error", "status": 503}', ["found a single reply object"]),
        ("s.json", '"error"', ["expected a list of replies"]),
        ("s.json", "{bad", ["expected a JSON script...found invalid JSON: Expecting"]),
        ("s.toml", "[[replies]\n", ["expected a TOML script...found invalid TOML: Expected"]),
        ("s.toml", 'replys = 1\n[[replies]]\nkind = "ok"\n', ['did you mean "replies"?']),
        ("s.toml", "", ["replies: expected [[replies]] tables; found none"]),
        (
            "s.json",
            '[{"kind": "eror", "status": 503}, {"kind": "ok", "stauts": 1}, {"kind": "ok"}]',
            [
                "replies[0].kind: expected one of: close_without_response, error, json, "
                "large_stream, ok, reset, stream, text; found 'eror'; did you mean \"error\"?",
                "replies[1].stauts: unknown key for kind 'ok'",
            ],
        ),
        (
            "s.json",
            '[{"kind": "error", "status": 700}]',
            ["replies[0].status: expected an HTTP status code from 200 to 599; found 700"],
        ),
    ],
)
def test_load_script_problems(tmp_path: Path, name: str, text: str, problems: list[str]) -> None:
    """A bad script is a ConfigError naming the file, each key path, expected and found."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(rp.ConfigError) as info:
        load_script(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert info.value.path == path
    assert len(info.value.problems) == len(problems)
    for problem, expected in zip(info.value.problems, problems, strict=True):
        assert expected in problem or all(part in problem for part in expected.split("..."))


def test_load_script_forms(tmp_path: Path) -> None:
    """A JSON list, a JSON {"replies": [...]} and TOML [[replies]] give the same replies."""
    replies = [Reply.error(503), Reply.stream(2, end="error", code="upstream_error")]
    data = [r.to_data() for r in replies]
    (tmp_path / "a.json").write_text(json.dumps(data))
    (tmp_path / "b.json").write_text(json.dumps({"replies": data}))
    (tmp_path / "c.toml").write_text(
        '[[replies]]\nkind = "error"\nstatus = 503\n'
        '[[replies]]\nkind = "stream"\nn_deltas = 2\nend = "error"\ncode = "upstream_error"\n'
    )
    for name in ("a.json", "b.json", "c.toml"):
        assert load_script(tmp_path / name) == replies
    (tmp_path / "empty.json").write_text("[]")
    assert load_script(tmp_path / "empty.json") == []


def test_load_script_missing_file(tmp_path: Path) -> None:
    """A missing script is a ConfigError naming it, like a missing policy file."""
    with pytest.raises(rp.ConfigError, match="cannot read the script: expected an existing file"):
        load_script(tmp_path / "none.json")


# --------------------------------------------------------------------------- the openai SDK
# The EU GPT API has the shape of OpenAI's Responses API. With _strict_response_validation
# the SDK validates every body and every stream event against its pydantic models
# (openai._models.validate_type) instead of constructing them unchecked, so a missing
# required field is an APIResponseValidationError rather than a silent gap.


def sdk_client(fake: FakeEUGPT) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fake.url + "/v1",
        api_key="eugpt_test",
        max_retries=0,
        timeout=TIMEOUT,
        _strict_response_validation=True,
    )


def test_sdk_parses_ok_strictly(server: FakeEUGPT) -> None:
    """responses.create parses Reply.ok as a full Response; output_text is the text."""
    server.script(Reply.ok("hi there"))
    with sdk_client(server) as client:
        response = client.responses.create(model="auto", input="hi")
    assert isinstance(response, openai.types.responses.Response)
    assert response.output_text == "hi there"
    assert (response.id, response.status, response.object) == ("resp_1", "completed", "response")
    assert server.requests[0].path == "/v1/responses"


def test_sdk_strict_validation_rejects_a_partial_response(server: FakeEUGPT) -> None:
    """The check above means something: the fake's old body fails strict validation."""
    old = {"id": "resp_1", "object": "response", "status": "completed", "output_text": "x"}
    server.script(Reply.json(200, old))
    with sdk_client(server) as client, pytest.raises(openai.APIResponseValidationError):
        client.responses.create(model="auto", input="hi")


def test_sdk_strict_validation_covers_stream_events(server: FakeEUGPT) -> None:
    """Stream events are validated too: the spec's error event alone (no sequence_number,
    which ResponseErrorEvent requires) is rejected, hence the fake's sequence_number."""
    spec_event = '{"type":"error","code":"upstream_timeout","message":"Model timed out"}'
    body = f"event: message\ndata: {spec_event}\n\n"
    server.script(Reply.text(200, body, {"Content-Type": "text/event-stream"}))
    with sdk_client(server) as client:
        stream = client.responses.create(model="auto", input="hi", stream=True)
        with pytest.raises(openai.APIResponseValidationError):
            next(iter(stream))


def test_sdk_streams_every_event_typed(server: FakeEUGPT) -> None:
    """Every event of Reply.stream validates as its typed model; the last is completed."""
    server.script(Reply.stream(3))
    with sdk_client(server) as client:
        events = list(client.responses.create(model="auto", input="hi", stream=True))
    types = openai.types.responses
    assert [type(e) for e in events] == [
        types.ResponseCreatedEvent,
        *[types.ResponseTextDeltaEvent] * 3,
        types.ResponseCompletedEvent,
    ]
    assert [e.sequence_number for e in events] == [0, 1, 2, 3, 4]
    created, last = events[0], events[-1]
    assert isinstance(created, types.ResponseCreatedEvent)
    assert isinstance(last, types.ResponseCompletedEvent)
    assert created.response.status == "in_progress"
    deltas = [e.delta for e in events if isinstance(e, types.ResponseTextDeltaEvent)]
    assert last.response.status == "completed"
    assert last.response.output_text == "".join(deltas) == "chunk 0. chunk 1. chunk 2. "


def test_sdk_stream_ending_in_error_yields_the_error_event(server: FakeEUGPT) -> None:
    """An in-stream error reaches the SDK user as a typed error event carrying the code."""
    server.script(Reply.stream(2, end="error", code="upstream_error"))
    with sdk_client(server) as client:
        events = list(client.responses.create(model="auto", input="hi", stream=True))
    last = events[-1]
    assert isinstance(last, openai.types.responses.ResponseErrorEvent)
    assert (last.code, last.message) == ("upstream_error", "Model returned an internal error")
    assert [e.sequence_number for e in events] == [0, 1, 2, 3]  # the error continues it


def test_sdk_large_stream_validates(server: FakeEUGPT) -> None:
    """large_stream's hand-built delta frames are valid events too."""
    server.script(Reply.large_stream(300_000))
    with sdk_client(server) as client:
        events = list(client.responses.create(model="auto", input="hi", stream=True))
    last = events[-1]
    assert isinstance(last, openai.types.responses.ResponseCompletedEvent)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if isinstance(e, openai.types.responses.ResponseTextDeltaEvent)]
    assert sum(len(e.delta) for e in deltas) == (last.response.model_extra or {})["output_chars"]


def test_sdk_async_client(server: FakeEUGPT) -> None:
    """AsyncOpenAI validates the same bodies and events strictly."""
    server.script(Reply.ok("async hi"), Reply.stream(1, end="error"))

    async def main() -> tuple[str, list[object]]:
        async with openai.AsyncOpenAI(
            base_url=server.url + "/v1",
            api_key="eugpt_test",
            max_retries=0,
            timeout=TIMEOUT,
            _strict_response_validation=True,
        ) as client:
            response = await client.responses.create(model="auto", input="hi")
            stream = await client.responses.create(model="auto", input="hi", stream=True)
            return response.output_text, [event async for event in stream]

    text, events = asyncio.run(main())
    assert text == "async hi"
    last = events[-1]
    assert isinstance(last, openai.types.responses.ResponseErrorEvent)
    assert (last.code, last.sequence_number) == ("upstream_timeout", 2)


def test_a_large_stream_cut_by_stop_reports_the_deltas_it_sent() -> None:
    """The outcome of a large_stream the server stops in the middle counts the deltas it
    had sent, as a stream's does ("cut after N deltas", N > 0)."""
    outcomes: list[str] = []
    reported = threading.Event()

    def on_request(request: RecordedRequest, status: int | None, outcome: str) -> None:
        outcomes.append(outcome)
        reported.set()

    fake = FakeEUGPT(on_request=on_request)
    fake.start()
    fake.script(Reply.large_stream(200_000_000))
    response = requests.post(fake.responses_url, json={}, stream=True, timeout=TIMEOUT)
    pieces = response.iter_content(65536)
    for _ in range(5):
        next(pieces)
    stopper = threading.Thread(target=fake.stop)
    stopper.start()
    with pytest.raises(requests.RequestException):
        for _ in pieces:
            pass
    stopper.join(TIMEOUT)
    response.close()
    assert reported.wait(TIMEOUT)
    (outcome,) = outcomes
    found = re.fullmatch(r"cut after (\d+) deltas?", outcome)
    assert found is not None, outcome
    assert int(found[1]) > 0
