"""``retrypolicy explain STATUS``: what the policy does with one outcome, and why.

What is printed is computed by the core: the class by :meth:`Policy.classify`, the
waits by :class:`Backoff`, the sources by the config reader, so the command line
cannot explain a policy differently from how it acts.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import TextIO

from .._backoff import Backoff
from .._config import explain_sources, load_policy_with_sources
from .._envelope import parse_error
from .._errors import ConfigError
from .._policy import Policy
from .._rules import Classification, Failure, Rule
from .._sse import StreamMonitor
from . import _common
from ._common import EXIT_OK, EXIT_USAGE, Subparsers, add_policy_options, epilog, plural, policy_of

__all__ = ["ROWS", "add_to", "backoff_of", "retries_allowed", "run"]

_BODY_LIMIT = 1024 * 1024  # parse_error reads a bounded prefix anyway
_EVENT_STREAM = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*(?:data|event|id|retry)?:")
"""A body that starts like server-sent events: a field line or a comment."""


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


def add_to(sub: Subparsers[argparse.ArgumentParser]) -> None:
    explain = sub.add_parser(
        "explain",
        help="classify a status (and code/body) and show the waits the policy would schedule",
        description=(
            "Classify what happened - an HTTP status, optionally with an error code or the "
            "response body, or a failure without a response - and print the class, the "
            "advice, and the retry schedule."
        ),
        epilog=epilog("0 explained; 2 bad usage, or a --config or --body file that cannot be read"),
    )
    explain.add_argument(
        "status",
        type=_status_or_failure,
        metavar="STATUS",
        help="HTTP status (e.g. 429), or a failure without a response: connection, "
        "timeout, incomplete_stream",
    )
    explain.add_argument(
        "--code",
        help="the error code of a response or of a stream's error event "
        "(e.g. explain 200 --code upstream_timeout); only with an HTTP status",
    )
    explain.add_argument(
        "--body",
        metavar="FILE",
        help="a response body to parse for the code and message; with a 2xx status, an "
        "event stream is judged as the adapters judge one; '-' reads standard input; "
        "only with an HTTP status",
    )
    add_policy_options(explain)
    explain.set_defaults(run=run)


def _read_body(spec: str) -> bytes:
    if spec == "-":
        return sys.stdin.buffer.read(_BODY_LIMIT)
    with Path(spec).open("rb") as f:
        return f.read(_BODY_LIMIT)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Explain the outcome the arguments name."""
    target = args.status
    status = target if isinstance(target, int) else None
    failure = target if isinstance(target, Failure) else None
    code = args.code
    if failure is not None and (code is not None or args.body is not None):
        option = "--code" if code is not None else "--body"
        print(
            f"retrypolicy explain: {option}: expected an HTTP status with it; {failure} is "
            "a failure without a response, so it has no error code (for a stream's error "
            "event: explain 200 --code CODE)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    policy = policy_of(args)
    if args.body is not None:
        try:
            body = _read_body(args.body)
        except OSError as e:
            print(f"retrypolicy explain: cannot read --body {args.body!r}: {e}", file=sys.stderr)
            return EXIT_USAGE
        if status is not None and 200 <= status < 300 and _EVENT_STREAM.match(body):
            # a 200 stream succeeds only if its last event is response.completed: judged as
            # the adapters judge it, by the stream monitor
            monitor = StreamMonitor()
            problem = monitor.feed(body) or monitor.finish()
            if problem is None:
                print(f"stream:  completed after {monitor.events_seen} events", file=out)
            else:
                code = code or problem.code
                failure = problem.failure if code is None else None
                print(f"stream:  code={problem.code!r} message={problem.message!r}", file=out)
        else:
            info = parse_error(status, body)
            code = code or info.code
            print(
                f"body:    code={info.code!r} type={info.type!r} message={info.message!r}",
                file=out,
            )
    c = policy.classify(status, code, failure=failure)
    _print_classification(policy, c, out)
    for line in _storm_lines(policy, _what_if(args, policy)):
        print(line, file=out)
    _print_sources(args, policy, c, out)
    return EXIT_OK


def _what_if(args: argparse.Namespace, policy: Policy) -> str:
    """The ``simulate`` command that replays an outage through the policy explained: with
    ``--policy`` when the options chose it (simulate reads only the environment)."""
    command = "retrypolicy simulate --outage 30"
    if args.config is None and args.profile is None:
        return command
    config, _ = _common.policy_choice(args)
    spec = policy.name if config is None else f"{config}:{policy.name}"
    return f"{command} --policy {shlex.quote(spec)}"


def _storm_lines(policy: Policy, what_if: str) -> list[str]:
    """The policy's budget, limiter and breaker settings (docs/storm.md), one line each,
    and the command *what_if* that simulates it."""
    b, lim, br = policy.budget, policy.limiter, policy.breaker
    budget = "off"
    if b is not None:
        budget = (
            f"capacity {b.capacity:g} tokens; a retry costs {b.retry_cost:g} "
            f"({b.timeout_cost:g} after a timeout); a success after retrying refunds its "
            f"last retry's cost, a first-try success {b.success_refund:g}; "
            f"{b.refill_rate:g} token/s refill; empty: give up at once "
            f"(at most {b.capacity / b.retry_cost:g} retries in an outage)"
            if b.retry_cost
            else f"capacity {b.capacity:g} tokens; retries cost nothing"
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
            f"then {plural(br.half_open_probes, 'probe')}"
        )
    return [
        f"budget:  {budget}",
        f"limiter: {limiter}",
        f"breaker: {breaker}",
        f"what-if: `{what_if}` replays an outage through this policy (docs/simulate.md)",
    ]


def _print_sources(
    args: argparse.Namespace, policy: Policy, c: Classification, out: TextIO
) -> None:
    """Where each value explained was written, for a policy from a file that extends another.

    The file is the one :func:`policy_of` read; it is read again with the sources,
    which are shown only if it still gives the policy explained.
    """
    config, profile = _common.policy_choice(args)
    if config is None:
        return
    try:
        loaded, sources = load_policy_with_sources(config, profile)
    except ConfigError:
        return
    if loaded == policy and sources.parent is not None:
        for line in explain_sources(policy, sources, c.rule):
            print(line, file=out)


def backoff_of(policy: Policy, rule: Rule | None) -> Backoff:
    """The backoff :meth:`Policy.decide` waits by: the rule's own, else the policy's."""
    return rule.backoff if rule is not None and rule.backoff is not None else policy.backoff


def retries_allowed(policy: Policy, retries: int) -> int:
    """The retries a rule really gets: :meth:`Policy.decide` gives up at ``max_attempts``."""
    if policy.max_attempts is not None:
        return min(retries, policy.max_attempts - 1)
    return retries


ROWS = 50
"""Retries listed one by one; any after them share one line."""


def _rows(backoff: Backoff, retries: int) -> list[tuple[int, int, float, float]]:
    """The wait bounds of retries 1..*retries* as rows (first, last, low, high): one row a
    retry up to :data:`ROWS`, then one row for all the others, whatever their number (a
    rule may allow millions), with bounds that hold for each: the last row's low (lows
    never shrink) and the cap."""
    bounds = backoff.bounds(min(retries, ROWS))
    rows = [(n, n, lo, hi) for n, (lo, hi) in enumerate(bounds, start=1)]
    if retries > ROWS:
        lo, hi = bounds[-1]
        rows.append((ROWS + 1, retries, lo, max(hi, backoff.max_delay)))
    return rows


def _print_classification(policy: Policy, c: Classification, out: TextIO) -> None:
    verdict = f"retry up to {plural(c.max_retries, 'time')}" if c.retryable else "do not retry"
    if c.retryable and (allowed := retries_allowed(policy, c.max_retries)) < c.max_retries:
        verdict += f"; max_attempts = {policy.max_attempts} allows {allowed}"
    print(f"policy:  {policy.name}", file=out)
    print(f"class:   {c.kind} ({verdict})", file=out)
    print(f"reason:  {c.reason}", file=out)
    if c.advice:
        print(f"advice:  {c.advice}", file=out)
    if not c.retryable:
        return
    backoff = backoff_of(policy, c.rule)
    retries = retries_allowed(policy, c.max_retries)
    print(
        f"waits:   {backoff.jitter} jitter, initial {backoff.initial:g}s x{backoff.multiplier:g}, "
        f"cap {backoff.max_delay:g}s; a Retry-After up to {backoff.max_retry_after:g}s is "
        "honoured, a longer one gives up at once",
        file=out,
    )
    lo_total = hi_total = 0.0
    for first, last, lo, hi in _rows(backoff, retries):
        lo_total += (last - first + 1) * lo
        hi_total += (last - first + 1) * hi
        if first == last:
            print(f"  retry {first}: wait {lo:6.2f}s .. {hi:6.2f}s", file=out)
        else:
            print(f"  retry {first}..{last}: wait {lo:6.2f}s .. {hi:6.2f}s each", file=out)
    deadline = f", deadline {policy.deadline:g}s" if policy.deadline is not None else ""
    print(
        f"  then give up: at most {plural(retries + 1, 'attempt')}, "
        f"{lo_total:.2f}s .. {hi_total:.2f}s of waiting{deadline}",
        file=out,
    )
