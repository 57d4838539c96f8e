"""The `retrypolicy` command line, driven as a subprocess like a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

EXE = [sys.executable, "-m", "retrypolicy"]
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [*EXE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        check=False,
    )


def test_help_lists_every_command() -> None:
    """--help names every subcommand and the exit codes."""
    result = run("--help")
    assert result.returncode == 0
    for command in ["check", "explain", "schedule", "dump", "demo", "serve-fake"]:
        assert command in result.stdout
    assert "exit codes" in result.stdout


@pytest.mark.parametrize("command", ["check", "explain", "schedule", "dump", "demo", "serve-fake"])
def test_each_command_has_help(command: str) -> None:
    """Every subcommand's --help describes it and its options."""
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage: retrypolicy " + command in result.stdout


def test_console_script_and_module_agree() -> None:
    """The `retrypolicy` console script is installed and prints what `python -m` prints."""
    script = Path(sys.executable).parent / "retrypolicy"
    via_script = subprocess.run(  # noqa: S603
        [str(script), "explain", "503"], capture_output=True, text=True, check=True, env=ENV
    )
    assert via_script.stdout == run("explain", "503").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["explain", "429"], ["rate_limited (retry up to 6 times)", "Slow down", "retry 6:"]),
        (["explain", "401"], ["authentication (do not retry)", "eugpt_", "Bearer"]),
        (["explain", "200", "--code", "upstream_timeout"], ["upstream_timeout (retry up to 3"]),
        (["explain", "200", "--code", "cancelled"], ["cancelled (do not retry)"]),
        (["explain", "timeout"], ["timeout (retry up to 2 times)", "retry 2:"]),
        (["explain", "connection"], ["connection (retry up to 5 times)"]),
    ],
)
def test_explain(args: list[str], expected: list[str]) -> None:
    """explain prints the class, the advice and the waits the policy would schedule."""
    result = run(*args)
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout


def test_explain_body_from_stdin() -> None:
    """explain --body - parses the body for its code: the bare-string error form."""
    body = json.dumps({"detail": "Project membership required", "error": "project_forbidden"})
    result = run("explain", "403", "--body", "-", stdin=body)
    assert "code='project_forbidden'" in result.stdout
    assert "permission (do not retry)" in result.stdout


def test_explain_bad_status() -> None:
    """A status that is not one exits 2 with a message naming it and what was expected."""
    result = run("explain", "999")
    assert result.returncode == 2
    assert "'999'" in result.stderr
    assert "expected an HTTP status 100-599" in result.stderr


POLICY = """
[policies.batch]
extends = "eugpt"
max_attempts = 4
[policies.batch.backoff]
initial = 2.0
jitter = "none"
[[policies.batch.rules]]
status = 503
retry = false
kind = "unavailable"
"""


def test_check_ok_and_explain_with_config(tmp_path: Path) -> None:
    """check accepts a good file; explain --config uses its policy."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    result = run("check", str(path))
    assert (result.returncode, "ok (batch)" in result.stdout) == (0, True)
    explained = run("explain", "503", "--config", str(path))
    assert "unavailable (do not retry)" in explained.stdout
    waits = run("explain", "500", "--config", str(path), "--profile", "batch")
    assert "retry 1: wait   2.00s ..   2.00s" in waits.stdout


def test_check_reports_every_problem(tmp_path: Path) -> None:
    """check exits 1 and names each bad key path."""
    path = tmp_path / "bad.toml"
    path.write_text(
        "[policies.p]\nmax_atempts = 3\n[policies.p.backoff]\njitter = 'sometimes'\n"
        "[[policies.p.rules]]\nstatus = 700\n"
    )
    result = run("check", str(path))
    assert result.returncode == 1
    keys = ["policies.p.max_atempts", "policies.p.backoff.jitter", "policies.p.rules[0].status"]
    for key in keys:
        assert key in result.stderr
    assert str(path) in result.stderr


def test_check_broken_toml(tmp_path: Path) -> None:
    """Broken TOML is reported with its line, not a traceback."""
    path = tmp_path / "broken.toml"
    path.write_text("[policies.p\nmax_attempts = 3\n")
    result = run("check", str(path))
    assert result.returncode == 1
    assert "line 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_dump_round_trips_through_check(tmp_path: Path) -> None:
    """dump prints TOML that check accepts and that explains like the built-in policy."""
    dumped = run("dump")
    assert dumped.returncode == 0
    path = tmp_path / "eugpt.toml"
    path.write_text(dumped.stdout)
    assert run("check", str(path)).returncode == 0
    assert run("explain", "429", "--config", str(path)).stdout.replace("policy:  eugpt", "") == run(
        "explain", "429"
    ).stdout.replace("policy:  eugpt", "")


def test_schedule() -> None:
    """schedule samples the waits per retry and draws the curve."""
    result = run("schedule", "--kind", "unavailable", "--samples", "500")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("eugpt / unavailable: 5 retries, full jitter, 500 samples")
    assert len([line for line in lines if "█" in line or "░" in line]) == 5
    assert run("schedule", "--kind", "nope").returncode == 2


def test_demo() -> None:
    """demo runs the scripted scenario through both adapters and prints a summary."""
    result = run("demo", "--instant")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "retry.scheduled" in out
    assert "retry.gave_up" in out
    assert "AuthenticationError" in out
    assert out.count("completed") >= 2
    summary = out[out.index("summary") :]
    assert "429 with Retry-After" in summary
    assert "eugpt_demo" not in out  # the demo's key never shows


def test_serve_fake(tmp_path: Path) -> None:
    """serve-fake serves scripted replies first, then successes, until interrupted."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"kind": "error", "status": 503}]))
    with subprocess.Popen(  # noqa: S603
        [*EXE, "serve-fake", "--port", "0", "--script", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            url = first.split(" on ")[1].strip()
            assert requests.post(url, json={"stream": False}, timeout=5).status_code == 503
            assert requests.post(url, json={"stream": False}, timeout=5).status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
    assert proc.returncode == 0


def test_serve_fake_bad_script(tmp_path: Path) -> None:
    """A bad script file exits 2 naming the reply and the key."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"kind": "error"}]))
    result = run("serve-fake", "--script", str(script))
    assert result.returncode == 2
    assert "replies[0]" in result.stderr
