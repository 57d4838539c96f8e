"""``retrypolicy schedule``: the waits before each retry, sampled over the jitter.

The waits are :meth:`Backoff.schedule`'s own draws, for the backoff and the number of
retries :meth:`Policy.decide` would use (:mod:`.explain` says which).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections.abc import Iterable
from typing import Final, TextIO

from .._policy import Policy
from .._rules import ANY_CODE, Failure, Rule
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_policy_options,
    epilog,
    plural,
    policy_of,
    positive_int,
)
from .explain import ROWS, backoff_of, retries_allowed

__all__ = ["add_to", "run"]


def add_to(sub: Subparsers[argparse.ArgumentParser]) -> None:
    schedule = sub.add_parser(
        "schedule",
        help="the waits before each retry, sampled with the jitter, with a small chart",
        description=(
            "Sample the policy's waits: for each retry, min/p50/p95/max over N draws of the "
            "jitter, and a chart of the curve (█ up to p50, ░ up to p95). Each rule says the "
            "outcomes it decides (the first rule that matches decides); a rule of the kind "
            "that is not retried says so."
        ),
        epilog=epilog(
            "0 printed; 2 bad usage (an unknown --kind too), or a --config file that cannot be used"
        ),
    )
    schedule.add_argument(
        "--kind",
        help="only the rules of this kind, retried or not (e.g. rate_limited); "
        "default: every retried kind",
    )
    schedule.add_argument(
        "--samples", type=positive_int, default=10_000, metavar="N", help="draws (10000)"
    )
    schedule.add_argument("--seed", type=int, default=0, help="random seed (0)")
    add_policy_options(schedule)
    schedule.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print the sampled schedule of each retried rule (or of ``--kind``'s rules).

    Each schedule names the outcomes its rule decides: a kind may have several rules (a
    rule of the file that is not retried before an inherited one that is), and only the
    first rule that matches an outcome decides it, as :meth:`Policy.classify` does. A rule
    of a retried kind, or of ``--kind``, that is not retried says so, so that ``schedule``
    and ``explain`` agree on every outcome.
    """
    policy = policy_of(args)
    deciding = [(rule, covers) for rule in policy.rules if (covers := _covers(policy, rule))]
    retried = {rule.kind for rule, _ in deciding if _retries(rule)}
    if args.kind is not None:
        deciding = [(rule, covers) for rule, covers in deciding if rule.kind == args.kind]
        if not deciding:
            kinds = ", ".join(dict.fromkeys(str(r.kind) for r in policy.rules))
            print(
                f"retrypolicy schedule: --kind {args.kind!r}: no rule of that kind decides "
                f"an outcome in policy {policy.name!r} (its kinds: {kinds})",
                file=sys.stderr,
            )
            return EXIT_USAGE
    else:
        deciding = [(rule, covers) for rule, covers in deciding if rule.kind in retried]
    for rule, covers in deciding:
        if _retries(rule):
            rng = random.Random(args.seed)
            _print_schedule(policy, rule, covers, samples=args.samples, rng=rng, out=out)
        else:
            print(f"{policy.name} / {rule.kind}: not retried", file=out)
            print(f"  for: {covers}", file=out)
            print(file=out)
    return EXIT_OK


def _retries(rule: Rule) -> int:
    """The retries :meth:`Policy.classify` gives the outcomes *rule* decides."""
    return rule.max_retries if rule.retry else 0


_STATUSES: Final = range(100, 600)
_OTHER_CODE: Final = "\x00another code"
"""An error code no rule names: what a ``code = "*"`` rule stands for."""


def _first(
    policy: Policy, status: int | None, code: str | None, failure: Failure | None
) -> Rule | None:
    """The rule that decides an outcome (None when none matches), as classify finds it."""
    return next((r for r in policy.rules if r.matches(status, code, failure)), None)


def _covers(policy: Policy, rule: Rule) -> str:
    """The outcomes *rule* decides in *policy* (an earlier rule takes any it also matches),
    in words: ``HTTP 502, 504``, ``code upstream_timeout``, ``failure timeout``; ``""`` for
    a rule no outcome reaches."""
    code = _OTHER_CODE if rule.code == ANY_CODE else rule.code
    statuses: Iterable[int | None] = (
        [s for s in _STATUSES if s in rule.status]
        if rule.status is not None
        else [None, *_STATUSES]
    )
    won = [s for s in statuses if _first(policy, s, code, rule.failure) is rule]
    if not won:
        return ""
    words: list[str] = []
    if rule.status is not None:
        words.append(f"HTTP {_ranges([s for s in won if s is not None])}")
    if rule.code is not None:
        words.append("any other error code" if rule.code == ANY_CODE else f"code {rule.code}")
    if rule.failure is not None:
        words.append(f"failure {rule.failure}")
    return " with ".join(words)


def _ranges(statuses: list[int]) -> str:
    """``[501, 502, 505, 506, ..., 599]`` as ``501, 502, 505-599`` (a range from three on);
    a whole class as ``5xx``."""
    parts: list[str] = []
    start = prev = statuses[0]
    for s in [*statuses[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        if start % 100 == 0 and prev == start + 99:
            parts.append(f"{start // 100}xx")
        else:
            parts.extend(
                map(str, range(start, prev + 1)) if prev - start < 2 else [f"{start}-{prev}"]
            )
        if s is not None:
            start = prev = s
    return ", ".join(parts)


def _print_schedule(
    policy: Policy, rule: Rule, covers: str, *, samples: int, rng: random.Random, out: TextIO
) -> None:
    backoff = backoff_of(policy, rule)
    retries = retries_allowed(policy, rule.max_retries)
    # one schedule per sample, transposed: draws[n - 1] holds every wait before retry n
    # (at most ROWS retries are drawn: a rule may allow millions, and later waits are capped)
    schedules = [backoff.schedule(min(retries, ROWS), rng=rng) for _ in range(samples)]
    draws = [list(waits) for waits in zip(*schedules, strict=True)]
    capped = f" (max_attempts = {policy.max_attempts})" if retries < rule.max_retries else ""
    print(
        f"{policy.name} / {rule.kind}: {plural(retries, 'retry', 'retries')}{capped}, "
        f"{backoff.jitter} jitter, {samples} samples",
        file=out,
    )
    print(f"  for: {covers}", file=out)
    if not retries:
        print(file=out)
        return
    print("  retry     min     p50     p95     max", file=out)
    top = max((max(d) for d in draws), default=0.0) or 1.0
    width = 30
    for n, waits in enumerate(draws, start=1):
        p50 = statistics.median(waits)
        p95 = statistics.quantiles(waits, n=20, method="inclusive")[18] if samples > 1 else p50
        solid = round(p50 / top * width)
        light = max(round(p95 / top * width) - solid, 0)
        bar = "█" * solid + "░" * light
        print(
            f"  {n:5d} {min(waits):7.2f} {p50:7.2f} {p95:7.2f} {max(waits):7.2f}  {bar}",
            file=out,
        )
    if retries > ROWS:
        print(
            f"  retries {ROWS + 1}..{retries}: not sampled; each waits at most "
            f"{backoff.max_delay:g}s (the cap)",
            file=out,
        )
    print(file=out)
