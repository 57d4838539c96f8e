"""The ``retrypolicy`` command line: the policy core made visible.

Exit codes: 0 success; 1 the input was understood and the answer is "no"
(``check`` found problems); 2 bad usage, or an input that cannot be read.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ._backoff import Backoff
from ._config import dump_policy, load_policy
from ._envelope import parse_error
from ._errors import ConfigError
from ._policy import Policy
from ._profiles import EUGPT
from ._rules import Classification, Failure, Rule

__all__ = ["main"]

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2

_EPILOG = "exit codes: 0 ok; 1 the answer is no (check found problems); 2 bad usage or input"


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
        "default: the built-in EU GPT policy",
    )
    parser.add_argument("--profile", metavar="P", help="the policy to use from --config")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrypolicy",
        description="Explain, check and exercise an HTTP API's retry policy (default: EU GPT).",
        epilog=_EPILOG,
    )
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
            "through the requests and httpx adapters, printing each retry event and a summary."
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
            "replies in the file (JSON list, or TOML [[replies]]) answer the first requests "
            "in order; then every request gets the default success."
        ),
        epilog=_EPILOG,
    )
    serve.add_argument("--port", type=_port, default=8765, help="port (8765; 0: any free)")
    serve.add_argument("--script", metavar="FILE", help="replies to serve first, in order")
    serve.add_argument(
        "--require-key", action="store_true", help="answer 401 without a Bearer eugpt_ key"
    )
    serve.set_defaults(run=_serve_fake)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        code: int = args.run(args, stream)
    except ConfigError as e:
        print(f"retrypolicy {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _policy_of(args: argparse.Namespace) -> Policy:
    if args.config is None:
        if args.profile is not None:
            msg = f"--profile {args.profile!r} needs --config FILE"
            raise ConfigError(msg)
        return EUGPT
    return load_policy(args.config, args.profile)


def _read_body(spec: str) -> bytes:
    if spec == "-":
        return sys.stdin.buffer.read(1024 * 1024)
    with Path(spec).open("rb") as f:
        return f.read(1024 * 1024)


# -- check ---------------------------------------------------------------------------


def _profiles_in(path: str) -> list[str]:
    """The policy names a file defines (empty if it cannot be read: load_policy says why)."""
    try:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []
    if Path(path).name == "pyproject.toml":
        data = data.get("tool", {}).get("retrypolicy", {})
    policies = data.get("policies", {}) if isinstance(data, dict) else {}
    return sorted(policies) if isinstance(policies, dict) else []


def _check(args: argparse.Namespace, out: TextIO) -> int:
    names: list[str | None] = [args.profile] if args.profile else [*_profiles_in(args.file)]
    names = names or [None]
    problems: list[str] = []
    ok: list[str] = []
    for name in names:
        try:
            policy = load_policy(args.file, name)
        except ConfigError as e:
            problems.append(str(e))
        else:
            ok.append(policy.name)
    for problem in dict.fromkeys(problems):  # one report per distinct problem set
        print(problem, file=sys.stderr)
    if problems:
        return EXIT_NO
    print(f"{args.file}: ok ({', '.join(ok)})", file=out)
    return EXIT_OK


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
    return EXIT_OK


def _backoff_of(policy: Policy, rule: Rule | None) -> Backoff:
    return rule.backoff if rule is not None and rule.backoff is not None else policy.backoff


def _retries_allowed(policy: Policy, retries: int) -> int:
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
    lo_total = hi_total = 0.0
    prev_hi: float | None = None
    for n in range(1, retries + 1):
        lo, hi = _wait_range(backoff, n, prev_hi)
        prev_hi = hi
        lo_total += lo
        hi_total += hi
        print(f"  retry {n}: wait {lo:6.2f}s .. {hi:6.2f}s", file=out)
    deadline = f", deadline {policy.deadline:g}s" if policy.deadline is not None else ""
    print(
        f"  then give up: at most {retries + 1} attempts, {lo_total:.2f}s .. {hi_total:.2f}s "
        f"of waiting{deadline}",
        file=out,
    )


def _wait_range(backoff: Backoff, n: int, prev_hi: float | None) -> tuple[float, float]:
    d = backoff.base(n)
    if backoff.jitter == "none":
        return d, d
    if backoff.jitter == "full":
        return 0.0, d
    if backoff.jitter == "equal":
        return d / 2, d
    prev = backoff.initial if prev_hi is None else max(prev_hi, backoff.initial)
    hi = min(backoff.max_delay, prev * 3)
    return min(backoff.initial, hi), hi


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
    draws: list[list[float]] = [[] for _ in range(retries)]
    for _ in range(samples):
        prev: float | None = None
        for n in range(1, retries + 1):
            prev = backoff.delay(n, rng=rng, previous=prev)
            draws[n - 1].append(prev)
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
    from ._demo import run_demo  # noqa: PLC0415 - needs requests and httpx: load only here

    return run_demo(out, instant_waits=args.instant)


def _serve_fake(args: argparse.Namespace, out: TextIO) -> int:
    from ._demo import serve_fake  # noqa: PLC0415 - the server is only needed here

    return serve_fake(out, port=args.port, script=args.script, require_key=args.require_key)
