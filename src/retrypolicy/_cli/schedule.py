"""``retrypolicy schedule``: the waits before each retry, sampled over the jitter.

The waits are :meth:`Backoff.schedule`'s own draws, for the backoff and the number of
retries :meth:`Policy.decide` would use (:mod:`.explain` says which).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from typing import TextIO

from .._policy import Policy
from .._rules import Rule
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_policy_options,
    epilog,
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
            "jitter, and a chart of the curve (█ up to p50, ░ up to p95)."
        ),
        epilog=epilog(
            "0 printed; 2 bad usage (an unknown --kind too), or a --config file that cannot be used"
        ),
    )
    schedule.add_argument("--kind", help="only this kind (e.g. rate_limited); default: all")
    schedule.add_argument(
        "--samples", type=positive_int, default=10_000, metavar="N", help="draws (10000)"
    )
    schedule.add_argument("--seed", type=int, default=0, help="random seed (0)")
    add_policy_options(schedule)
    schedule.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print the sampled schedule of each retried kind (or of ``--kind``)."""
    policy = policy_of(args)
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
    first: dict[str, Rule] = {}
    for rule in rules:
        first.setdefault(rule.kind, rule)
    for rule in first.values():
        _print_schedule(policy, rule, args.samples, random.Random(args.seed), out)
    return EXIT_OK


def _print_schedule(
    policy: Policy, rule: Rule, samples: int, rng: random.Random, out: TextIO
) -> None:
    backoff = backoff_of(policy, rule)
    retries = retries_allowed(policy, rule.max_retries)
    # one schedule per sample, transposed: draws[n - 1] holds every wait before retry n
    # (at most ROWS retries are drawn: a rule may allow millions, and later waits are capped)
    schedules = [backoff.schedule(min(retries, ROWS), rng=rng) for _ in range(samples)]
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
