"""Redaction at the source: no string reachable from our errors, problems or events holds
an API key (``eugpt_…``) or a bearer token, however the secret came in."""

from __future__ import annotations

import json
from typing import Any

import pytest

import retrypolicy as rp
from retrypolicy._errors import api_error
from retrypolicy._sse import StreamMonitor
from retrypolicy.instrumentation import RetryEvent

KEY = "eugpt_live_0123456789abcdef"
TOKEN = "abc.def"  # noqa: S105 - a fake token, the thing that must not leak
AUTH = f"Authorization: Bearer {TOKEN}"
SECRETS = (KEY, "0123456789abcdef", TOKEN)


def leaks(*values: object) -> list[str]:
    """The values (as str and repr) that contain a secret."""
    found = []
    for value in values:
        for text in (str(value), repr(value)):
            found += [f"{s!r} in {text[:120]!r}" for s in SECRETS if s in text]
    return found


def surfaces(e: rp.APIError) -> tuple[object, ...]:
    """Every string a caller, a log line or a traceback can reach from an APIError."""
    info = e.info
    assert info is not None
    return (
        str(e),
        repr(e),
        e.args,
        e.message,
        e.code,
        repr(info),
        info.raw,
        info.detail,
        info.message,
        info.code,
        info.type,
        info.request_id,
    )


def _body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


BODIES = [
    pytest.param(_body({"detail": f"bad key {KEY}"}), id="detail string"),
    pytest.param(_body({"detail": {"message": f"key {KEY}", "header": AUTH}}), id="detail dict"),
    pytest.param(_body({"detail": [{"msg": AUTH, "loc": ["header", KEY]}]}), id="detail list"),
    pytest.param(_body({"detail": {KEY: "as a dict key"}}), id="key as a dict key"),
    pytest.param(_body({"detail": {"a": {"b": {"c": [AUTH]}}}}), id="nested deep"),
    pytest.param(
        _body({"error": {"type": KEY, "code": f"bad_{KEY}", "message": AUTH}}), id="error fields"
    ),
    pytest.param(_body({"error": KEY}), id="bare-string error"),
    pytest.param(_body({"type": "error", "code": KEY, "message": AUTH}), id="event-shaped body"),
    pytest.param(f"upstream said: {AUTH} with {KEY}".encode(), id="plain text"),
    pytest.param(
        b'{"detail": "key eugpt\\u005flive_0123456789abcdef", "e": "\\u0042earer abc.def"}',
        id="JSON unicode escapes hide the key",
    ),
    pytest.param(
        b'{"detail": "key eugpt_live_0123\\/456789abcdef"}', id="JSON escaped slash splits it"
    ),
    pytest.param(f"AUTHORIZATION: BEARER {TOKEN}".encode(), id="upper-case bearer"),
    pytest.param(_body({"detail": f"{'x' * 600} {KEY}"}), id="secret past the excerpt"),
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("status", [401, 429, 500])
def test_errors_from_bodies(body: bytes, status: int) -> None:
    """A secret anywhere in an error body (string, object, list, dict key, plain text, JSON
    escapes) reaches none of the error's str, repr, args, message, code or its ErrorInfo."""
    info = rp.parse_error(status, body, {"x-request-id": f"req {KEY}"})
    err = rp.EUGPT.error_for(info, attempts=2)
    assert leaks(*surfaces(err)) == []


STREAMS = [
    pytest.param(
        {"type": "error", "code": "upstream_error", "message": f"model said {AUTH}"},
        id="message",
    ),
    pytest.param({"type": "error", "code": KEY, "message": "m"}, id="code"),
    pytest.param({"type": "error", "error": {"code": "c", "message": KEY}}, id="nested message"),
    pytest.param({"type": "error", "message": f"no code, {KEY}"}, id="no code"),
    pytest.param({"type": "error", "code": {"k": KEY}}, id="unusable code, no message"),
    pytest.param(f"not json {AUTH} {KEY}", id="data not JSON"),
]


@pytest.mark.parametrize("data", STREAMS)
def test_errors_from_stream_events(data: dict[str, object] | str) -> None:
    """A secret in a stream's error event reaches neither the StreamProblem nor the
    StreamError built from it (the way the transport seam builds it)."""
    text = data if isinstance(data, str) else json.dumps(data)
    event = "error" if isinstance(data, str) else "message"
    problem = StreamMonitor().feed(f"event: {event}\ndata: {text}\n\n".encode())
    assert problem is not None
    assert leaks(problem.message, problem.code, problem) == []
    c = rp.EUGPT.classify(200, problem.code, failure=problem.failure)
    err = api_error(c, rp.ErrorInfo(200, problem.code, None, problem.message), stream=True)
    assert isinstance(err, rp.StreamError)
    assert leaks(*surfaces(err)) == []


def test_error_info_built_directly() -> None:
    """An ErrorInfo built by hand (or evolved) redacts every field, detail included."""
    info = rp.ErrorInfo(
        401,
        code=KEY,
        type=AUTH,
        message=f"{AUTH} / {KEY}",
        detail={"headers": {"authorization": AUTH}, KEY: [KEY, 1, None]},
        request_id=KEY,
        raw=AUTH,
    )
    assert leaks(info.code, info.type, info.message, info.detail, info.request_id, info.raw) == []
    assert leaks(repr(info)) == []
    assert info.detail["headers"]["authorization"] == "Authorization: Bearer [redacted]"
    import attrs  # noqa: PLC0415 - only this test evolves

    assert leaks(attrs.evolve(info, detail=[AUTH]).detail) == []


def test_detail_without_secrets_is_kept_as_is() -> None:
    """Redaction copies nothing when there is nothing to redact: the detail object is kept."""
    detail = {"loc": ["body", "input"], "msg": "field required"}
    assert rp.ErrorInfo(400, detail=detail).detail is detail


def test_api_error_built_directly() -> None:
    """An APIError raised by hand with a secret in its message or code never shows it."""
    err = rp.APIError(
        f"call failed: {AUTH}",
        code=KEY,
        info=rp.ErrorInfo(401, message=KEY, detail={"k": KEY}),
    )
    assert leaks(*surfaces(err)) == []
    assert leaks(rp.RateLimitError(KEY, code=KEY)) == []


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(ConnectionRefusedError(f"refused with {AUTH}"), id="connection"),
        pytest.param(TimeoutError(f"timed out, key={KEY}"), id="timeout"),
        pytest.param(
            rp.APIConnectionError(f"no route {KEY}", kind=rp.Kind.CONNECTION), id="APIError"
        ),
    ],
)
def test_retry_events(exc: BaseException, instant: rp.testing.Instant) -> None:
    """The error text a RetryEvent carries (retries and give-up) is redacted."""
    seen: list[RetryEvent] = []

    @rp.retry(rp.EUGPT, on_retry=seen.append, on_give_up=seen.append)
    def call() -> None:
        raise exc

    with pytest.raises(type(exc)):
        call()
    assert seen
    assert all(e.error is not None for e in seen)
    assert leaks(*(e.error for e in seen), *(e.to_log() for e in seen)) == []
