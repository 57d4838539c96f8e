"""rp.simulate: speed, memory and determinism (issue 19).

Run:
    python bench/simulate.py              # the issue's fleet: 1 h, 100 clients, 100 calls/s
    python bench/simulate.py --quick      # 10 minutes of it

Speed: one hour of a 100-client fleet at 100 calls/s in all (360,000 calls) with the
default policy and a 5-minute outage in the middle; target <= 10 s. The same with a
lognormal latency, with no budget (every call caught by the outage retries to its limit:
the most events), and with the limiter and the breaker on (a step before every attempt).
Memory: the peak traced allocation (tracemalloc) for runs of 10, 30 and 60 minutes, and
for 10 minutes at 3x and 10x the rate — flat means it does not grow with the number of
calls (it grows with the calls in flight, and a few numbers per second of the run).
Determinism: the --json line of the same seed from two separate interpreters (different
hash seeds), compared byte for byte.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import subprocess
import sys
import time
import tracemalloc

import retrypolicy as rp

CLIENTS = 100
RATE = 100.0
OUTAGE = 300.0

_CHILD = """
import sys, retrypolicy as rp
from retrypolicy._simulate._report import json_line
duration = float(sys.argv[1])
scenario = rp.Scenario.outage(300, at=(duration - 300) / 2).with_latency(0.1, 1.0)
r = rp.simulate(rp.EUGPT, scenario, clients=100, rate=100, duration=duration, seed=42)
sys.stdout.write(json_line(r, cost_per_request=0.002))
"""


def scenario(duration: float, latency: tuple[float, float]) -> rp.Scenario:
    return rp.Scenario.outage(OUTAGE, at=(duration - OUTAGE) / 2).with_latency(*latency)


def timed(policy: rp.Policy, duration: float, latency: tuple[float, float]) -> None:
    gc.collect()
    started = time.perf_counter()
    r = rp.simulate(
        policy, scenario(duration, latency), clients=CLIENTS, rate=RATE, duration=duration, seed=1
    )
    took = time.perf_counter() - started
    print(
        f"  {policy.name:<12} latency {latency[0]:g}-{latency[1]:g} s: {took:6.2f} s for "
        f"{r.calls:,} calls, {r.requests:,} requests ({r.requests / took:,.0f} requests/s "
        f"simulated); amplification in the outage {r.amplification_bad:.3f}, recovery "
        f"{r.recovery:.2f} s"
    )


def memory(duration: float, rate: float = RATE) -> None:
    gc.collect()
    tracemalloc.start()
    r = rp.simulate(
        rp.EUGPT,
        scenario(duration, (0.1, 1.0)),
        clients=CLIENTS,
        rate=rate,
        duration=duration,
        seed=1,
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"  {duration / 60:4.0f} min at {rate:4.0f} calls/s, {r.calls:>9,} calls: peak traced "
        f"{peak / 1024:6.0f} KiB"
    )


def determinism(duration: float) -> None:
    lines = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
            [sys.executable, "-c", _CHILD, str(duration)],
            capture_output=True,
            check=True,
            env=env,
        ).stdout
        lines.append(out)
    same = lines[0] == lines[1]
    digest = hashlib.sha256(lines[0]).hexdigest()[:16]
    print(
        f"  two interpreters, seed 42: {'byte-identical' if same else 'DIFFERENT'} "
        f"({len(lines[0])} bytes, sha256 {digest}…)"
    )
    assert same
    print(f"  {lines[0].decode()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10 minutes instead of an hour")
    args = p.parse_args()
    duration = 600.0 if args.quick else 3600.0
    print(
        f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"\nspeed: {CLIENTS} clients, {RATE:g} calls/s, {duration / 60:g} min, "
        f"{OUTAGE / 60:g}-min outage (503) in the middle"
    )
    unprotected = rp.EUGPT.evolve(name="no budget", budget=None)
    everything = rp.EUGPT.evolve(
        name="all on", limiter=rp.AdaptiveLimiter(), breaker=rp.CircuitBreaker()
    )
    for policy, latency in [
        (rp.EUGPT, (0.1, 0.1)),
        (rp.EUGPT, (0.1, 1.0)),
        (unprotected, (0.1, 1.0)),
        (everything, (0.1, 1.0)),
    ]:
        timed(policy, duration, latency)
    print("\nmemory (default policy, latency 0.1-1 s):")
    for minutes in (10, 30, 60):
        memory(minutes * 60.0)
    for rate in (300.0, 1000.0):  # more calls in the same time: the same memory
        memory(600.0, rate)
    print("\ndeterminism (--json line):")
    determinism(duration)


if __name__ == "__main__":
    main()
