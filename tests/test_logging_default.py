"""Where events go by default: stdlib logging (so stderr) until structlog is configured.

Events must never reach standard output, the program's own channel. The
subprocess tests run a real interpreter in the state an application starts in:
no logging configured, no structlog configured.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest
import structlog
from structlog.testing import capture_logs

import retrypolicy as rp
from retrypolicy.instrumentation import DefaultHook, get_hooks, set_hooks

PRELUDE = """
import retrypolicy as rp

calls = []

@rp.retry
def fetch():
    calls.append(1)
    if len(calls) == 1:
        raise ConnectionRefusedError("refused")
    return "ok"

def run():
    calls.clear()
    with rp.testing.instant():
        return fetch()
"""


def run_python(body: str) -> subprocess.CompletedProcess[str]:
    """Run PRELUDE + *body* in a fresh interpreter; its stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRYPOLICY_")}
    return subprocess.run(  # noqa: S603 - our own interpreter, a fixed program
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_unconfigured_events_go_to_stderr_never_stdout() -> None:
    """With no logging set up, a retried call leaves stdout empty and warns on stderr."""
    result = run_python("assert run() == 'ok'\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("retry.scheduled call='fetch' policy='eugpt' attempt=1")
    assert "kind='connection'" in result.stderr
    assert "retry.succeeded" not in result.stderr  # INFO: below the last-resort handler's level


def test_stdlib_logging_setup_is_obeyed() -> None:
    """An application's logging configuration receives the events, INFO included."""
    result = run_python(
        """
        import logging, sys
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(name)s|%(levelname)s|%(message)s")
        run()
        """
    )
    assert result.stdout == ""
    lines = [line.split(" ")[0] for line in result.stderr.splitlines()]
    assert lines == [
        "retrypolicy|WARNING|retry.scheduled",
        "retrypolicy|INFO|retry.succeeded",
    ]


def test_configured_structlog_receives_events_even_when_configured_late() -> None:
    """Events go through structlog once it is configured, decided per event."""
    result = run_python(
        """
        import json, structlog
        run()  # before: stdlib logging, on stderr
        seen = []
        def keep(logger, method, event_dict):
            seen.append({"event": event_dict["event"], "level": method})
            raise structlog.DropEvent
        structlog.configure(processors=[keep])
        run()  # after: structlog, into the list
        print(json.dumps(seen))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"event": "retry.scheduled", "level": "warning"},
        {"event": "retry.succeeded", "level": "info"},
    ]
    assert result.stderr.count("retry.scheduled") == 1  # only the call before configure()


def test_a_failing_hook_is_reported_on_stderr() -> None:
    """The attempt loop's own diagnostics follow the same rule: stderr, never stdout."""
    result = run_python(
        """
        def broken(event):
            raise RuntimeError("hook bug")

        @rp.retry(on_retry=broken)
        def flaky():
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionRefusedError("refused")
            return "ok"

        with rp.testing.instant():
            assert flaky() == "ok"
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "retry.hook_failed" in result.stderr
    assert "RuntimeError: hook bug" in result.stderr


# -- in-process: the per-event choice --------------------------------------------------------


@pytest.fixture
def default_hook_only() -> Iterator[None]:
    """Only a DefaultHook is active (the process-wide hooks are restored after)."""
    previous = get_hooks()
    set_hooks([DefaultHook()])
    try:
        yield
    finally:
        set_hooks(previous)


def failing_once() -> Callable[[], str]:
    calls: list[int] = []

    def create_response() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionRefusedError("refused")
        return "ok"

    return create_response


@pytest.mark.usefixtures("default_hook_only", "instant")
def test_unconfigured_structlog_means_stdlib_logging(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """While structlog.is_configured() is False, events are stdlib log records."""
    # capture_logs() elsewhere in the session leaves structlog configured: pretend it is not
    monkeypatch.setattr(structlog, "is_configured", lambda: False)
    with caplog.at_level(logging.INFO, logger="retrypolicy"):
        rp.retry(failing_once())()
    assert [(r.name, r.levelname, r.getMessage().split()[0]) for r in caplog.records] == [
        ("retrypolicy", "WARNING", "retry.scheduled"),
        ("retrypolicy", "INFO", "retry.succeeded"),
    ]
    assert capsys.readouterr().out == ""


@pytest.mark.usefixtures("default_hook_only", "instant")
def test_capture_logs_sees_the_default_hooks_events(caplog: pytest.LogCaptureFixture) -> None:
    """structlog.testing.capture_logs() configures structlog: events go there, not to logging."""
    with caplog.at_level(logging.INFO, logger="retrypolicy"), capture_logs() as logs:
        rp.retry(failing_once())()
    assert [(log["event"], log["log_level"]) for log in logs] == [
        ("retry.scheduled", "warning"),
        ("retry.succeeded", "info"),
    ]
    assert caplog.records == []
