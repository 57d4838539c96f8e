"""What a simulation found: the :class:`Simulation` value, its JSON line and its table.

The numbers answer the questions of choosing a policy: how much extra load retries put
on the service (amplification, overall and during the incident), what the callers saw
(success rate, latency percentiles, calls given up by kind), how long after the incident
ended the fleet was back to normal (recovery), what storm protection did (retries paid
from the budget, its lowest level, breaker openings), and what it cost: requests that
reached the model are billed, so every one beyond the first of a call is a generation
paid twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO

import attrs

__all__ = ["Histogram", "Simulation", "format_table", "json_line"]

_LOW: Final = 1e-4
"""Latencies below 0.1 ms share the first bin."""
_RATIO: Final = 1.005
"""Bins grow by 0.5 %: a percentile is read within 0.25 % of its value."""
_SCALE: Final = 1.0 / math.log(_RATIO)


class Histogram:
    """Call latencies in logarithmic bins: constant memory whatever the number of calls."""

    __slots__ = ("bins", "count", "max")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        """Count one call that took *seconds*."""
        i = int(math.log(seconds / _LOW) * _SCALE) + 1 if seconds > _LOW else 0
        bins = self.bins
        bins[i] = bins.get(i, 0) + 1
        self.count += 1
        if seconds > self.max:  # noqa: PLR1730 - max() costs a call on every call
            self.max = seconds

    def quantile(self, q: float) -> float:
        """The latency below which a share *q* of the calls fell (the bin's middle)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i in sorted(self.bins):
            seen += self.bins[i]
            if seen >= rank:
                if i == 0:
                    return min(_LOW, self.max)
                return min(_LOW * math.pow(_RATIO, i - 0.5), self.max)
        return self.max  # pragma: no cover - the last bin holds rank count

    def freeze(self) -> tuple[float, float, float, float]:
        """(p50, p95, p99, max)."""
        return (self.quantile(0.5), self.quantile(0.95), self.quantile(0.99), self.max)


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


@attrs.frozen(kw_only=True)
class Simulation:
    """The result of :func:`retrypolicy.simulate` for one policy.

    ``gave_up`` maps a failure kind to the calls that ended with it (``circuit_open``:
    refused by an open breaker before sending). ``bad_period`` is the scenario's
    incident (None without one); ``bad_calls``/``bad_requests`` are the calls that began
    in it and every request they sent. ``recovery``: seconds from the incident's end until
    every call it caught had returned and storm protection refused no more calls.
    ``paid``: requests that reached the model (billed); ``paid_extra``: those beyond the
    first of each call. The ``*_per_s`` series hold one number per second of the run, from
    its start until the last call ended (``--plot`` draws them), at most a day after calls
    stop starting: anything later is counted in that last second.
    """

    policy: str
    scenario: str
    clients: int
    rate: float | None
    think: float | None
    duration: float
    seed: int
    shared: bool
    calls: int
    requests: int
    succeeded: int
    gave_up: Mapping[str, int]
    latency: tuple[float, float, float, float]
    bad_period: tuple[float, float] | None
    bad_calls: int
    bad_requests: int
    recovery: float | None
    still_failing: bool
    budget_paid: int
    budget_refused: int
    budget_min: float | None
    breaker_openings: int
    limiter_cuts: int
    paid: int
    paid_extra: int
    requests_per_s: tuple[int, ...] = attrs.field(repr=False)
    successes_per_s: tuple[int, ...] = attrs.field(repr=False)
    failures_per_s: tuple[int, ...] = attrs.field(repr=False)
    """Requests sent in each second that the service answered with a failure."""
    budget_per_s: tuple[float, ...] = attrs.field(repr=False)

    @property
    def amplification(self) -> float:
        """Requests sent per call."""
        return _ratio(self.requests, self.calls)

    @property
    def amplification_bad(self) -> float | None:
        """Requests per call, for the calls that began in the incident (None without one,
        or when no call began in it: requests per call of no call are not 0)."""
        if self.bad_period is None or not self.bad_calls:
            return None
        return _ratio(self.bad_requests, self.bad_calls)

    @property
    def success_rate(self) -> float:
        """The share of calls that succeeded."""
        return _ratio(self.succeeded, self.calls)

    @property
    def p99_latency(self) -> float:
        """The 99th percentile of the calls' latency, retries and waits included."""
        return self.latency[2]

    def to_dict(self, *, cost_per_request: float | None = None) -> dict[str, Any]:
        """The report as plain data (the ``--json`` line): numbers rounded to 6 decimals."""
        p50, p95, p99, top = self.latency
        out: dict[str, Any] = {
            "policy": self.policy,
            "scenario": self.scenario,
            "seed": self.seed,
            "clients": self.clients,
            "rate": self.rate,
            "think": self.think,
            "duration": self.duration,
            "calls": self.calls,
            "requests": self.requests,
            "amplification": self.amplification,
            "amplification_bad": self.amplification_bad,
            "succeeded": self.succeeded,
            "success_rate": self.success_rate,
            "gave_up": dict(self.gave_up),
            "p50_latency": p50,
            "p95_latency": p95,
            "p99_latency": p99,
            "max_latency": top,
            "recovery": self.recovery,
            "still_failing": self.still_failing,
            "budget_retries": self.budget_paid,
            "budget_refused": self.budget_refused,
            "budget_min": self.budget_min,
            "breaker_openings": self.breaker_openings,
            "limiter_cuts": self.limiter_cuts,
            "paid_requests": self.paid,
            "paid_twice": self.paid_extra,
        }
        if cost_per_request is not None:
            out["cost"] = self.paid * cost_per_request
            out["cost_extra"] = self.paid_extra * cost_per_request
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}


def json_line(result: Simulation, *, cost_per_request: float | None = None) -> str:
    """One JSON object on one line: the same seed gives the same bytes."""
    return json.dumps(result.to_dict(cost_per_request=cost_per_request), separators=(",", ":"))


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _rows(
    results: Sequence[Simulation], cost_per_request: float | None
) -> list[tuple[str, list[str]]]:
    def each(fn: Any) -> list[str]:
        return [fn(r) for r in results]

    rows: list[tuple[str, list[str]]] = [
        ("calls", each(lambda r: f"{r.calls:,}")),
        ("requests", each(lambda r: f"{r.requests:,}")),
        ("amplification", each(lambda r: f"{r.amplification:.3f}")),
    ]
    if results[0].bad_period is not None:
        start, end = results[0].bad_period
        rows += [
            (
                f"  in the incident ({start:g}-{end:g} s)",
                each(
                    lambda r: "-" if r.amplification_bad is None else f"{r.amplification_bad:.3f}"
                ),
            ),
            (
                "recovery after it",
                each(lambda r: (">" if r.still_failing else "") + _seconds(r.recovery)),
            ),
        ]
    rows += [
        ("succeeded", each(lambda r: f"{r.succeeded:,} ({r.success_rate:.2%})")),
        (
            "gave up",
            each(lambda r: ", ".join(f"{k} {v:,}" for k, v in r.gave_up.items()) or "0"),
        ),
        ("latency p50", each(lambda r: _seconds(r.latency[0]))),
        ("latency p95", each(lambda r: _seconds(r.latency[1]))),
        ("latency p99", each(lambda r: _seconds(r.latency[2]))),
        ("latency max", each(lambda r: _seconds(r.latency[3]))),
        ("retries paid by the budget", each(lambda r: f"{r.budget_paid:,}")),
        ("retries refused by it", each(lambda r: f"{r.budget_refused:,}")),
        (
            "lowest budget level",
            each(lambda r: "-" if r.budget_min is None else f"{r.budget_min:.4g}"),
        ),
        ("breaker openings", each(lambda r: str(r.breaker_openings))),
        ("limiter rate cuts", each(lambda r: str(r.limiter_cuts))),
        ("requests paid (reached the model)", each(lambda r: f"{r.paid:,}")),
        ("  paid twice (beyond one per call)", each(lambda r: f"{r.paid_extra:,}")),
    ]
    if cost_per_request is not None:
        rows += [
            ("cost", each(lambda r: f"{r.paid * cost_per_request:,.2f}")),
            ("  of which paid twice", each(lambda r: f"{r.paid_extra * cost_per_request:,.2f}")),
        ]
    return rows


def _title(results: Sequence[Simulation]) -> str:
    r = results[0]
    load = f"{r.rate:g} calls/s" if r.think is None else f"closed loop, think {r.think:g} s"
    store = "one shared store" if r.shared else "a store per client"
    return f"{r.clients} clients, {load}, {r.duration:g} s, seed {r.seed}, {store}\n{r.scenario}"


def format_table(
    results: Sequence[Simulation],
    out: TextIO,
    *,
    cost_per_request: float | None = None,
    rich: bool = False,
) -> None:
    """Write the results side by side, one column per policy (the baseline first): a rich
    table when *rich* (and the ``rich`` package is installed), else plain text."""
    rows = _rows(results, cost_per_request)
    names = [r.policy for r in results]
    if rich:
        try:
            from rich.console import Console  # noqa: PLC0415 - optional, terminals only
            from rich.table import Table  # noqa: PLC0415
        except ImportError:
            pass
        else:
            table = Table(title=_title(results))
            table.add_column("")
            for name in names:
                table.add_column(name, justify="right")
            for label, cells in rows:
                table.add_row(label, *cells)
            Console(file=out).print(table)
            return
    width = max(len(label) for label, _ in rows)
    cols = [max(len(n), *(len(cells[i]) for _, cells in rows)) for i, n in enumerate(names)]
    out.write(_title(results) + "\n\n")
    out.write(" " * width + "".join(f"  {n:>{w}}" for n, w in zip(names, cols, strict=True)))
    out.write("\n")
    for label, cells in rows:
        line = f"{label:<{width}}" + "".join(
            f"  {c:>{w}}" for c, w in zip(cells, cols, strict=True)
        )
        out.write(line.rstrip() + "\n")
