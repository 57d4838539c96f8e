"""Hooks and structlog events: names, levels, keys, and no secret in any of them."""

from __future__ import annotations

import logging

import pytest
import requests
from structlog.testing import capture_logs

import retrypolicy as rp
from retrypolicy.instrumentation import (
    DefaultHook,
    LoggingHook,
    RetryEvent,
    get_hooks,
    set_hooks,
)

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))
KEY = "eugpt_live_0123456789abcdef"


class Resp:
    def __init__(self, status_code: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.status_code = status_code
        self._content = body
        self.headers = headers or {}


def sequence(*items: object) -> object:
    """A function returning/raising each item in turn."""
    queue = list(items)

    def fn() -> object:
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    fn.__qualname__ = "create_response"
    return fn


def test_structlog_events_exact(instant: rp.testing.Instant) -> None:
    """One event per decision, with the documented names, levels and keys."""
    fn = rp.retry(FAST, clock=lambda: 0.0)(
        sequence(Resp(503), ConnectionRefusedError("refused"), Resp(200))
    )
    with capture_logs() as logs:
        fn()
    assert logs == [
        {
            "event": "retry.scheduled",
            "log_level": "warning",
            "call": "create_response",
            "policy": "eugpt",
            "attempt": 1,
            "kind": "unavailable",
            "status": 503,
            "code": None,
            "delay": 0.5,
            "elapsed": 0.0,
            "reason": "unavailable: retry 1 of 5",
        },
        {
            "event": "retry.scheduled",
            "log_level": "warning",
            "call": "create_response",
            "policy": "eugpt",
            "attempt": 2,
            "kind": "connection",
            "status": None,
            "code": None,
            "delay": 0.5,
            "elapsed": 0.5,
            "reason": "connection: retry 1 of 5",
            "error": "ConnectionRefusedError: refused",
        },
        {
            "event": "retry.succeeded",
            "log_level": "info",
            "call": "create_response",
            "policy": "eugpt",
            "attempt": 3,
            "kind": None,
            "status": None,
            "code": None,
            "delay": 0.0,
            "elapsed": 1.0,
        },
    ]


def test_gave_up_event(instant: rp.testing.Instant) -> None:
    """Giving up logs retry.gave_up at error level with the reason."""
    fn = rp.retry(FAST)(sequence(Resp(401, b'{"detail": "Invalid API key"}')))
    with capture_logs() as logs:
        fn()
    assert len(logs) == 1
    assert logs[0]["event"] == "retry.gave_up"
    assert logs[0]["log_level"] == "error"
    assert logs[0]["kind"] == "authentication"
    assert "do not retry" in logs[0]["reason"]


def test_first_try_success_logs_nothing() -> None:
    """A call that succeeds at once produces no event at all."""
    with capture_logs() as logs:
        rp.retry(sequence(Resp(200)))()
    assert logs == []


def test_per_call_hooks_receive_events(instant: rp.testing.Instant) -> None:
    """on_retry, on_give_up, on_success and before_attempt each receive their events."""
    got: dict[str, list[RetryEvent]] = {"retry": [], "give_up": [], "success": [], "before": []}
    fn = rp.retry(
        FAST,
        on_retry=got["retry"].append,
        on_give_up=got["give_up"].append,
        on_success=got["success"].append,
        before_attempt=got["before"].append,
    )(sequence(Resp(500), Resp(200)))
    fn()
    assert [e.attempt for e in got["before"]] == [1, 2]
    (retry_event,) = got["retry"]
    assert (retry_event.status, retry_event.kind, retry_event.delay) == (500, "server_error", 0.5)
    assert retry_event.outcome is not None
    assert retry_event.policy is FAST
    assert [e.attempt for e in got["success"]] == [2]
    assert got["give_up"] == []


def test_a_raising_hook_never_breaks_the_call(instant: rp.testing.Instant) -> None:
    """A hook that raises is logged and the call goes on."""

    def broken(event: RetryEvent) -> None:
        raise RuntimeError("hook bug")

    fn = rp.retry(FAST, on_retry=broken)(sequence(Resp(503), "done"))
    with capture_logs() as logs:
        assert fn() == "done"
    assert any(log["event"] == "retry.hook_failed" for log in logs)


def test_logging_hook(instant: rp.testing.Instant, caplog: pytest.LogCaptureFixture) -> None:
    """The stdlib logging hook logs the same events at the same levels."""
    previous = get_hooks()
    set_hooks([LoggingHook()])
    try:
        with caplog.at_level(logging.INFO, logger="retrypolicy"):
            rp.retry(FAST, clock=lambda: 0.0)(sequence(Resp(503), Resp(200)))()
    finally:
        set_hooks(previous)
    assert [(r.levelname, r.getMessage().split()[0]) for r in caplog.records] == [
        ("WARNING", "retry.scheduled"),
        ("INFO", "retry.succeeded"),
    ]
    scheduled = caplog.records[0]
    assert scheduled.getMessage() == (
        "retry.scheduled call='create_response' policy='eugpt' attempt=1 kind='unavailable' "
        "status=503 delay=0.5 elapsed=0.0 reason='unavailable: retry 1 of 5'"
    )  # keys without a value left out of the text ...
    assert scheduled.retry["code"] is None  # type: ignore[attr-defined]  # ... kept on the record


def test_no_secret_reaches_logs_errors_or_reprs(instant: rp.testing.Instant) -> None:
    """A key in headers, the URL or the error body never reaches events, messages or reprs."""
    body = f'{{"detail": "key {KEY} was revoked"}}'.encode()
    url_error = requests.ConnectionError(f"cannot reach https://api.example/v1?key={KEY}")
    fn = rp.retry(FAST)(
        sequence(
            url_error,
            Resp(401, body, headers={"Authorization": f"Bearer {KEY}"}),
        )
    )
    with capture_logs() as logs:
        response = fn()
    text = repr(logs)
    assert KEY not in text
    assert "0123456789abcdef" not in text
    info = rp.parse_error(401, response._content, response.headers)  # type: ignore[attr-defined]
    err = rp.EUGPT.error_for(info)
    for shown in (str(err), repr(err), repr(info), err.message):
        assert "0123456789abcdef" not in shown
    assert "Bearer [redacted]" in rp.transport.redact(f"Authorization: Bearer {KEY}")
    assert rp.transport.redact("Bearer sk-other-token-123") == "Bearer [redacted]"


def test_default_hook() -> None:
    """Out of the box, one DefaultHook: structlog once configured, stdlib logging before."""
    assert [type(h) for h in rp.instrumentation.get_hooks()] == [DefaultHook]
