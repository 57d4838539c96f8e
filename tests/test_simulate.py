"""rp.simulate and `retrypolicy simulate`: the real decision code on a virtual clock."""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests

import retrypolicy as rp
from retrypolicy import _backoff, _breaker, _budget, _limiter
from retrypolicy._cli.simulate import add_to as add_parser
from retrypolicy._simulate._report import format_table, json_line
from retrypolicy.testing import FakeEUGPT
from retrypolicy_requests import RetryAdapter

UNPROTECTED = rp.EUGPT.evolve(name="unprotected", budget=None)
OUTAGE = rp.Scenario.outage(10, at=5).with_latency(0.01)


def command(*argv: str) -> tuple[int, str]:
    """Parse *argv* with the simulate subcommand on a fresh parser and run it."""
    parser = argparse.ArgumentParser(prog="retrypolicy")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["simulate", *argv])
    out = io.StringIO()
    code: int = args.run(args, out)
    return code, out.getvalue()


# --------------------------------------------------------------------------- the real code


def test_simulator_calls_the_real_decision_and_storm_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy's decision (``Policy._judge``, which ``decide`` wraps), Bucket.step,
    limiter_step, breaker_step and the Retry-After parser are called by the simulator itself
    (spies on the real functions see every call), not copies."""
    calls: Counter[str] = Counter()

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(rp.Policy, "_judge", spy("decide", rp.Policy._judge))
    monkeypatch.setattr(_budget.Bucket, "step", spy("bucket", _budget.Bucket.step))
    monkeypatch.setattr(_limiter, "limiter_step", spy("limiter", _limiter.limiter_step))
    monkeypatch.setattr(_breaker, "breaker_step", spy("breaker", _breaker.breaker_step))
    monkeypatch.setattr(
        _backoff, "retry_after_from_headers", spy("hint", _backoff.retry_after_from_headers)
    )
    policy = rp.EUGPT.evolve(limiter=rp.AdaptiveLimiter(), breaker=rp.CircuitBreaker())
    scenario = rp.Scenario.rate_limit(5) + rp.Scenario.outage(5, at=10)
    result = rp.simulate(policy, scenario, clients=4, rate=20, duration=20)
    assert set(calls) == {"decide", "bucket", "limiter", "breaker", "hint"}
    failed = sum(result.failures_per_s)
    assert calls["decide"] == failed  # one decision per failed answer, none on a success
    assert 0 < calls["hint"] < failed  # the 429s' Retry-After, not the outage's 503s


@pytest.mark.parametrize(
    ("kind", "status", "code", "failure"),
    [
        ("unavailable", 503, None, None),
        ("server_error", 500, None, None),
        ("rate_limited", 429, None, None),
        ("connection", None, None, rp.Failure.CONNECTION),
        ("timeout", None, None, rp.Failure.TIMEOUT),
        ("upstream_timeout", 200, "upstream_timeout", None),
        ("internal_error", 200, "internal_error", None),
        ("invalid_request", 400, None, None),
        ("cancelled", 200, "cancelled", None),
    ],
)
def test_each_kind_is_retried_as_the_policy_says(
    kind: str, status: int | None, code: str | None, failure: rp.Failure | None
) -> None:
    """A call that always fails with *kind* sends 1 + the policy's retries for it, then gives
    up under that kind (no budget: the per-kind limit alone)."""
    limit = UNPROTECTED.classify(status, code, failure=failure).max_retries
    scenario = rp.Scenario.errors(1.0, kind).with_latency(0.01)
    result = rp.simulate(UNPROTECTED, scenario, clients=1, rate=0.1, duration=10)
    assert result.calls == 1
    assert result.requests == 1 + limit
    assert result.gave_up == {kind: 1}


@pytest.mark.parametrize("answer", ["unavailable", "connection"])
def test_one_call_matches_the_real_adapter_against_the_fake_server(answer: str) -> None:
    """One call in an outage: the simulator sends as many requests and waits as long, in
    all, as RetryAdapter against FakeEUGPT does (jitter off, so both are exact)."""
    policy = rp.EUGPT.evolve(name="steady", budget=None, backoff=rp.Backoff(jitter="none"))
    with FakeEUGPT() as server, rp.testing.instant() as clock, requests.Session() as session:
        session.mount("http://", RetryAdapter(policy))
        if answer == "connection":
            url = server.responses_url
            server.stop()  # nothing listens any more: every attempt is refused
            with pytest.raises(requests.ConnectionError):
                session.post(url, json={"input": "hi", "stream": False}, timeout=5)
            sent = len(clock.waits) + 1
        else:
            server.outage(3600)
            reply = session.post(server.responses_url, json={"input": "hi"}, timeout=5)
            assert reply.status_code == 503
            sent = server.request_count
    scenario = rp.Scenario.outage(60, answer=answer).with_latency(0.0, fail_fast=0.0)
    result = rp.simulate(policy, scenario, clients=1, rate=0.01, duration=1)
    assert result.requests == sent == len(clock.waits) + 1
    assert result.latency[3] == pytest.approx(sum(clock.waits))
    assert result.gave_up == {answer: 1}


def test_same_seed_gives_the_same_bytes_and_another_seed_other_jitter() -> None:
    """The JSON of a run is byte-identical for a seed; another seed draws other waits."""
    policy = UNPROTECTED
    scenario = OUTAGE + rp.Scenario.errors(0.1).with_latency(0.05, 0.5)
    one, two, other = (
        json_line(rp.simulate(policy, scenario, clients=5, rate=20, duration=30, seed=s))
        for s in (7, 7, 8)
    )
    assert one == two
    assert one != other


# --------------------------------------------------------------------------- storm protection


def test_default_budget_bounds_an_outage() -> None:
    """In an outage the default budget pays capacity / cost retries plus its refill, then none:
    amplification in the outage is 1 + that / the calls begun in it."""
    result = rp.simulate(rp.EUGPT, OUTAGE, clients=8, rate=80, duration=25)
    budget = rp.EUGPT.budget
    assert budget is not None
    bound = budget.capacity / budget.retry_cost + budget.refill_rate * 10 / budget.retry_cost
    assert result.bad_calls == 800
    assert result.budget_paid <= bound + 1
    assert result.amplification_bad is not None
    assert result.amplification_bad <= 1 + (bound + 1) / 800
    assert result.budget_min is not None
    assert result.budget_min < budget.retry_cost
    assert result.recovery is not None
    assert result.recovery < 1.0


def test_no_budget_multiplies_the_load_and_slows_recovery() -> None:
    """Without a budget every call caught by the outage retries to its limit (6 requests)."""
    result = rp.simulate(UNPROTECTED, OUTAGE, clients=8, rate=80, duration=25)
    assert result.amplification_bad is not None
    assert result.amplification_bad > 4
    assert result.recovery is not None
    assert result.recovery > 3


def test_retries_that_fix_things_do_not_drain_the_budget() -> None:
    """AWS's refund rule: a success after retries refunds its last retry's cost, so a 20 %
    transient-failure rate never exhausts the budget."""
    scenario = rp.Scenario.errors(0.2, "unavailable").with_latency(0.01)
    result = rp.simulate(rp.EUGPT, scenario, clients=32, rate=200, duration=50)
    assert result.calls == 10_000
    assert result.budget_refused == 0
    assert result.succeeded == result.calls - sum(result.gave_up.values())
    assert sum(result.gave_up.values()) <= 2  # 0.2 ** 6 of the calls fail six times


def test_a_free_retry_is_paid_not_refused() -> None:
    """A budget whose retries cost nothing pays every one of them, with or without a
    limiter or breaker beside it (the gated path pays through the machine's Report)."""
    scenario = rp.Scenario.errors(0.2, "unavailable").with_latency(0.01)
    free = rp.EUGPT.budget.evolve(retry_cost=0, timeout_cost=0)  # type: ignore[union-attr]
    for policy in (
        rp.EUGPT.evolve(budget=free),
        rp.EUGPT.evolve(budget=free, breaker=rp.CircuitBreaker(failure_rate=1.0)),
    ):
        result = rp.simulate(policy, scenario, clients=4, rate=40, duration=10)
        assert result.budget_refused == 0
        assert sum(result.gave_up.values()) <= 2  # 0.2 ** 6 of the calls fail six times


def test_a_store_per_client_pays_a_budget_per_client() -> None:
    """Unshared stores: each client's bucket pays its own retries, so the outage costs more."""
    shared = rp.simulate(rp.EUGPT, OUTAGE, clients=8, rate=80, duration=25)
    apart = rp.simulate(rp.EUGPT, OUTAGE, clients=8, rate=80, duration=25, shared=False)
    assert apart.budget_paid > 4 * shared.budget_paid


def test_breaker_fails_fast_and_delays_recovery() -> None:
    """An open breaker refuses calls without sending (circuit_open) until a probe succeeds."""
    policy = rp.EUGPT.evolve(breaker=rp.CircuitBreaker(open_for=5))
    result = rp.simulate(policy, OUTAGE, clients=8, rate=80, duration=25)
    assert result.breaker_openings >= 1
    assert result.gave_up.get("circuit_open", 0) > 0
    assert result.recovery is not None
    assert 0 < result.recovery <= 5.5


def test_rate_limit_sees_the_retries_and_the_limiter_cuts_429s() -> None:
    """The service's token bucket answers retries too: successes never beat its rate; the
    adaptive limiter brings the 429 share of the second half under 5 %."""
    scenario = rp.Scenario.rate_limit(20, burst=20).with_latency(0.01)

    def late_share(r: rp.Simulation) -> float:
        half = len(r.requests_per_s) // 2
        return sum(r.failures_per_s[half:]) / sum(r.requests_per_s[half:])

    plain = rp.simulate(UNPROTECTED, scenario, clients=8, think=0.0, duration=30)
    paced = rp.simulate(
        rp.EUGPT.evolve(limiter=rp.AdaptiveLimiter()), scenario, clients=8, think=0.0, duration=30
    )
    for r in (plain, paced):
        assert r.succeeded <= 20 * 30 + 20 + 20
    assert late_share(plain) > 0.2
    assert late_share(paced) < 0.05
    assert paced.limiter_cuts >= 1


def test_closed_loop_calls_follow_latency_and_think_time() -> None:
    """Closed loop: each client calls, waits for the answer, thinks, calls again."""
    scenario = rp.Scenario().with_latency(0.1)
    result = rp.simulate(rp.EUGPT, scenario, clients=4, think=0.4, duration=10)
    assert result.calls == 4 * 20
    assert result.latency[0] == pytest.approx(0.1, rel=0.005)


# --------------------------------------------------------------------------- what it reports


def test_midstream_timeouts_are_generations_paid_twice() -> None:
    """A stream that fails half-way was billed: its retry pays a second generation."""
    scenario = rp.Scenario.stream_timeouts(0.1).with_latency(1.0, 4.0)
    result = rp.simulate(rp.EUGPT, scenario, clients=10, rate=10, duration=100)
    extra = result.paid - result.calls
    assert result.paid_extra == extra > 50
    data = result.to_dict(cost_per_request=0.5)
    assert data["cost"] == result.paid * 0.5
    assert data["cost_extra"] == result.paid_extra * 0.5
    assert result.latency[2] > result.latency[0]


def test_healthy_run_reports_no_incident() -> None:
    """Without an incident, amplification is 1 and the incident's numbers are absent."""
    result = rp.simulate(rp.EUGPT, clients=3, duration=5)
    assert (result.calls, result.requests, result.amplification) == (15, 15, 1.0)
    assert result.amplification_bad is None
    assert result.recovery is None
    data = result.to_dict()
    assert "cost" not in data
    assert data["success_rate"] == 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rp.simulate(rp.EUGPT, clients=0), "clients 0: expected a whole number > 0"),
        (lambda: rp.simulate(rp.EUGPT, rate=1, think=1), "rate and think: give one"),
        (lambda: rp.simulate(rp.EUGPT, duration=-1), "duration -1: expected a number > 0"),
        (lambda: rp.simulate("eugpt", clients=1), "expected a retrypolicy.Policy"),  # type: ignore[arg-type]
        (
            lambda: rp.simulate(rp.EUGPT, rp.Scenario().with_latency(0), think=0),
            "think 0: expected think time > 0, or answers that take time",
        ),
        (lambda: rp.Scenario.errors(1.5), "rate 1.5: expected a share"),
        (lambda: rp.Scenario.errors(0.1, "sometimes"), "kind 'sometimes': expected an HTTP"),
        (lambda: rp.Scenario.outage(5, answer=200), "expected a failure, not a success"),
        (lambda: rp.Scenario.rate_limit(0), "rate 0: expected requests per second > 0"),
        (lambda: rp.Scenario().with_latency(1.0, 0.5), "p99 0.5: expected a number >= the"),
    ],
)
def test_bad_input_is_named(call: Callable[[], object], message: str) -> None:
    """Bad arguments raise an error naming the argument and what was expected."""
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(")):
        call()


# --------------------------------------------------------------------------- traces


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "incident.csv",
            "t,status,kind,retry_after\n0.5,200,,\n2.1,503,,\n2.7,,connection,\n3.2,429,,2\n"
            "4.9,503,,\n6.0,200,,\n",
        ),
        (
            "incident.jsonl",
            '{"t": 0.5, "status": 200}\n{"t": 2.1, "status": 503}\n'
            '{"t": 2.7, "kind": "connection"}\n{"t": 3.2, "status": 429, "retry_after": "2"}\n'
            '\n{"t": 4.9, "status": 503}\n{"t": 6.0, "status": 200}\n',
        ),
    ],
)
def test_trace_replays_what_the_logs_recorded(tmp_path: Path, name: str, text: str) -> None:
    """A CSV or JSONL trace: its failing seconds are the incident; a request sent in one of
    them is answered like a record of that second, others succeed."""
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    scenario = rp.Scenario.trace(file).with_latency(0.01)
    assert scenario.bad_period == (2.0, 5.0)
    result = rp.simulate(UNPROTECTED, scenario, clients=2, rate=20, duration=7)
    assert sum(result.failures_per_s[:2]) == 0
    assert all(result.failures_per_s[s] == result.requests_per_s[s] for s in (2, 4))
    assert result.amplification_bad is not None
    assert result.amplification_bad > 1
    assert result.succeeded == result.calls  # every call outlived the incident


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t,status\n1,503\nsoon,503\n", r"incident\.csv:3: t 'soon': expected a number"),
        ("t,status\n1,\n", r"incident\.csv:2: expected a status \(e\.g\. 503\) or a kind"),
        ("t,status\n1,999\n", r"incident\.csv:2: status '999': expected an HTTP status"),
        ("status\n503\n", r"incident\.csv:2: no time"),
        ("", r"incident\.csv: no rows"),
    ],
)
def test_bad_trace_rows_are_named_with_their_line(tmp_path: Path, text: str, message: str) -> None:
    """A bad row is a ConfigError naming the file, the line and what was expected."""
    file = tmp_path / "incident.csv"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(rp.ConfigError, match=message):
        rp.Scenario.trace(file)


# --------------------------------------------------------------------------- the command


def test_command_json_one_line_per_policy_baseline_first(tmp_path: Path) -> None:
    """--json: one object per policy, the baseline first, with the documented keys; the same
    seed twice gives the same bytes."""
    (tmp_path / "mine.toml").write_text(
        '[policies.lean]\nextends = "eugpt"\nbudget = false\n', encoding="utf-8"
    )
    argv = (
        "--policy", "eugpt", "--policy", f"{tmp_path / 'mine.toml'}:lean", "--outage", "5",
        "--clients", "4", "--rate", "20", "--duration", "20", "--seed", "3", "--json",
        "--cost-per-request", "0.01", "--latency", "0.05",
    )  # fmt: skip
    code, out = command(*argv)
    assert code == 0
    lines = out.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["policy"] for r in rows] == ["eugpt", "lean"]
    for key in ("policy", "calls", "requests", "amplification", "succeeded", "gave_up",
                "p99_latency", "recovery", "cost"):  # fmt: skip
        assert key in rows[0]
    assert rows[0]["amplification_bad"] < rows[1]["amplification_bad"]
    assert command(*argv)[1] == out


def test_command_table_is_plain_text_when_piped() -> None:
    """Without --json the report is an aligned plain-text table (no terminal: no rich)."""
    code, out = command("--error-rate", "0.1", "--kind", "503", "--duration", "10")
    assert code == 0
    assert "amplification" in out
    assert "\x1b[" not in out
    assert out.splitlines()[0].startswith("10 clients, 10 calls/s, 10 s, seed 0")


def test_command_plot_needs_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--plot without matplotlib exits 2 with a message naming the extra to install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out = command("--plot", str(tmp_path / "x.png"), "--duration", "5")
    assert code == 2
    assert out == ""
    assert "pip install 'retrypolicy[simulate]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_command_plot_draws_a_png(tmp_path: Path) -> None:
    """--plot FILE.png writes an image (matplotlib installed)."""
    pytest.importorskip("matplotlib")
    target = tmp_path / "run.png"
    code, _ = command("--outage", "3", "--duration", "10", "--plot", str(target))
    assert code == 0
    assert target.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--policy", "nosuch"), "--policy 'nosuch': expected a built-in profile"),
        (("--kind", "sometimes", "--error-rate", "0.1"), "kind 'sometimes'"),
        (("--rate", "5", "--think", "1"), "rate and think: give one"),
    ],
)
def test_command_bad_input_is_a_config_error(argv: tuple[str, ...], message: str) -> None:
    """Bad options raise ConfigError (the command line prints it and exits 2)."""
    with pytest.raises(rp.ConfigError, match=message):
        command(*argv)


def test_table_on_a_terminal_is_a_rich_table() -> None:
    """On a terminal the report is a rich table, one column per policy."""
    pytest.importorskip("rich")
    result = rp.simulate(rp.EUGPT, OUTAGE, clients=2, rate=4, duration=20)
    out = io.StringIO()
    format_table([result, attrs.evolve(result, policy="other")], out, rich=True)
    text = out.getvalue()
    assert "┃" in text
    assert "other" in text
    assert "in the incident (5-15 s)" in text


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rp.Scenario().with_latency(math.inf), "median inf: expected a finite number"),
        (lambda: rp.Scenario().with_latency(1.0, math.inf), "p99 inf: expected a finite number"),
        (
            lambda: rp.Scenario().with_latency(1.0, fail_fast=math.inf),
            "fail_fast inf: expected a finite number",
        ),
    ],
)
def test_an_endless_latency_is_refused(call: Callable[[], object], message: str) -> None:
    """An answer that takes forever is no latency: a median, p99 or fail_fast of inf is
    refused when the scenario is built, naming it (it used to end the simulation in an
    OverflowError from the latency histogram)."""
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("argv", [("--latency", "inf"), ("--latency-p99", "inf")])
def test_command_refuses_an_endless_latency(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """``retrypolicy simulate --latency inf`` exits 2 naming the option and what it expects,
    without a traceback."""
    from retrypolicy._cli import main  # noqa: PLC0415 - the whole command line

    assert main(["simulate", *argv, "--duration", "5"]) == 2
    err = capsys.readouterr().err
    assert f"argument {argv[0]}: 'inf': expected a finite number >= 0" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"duration": 1e12}, "duration 1000000000000.0: expected a number > 0 and at most "),
        ({"clients": 10**12}, "clients 1000000000000: expected a whole number > 0 and at most "),
    ],
)
def test_a_run_too_long_or_too_large_is_refused(changes: dict[str, Any], message: str) -> None:
    """A run keeps a few numbers per second and per client: more than 31 days of calls (as
    long as a trace may be) or 1,000,000 clients is refused up front, naming the argument
    (it used to end in a MemoryError)."""
    with pytest.raises(ValueError, match=message):
        rp.simulate(rp.EUGPT, **changes)


def test_command_refuses_a_run_too_long(capsys: pytest.CaptureFixture[str]) -> None:
    """``retrypolicy simulate --duration 1e12`` exits 2 saying the limit, no traceback."""
    from retrypolicy._cli import main  # noqa: PLC0415 - the whole command line

    assert main(["simulate", "--duration", "1e12"]) == 2
    err = capsys.readouterr().err
    assert (
        "duration 1000000000000.0: expected a number > 0 and at most 2,678,400 seconds (31 days)"
        in err
    )
    assert "Traceback" not in err


def test_per_second_series_stay_bounded_for_very_slow_answers() -> None:
    """Answers that take a month still end the run with bounded series: they stop a day
    after calls stop starting, and what comes later is counted in their last second."""
    slow = rp.Scenario().with_latency(3e6)
    result = rp.simulate(rp.EUGPT, slow, clients=2, duration=1)
    assert len(result.requests_per_s) <= 2 + 86_400 + 1  # a day after the 1 s of calls
    assert sum(result.successes_per_s) == result.calls == 2


@pytest.mark.parametrize("seconds", [100.0, math.inf], ids=["past-the-run", "endless"])
def test_an_incident_that_outlasts_the_run_is_still_failing(seconds: float) -> None:
    """An outage that has not ended when the run does (longer than the run, or endless):
    the fleet never recovered, so the report says it is still failing — not recovered at
    once, as if the outage had ended with the run."""
    scenario = rp.Scenario.outage(seconds, at=5).with_latency(0.01)
    result = rp.simulate(rp.EUGPT, scenario, clients=2, duration=20)
    assert result.still_failing is True
    assert result.succeeded < result.calls


def test_a_trace_starting_at_a_bool_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    """``Scenario.trace(path, at=True)`` is refused as every other builder refuses a bool
    for a time, and before the trace file is read (a typo costs no read of a large file)."""
    with pytest.raises(ValueError, match=r"^at True: expected a number of seconds >= 0$"):
        rp.Scenario.trace(tmp_path / "missing.csv", at=True)


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"rate": 1e12, "duration": 10}, "rate * duration: 10,000,000,000,000 calls"),
        ({"clients": 1000, "think": 0.001, "duration": 100_000}, "clients * duration / "),
    ],
    ids=["open-loop", "closed-loop"],
)
def test_a_run_of_too_many_calls_is_refused_at_once(options: dict[str, Any], what: str) -> None:
    """A rate or duration typed orders of magnitude too large is refused before the run,
    naming the product and the limit — not simulated for hours."""
    with pytest.raises(ValueError, match="expected at most 30,000,000") as info:
        rp.simulate(rp.EUGPT, **options)
    assert str(info.value).startswith(what)
