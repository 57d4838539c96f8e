"""Shared timing helpers: interleaved rounds, medians, ratios (the machine is shared and noisy)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call_ns(fn: Callable[[], object], number: int) -> float:
    """Nanoseconds per call of *fn* over *number* calls (one timing round)."""
    start = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - start) / number


def interleaved(
    cases: dict[str, Callable[[], object]], *, number: int, rounds: int = 9
) -> dict[str, float]:
    """Median ns per call of each case, the cases run in turn in every round."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():  # warm up
        per_call_ns(fn, max(number // 10, 1))
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(per_call_ns(fn, number))
    return {name: statistics.median(s) for name, s in samples.items()}


def table(results: dict[str, float], *, baseline: str, unit: str = "ns") -> str:
    """A small text table with each case's ratio to *baseline*."""
    width = max(len(n) for n in results)
    base = results[baseline]
    lines = [f"{'case':<{width}}  {unit + '/call':>12}  {'x ' + baseline:>14}"]
    for name, value in results.items():
        lines.append(f"{name:<{width}}  {value:12.1f}  {value / base:14.2f}")
    return "\n".join(lines)
