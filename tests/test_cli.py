"""The `retrypolicy` command line: `main([...])` in-process, and a few runs as a user would."""

from __future__ import annotations

import ast
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

import retrypolicy as rp
from retrypolicy._cli import main
from retrypolicy._cli._demo import project_urls

EXE = [sys.executable, "-m", "retrypolicy"]
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
COMMANDS = ["check", "explain", "schedule", "dump", "demo", "serve-fake"]

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``cli("explain", "429")``: main() in-process; (exit code, stdout, stderr).

    The RETRYPOLICY_* variables of the environment running the tests are cleared.
    """
    monkeypatch.delenv("RETRYPOLICY_CONFIG", raising=False)
    monkeypatch.delenv("RETRYPOLICY_PROFILE", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def subprocess_run(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m retrypolicy ARGS`` as a user runs it."""
    return subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [*EXE, *args], capture_output=True, text=True, timeout=120, env=ENV, check=False
    )


# -- as a user runs it -------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    """--help names every subcommand and the exit codes."""
    result = subprocess_run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "exit codes" in result.stdout


def test_console_script_and_module_agree() -> None:
    """The `retrypolicy` console script is installed and prints what `python -m` prints."""
    script = Path(sys.executable).parent / "retrypolicy"
    via_script = subprocess.run(  # noqa: S603
        [str(script), "explain", "503"], capture_output=True, text=True, check=True, env=ENV
    )
    assert "unavailable (retry up to 5 times)" in via_script.stdout
    assert via_script.stdout == subprocess_run("explain", "503").stdout


def test_demo() -> None:
    """demo runs the scripted scenario through both adapters and prints a summary."""
    result = subprocess_run("demo", "--instant")
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
    """serve-fake serves scripted replies first, then successes, until Ctrl-C (a process)."""
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
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()  # never let a stuck child hang the suite
                raise
    assert proc.returncode == 0


# -- in-process: usage ----------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(cli: Run, command: str) -> None:
    """Every subcommand's --help describes it and returns 0 instead of exiting."""
    code, out, _ = cli(command, "--help")
    assert code == 0
    assert "usage: retrypolicy " + command in out


def test_usage_errors_return_2(cli: Run) -> None:
    """No command, or an unknown one, returns 2 with argparse's message: no SystemExit."""
    assert cli()[0] == 2
    code, _, err = cli("frobnicate")
    assert code == 2
    assert "invalid choice" in err


# -- explain --------------------------------------------------------------------------------


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
def test_explain(cli: Run, args: list[str], expected: list[str]) -> None:
    """explain prints the class, the advice and the waits the policy would schedule."""
    code, out, err = cli(*args)
    assert code == 0, err
    for text in expected:
        assert text in out


def test_explain_shows_the_storm_settings(cli: Run, tmp_path: Path) -> None:
    """explain shows the budget, limiter and breaker settings of the policy (docs/storm.md)."""
    _, out, _ = cli("explain", "503")
    assert "budget:  capacity 500 tokens; a retry costs 5 (10 after a timeout)" in out
    assert "limiter: off" in out
    assert "breaker: off" in out
    path = tmp_path / "storm.toml"
    path.write_text(
        "[policies.s]\nbudget = false\nlimiter = true\n[policies.s.breaker]\nopen_for = 30\n",
        encoding="utf-8",
    )
    code, out, err = cli("explain", "503", "--config", str(path))
    assert code == 0, err
    assert "budget:  off" in out
    assert "limiter: after a 429: pace from the measured rate x0.7" in out
    assert "cuts to x0.7 the rate let through since the last cut" in out
    assert "cubic recovery: the limit x (1 + 0.03 t^3) t s past it" in out
    assert "breaker: per host: opens when >= 0.5 of >= 20 attempts in 30s fail" in out
    assert "open 30s, then 1 probe" in out
    assert "  breaker      on (policies.s.breaker)" in out


def test_explain_waits_are_the_backoffs_bounds(cli: Run) -> None:
    """The ranges explain prints are Backoff.bounds of the rule's backoff, and hold its draws."""
    _, out, _ = cli("explain", "429")
    printed = [
        (float(lo), float(hi))
        for lo, hi in re.findall(r"retry \d+: wait +([\d.]+)s \.\. +([\d.]+)s", out)
    ]
    rule = rp.EUGPT.classify(429).rule
    assert rule is not None
    backoff = rule.backoff  # EU GPT's 429 rule has a backoff of its own
    assert backoff is not None
    assert printed == backoff.bounds(6)
    rng = random.Random(1)
    for _ in range(200):
        for wait, (lo, hi) in zip(backoff.schedule(6, rng=rng), printed, strict=True):
            assert lo <= wait <= hi


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated", "none"])
def test_bounds_hold_every_draw(jitter: str) -> None:
    """Backoff.bounds (what explain prints) contains every wait Backoff.schedule draws."""
    backoff = rp.Backoff(initial=0.3, multiplier=1.7, max_delay=5.0, jitter=jitter)  # type: ignore[arg-type]
    bounds = backoff.bounds(8)
    rng = random.Random(7)
    for _ in range(300):
        for wait, (lo, hi) in zip(backoff.schedule(8, rng=rng), bounds, strict=True):
            assert lo <= wait <= hi


def test_explain_body_from_stdin(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """explain --body - parses the body for its code: the bare-string error form."""
    body = json.dumps({"detail": "Project membership required", "error": "project_forbidden"})
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body.encode())))
    code, out, _ = cli("explain", "403", "--body", "-")
    assert code == 0
    assert "code='project_forbidden'" in out
    assert "permission (do not retry)" in out


def test_explain_body_file_missing(cli: Run, tmp_path: Path) -> None:
    """An unreadable --body file exits 2 naming it."""
    code, _, err = cli("explain", "503", "--body", str(tmp_path / "nope.json"))
    assert code == 2
    assert "cannot read --body" in err


def test_explain_bad_status(cli: Run) -> None:
    """A status that is not one exits 2 with a message naming it and what was expected."""
    code, _, err = cli("explain", "999")
    assert code == 2
    assert "'999'" in err
    assert "expected an HTTP status 100-599" in err


def test_profile_without_config_is_a_built_in_profile(cli: Run) -> None:
    """--profile without a file picks a built-in profile; an unknown one is a usage error."""
    code, out, _ = cli("dump", "--profile", "http")
    assert code == 0
    assert "[policies.http]" in out
    assert "policy:  http" in cli("explain", "429", "--profile", "http")[1]
    code, _, err = cli("explain", "503", "--profile", "batch")
    assert code == 2
    assert "expected a built-in profile (eugpt, http)" in err


# -- check, dump ------------------------------------------------------------------------------

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


def test_check_ok_and_explain_with_config(cli: Run, tmp_path: Path) -> None:
    """check accepts a good file; explain --config uses its policy."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    code, out, _ = cli("check", str(path))
    assert (code, "ok (batch)" in out) == (0, True)
    assert "unavailable (do not retry)" in cli("explain", "503", "--config", str(path))[1]
    waits = cli("explain", "500", "--config", str(path), "--profile", "batch")[1]
    assert "retry 1: wait   2.00s ..   2.00s" in waits


def test_check_names_every_policy(cli: Run, tmp_path: Path) -> None:
    """Without --profile, check loads every policy of the file and names them."""
    path = tmp_path / "two.toml"
    path.write_text('[policies.b]\nextends = "http"\n[policies.a]\nmax_attempts = 2\n')
    assert cli("check", str(path))[:2] == (0, f"{path}: ok (a, b)\n")
    assert cli("check", str(path), "--profile", "b")[:2] == (0, f"{path}: ok (b)\n")


def test_check_reports_every_problem(cli: Run, tmp_path: Path) -> None:
    """check exits 1 and names each bad key path, once."""
    path = tmp_path / "bad.toml"
    path.write_text(
        "[policies.p]\nmax_atempts = 3\n[policies.p.backoff]\njitter = 'sometimes'\n"
        "[[policies.p.rules]]\nstatus = 700\n[policies.q]\n"
    )
    code, _, err = cli("check", str(path))
    assert code == 1
    keys = ["policies.p.max_atempts", "policies.p.backoff.jitter", "policies.p.rules[0].status"]
    for key in keys:
        assert err.count(key) == 1
    assert str(path) in err


def test_check_broken_toml(cli: Run, tmp_path: Path) -> None:
    """Broken TOML is reported with its line, not a traceback."""
    path = tmp_path / "broken.toml"
    path.write_text("[policies.p\nmax_attempts = 3\n")
    code, _, err = cli("check", str(path))
    assert code == 1
    assert "line 1" in err


def test_check_missing_file(cli: Run, tmp_path: Path) -> None:
    """A file that is not there is bad input (2) naming it, not a finding."""
    code, _, err = cli("check", str(tmp_path / "none.toml"))
    assert code == 2
    assert "expected an existing file" in err
    assert str(tmp_path / "none.toml") in err


def test_dump_round_trips_through_check(cli: Run, tmp_path: Path) -> None:
    """dump prints TOML that check accepts and that explains like the built-in policy."""
    code, dumped, _ = cli("dump")
    assert code == 0
    path = tmp_path / "eugpt.toml"
    path.write_text(dumped)
    assert cli("check", str(path))[0] == 0
    from_file = cli("explain", "429", "--config", str(path))[1]
    # the same lines, except that the what-if names the file to simulate (--policy FILE:eugpt)
    assert from_file.replace(f" --policy {path}:eugpt`", "`") == cli("explain", "429")[1]


# -- schedule ---------------------------------------------------------------------------------


def test_schedule(cli: Run) -> None:
    """schedule samples the waits per retry and draws the curve."""
    code, out, _ = cli("schedule", "--kind", "unavailable", "--samples", "500")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("eugpt / unavailable: 5 retries, full jitter, 500 samples")
    assert len([line for line in lines if "█" in line or "░" in line]) == 5


def test_schedule_is_backoff_schedule(cli: Run) -> None:
    """With one sample, the waits printed are Backoff.schedule's draws for that seed."""
    _, out, _ = cli("schedule", "--kind", "unavailable", "--samples", "1", "--seed", "3")
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    expected = rp.EUGPT.backoff.schedule(5, rng=random.Random(3))
    assert [float(row[1]) for row in rows] == [round(w, 2) for w in expected]


def test_schedule_unknown_kind(cli: Run) -> None:
    """An unknown --kind exits 2 listing the retried kinds."""
    code, _, err = cli("schedule", "--kind", "nope")
    assert code == 2
    assert "rate_limited" in err


# -- serve-fake ---------------------------------------------------------------------------------


def test_serve_fake_bad_script(cli: Run, tmp_path: Path) -> None:
    """A bad script file exits 2 naming the reply and the key, before serving anything."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"kind": "error"}]))
    code, _, err = cli("serve-fake", "--script", str(script))
    assert code == 2
    assert "replies[0]" in err


# -- explain: where each value came from ------------------------------------------------------

OVERRIDE_429 = """
[policies.batch]
extends = "eugpt"
max_attempts = 8
[[policies.batch.rules]]
status = 429
max_retries = 3
"""


def test_explain_shows_where_each_value_came_from(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """explain --config of a policy that inherits names the table behind each value."""
    monkeypatch.delenv("RETRYPOLICY_CONFIG", raising=False)
    monkeypatch.delenv("RETRYPOLICY_PROFILE", raising=False)
    path = tmp_path / "batch.toml"
    path.write_text(OVERRIDE_429, encoding="utf-8")
    code, out, err = cli("explain", "429", "--config", str(path))
    assert code == 0, err
    assert "rate_limited (retry up to 3 times)" in out
    sources = out[out.index("sources:") :].splitlines()
    assert sources == [
        "sources: rule policies.batch.rules[0] (overrides the rule from eugpt)",
        "  kind         rate_limited (inherited from eugpt)",
        "  retry        true (policies.batch.rules[0])",
        "  max_retries  3 (policies.batch.rules[0])",
        '  advice       "A usage limit was exceeded; retried wit…" (inherited from eugpt)',
        "  backoff      the rule's: initial 1.0, multiplier 2.0, max_delay 20.0, "
        'jitter "full", max_retry_after 60.0 (inherited from eugpt)',
        "  max_attempts 8 (policies.batch)",
        "  deadline     none (inherited from eugpt)",
        "  budget       on (inherited from eugpt)",
        "  limiter      off (inherited from eugpt)",
        "  breaker      off (inherited from eugpt)",
    ]
    _, out, _ = cli("explain", "401", "--config", str(path))
    assert "sources: rule inherited from eugpt" in out
    assert "  backoff      the policy's: initial 0.5, multiplier 2.0" in out
    # a policy that inherits nothing (the built-in, or a dump of it) has nothing to trace
    assert "sources:" not in cli("explain", "429")[1]
    dumped = tmp_path / "eugpt.toml"
    dumped.write_text(cli("dump")[1], encoding="utf-8")
    assert "sources:" not in cli("explain", "429", "--config", str(dumped))[1]
    # the file RETRYPOLICY_CONFIG names is traced as --config's is
    monkeypatch.setenv("RETRYPOLICY_CONFIG", str(path))
    assert "  max_retries  3 (policies.batch.rules[0])" in cli("explain", "429")[1]


def test_serve_fake_script_problems_are_config_errors(cli: Run, tmp_path: Path) -> None:
    """A misspelt key gets a suggestion; a lone object, bad JSON and a missing file exit 2."""
    cases = {
        "typo.json": ('{"replys": []}', 'did you mean "replies"?'),
        "lone.json": ('{"kind": "error", "status": 503}', "found a single reply object"),
        "bad.json": ("[{", "expected a JSON script"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        code, out, err = cli("serve-fake", "--port", "0", "--script", str(tmp_path / name))
        assert (code, out) == (2, ""), err
        assert str(tmp_path / name) in err
        assert expected in err
        assert "ConfigFileError" not in err
    code, _, err = cli("serve-fake", "--script", str(tmp_path / "none.json"))
    assert code == 2
    assert "expected an existing file" in err


# -- the environment, as the library reads it ---------------------------------------------


def test_missing_config_from_the_environment_is_an_error(
    cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RETRYPOLICY_CONFIG naming a missing file fails (2): never a silent EU GPT."""
    monkeypatch.setenv("RETRYPOLICY_CONFIG", str(tmp_path / "missing.toml"))
    for args in (["explain", "429"], ["schedule"], ["dump"], ["explain", "429", "--profile", "x"]):
        code, out, err = cli(*args)
        assert (code, out) == (2, ""), args
        assert "named by RETRYPOLICY_CONFIG" in err
        assert "missing.toml" in err


def test_config_and_profile_from_the_environment(
    cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RETRYPOLICY_CONFIG / _PROFILE choose the policy; --config / --profile override each."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY + '[policies.other]\nextends = "http"\n')
    monkeypatch.setenv("RETRYPOLICY_CONFIG", str(path))
    monkeypatch.setenv("RETRYPOLICY_PROFILE", "batch")
    assert "policy:  batch" in cli("explain", "503")[1]
    assert "policy:  other" in cli("explain", "503", "--profile", "other")[1]
    assert "[policies.batch]" in cli("dump")[1]
    monkeypatch.delenv("RETRYPOLICY_CONFIG")
    code, _, err = cli("explain", "503")
    assert code == 2
    assert "RETRYPOLICY_PROFILE='batch'" in err
    monkeypatch.setenv("RETRYPOLICY_PROFILE", "http")
    assert "policy:  http" in cli("explain", "503")[1]
    assert "policy:  batch" in cli("explain", "503", "--config", str(path), "--profile", "batch")[1]


def test_version(cli: Run) -> None:
    """--version prints the package metadata's version, also rp.__version__."""
    from importlib.metadata import version  # noqa: PLC0415

    assert rp.__version__ == version("retrypolicy")
    assert cli("--version") == (0, f"retrypolicy {rp.__version__}\n", "")


# -- check --profile ----------------------------------------------------------------------------


def test_check_profile_reports_only_that_policy(cli: Run, tmp_path: Path) -> None:
    """check --profile a reports a's problems, only counts the others, and still says no."""
    path = tmp_path / "three.toml"
    path.write_text(
        "[policies.a]\nmax_attempts = 2\n[policies.b]\nmax_atempts = 3\n"
        '[policies.c]\nextends = "b"\ndeadline = "soon"\n'
    )
    code, out, err = cli("check", str(path), "--profile", "a")
    assert (code, out) == (1, "")
    assert "policy 'a' is valid" in err
    assert "2 problems in other policies make loading 'a' fail too" in err
    assert "max_atempts" not in err
    code, _, err = cli("check", str(path), "--profile", "c")
    assert code == 1
    assert "policies.c.deadline" in err
    assert "policies.b.max_atempts" not in err
    code, _, err = cli("check", str(path), "--profile", "z")
    assert code == 2
    assert 'found "z"' in err
    assert "max_atempts" not in err


# -- serve-fake in-process ------------------------------------------------------------------------


def drive(*posts: dict[str, object]) -> Callable[[rp.testing.FakeEUGPT], None]:
    """A stand-in for serve-fake's wait: make these requests, then Ctrl-C."""

    def wait(server: rp.testing.FakeEUGPT) -> None:
        for body in posts:
            requests.post(server.responses_url, json=body, timeout=5)
        requests.get(server.url + "/nope", timeout=5)
        assert server.wait_for_requests(len(posts) + 1)
        raise KeyboardInterrupt

    return wait


def test_serve_fake_shows_its_work(
    cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One line per request on stderr (method, path, status, kind, outcome), a summary at exit."""
    script = tmp_path / "script.toml"
    script.write_text(
        '[[replies]]\nkind = "error"\nstatus = 503\n'
        '[[replies]]\nkind = "stream"\nn_deltas = 2\nend = "error"\ncode = "upstream_timeout"\n'
    )
    monkeypatch.setattr(
        "retrypolicy._cli.serve_fake._wait_forever", drive({}, {}, {"stream": False})
    )
    code, out, err = cli("serve-fake", "--port", "0", "--script", str(script))
    assert code == 0, err
    assert out.splitlines()[1] == "2 scripted replies, then the default success; Ctrl-C stops"
    assert err.splitlines() == [
        "req_1 POST /v1/responses -> 503 error (script)",
        "req_2 POST /v1/responses -> 200 stream (script): error upstream_timeout after 2 deltas",
        "req_3 POST /v1/responses -> 200 ok (default)",
        "req_4 GET /nope -> 404 error (route)",
        "served 4 requests (1 default, 1 route, 2 script; 200 x2, 404 x1, 503 x1); "
        "0 scripted replies left unused",
    ]


def test_serve_fake_quiet_and_singular(
    cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--quiet prints nothing per request; one reply is "1 scripted reply"."""
    script = tmp_path / "one.json"
    script.write_text('[{"kind": "error", "status": 429, "retry_after": 1}]')
    monkeypatch.setattr("retrypolicy._cli.serve_fake._wait_forever", drive({}))
    code, out, err = cli("serve-fake", "--port", "0", "--script", str(script), "--quiet")
    assert (code, err) == (0, "")
    assert "1 scripted reply, then" in out


def test_serve_fake_port_in_use(cli: Run) -> None:
    """A port that cannot be bound exits 2 naming it."""
    with rp.testing.FakeEUGPT() as other:
        code, out, err = cli("serve-fake", "--port", str(other.port))
    assert (code, out) == (2, "")
    assert f"--port {other.port}: expected a free port" in err


# -- the demo ----------------------------------------------------------------------------------


def test_demo_fits_one_screen(cli: Run) -> None:
    """≤ 100 columns, no None fields, no internal names, and where to go next."""
    code, out, err = cli("demo", "--instant")
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "None" not in out
    assert "<locals>" not in out
    assert "_scenarios" not in out
    assert "retrypolicy explain 429" in out
    assert "docs:" in out
    assert "(via httpx)" in out


def test_demo_without_httpx(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a plain install the demo runs every scenario through requests and says so."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    code, out, err = cli("demo", "--instant")
    assert code == 0, err
    assert "httpx" not in err
    assert "(via httpx)" not in out
    assert "httpx is not installed" in out
    assert "pip install 'retrypolicy[httpx]'" in out
    assert out.count("completed") >= 2


# -- the matrix: every command x every kind of input, never a traceback ----------------------


class BrokenStdout(io.StringIO):
    """A standard output whose reader has gone away (``| head -1``)."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


GOOD_POLICY = "[policies.p]\nmax_attempts = 3\n"
BAD_POLICY = "[policies.p]\nmax_atempts = 3\n"

# command -> situation -> (argv, exit code); {good}, {bad}, {missing} are files in tmp_path
MATRIX: dict[str, dict[str, tuple[list[str], int]]] = {
    "check": {
        "good": (["check", "{good}"], 0),
        "bad": (["check", "{bad}"], 1),
        "missing": (["check", "{missing}"], 2),
    },
    "explain": {
        "good": (["explain", "429", "--config", "{good}"], 0),
        "bad": (["explain", "999"], 2),
        "missing": (["explain", "429", "--config", "{missing}"], 2),
    },
    "schedule": {
        "good": (["schedule", "--samples", "20"], 0),
        "bad": (["schedule", "--kind", "nope"], 2),
        "missing": (["schedule", "--config", "{missing}"], 2),
    },
    "dump": {
        "good": (["dump", "--profile", "http"], 0),
        "bad": (["dump", "--config", "{bad}"], 2),
        "missing": (["dump", "--config", "{missing}"], 2),
    },
    "demo": {
        "good": (["demo", "--instant"], 0),
        "bad": (["demo", "--samples", "3"], 2),
        # the demo reads no file: its "missing file" is a missing policy file in the
        # environment, which it does not use (it always shows the built-in EU GPT policy)
        "missing": (["demo", "--instant"], 0),
    },
    "serve-fake": {
        "good": (["serve-fake", "--port", "0", "--script", "{script}"], 0),
        "bad": (["serve-fake", "--port", "0", "--script", "{bad_script}"], 2),
        "missing": (["serve-fake", "--port", "0", "--script", "{missing}"], 2),
    },
}


@pytest.mark.parametrize("situation", ["good", "bad", "missing", "broken_pipe", "no_httpx"])
@pytest.mark.parametrize("command", COMMANDS)
def test_matrix(
    command: str,
    situation: str,
    cli: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each command with good, bad and missing input, a closed pipe and no httpx: no traceback."""
    files = {
        "good": tmp_path / "good.toml",
        "bad": tmp_path / "bad.toml",
        "missing": tmp_path / "missing.toml",
        "script": tmp_path / "script.json",
        "bad_script": tmp_path / "bad_script.json",
    }
    files["good"].write_text(GOOD_POLICY)
    files["bad"].write_text(BAD_POLICY)
    files["script"].write_text('[{"kind": "error", "status": 503}]')
    files["bad_script"].write_text('[{"kind": "error", "stauts": 503}]')
    monkeypatch.setenv("RETRYPOLICY_CONFIG", str(files["missing"]))  # demo ignores it
    if command != "demo":
        monkeypatch.delenv("RETRYPOLICY_CONFIG")
    monkeypatch.setattr("retrypolicy._cli.serve_fake._wait_forever", drive({}))
    row = "good" if situation in ("broken_pipe", "no_httpx") else situation
    template, expected = MATRIX[command][row]
    argv = [arg.format(**{k: str(v) for k, v in files.items()}) for arg in template]
    if situation == "no_httpx":
        monkeypatch.setitem(sys.modules, "httpx", None)
    if situation == "broken_pipe":
        monkeypatch.setattr(sys, "stdout", BrokenStdout())
    code, out, err = cli(*argv)
    assert code == expected, err
    assert "Traceback" not in out + err
    assert "Exception ignored" not in err
    if expected == 2:
        assert err  # every refusal says why
    if situation == "no_httpx":
        assert "httpx" not in err


# -- as a user pipes it -------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["schedule"], ["demo", "--instant"], ["dump"]])
def test_real_broken_pipe_is_quiet(args: list[str]) -> None:
    """`retrypolicy ... | head -1`: the reader leaves after one line; no traceback, exit 0."""
    with subprocess.Popen(  # noqa: S603
        [*EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
    assert "Traceback" not in err
    assert "Exception ignored" not in err
    assert proc.returncode == 0


# -- issue 18: the command line's rough edges ---------------------------------------------------


def stdin_of(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """Make *data* the process's standard input, as a pipe would."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_check_reads_standard_input(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """`retrypolicy dump | retrypolicy check -`: FILE '-' is standard input, named <stdin>."""
    dumped = cli("dump")[1]
    stdin_of(monkeypatch, dumped.encode())
    assert cli("check", "-") == (0, "<stdin>: ok (eugpt)\n", "")
    stdin_of(monkeypatch, dumped.encode())
    assert cli("check", "-", "--profile", "eugpt")[:2] == (0, "<stdin>: ok (eugpt)\n")
    stdin_of(monkeypatch, BAD_POLICY.encode())
    code, out, err = cli("check", "-")
    assert (code, out) == (1, "")
    assert err.startswith("<stdin>: policies.p.max_atempts: unknown key")
    assert "retrypolicy-check-" not in err  # the file standard input was saved in never shows


def test_dump_piped_into_check() -> None:
    """A real pipe between two processes: dump's TOML is accepted by check - (exit 0)."""
    dumped = subprocess_run("dump", "--profile", "http").stdout
    result = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [*EXE, "check", "-"], input=dumped, capture_output=True, text=True, env=ENV, check=False
    )
    assert (result.returncode, result.stdout) == (0, "<stdin>: ok (http)\n"), result.stderr


NOT_UTF8 = b"[policies.p]\nmax_attempts = 3 # \xff\xfe\n"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["check", "{latin1}"], "expected UTF-8 text (TOML); found byte 0xff on line 2"),
        (["check", "{folder}"], "cannot read the policy file: expected a readable file"),
        (["check", "-"], "<stdin>: cannot read the policy file: expected UTF-8 text"),
        (["check", "{latin1}", "--profile", "p"], "expected UTF-8 text (TOML)"),
        (["explain", "429", "--config", "{latin1}"], "expected UTF-8 text (TOML)"),
        (["dump", "--config", "{folder}"], "expected a readable file"),
        (["schedule", "--config", "{latin1}"], "expected UTF-8 text (TOML)"),
        (["explain", "503", "--body", "{folder}"], "cannot read --body"),
        (["serve-fake", "--port", "0", "--script", "{latin1}"], "{latin1}"),
        (["serve-fake", "--port", "0", "--script", "{folder}"], "expected a readable file"),
    ],
)
def test_unreadable_input_exits_2(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str
) -> None:
    """An input that cannot be read (not UTF-8, a folder) is bad input: 2 naming it, never 1."""
    files = {"latin1": tmp_path / "latin1.toml", "folder": tmp_path}
    files["latin1"].write_bytes(NOT_UTF8)
    stdin_of(monkeypatch, NOT_UTF8)
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    code, out, err = cli(*args)
    assert (code, out) == (2, ""), err
    assert expected.format(**{k: str(v) for k, v in files.items()}) in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", "timeout", "--code", "x"],
        ["explain", "connection", "--code", "upstream_timeout"],
        ["explain", "incomplete_stream", "--body", "-"],
        ["explain", "stream_error", "--code", "cancelled"],
    ],
)
def test_explain_refuses_a_code_without_a_status(cli: Run, argv: list[str]) -> None:
    """A failure without a response has no error code: --code/--body with it exit 2, saying so."""
    code, out, err = cli(*argv)
    assert (code, out) == (2, "")
    assert f"{argv[2]}: expected an HTTP status with it" in err
    assert f"{argv[1]} is a failure without a response" in err
    assert "explain 200 --code CODE" in err


def epilog_of(command: str) -> str:
    """The text after the options in `retrypolicy COMMAND --help`, on one line."""
    result = subprocess_run(command, "--help")
    return " ".join(result.stdout.split("exit codes:", 1)[1].split())


# command -> (takes --config, what its epilog must say)
EPILOGS: dict[str, tuple[bool, list[str]]] = {
    "check": (False, ["1 the file has problems", "not UTF-8", "FILE '-' reads the policy"]),
    "explain": (True, ["--config or --body file that cannot be read", "130 Ctrl-C"]),
    "schedule": (True, ["an unknown --kind too", "130 Ctrl-C"]),
    "dump": (True, ["0 printed", "130 Ctrl-C"]),
    "demo": (False, ["0 the demo ran; 2 bad usage", "built-in EU GPT policy"]),
    "serve-fake": (False, ["0 stopped by Ctrl-C or SIGTERM", "--port that cannot be bound"]),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_each_epilog_says_only_what_applies(command: str) -> None:
    """A command's epilog names its own exit codes; the policy variables only where it has
    --config; 1 (the answer is no) only for check."""
    takes_config, says = EPILOGS[command]
    text = epilog_of(command)
    for phrase in says:
        assert phrase in text, (command, phrase)
    assert ("RETRYPOLICY_CONFIG" in text) == takes_config
    assert ("--config" in subprocess_run(command, "--help").stdout) == takes_config
    assert ("; 1 " in text) == (command == "check")
    if command != "check":
        assert "FILE '-'" not in text


class Writes(io.StringIO):
    """A standard error that records each write call, to see whether lines arrive whole."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, s: str) -> int:
        self.calls.append(s)
        return super().write(s)


def drive_concurrently(clients: int, requests_each: int) -> Callable[[rp.testing.FakeEUGPT], None]:
    """A stand-in for serve-fake's wait: many clients at once, then Ctrl-C."""

    def wait(server: rp.testing.FakeEUGPT) -> None:
        def client(_: int) -> None:
            with requests.Session() as session:
                for _ in range(requests_each):
                    session.post(server.responses_url, json={"stream": False}, timeout=5)

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        assert server.wait_for_requests(clients * requests_each)
        raise KeyboardInterrupt

    return wait


def test_serve_fake_lines_never_merge(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """16 concurrent clients: every request line (and the summary) is one write of one line."""
    err = Writes()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr("retrypolicy._cli.serve_fake._wait_forever", drive_concurrently(16, 8))
    code, _, _ = cli("serve-fake", "--port", "0")
    assert code == 0
    assert all(c.endswith("\n") and c.count("\n") == 1 for c in err.calls), err.calls
    lines = err.getvalue().splitlines()
    assert len(lines) == 16 * 8 + 1
    pattern = re.compile(r"req_\d+ POST /v1/responses -> 200 ok \(default\)")
    assert all(pattern.fullmatch(line) for line in lines[:-1]), lines
    assert lines[-1].startswith("served 128 requests (128 default; 200 x128)")


def test_serve_fake_sigterm_prints_the_summary() -> None:
    """SIGTERM stops serve-fake as Ctrl-C does: the summary on stderr, exit 0 (a process)."""
    with subprocess.Popen(  # noqa: S603
        [*EXE, "serve-fake", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split(" on ")[1].strip()
            assert requests.post(url, json={"stream": False}, timeout=5).status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()  # never let a stuck child hang the suite
                raise
    assert proc.returncode == 0, err
    assert err.splitlines()[-1].startswith("served 1 request (1 default; 200 x1)")


def test_demo_never_cuts_a_result(cli: Run) -> None:
    """Every scenario's result appears whole in the summary, however long: cells wrap."""
    _, out, _ = cli("demo", "--instant")
    results = [line.removeprefix("-> ") for line in out.splitlines() if line.startswith("-> ")]
    assert len(results) == 5
    summary = out[out.index("\nsummary") : out.index("\nnext:")]
    words = " ".join(summary.split())
    for result in results:
        assert " ".join(result.split()) in words
    assert "..." not in out


def test_demo_points_to_the_project_urls(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo links to [project.urls] from the metadata, never to a docs/ a pip install
    lacks; while they are placeholders (.invalid) it says the docs are not published yet."""
    urls = project_urls()
    assert urls["Documentation"].startswith("https://retrypolicy.invalid/")
    out = cli("demo", "--instant")[1]
    assert "docs: not published online yet" in out
    assert "retrypolicy.invalid" not in out
    real = {"Documentation": "https://docs.example.org/retrypolicy/", "Source": "https://x.org/rp"}
    monkeypatch.setattr("retrypolicy._cli._demo.project_urls", lambda: real)
    out = cli("demo", "--instant")[1]
    assert "docs: https://docs.example.org/retrypolicy/ (requests, httpx, decorating," in out
    assert "source: https://x.org/rp" in out
    assert "(in docs/)" not in out


def test_ctrl_c_exit_codes_are_the_docs(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C ends a command with 130, and serve-fake (its normal stop) with 0: as cli.md says."""
    page = " ".join((Path(__file__).parent.parent / "docs" / "cli.md").read_text().split())
    assert "Ctrl-C with 130" in page
    assert "Ctrl-C or SIGTERM ends it with 0" in page

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("retrypolicy._cli.schedule._print_schedule", interrupted)
    assert cli("schedule")[0] == 130
    monkeypatch.setattr("retrypolicy._cli.serve_fake._wait_forever", interrupted)
    assert cli("serve-fake", "--port", "0")[0] == 0


# -- the application layer ------------------------------------------------------------------------

SRC = Path(__file__).resolve().parent.parent / "src" / "retrypolicy"


def runtime_imports(file: Path) -> set[str]:
    """The absolute names of the modules *file* imports, outside ``if TYPE_CHECKING:``."""
    package = ["retrypolicy", *file.relative_to(SRC).parent.parts]
    found: set[str] = set()
    tree = ast.parse(file.read_text(encoding="utf-8"))
    skip = {
        id(node)
        for top in ast.walk(tree)
        if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test)
        for node in ast.walk(top)
    }
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_cli_imports_adapters_and_testing() -> None:
    """Outside _cli/, no module of retrypolicy imports an adapter or retrypolicy.testing."""
    offenders = {}
    for file in sorted(SRC.rglob("*.py")):
        where = file.relative_to(SRC).as_posix()
        if where.startswith(("_cli/", "testing/")):
            continue
        bad = {
            m
            for m in runtime_imports(file)
            if m.startswith(("retrypolicy_", "retrypolicy.testing"))
        }
        if bad:
            offenders[where] = sorted(bad)
    assert offenders == {}
    assert "retrypolicy.testing" in runtime_imports(SRC / "_cli" / "serve_fake.py")
    assert "retrypolicy_requests" in runtime_imports(SRC / "_cli" / "_demo.py")


def test_commands_load_only_what_they_run() -> None:
    """`explain` in a fresh interpreter loads neither requests nor the fake server: the demo
    and serve-fake modules import them only when their command runs."""
    code = (
        "import sys, io; from retrypolicy._cli import main; main(['explain', '429']); "
        "print(sorted(m for m in sys.modules if m.startswith(('requests', 'retrypolicy.testing',"
        " 'retrypolicy_', 'httpx'))), file=sys.stderr)"
    )
    result = subprocess.run(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True
    )
    assert result.stderr.strip() == "[]"


def test_explain_says_an_before_a_vowel(cli: Run) -> None:
    """The reason of a failure whose name starts with a vowel reads "an incomplete_stream"."""
    assert "an incomplete_stream failure" in cli("explain", "incomplete_stream")[1]


def _many_retries(tmp_path: Path) -> Path:
    path = tmp_path / "forever.toml"
    path.write_text(
        "[policies.forever]\nextends = false\n"
        "[[policies.forever.rules]]\nstatus = 503\nmax_retries = 1000000\n",
        encoding="utf-8",
    )
    return path


def test_explain_a_rule_with_a_million_retries_is_short(cli: Run, tmp_path: Path) -> None:
    """A rule may allow any number of retries (max_retries = 1000000, no max_attempts):
    explain lists the first 50 waits, then one line for all the others, with bounds that
    hold for each (the cap), and totals over every retry - at once, not a line a retry."""
    code, out, err = cli("explain", "503", "--config", str(_many_retries(tmp_path)))
    assert code == 0, err
    assert len(out.splitlines()) < 80
    assert "  retry 50: wait   0.00s ..   8.00s" in out
    assert "  retry 51..1000000: wait   0.00s ..   8.00s each" in out
    assert "at most 1000001 attempts, 0.00s .. 7999975.50s of waiting" in out


def test_schedule_a_rule_with_a_million_retries_is_short(cli: Run, tmp_path: Path) -> None:
    """schedule draws the first 50 waits of such a rule and says the rest are capped, rather
    than drawing a million waits per sample (10000 samples by default)."""
    code, out, err = cli("schedule", "--samples", "3", "--config", str(_many_retries(tmp_path)))
    assert code == 0, err
    assert len(out.splitlines()) < 80
    assert "forever / server_error: 1000000 retries" in out
    assert "  retries 51..1000000: not sampled; each waits at most 8s (the cap)" in out


def test_explain_says_once_for_a_single_retry(cli: Run) -> None:
    """internal_error is retried once: explain says "1 time", as its reason line does."""
    _, out, _ = cli("explain", "200", "--code", "internal_error")
    assert "class:   internal_error (retry up to 1 time)" in out


@pytest.mark.parametrize(
    ("args", "how"),
    [
        (["dump", "--config", "{file}"], "with --profile P (or RETRYPOLICY_PROFILE), as the file"),
        (["explain", "429", "--config", "{file}"], "with --profile P (or RETRYPOLICY_PROFILE)"),
        (["simulate", "--policy", "{file}"], "with --policy {file}:PROFILE, as the file"),
    ],
)
def test_a_file_of_several_policies_says_how_to_choose_on_the_command_line(
    cli: Run, tmp_path: Path, args: list[str], how: str
) -> None:
    """A policy file of several policies given without a profile names them, and says how
    to choose one with this command's own options (not the library's profile= argument)."""
    file = tmp_path / "two.toml"
    file.write_text("[policies.a]\n[policies.b]\n", encoding="utf-8")
    code, _, err = cli(*(a.format(file=file) for a in args))
    assert code == 2
    assert "expected one of the file's policies (a, b) " + how.format(file=file) in err
    assert "profile=" not in err


def test_explain_says_one_attempt(cli: Run, tmp_path: Path) -> None:
    """With max_attempts = 1 nothing is retried: explain says "at most 1 attempt"."""
    path = tmp_path / "once.toml"
    path.write_text("[policies.once]\nmax_attempts = 1\n", encoding="utf-8")
    code, out, err = cli("explain", "503", "--config", str(path))
    assert code == 0, err
    assert "  then give up: at most 1 attempt, 0.00s .. 0.00s of waiting" in out


@pytest.mark.parametrize(
    ("stream", "verdict"),
    [
        (
            b'event: message\ndata: {"type":"error","code":"upstream_timeout",'
            b'"message":"Model timed out"}\n\n',
            "class:   upstream_timeout (retry up to 3 times)",
        ),
        (
            b'event: message\ndata: {"type":"response.created","sequence_number":0}\n\n',
            "class:   incomplete_stream (retry up to 2 times)",
        ),
        (
            b'event: message\ndata: {"type":"response.created","sequence_number":0}\n\n'
            b'event: message\ndata: {"type":"response.completed","sequence_number":1}\n\n',
            "class:   success (do not retry)",
        ),
    ],
    ids=["error event", "no completion", "completed"],
)
def test_explain_judges_a_stream_body_as_the_adapters_do(
    cli: Run, tmp_path: Path, stream: bytes, verdict: str
) -> None:
    """The spec's own example of a failed stream - a 200 whose last event is an error
    event - is not a success: explain 200 --body judges an event stream by its last event,
    as the adapters do (it used to parse it as an error envelope, find none, say success)."""
    body = tmp_path / "stream.txt"
    body.write_bytes(stream)
    code, out, err = cli("explain", "200", "--body", str(body))
    assert code == 0, err
    assert verdict in out
