"""``retrypolicy simulate``: several policies, one scenario, side by side.

The command line registers it with :func:`add_to`; the logic is
:func:`retrypolicy.simulate` and the report module.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Final, TextIO

import attrs

from .._config import load_policy_with_sources
from .._defaults import CONFIG_ENV, PROFILE_ENV, default_policy
from .._errors import ConfigError
from .._policy import Policy
from .._profiles import PROFILES
from .._simulate._api import simulate
from .._simulate._report import Simulation, format_table, json_line
from .._simulate._scenario import Scenario
from ._common import EXIT_OK, EXIT_USAGE, Subparsers

__all__ = ["add_to", "simulate_command"]

_DESCRIPTION: Final = (
    "Run one or more policies against a scenario — an outage, a rate limit, an error "
    "rate, mid-stream timeouts, a trace file — for a fleet of clients on a virtual clock: "
    "the library's own decision code, thousands of times faster than real time, the "
    "same numbers for the same --seed. Reports amplification (requests per call), "
    "success rate, latency percentiles, recovery after the incident, what storm "
    "protection did, and what the retries cost."
)
_EPILOG: Final = (
    "examples:\n"
    "  retrypolicy simulate --outage 30 --clients 50 --rate 100 --duration 120\n"
    "  retrypolicy simulate --policy eugpt --policy mine.toml --rate-limit 20\n"
    "  retrypolicy simulate --trace incident.csv --cost-per-request 0.002 --json"
)


def _number(low: float, *, strict: bool = False, whole: bool = False, finite: bool = False) -> type:
    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {kind}") from None
        if (
            not (value > low if strict else value >= low)
            or value != value  # noqa: PLR0124
            or (finite and value == math.inf)
        ):
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a {'finite ' if finite else ''}number "
                f"{'>' if strict else '>='} {low:g}"
            )
        return value

    return parse  # type: ignore[return-value] # argparse only calls it


def add_to(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``simulate`` on the command line's subcommands."""
    p = sub.add_parser(
        "simulate",
        help="replay an outage, a rate limit or a trace through policies on a virtual clock",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--policy",
        action="append",
        metavar="NAME|FILE.toml[:PROFILE]",
        help=f"a built-in profile ({', '.join(PROFILES)}) or a policy file; repeat it to "
        f"compare (the first is the baseline); default: the policy ${CONFIG_ENV} and "
        f"${PROFILE_ENV} choose, as for every command, else eugpt",
    )
    what = p.add_argument_group("the scenario (combine freely)")
    what.add_argument(
        "--outage",
        type=_number(0, strict=True),
        metavar="SECONDS",
        help="every request fails for SECONDS",
    )
    what.add_argument(
        "--outage-at",
        type=_number(0),
        metavar="SECONDS",
        help="when the outage starts (default: in the middle of the run)",
    )
    what.add_argument(
        "--outage-kind",
        metavar="KIND",
        help="what the outage answers: a kind or a status (default: unavailable, "
        "a 503; 'connection' for a host that refuses connections)",
    )
    what.add_argument(
        "--rate-limit",
        type=_number(0, strict=True),
        metavar="REQ_PER_S",
        help="a token bucket of REQ_PER_S that every request draws from; 429 "
        "with Retry-After when empty",
    )
    what.add_argument(
        "--burst",
        type=_number(1),
        metavar="N",
        help="the rate limit's bucket size (default: one second's worth)",
    )
    what.add_argument(
        "--error-rate",
        type=_number(0),
        metavar="P",
        help="a share P (0-1) of the requests fails with --kind",
    )
    what.add_argument(
        "--kind",
        metavar="KIND",
        help="the failure of --error-rate: a kind or a status (default: server_error)",
    )
    what.add_argument(
        "--stream-timeouts",
        type=_number(0),
        metavar="P",
        help="a share P of the streams fails half-way with upstream_timeout",
    )
    what.add_argument(
        "--trace",
        metavar="FILE",
        help="replay a trace (CSV or JSON Lines: t, status or kind, retry_after)",
    )
    what.add_argument(
        "--latency",
        type=_number(0, finite=True),
        default=0.1,
        metavar="SECONDS",
        help="the median time of an answer (default: 0.1)",
    )
    what.add_argument(
        "--latency-p99",
        type=_number(0, finite=True),
        metavar="SECONDS",
        help="its 99th percentile (lognormal; default: the median, constant)",
    )
    fleet = p.add_argument_group("the fleet")
    fleet.add_argument(
        "--clients",
        type=_number(1, whole=True),
        default=10,
        metavar="N",
        help="clients (default: 10)",
    )
    fleet.add_argument(
        "--rate",
        type=_number(0, strict=True),
        metavar="CALLS_PER_S",
        help="open loop: calls per second across the fleet (default: one per client per second)",
    )
    fleet.add_argument(
        "--think",
        type=_number(0),
        metavar="SECONDS",
        help="closed loop instead: each client calls, waits, thinks SECONDS",
    )
    fleet.add_argument(
        "--duration",
        type=_number(0, strict=True),
        metavar="SECONDS",
        help="seconds of calls (default: 60, or the trace's length)",
    )
    fleet.add_argument(
        "--per-client-store",
        action="store_true",
        help="each client its own budget/limiter/breaker (separate processes); "
        "default: one for the fleet (threads, or a RedisStore)",
    )
    fleet.add_argument(
        "--seed", type=int, default=0, metavar="N", help="the random seed (default: 0)"
    )
    report = p.add_argument_group("the report")
    report.add_argument(
        "--cost-per-request",
        type=_number(0),
        metavar="AMOUNT",
        help="the price of a request that reaches the model: turns the requests paid into money",
    )
    report.add_argument(
        "--json", action="store_true", help="one JSON object per policy, one per line"
    )
    report.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw requests/s, successes/s and the budget level over time "
        "(needs the 'simulate' extra: matplotlib)",
    )
    p.set_defaults(run=simulate_command)


def _policies(specs: list[str] | None) -> list[tuple[str, Policy]]:
    """The policies ``--policy`` names; without one, the policy ``RETRYPOLICY_CONFIG`` and
    ``RETRYPOLICY_PROFILE`` choose, as for every command (else EU GPT)."""
    if not specs:
        policy = default_policy()
        return [(policy.name, policy)]
    out: list[tuple[str, Policy]] = []
    for spec in specs:
        if spec in PROFILES:
            out.append((spec, PROFILES[spec]))
            continue
        file, profile = _file_spec(spec)
        choose = f"--policy {file}:PROFILE"
        out.append((spec, load_policy_with_sources(file, profile, choose=choose)[0]))
    names = [policy.name for _, policy in out]
    return [
        (policy.name if names.count(policy.name) == 1 else spec, policy) for spec, policy in out
    ]


def _file_spec(spec: str) -> tuple[str, str | None]:
    """``FILE.toml`` or ``FILE.toml:PROFILE`` (or any existing file, which a path with a
    colon may be) as (file, profile)."""
    if spec.endswith(".toml") or Path(spec).is_file():
        return spec, None
    file, colon, profile = spec.rpartition(":")
    if colon and (file.endswith(".toml") or Path(file).is_file()):
        return file, profile or None
    msg = (
        f"--policy {spec!r}: expected a built-in profile ({', '.join(PROFILES)}) or "
        "a policy file FILE.toml[:PROFILE]"
    )
    raise ConfigError(msg)


_NEEDS: Final = {
    "outage_at": ("outage", "--outage-at", "--outage SECONDS"),
    "outage_kind": ("outage", "--outage-kind", "--outage SECONDS"),
    "burst": ("rate_limit", "--burst", "--rate-limit REQ_PER_S"),
    "kind": ("error_rate", "--kind", "--error-rate P"),
}
"""Options that only qualify another: given without it, they would change nothing."""


def _check_qualifiers(args: argparse.Namespace) -> None:
    """A qualifying option without the option it qualifies is refused: the run would
    quietly simulate less than was asked for (a healthy service instead of an outage)."""
    for key, (needed, option, needs) in _NEEDS.items():
        if getattr(args, key) is not None and getattr(args, needed) is None:
            msg = f"{option}: expected together with {needs}, which it qualifies"
            raise ConfigError(msg)


def _scenario(args: argparse.Namespace) -> tuple[Scenario, float]:
    """The scenario the options describe, and the seconds of calls (by default 60, or the
    trace's length): the trace file is read once."""
    _check_qualifiers(args)
    scenario = Scenario() if args.trace is None else Scenario.trace(args.trace)
    duration = 60.0 if args.trace is None else scenario.effects[0].end
    if args.duration is not None:
        duration = float(args.duration)
    if args.outage is not None:
        middle = max(0.0, (duration - args.outage) / 2)
        at = middle if args.outage_at is None else args.outage_at
        if at >= duration:
            msg = (
                f"--outage-at {at:g}: expected a moment before calls stop starting, at "
                f"{duration:g} s (--duration): no call would meet the outage"
            )
            raise ConfigError(msg)
        scenario += Scenario.outage(args.outage, at=at, answer=args.outage_kind or "unavailable")
    if args.rate_limit is not None:
        scenario += Scenario.rate_limit(args.rate_limit, burst=args.burst)
    if args.error_rate is not None:
        scenario += Scenario.errors(args.error_rate, args.kind or "server_error")
    if args.stream_timeouts is not None:
        scenario += Scenario.stream_timeouts(args.stream_timeouts)
    return scenario.with_latency(args.latency, args.latency_p99), duration


def simulate_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``retrypolicy simulate``; bad input raises :class:`~retrypolicy.ConfigError`
    (the command line prints it and exits 2)."""
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401, PLC0415 - only checking that the extra is there
        except ImportError:
            from .._simulate._plot import EXTRA_MESSAGE  # noqa: PLC0415

            print(f"retrypolicy simulate: {EXTRA_MESSAGE}", file=sys.stderr)
            return EXIT_USAGE
    try:
        policies = _policies(args.policy)
        scenario, duration = _scenario(args)
        results: list[Simulation] = []
        for label, policy in policies:
            result = simulate(
                policy,
                scenario,
                clients=args.clients,
                rate=args.rate,
                think=args.think,
                duration=duration,
                seed=args.seed,
                shared=not args.per_client_store,
            )
            results.append(attrs.evolve(result, policy=label))
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None
    if args.json:
        for r in results:
            out.write(json_line(r, cost_per_request=args.cost_per_request) + "\n")
    else:
        terminal = out.isatty() and os.environ.get("TERM") != "dumb"
        format_table(results, out, cost_per_request=args.cost_per_request, rich=terminal)
    if args.plot is not None:
        from .._simulate._plot import plot  # noqa: PLC0415 - matplotlib, only when asked for

        plot(results, Path(args.plot))
    return EXIT_OK
