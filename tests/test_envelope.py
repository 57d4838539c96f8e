"""parse_error: the spec's payload rules, and never raising on anything."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import retrypolicy as rp
from retrypolicy._envelope import MAX_EXCERPT

from .strategies import bodies, envelopes, statuses


@pytest.mark.parametrize(
    ("body", "code", "type_", "message"),
    [
        pytest.param(
            b'{"detail": "d", "error": {"type": "t", "code": "c", "message": "m"}}',
            "c",
            "t",
            "m",
            id="full envelope",
        ),
        pytest.param(
            b'{ "detail": "input is required" }', None, None, "input is required", id="detail only"
        ),
        pytest.param(
            b'{"detail": "Project membership required", "error": "project_forbidden"}',
            "project_forbidden",
            None,
            "Project membership required",
            id="bare-string error is the code",
        ),
        pytest.param(
            b'{"detail": {"message": "from object"}}',
            None,
            None,
            "from object",
            id="detail object",
        ),
        pytest.param(
            b'{"detail": [{"loc": ["body", "input"], "msg": "field required"}]}',
            None,
            None,
            "field required",
            id="detail list",
        ),
        pytest.param(
            b"upstream connect error", None, None, "upstream connect error", id="plain text 5xx"
        ),
        pytest.param(
            b'{"detail": "trunc', None, None, '{"detail": "trunc', id="truncated JSON is text"
        ),
        pytest.param(b"[1, 2]", None, None, "[1, 2]", id="JSON list"),
        pytest.param(b"null", None, None, "null", id="JSON null"),
        pytest.param(
            b'{"type":"error","code":"upstream_timeout","message":"Model timed out"}',
            "upstream_timeout",
            None,
            "Model timed out",
            id="stream error event data",
        ),
    ],
)
def test_payload_shapes(body: bytes, code: str | None, type_: str | None, message: str) -> None:
    """Every payload shape the spec describes yields its code, type and message."""
    info = rp.parse_error(500, body)
    assert (info.code, info.type, info.message) == (code, type_, message)
    assert info.status == 500


def test_detail_kept() -> None:
    """The envelope's detail is kept as sent (string, object or list)."""
    assert rp.parse_error(400, b'{"detail": {"a": [1]}}').detail == {"a": [1]}


@pytest.mark.parametrize("body", [b"", None, "   ", b"\n"])
def test_empty_body_uses_reason_phrase(body: bytes | str | None) -> None:
    """An empty body still gives a message: the status's reason phrase."""
    assert rp.parse_error(503, body).message == "Service Unavailable"


def test_binary_body() -> None:
    """A binary body is described, not decoded into the message."""
    info = rp.parse_error(502, b"\x00\xff\xfe" * 10)
    assert info.message == "<30 bytes of binary data>"


def test_non_utf8_body() -> None:
    """Invalid UTF-8 decodes with replacement characters."""
    assert "\ufffd" in (rp.parse_error(500, b"caf\xe9 down").message or "")


def test_deeply_nested_json() -> None:
    """200k nested brackets (json's RecursionError) do not raise."""
    info = rp.parse_error(500, b'{"detail": ' + b"[" * 200_000)
    assert info.status == 500
    assert len(info.raw or "") <= MAX_EXCERPT + 1


def test_huge_body_is_bounded() -> None:
    """A 16 MiB body is parsed only by its prefix; excerpt and repr stay small."""
    body = b'{"detail": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    info = rp.parse_error(500, body)
    assert len(info.raw or "") <= MAX_EXCERPT + 1
    assert len(info.message or "") <= MAX_EXCERPT + 1
    assert len(repr(info)) < 2 * MAX_EXCERPT


def test_request_id_from_headers() -> None:
    """The request id header is picked up, case-insensitively, from a mapping or pairs."""
    assert rp.parse_error(500, b"", {"X-Request-Id": "req_1"}).request_id == "req_1"
    assert rp.parse_error(500, b"", [("request-id", "req_2")]).request_id == "req_2"


def test_keys_are_redacted() -> None:
    """An API key echoed in an error body never reaches the message, detail or excerpt."""
    body = json.dumps(
        {"detail": "bad key eugpt_live_SECRET123", "error": {"message": "Bearer eugpt_x1y2z3"}}
    ).encode()
    info = rp.parse_error(401, body)
    for text in (info.message, str(info.detail), info.raw, repr(info)):
        assert "SECRET123" not in str(text)
        assert "x1y2z3" not in str(text)


@given(statuses, bodies)
def test_never_raises(status: int | None, body: bytes | str | None) -> None:
    """parse_error returns an ErrorInfo for any status and body."""
    info = rp.parse_error(status, body)
    assert isinstance(info, rp.ErrorInfo)
    assert info.status == status


@given(envelopes, st.integers(min_value=400, max_value=599))
def test_envelope_strings_survive(envelope: dict[str, object], status: int) -> None:
    """Whatever strings an envelope carries come back as code/type/message, bounded."""
    info = rp.parse_error(status, json.dumps(envelope).encode())
    error = envelope.get("error")
    if isinstance(error, str):
        assert info.code == rp.transport.redact(error)[:MAX_EXCERPT] or len(error) > MAX_EXCERPT
    for value in (info.code, info.type, info.message):
        assert value is None or len(value) <= MAX_EXCERPT + 1


@pytest.mark.parametrize("body", [b"\xef\xbb\xbf", "\ufeff"], ids=["bytes", "str"])
def test_envelope_after_a_byte_order_mark_is_read(body: bytes | str) -> None:
    """A JSON envelope behind a UTF-8 byte-order mark (some proxies add one) is still the
    envelope: its code decides the class, as the spec's "look for detail or error" says."""
    rest = '{"error": {"code": "upstream_timeout", "message": "Model timed out"}}'
    full: bytes | str = body + rest.encode() if isinstance(body, bytes) else body + rest
    info = rp.parse_error(502, full)
    assert (info.code, info.message) == ("upstream_timeout", "Model timed out")


def test_lone_surrogate_escapes_do_not_make_the_error_unprintable() -> None:
    """JSON may escape half a surrogate pair ("\\ud800"); what parse_error returns can still
    be written as UTF-8 (print(exc), a log file), with U+FFFD in place of the lone half,
    while a real pair (an emoji) is kept."""
    body = (
        b'{"error": {"code": "x\\udfff", "type": "t\\ud800", "message": "bad \\ud800 '
        b'\\ud83d\\ude00"}, "detail": {"k\\udc00": ["\\ud800"]}}'
    )
    info = rp.parse_error(500, body)
    assert (info.code, info.type, info.message) == ("x\ufffd", "t\ufffd", "bad \ufffd \U0001f600")
    assert info.detail == {"k\ufffd": ["\ufffd"]}
    json.dumps(info.detail, ensure_ascii=False).encode("utf-8")
