"""The ``retrypolicy`` command line: the policy core made visible.

Parsing and printing only: what is shown is computed by the core (classification
by :meth:`Policy.classify`, waits by :class:`Backoff`, files by the config
reader), so the command line cannot explain a policy differently from how it acts.

Exit codes: 0 success; 1 the input was understood and the answer is "no"
(``check`` found problems); 2 bad usage, or an input that cannot be read (a
missing file included). A closed standard output (``retrypolicy schedule | head
-1``) ends the command quietly with 0, and Ctrl-C with 130: no traceback either way.

Like the library, the commands that use a policy take it from ``RETRYPOLICY_CONFIG``
and ``RETRYPOLICY_PROFILE`` when ``--config`` / ``--profile`` are not given, and
never fall back to EU GPT when the file those name cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
from pathlib import Path
from typing import TextIO

from ._backoff import Backoff
from ._config import (
    ConfigFileError,
    dump_policy,
    explain_sources,
    load_policies,
    load_policy,
    load_policy_with_sources,
)
from ._config.literals import join_key
from ._config.load import _load_file
from ._defaults import CONFIG_ENV, PROFILE_ENV, default_policy
from ._envelope import parse_error
from ._errors import ConfigError
from ._policy import Policy
from ._profiles import PROFILES
from ._rules import Classification, Failure, Rule

__all__ = ["main"]

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

_EPILOG = (
    "exit codes: 0 ok; 1 the answer is no (check found problems); 2 bad usage or input "
    f"(a missing file too). Without --config/--profile, {CONFIG_ENV} and {PROFILE_ENV} "
    "choose the policy, as in the library."
)


def _status_or_failure(text: str) -> int | Failure:
    if text.isdigit():
        status = int(text)
        if 100 <= status <= 599:
            return status
    try:
        return Failure(text)
    except ValueError:
        failures = ", ".join(f.value for f in Failure)
        msg = f"expected an HTTP status 100-599 or one of {failures}, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        msg = f"expected a port 0-65535 (0: any free port), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a policy file (TOML, or a pyproject.toml with [tool.retrypolicy]); "
        f"default: ${CONFIG_ENV}, else the built-in EU GPT policy",
    )
    parser.add_argument(
        "--profile",
        metavar="P",
        help="the policy to use from the file; without a file, a built-in profile "
        f"({', '.join(PROFILES)}); default: ${PROFILE_ENV}",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrypolicy",
        description="Explain, check and exercise an HTTP API's retry policy (default: EU GPT).",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"retrypolicy {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser(
        "check",
        help="validate a policy file; list every problem",
        description="Validate a policy file: every policy in it, every problem in one report.",
        epilog=_EPILOG,
    )
    check.add_argument("file", metavar="FILE", help="the TOML file (or pyproject.toml)")
    check.add_argument("--profile", metavar="P", help="check only this policy")
    check.set_defaults(run=_check)

    explain = sub.add_parser(
        "explain",
        help="classify a status (and code/body) and show the waits the policy would schedule",
        description=(
            "Classify what happened - an HTTP status, optionally with an error code or the "
            "response body - and print the class, the advice, and the retry schedule."
        ),
        epilog=_EPILOG,
    )
    explain.add_argument(
        "status",
        type=_status_or_failure,
        metavar="STATUS",
        help="HTTP status (e.g. 429), or a failure: connection, timeout, incomplete_stream",
    )
    explain.add_argument("--code", help="the error code (e.g. upstream_timeout)")
    explain.add_argument(
        "--body",
        metavar="FILE",
        help="a response body to parse for the code and message; '-' reads standard input",
    )
    _add_policy_options(explain)
    explain.set_defaults(run=_explain)

    schedule = sub.add_parser(
        "schedule",
        help="the waits before each retry, sampled with the jitter, with a small chart",
        description=(
            "Sample the policy's waits: for each retry, min/p50/p95/max over N draws of the "
            "jitter, and a chart of the curve (█ up to p50, ░ up to p95)."
        ),
        epilog=_EPILOG,
    )
    schedule.add_argument("--kind", help="only this kind (e.g. rate_limited); default: all")
    schedule.add_argument(
        "--samples", type=_positive_int, default=10_000, metavar="N", help="draws (10000)"
    )
    schedule.add_argument("--seed", type=int, default=0, help="random seed (0)")
    _add_policy_options(schedule)
    schedule.set_defaults(run=_schedule)

    dump = sub.add_parser(
        "dump",
        help="print a policy as TOML (the built-in EU GPT policy by default)",
        description="Print a policy as a self-contained TOML file that `check` accepts.",
        epilog=_EPILOG,
    )
    _add_policy_options(dump)
    dump.set_defaults(run=_dump)

    demo = sub.add_parser(
        "demo",
        help="run a realistic failure scenario against a built-in fake EU GPT server",
        description=(
            "Start the fake EU GPT server on 127.0.0.1 and run a scripted scenario - a 429 "
            "with Retry-After, a 503 burst, streams that die with upstream_timeout, a 401 - "
            "through the requests adapter and, when installed, the httpx transport, printing "
            "each retry event and a summary."
        ),
        epilog=_EPILOG,
    )
    demo.add_argument(
        "--instant", action="store_true", help="skip the real waits (they are still shown)"
    )
    demo.set_defaults(run=_demo)

    serve = sub.add_parser(
        "serve-fake",
        help="serve the fake EU GPT API for your own integration tests",
        description=(
            "Serve the fake EU GPT API on 127.0.0.1 until interrupted. With --script, the "
            "replies in the file (a JSON list, or [[replies]] tables in a .toml file) answer "
            "the first requests in order; then every request gets the default success. Each "
            "request is reported on standard error as it is answered, and a summary at exit."
        ),
        epilog=_EPILOG,
    )
    serve.add_argument("--port", type=_port, default=8765, help="port (8765; 0: any free)")
    serve.add_argument("--script", metavar="FILE", help="replies to serve first, in order")
    serve.add_argument(
        "--require-key", action="store_true", help="answer 401 without a Bearer eugpt_ key"
    )
    serve.add_argument(
        "--quiet", action="store_true", help="no line per request and no summary on stderr"
    )
    serve.set_defaults(run=_serve_fake)
    _add_batch(sub)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        msg = f"expected a number of seconds > 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


_BATCH_EPILOG = (
    "exit codes: 0 every job done; 1 some jobs failed or input lines were bad; 2 bad usage "
    f"or input (a missing file too). Without --config/--profile, {CONFIG_ENV} and "
    f"{PROFILE_ENV} choose the policy, as in the library."
)


def _add_batch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``batch run|status|requeue``: the logic is in :mod:`retrypolicy.batch`."""
    run_epilog = (
        "exit codes: 0 every job done; 1 some jobs failed, input lines were bad, or the "
        "input holds no job; 2 bad usage or input (a missing file too), or a setup error "
        "stopped the run; 130 interrupted (143 by SIGTERM). Without --config/--profile, "
        f"{CONFIG_ENV} and {PROFILE_ENV} choose the policy, as in the library."
    )
    ledger_epilog = "exit codes: 0 ok; 2 bad usage, or a ledger that cannot be read."
    batch = sub.add_parser(
        "batch",
        help="run a JSON Lines batch of requests at most once each, resumable",
        description=(
            "Batch jobs with a client-side dedupe ledger: `batch run` posts each line of a "
            "JSON Lines file to /v1/responses at most once to success, and resumes where a "
            "killed run stopped; `batch status` counts the jobs of a ledger and what they "
            "cost; `batch requeue` puts failed jobs back to pending."
        ),
        epilog=_BATCH_EPILOG,
    )
    group = batch.add_subparsers(dest="batch_command", metavar="SUBCOMMAND", required=True)
    run = group.add_parser(
        "run",
        help="post every line of INPUT.jsonl once; rerun to resume",
        description=(
            'Post each line of INPUT (a JSON object: the request body plus an "id", the '
            "job id, which is not sent) to /v1/responses, under the policy, recording each "
            "job in the ledger; write one JSON line per finished job to --out. Run it again "
            "to resume: only pending, retryable-failed and abandoned jobs run, and an id "
            "with a done line in --out is never sent again. Bad lines are reported with "
            "their numbers and skipped. A setup error (a 401; the first jobs all failing "
            "with one 4xx and none succeeding) stops the run, puts those jobs back to "
            "pending and exits 2 saying what to fix. Ctrl-C or SIGTERM lets the running "
            "jobs end (a second one gives them back to pending) and says how many are left."
        ),
        epilog=run_epilog,
    )
    run.add_argument("input", metavar="INPUT.jsonl", help="the requests, one JSON object a line")
    run.add_argument(
        "--ledger",
        required=True,
        metavar="LEDGER",
        help="an SQLite file (created if missing), or redis://host:port/db",
    )
    run.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="results, one JSON line per job (appended; a regular file: a rerun reads it)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--base-url",
        metavar="URL",
        help=(
            "the API's base URL, http(s)://host[:port][/path], with or without a trailing "
            "/v1 (both post to .../v1/responses); the key comes from EUGPT_API_KEY"
        ),
    )
    where.add_argument(
        "--fake",
        action="store_true",
        help="run against a built-in fake EU GPT server instead (to try the command)",
    )
    run.add_argument(
        "--concurrency", type=_positive_int, default=8, metavar="N", help="parallel jobs (8)"
    )
    run.add_argument(
        "--lease",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long a crashed worker's jobs stay locked (30; renewed while running)",
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="read timeout of one request (300)",
    )
    _add_policy_options(run)
    run.set_defaults(run=_batch_run)
    status = group.add_parser(
        "status",
        help="count a ledger's jobs per state and failure kind, and their cost",
        description=(
            "Count the jobs of a ledger per state, the failed ones per kind, and the "
            "requests they cost (retries, and jobs re-sent after an interruption)."
        ),
        epilog=ledger_epilog,
    )
    status.add_argument(
        "--ledger", required=True, metavar="LEDGER", help="an SQLite file, or redis://host:port/db"
    )
    status.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: total, pending, running, done, failed, requests, "
        "retries, resent (integers)",
    )
    status.set_defaults(run=_batch_status)
    requeue = group.add_parser(
        "requeue",
        help="put failed jobs back to pending, to send them again",
        description=(
            "Put the failed jobs of a ledger back to pending — all of them, or those of the "
            "given kinds and ids — once their cause is fixed, so that the next `batch run` "
            "sends them again without new ids. Done jobs are never touched."
        ),
        epilog=ledger_epilog,
    )
    requeue.add_argument(
        "--ledger", required=True, metavar="LEDGER", help="an SQLite file, or redis://host:port/db"
    )
    requeue.add_argument(
        "--kind",
        action="append",
        metavar="KIND",
        help="only failed jobs of this kind (e.g. authentication, not_found); repeatable",
    )
    requeue.add_argument("--id", action="append", metavar="ID", help="only this job id; repeatable")
    requeue.set_defaults(run=_batch_requeue)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with *argv* (default: ``sys.argv[1:]``); return the exit code.

    Never exits the interpreter itself, so tests can call it in-process: ``--help``
    and usage errors, which argparse ends with ``SystemExit``, return their code.
    """
    parser = _build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, or a usage error argparse has already reported
            return e.code if isinstance(e.code, int) else EXIT_USAGE
        try:
            code: int = args.run(args, sys.stdout)
        except ConfigError as e:
            print(f"retrypolicy {args.command}: {e}", file=sys.stderr)
            return EXIT_USAGE
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit-time flush stays quiet."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # not a real file: no flush
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def _version() -> str:
    from . import __version__  # noqa: PLC0415 - the package, once it has finished loading

    return __version__


def _policy_of(args: argparse.Namespace) -> Policy:
    """The policy the options name, read exactly as the library reads the environment.

    Without options: :func:`default_policy` itself. An option replaces only its own
    variable (``--profile`` picks a policy of ``RETRYPOLICY_CONFIG``'s file, or a
    built-in profile when no file is named).
    """
    if args.config is None and args.profile is None:
        return default_policy()
    env_config = os.environ.get(CONFIG_ENV) or None
    config = args.config if args.config is not None else env_config
    profile = args.profile if args.profile is not None else os.environ.get(PROFILE_ENV) or None
    if config is None:
        try:
            return PROFILES[profile or "eugpt"]
        except KeyError:
            msg = (
                f"--profile {profile!r}: expected a built-in profile ({', '.join(PROFILES)}), "
                "or --config FILE naming a file that defines it"
            )
            raise ConfigError(msg) from None
    try:
        return load_policy(config, profile)
    except ConfigFileError as e:
        if args.config is not None:
            raise
        named = f"named by {CONFIG_ENV}"
        raise ConfigError.for_file(e.path or Path(config), e.problems, origin=named) from None


def _read_body(spec: str) -> bytes:
    if spec == "-":
        return sys.stdin.buffer.read(1024 * 1024)
    with Path(spec).open("rb") as f:
        return f.read(1024 * 1024)


# -- check ---------------------------------------------------------------------------


def _check(args: argparse.Namespace, out: TextIO) -> int:
    file = Path(args.file)
    readable = file.is_file() and os.access(file, os.R_OK)
    try:
        if args.profile is not None:
            names = [load_policy(file, args.profile).name]
        else:
            names = [*load_policies(file)]
    except ConfigError as e:
        if not readable:  # nothing to check: bad input, not a finding
            print(f"retrypolicy check: {e}", file=sys.stderr)
            return EXIT_USAGE
        if args.profile is None:
            print(e, file=sys.stderr)
            return EXIT_NO
        return _report_profile(file, args.profile, e.problems)
    print(f"{args.file}: ok ({', '.join(names)})", file=out)
    return EXIT_OK


def _report_profile(file: Path, profile: str, problems: list[str]) -> int:
    """``check --profile P``: the problems of policy P (and of the file as a whole) only.

    Problems of other policies still fail the check, as :func:`load_policy` checks
    the whole file, but are only counted, unless P cannot be built without them
    (it extends a broken policy): then they are the reason, and are listed.
    """
    asked = [p for p in problems if p.startswith("profile: ")]
    if asked:  # no such policy in the file: a usage error
        print(f"retrypolicy check: {ConfigError.for_file(file, asked)}", file=sys.stderr)
        return EXIT_USAGE
    heads = [join_key(base, profile) for base in ("policies", "tool.retrypolicy.policies")]
    bases = ("policies.", "tool.retrypolicy.policies.")

    def of_profile(problem: str) -> bool:
        return any(problem.startswith((f"{h}.", f"{h}[", f"{h}:")) for h in heads)

    own = [p for p in problems if of_profile(p) or not p.startswith(bases)]
    others = len(problems) - len(own)
    built = profile in _load_file(file, [])[1]
    if own or not built:
        print(ConfigError.for_file(file, own or problems), file=sys.stderr)
    else:
        print(f"{file}: policy {profile!r} is valid", file=sys.stderr)
    if others and (own or built):
        print(
            f"{file}: {others} problem{'' if others == 1 else 's'} in other policies "
            f"{'makes' if others == 1 else 'make'} loading {profile!r} fail too: "
            f"`retrypolicy check {file}` lists them",
            file=sys.stderr,
        )
    return EXIT_NO


# -- explain -------------------------------------------------------------------------


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    policy = _policy_of(args)
    target = args.status
    status = target if isinstance(target, int) else None
    failure = target if isinstance(target, Failure) else None
    code = args.code
    if args.body is not None:
        try:
            body = _read_body(args.body)
        except OSError as e:
            print(f"retrypolicy explain: cannot read --body {args.body!r}: {e}", file=sys.stderr)
            return EXIT_USAGE
        info = parse_error(status, body)
        code = code or info.code
        print(f"body:    code={info.code!r} type={info.type!r} message={info.message!r}", file=out)
    c = policy.classify(status, code, failure=failure)
    _print_classification(policy, c, out)
    for line in _storm_lines(policy):
        print(line, file=out)
    _print_sources(args, policy, c, out)
    return EXIT_OK


def _storm_lines(policy: Policy) -> list[str]:
    """The policy's budget, limiter and breaker settings (docs/storm.md), one line each."""
    b, lim, br = policy.budget, policy.limiter, policy.breaker
    budget = "off"
    if b is not None:
        budget = (
            f"capacity {b.capacity:g} tokens; a retry costs {b.retry_cost:g} "
            f"({b.timeout_cost:g} after a timeout), a success refunds {b.success_refund:g}, "
            f"{b.refill_rate:g} token/s refill; empty: give up at once"
        )
    limiter = "off"
    if lim is not None:
        start = (
            f"{lim.initial_rate:g} req/s"
            if lim.initial_rate is not None
            else f"the measured rate x{lim.decrease:g}"
        )
        limiter = (
            f"after a 429: pace from {start}; a 429 (once per {lim.cooldown:g}s) cuts to "
            f"x{lim.decrease:g} the rate let through since the last cut, then cubic "
            f"recovery: the limit x (1 + {lim.increase:g} t^3) t s past it, floor "
            f"{lim.min_rate:g} req/s, unpaced after {lim.idle_reset:g}s without 429; "
            f"persistent after {lim.persist_after} 429s in a row (reported every "
            f"{lim.persist_window:g}s, not retried)"
        )
    breaker = "off"
    if br is not None:
        breaker = (
            f"per host: opens when >= {br.failure_rate:g} of >= {br.min_calls} attempts in "
            f"{br.window:g}s fail ({', '.join(sorted(br.kinds))}); open {br.open_for:g}s, "
            f"then {br.half_open_probes} probe{'s' if br.half_open_probes != 1 else ''}"
        )
    return [f"budget:  {budget}", f"limiter: {limiter}", f"breaker: {breaker}"]


def _print_sources(
    args: argparse.Namespace, policy: Policy, c: Classification, out: TextIO
) -> None:
    """Where each value explained was written, for a policy from a file that extends another.

    The file is the one :func:`_policy_of` read; it is read again with the sources,
    which are shown only if it still gives the policy explained.
    """
    config = args.config or os.environ.get(CONFIG_ENV) or None
    profile = args.profile if args.profile is not None else os.environ.get(PROFILE_ENV) or None
    if config is None:
        return
    try:
        loaded, sources = load_policy_with_sources(Path(config).expanduser(), profile)
    except ConfigError:
        return
    if loaded == policy and sources.parent is not None:
        for line in explain_sources(policy, sources, c.rule):
            print(line, file=out)


def _backoff_of(policy: Policy, rule: Rule | None) -> Backoff:
    # what Policy.decide waits by: the rule's own backoff, else the policy's
    return rule.backoff if rule is not None and rule.backoff is not None else policy.backoff


def _retries_allowed(policy: Policy, retries: int) -> int:
    # Policy.decide gives up at max_attempts, whatever the rule allows
    if policy.max_attempts is not None:
        return min(retries, policy.max_attempts - 1)
    return retries


def _print_classification(policy: Policy, c: Classification, out: TextIO) -> None:
    verdict = f"retry up to {c.max_retries} times" if c.retryable else "do not retry"
    print(f"policy:  {policy.name}", file=out)
    print(f"class:   {c.kind} ({verdict})", file=out)
    print(f"reason:  {c.reason}", file=out)
    if c.advice:
        print(f"advice:  {c.advice}", file=out)
    if not c.retryable:
        return
    backoff = _backoff_of(policy, c.rule)
    retries = _retries_allowed(policy, c.max_retries)
    print(
        f"waits:   {backoff.jitter} jitter, initial {backoff.initial:g}s x{backoff.multiplier:g}, "
        f"cap {backoff.max_delay:g}s; a Retry-After up to {backoff.max_retry_after:g}s is "
        "honoured, a longer one gives up at once",
        file=out,
    )
    bounds = backoff.bounds(retries)
    for n, (lo, hi) in enumerate(bounds, start=1):
        print(f"  retry {n}: wait {lo:6.2f}s .. {hi:6.2f}s", file=out)
    lo_total = sum(lo for lo, _ in bounds)
    hi_total = sum(hi for _, hi in bounds)
    deadline = f", deadline {policy.deadline:g}s" if policy.deadline is not None else ""
    print(
        f"  then give up: at most {retries + 1} attempts, {lo_total:.2f}s .. {hi_total:.2f}s "
        f"of waiting{deadline}",
        file=out,
    )


# -- schedule ------------------------------------------------------------------------


def _schedule(args: argparse.Namespace, out: TextIO) -> int:
    policy = _policy_of(args)
    rules = [r for r in policy.rules if r.retry and r.max_retries > 0]
    if args.kind is not None:
        rules = [r for r in rules if r.kind == args.kind]
        if not rules:
            kinds = ", ".join(dict.fromkeys(str(r.kind) for r in policy.rules if r.retry))
            print(
                f"retrypolicy schedule: --kind {args.kind!r}: no retried kind of that name in "
                f"policy {policy.name!r} (retried kinds: {kinds})",
                file=sys.stderr,
            )
            return EXIT_USAGE
    seen: set[str] = set()
    for rule in rules:
        if rule.kind in seen:
            continue
        seen.add(rule.kind)
        _print_schedule(policy, rule, args.samples, random.Random(args.seed), out)
    return EXIT_OK


def _print_schedule(
    policy: Policy, rule: Rule, samples: int, rng: random.Random, out: TextIO
) -> None:
    backoff = _backoff_of(policy, rule)
    retries = _retries_allowed(policy, rule.max_retries)
    # one schedule per sample, transposed: draws[n - 1] holds every wait before retry n
    schedules = [backoff.schedule(retries, rng=rng) for _ in range(samples)]
    draws = [list(waits) for waits in zip(*schedules, strict=True)]
    print(
        f"{policy.name} / {rule.kind}: {retries} retries, {backoff.jitter} jitter, "
        f"{samples} samples",
        file=out,
    )
    print("  retry     min     p50     p95     max", file=out)
    top = max((max(d) for d in draws), default=0.0) or 1.0
    width = 30
    for n, waits in enumerate(draws, start=1):
        qs = statistics.quantiles(waits, n=20, method="inclusive") if len(waits) > 1 else waits
        p50 = statistics.median(waits)
        p95 = qs[18] if len(qs) > 18 else max(waits)
        solid = round(p50 / top * width)
        light = max(round(p95 / top * width) - solid, 0)
        bar = "█" * solid + "░" * light
        print(
            f"  {n:5d} {min(waits):7.2f} {p50:7.2f} {p95:7.2f} {max(waits):7.2f}  {bar}",
            file=out,
        )
    print(file=out)


# -- dump ----------------------------------------------------------------------------


def _dump(args: argparse.Namespace, out: TextIO) -> int:
    out.write(dump_policy(_policy_of(args)))
    return EXIT_OK


# -- demo, serve-fake ----------------------------------------------------------------


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from ._demo import run_demo  # noqa: PLC0415 - starts a server and clients: load only here

    return run_demo(out, instant_waits=args.instant)


def _serve_fake(args: argparse.Namespace, out: TextIO) -> int:
    from ._demo import serve_fake  # noqa: PLC0415 - the server is only needed here

    return serve_fake(
        out,
        port=args.port,
        script=args.script,
        require_key=args.require_key,
        quiet=args.quiet,
    )


# -- batch ---------------------------------------------------------------------------


def _batch_run(args: argparse.Namespace, out: TextIO) -> int:
    from .batch._command import run_command  # noqa: PLC0415 - loads requests and the adapter

    return run_command(
        input_path=args.input,
        ledger_spec=args.ledger,
        out_path=args.out,
        base_url=args.base_url,
        fake=args.fake,
        concurrency=args.concurrency,
        lease=args.lease,
        timeout=args.timeout,
        policy=_policy_of(args),
        out=out,
    )


def _batch_status(args: argparse.Namespace, out: TextIO) -> int:
    from .batch._command import status_command  # noqa: PLC0415

    return status_command(ledger_spec=args.ledger, out=out, as_json=args.json)


def _batch_requeue(args: argparse.Namespace, out: TextIO) -> int:
    from .batch._command import requeue_command  # noqa: PLC0415

    return requeue_command(ledger_spec=args.ledger, kinds=args.kind, ids=args.id, out=out)
