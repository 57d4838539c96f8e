"""The ``retrypolicy`` command line: the policy core made visible.

Exit codes: 0 success; 1 the input was understood and the answer is "no"
(e.g. ``check`` found errors); 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from ._backoff import Backoff
from ._envelope import parse_error
from ._policy import Policy
from ._profiles import EUGPT
from ._rules import Classification, Failure

__all__ = ["main"]

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2


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


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrypolicy",
        description="Explain and exercise an HTTP API's retry policy (default: EU GPT).",
        epilog="Exit codes: 0 ok, 1 the answer is no (e.g. check found errors), 2 bad usage.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    explain = sub.add_parser(
        "explain",
        help="classify a status (and code/body) and show the waits the policy would schedule",
        description=(
            "Classify what happened - an HTTP status, optionally with an error code or the "
            "response body - and print the class, the advice, and the retry schedule."
        ),
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
    explain.set_defaults(run=_explain)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    code: int = args.run(args, stream)
    return code


def _read_body(spec: str) -> bytes:
    if spec == "-":
        return sys.stdin.buffer.read(1024 * 1024)
    with open(spec, "rb") as f:
        return f.read(1024 * 1024)


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    policy: Policy = EUGPT
    target = args.status
    status = target if isinstance(target, int) else None
    failure = target if isinstance(target, Failure) else None
    code = args.code
    if args.body is not None:
        try:
            body = _read_body(args.body)
        except OSError as e:
            print(
                f"retrypolicy explain: cannot read --body {args.body!r}: {e.strerror}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        info = parse_error(status, body)
        code = code or info.code
        print(f"body:    code={info.code!r} type={info.type!r} message={info.message!r}", file=out)
    c = policy.classify(status, code, failure=failure)
    _print_classification(policy, c, out)
    return EXIT_OK


def _print_classification(policy: Policy, c: Classification, out: TextIO) -> None:
    verdict = f"retry up to {c.max_retries} times" if c.retryable else "do not retry"
    print(f"policy:  {policy.name}", file=out)
    print(f"class:   {c.kind} ({verdict})", file=out)
    print(f"reason:  {c.reason}", file=out)
    if c.advice:
        print(f"advice:  {c.advice}", file=out)
    if not c.retryable:
        return
    backoff = (
        c.rule.backoff if c.rule is not None and c.rule.backoff is not None else policy.backoff
    )
    retries = c.max_retries
    if policy.max_attempts is not None:
        retries = min(retries, policy.max_attempts - 1)
    print(
        f"waits:   {backoff.jitter} jitter, initial {backoff.initial:g}s x{backoff.multiplier:g}, "
        f"cap {backoff.max_delay:g}s; a Retry-After up to {backoff.max_retry_after:g}s is honoured",
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
    print(
        f"  then give up: at most {retries + 1} attempts, {lo_total:.2f}s .. {hi_total:.2f}s "
        "of waiting",
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
