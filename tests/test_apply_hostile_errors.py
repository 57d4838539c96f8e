"""Describing a failure never replaces it: exceptions and hooks that misbehave when printed.

The events carry ``Type: message`` of the failure; a hook that raises is logged. An
exception whose ``str()`` raises, a hook whose ``repr()`` raises, a hook's error that
holds an API key: the call goes on as if nothing was logged, on every call path.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent


class UnprintableError(ConnectionError):
    """A retryable failure whose text cannot be built (a broken ``__str__``)."""

    def __str__(self) -> str:
        msg = "no text"
        raise RuntimeError(msg)


def flaky(fails: int) -> Callable[[], str]:
    """A function that raises :class:`UnprintableError` *fails* times, then returns "ok"."""
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= fails:
            raise UnprintableError
        return "ok"

    return fn


def via_decorator(fn: Callable[[], str]) -> str:
    return rp.retry(fn)()


def via_async_decorator(fn: Callable[[], str]) -> str:
    async def coro() -> str:
        return fn()

    return asyncio.run(rp.retry(coro)())


def via_attempts(fn: Callable[[], str]) -> str:
    for attempt in rp.attempts(rp.EUGPT):
        with attempt:
            return fn()
    raise AssertionError  # pragma: no cover - the loop returns or raises


def via_async_attempts(fn: Callable[[], str]) -> str:
    async def run() -> str:
        async for attempt in rp.attempts(rp.EUGPT):
            with attempt:
                return fn()
        raise AssertionError  # pragma: no cover

    return asyncio.run(run())


PATHS = [via_decorator, via_async_decorator, via_attempts, via_async_attempts]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__)
def test_an_unprintable_failure_is_retried(
    path: Callable[[Callable[[], str]], str], events: list[RetryEvent]
) -> None:
    """A retryable exception whose str() raises is retried like any other, its event saying
    its text could not be built (before: the event's own RuntimeError ended the call)."""
    with rp.testing.instant() as clock:
        assert path(flaky(1)) == "ok"
    assert len(clock.waits) == 1
    scheduled = [e for e in events if e.name == "retry.scheduled"]
    assert [e.error for e in scheduled] == ["UnprintableError: <str() failed>"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__)
def test_an_unprintable_failure_given_up_is_reraised_unchanged(
    path: Callable[[Callable[[], str]], str], events: list[RetryEvent]
) -> None:
    """Given up on, the unprintable exception itself reaches the caller, and is logged."""
    with rp.testing.instant(), pytest.raises(UnprintableError):
        path(flaky(100))
    assert [e.name for e in events][-1] == "retry.gave_up"


class BadRepr:
    """A hook that fails, and whose repr fails too."""

    def __call__(self, event: RetryEvent) -> None:
        msg = "hook broke with Bearer eugpt_hooksecret"
        raise ValueError(msg)

    def __repr__(self) -> str:
        raise RuntimeError


class KeyInRepr:
    """A hook that fails, and whose repr shows the key it was built with."""

    def __call__(self, event: RetryEvent) -> None:
        raise ValueError("hook broke")

    def __repr__(self) -> str:
        return "KeyInRepr(key='eugpt_hooksecret')"


@pytest.mark.parametrize(
    "hook",
    [BadRepr(), KeyInRepr(), lambda _e: 1 / 0],
    ids=["bad repr", "key in repr", "plain"],
)
def test_a_failing_hook_is_logged_redacted_and_the_call_goes_on(hook: Any) -> None:
    """A hook that raises is logged as ``retry.hook_failed`` (structlog), its error and
    traceback without any key it carried, and the call goes on, even when the hook's repr
    raises too."""
    with rp.testing.instant(), capture_logs() as logs:
        assert rp.retry(on_retry=hook)(flaky(1))() == "ok"
    (failed,) = [log for log in logs if log["event"] == "retry.hook_failed"]
    assert failed["retry_event"] == "retry.scheduled"
    assert "Traceback" in failed["exception"]
    assert "eugpt_hooksecret" not in repr(logs)


def test_a_failing_hooks_traceback_reaches_stdlib_logging_redacted() -> None:
    """Without structlog configured, the hook's failure and its traceback go to stderr
    through logging, redacted (before: ``exc_info`` printed the key in the traceback)."""
    script = textwrap.dedent(
        """
        import retrypolicy as rp

        def broken(event):
            raise ValueError("hook broke with Bearer eugpt_hooksecret")

        calls = []

        @rp.retry(on_retry=broken)
        def flaky():
            calls.append(1)
            if len(calls) < 2:
                raise ConnectionRefusedError("down")
            return "ok"

        with rp.testing.instant():
            assert flaky() == "ok"
        """
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter, a script we wrote
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "retry.hook_failed" in done.stderr
    assert "Traceback" in done.stderr
    assert "ValueError: hook broke with Bearer [redacted]" in done.stderr
    assert "eugpt_hooksecret" not in done.stderr
