"""``rp.simulate``: one policy, one scenario, one fleet, on a virtual clock."""

from __future__ import annotations

import math

from .._policy import Policy
from ._effects import check_number
from ._engine import run
from ._report import Simulation
from ._scenario import Scenario
from ._trace import MAX_SECONDS as MAX_TRACE_SECONDS

__all__ = ["simulate"]


MAX_CLIENTS = 1_000_000
MAX_DURATION = float(MAX_TRACE_SECONDS)
"""Seconds of calls at most (31 days, as long as a trace may be): the run keeps a few
numbers per second of it."""
MAX_CALLS = 30_000_000
"""Calls a run may start at most: a 31-day trace at the default 10 calls/s (26.8 million),
about a minute of simulation for a plain policy (several with a limiter and breaker: it
steps every call), so that a rate typed orders of magnitude too large is refused, not
run for days."""


def _positive(
    name: str, value: object, *, whole: bool = False, most: float = math.inf, unit: str = ""
) -> None:
    def ok(v: float) -> bool:
        return (not whole or isinstance(v, int)) and math.isfinite(v) and 0 < v <= most

    expected = f"{'a whole number' if whole else 'a number'} > 0"
    if most < math.inf:
        expected += f" and at most {most:,.0f}{unit}"
    check_number(name, value, ok, expected)


def _at_most_calls(what: str, calls: float) -> None:
    if calls > MAX_CALLS:
        msg = (
            f"{what}: {calls:,.0f} calls; expected at most {MAX_CALLS:,} "
            "(lower the rate, the clients or the duration)"
        )
        raise ValueError(msg)


def simulate(
    policy: Policy,
    scenario: Scenario | None = None,
    *,
    clients: int = 10,
    rate: float | None = None,
    think: float | None = None,
    duration: float = 60.0,
    seed: int = 0,
    shared: bool = True,
) -> Simulation:
    """Run *policy* against *scenario* for a fleet of *clients*, on a virtual clock.

    The real decision code runs — classification, backoff with jitter, ``Retry-After``,
    per-kind limits, the deadline, the budget, the limiter and the breaker — with events
    on a heap instead of threads and sleeps, so an hour of traffic takes seconds, and the
    same *seed* gives the same result.

    The load is open loop, *rate* calls per second across the fleet (default: one per
    client per second) whatever happened to earlier calls — callers keep arriving in an
    outage — or, with *think*, closed loop: each client calls, waits for the answer,
    thinks *think* seconds, calls again. Calls start for *duration* seconds; those still
    running then are followed to their end. *shared*: the fleet shares one budget,
    limiter and breaker (threads of one process, or a ``RedisStore``); False: each client
    has its own (processes with in-process stores).
    """
    if not isinstance(policy, Policy):
        msg = f"policy {policy!r}: expected a retrypolicy.Policy"
        raise TypeError(msg)
    if scenario is None:
        scenario = Scenario()
    if not isinstance(scenario, Scenario):
        msg = f"scenario {scenario!r}: expected a retrypolicy.Scenario"
        raise TypeError(msg)
    _positive("clients", clients, whole=True, most=MAX_CLIENTS)
    _positive("duration", duration, most=MAX_DURATION, unit=" seconds (31 days)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        msg = f"seed {seed!r}: expected a whole number"
        raise TypeError(msg)
    if think is not None:
        if rate is not None:
            msg = "rate and think: give one (open loop at a rate, or closed loop with think time)"
            raise ValueError(msg)
        check_number("think", think, lambda v: v >= 0, "a number of seconds >= 0")
        latency = scenario.latency
        if not think and not (latency.median > 0 and latency.fail_fast > 0):
            # a call that takes no time, then the next at once: endless calls at one instant
            msg = (
                "think 0: expected think time > 0, or answers that take time (a latency and "
                "a fail_fast > 0), for a closed loop"
            )
            raise ValueError(msg)
        cycle = think + min(latency.median, latency.fail_fast)  # the shortest call, then think
        _at_most_calls(
            "clients * duration / (think + the quickest answer)", clients * duration / cycle
        )
    elif rate is None:
        rate = float(clients)
    else:
        _positive("rate", rate)
    if rate is not None:
        _at_most_calls("rate * duration", rate * duration)
    return run(
        policy,
        scenario,
        clients=clients,
        rate=None if rate is None else float(rate),
        think=None if think is None else float(think),
        duration=float(duration),
        seed=seed,
        shared=bool(shared),
    )
