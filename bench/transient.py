"""Transient failures with the default retry budget: do retries that fix things keep working?

32 client threads share one ``RetryAdapter(rp.EUGPT)`` (so one budget); each thread talks
to its own fake EU GPT server, scripted so that every call meets one 503 and then a 200.
Waits are skipped (``rp.testing.instant()``: per-thread virtual clocks, so the budget's
refill sees the time that passed). Counts what the callers got and what the budget did.

Run: python bench/transient.py [--calls 10000] [--threads 32]
Target (issue 17): 0 calls given up with the defaults (before: retrying stopped after
about 125 calls, when AWS's refund rule was "1 token per success").
"""

from __future__ import annotations

import argparse
import threading
import time

import requests

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_requests import RetryAdapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()
    rp.instrumentation.set_hooks([])  # measure the budget, not the log sink
    per_thread = args.calls // args.threads
    statuses: list[int] = []
    lock = threading.Lock()
    adapter = RetryAdapter(rp.EUGPT, pool_maxsize=args.threads)
    servers = [FakeEUGPT().start() for _ in range(args.threads)]

    def worker(server: FakeEUGPT) -> None:
        got = []
        with requests.Session() as session:
            session.mount(server.url, adapter)
            for _ in range(per_thread):
                r = session.post(server.responses_url, json={"input": "x", "stream": False})
                got.append(r.status_code)
        with lock:
            statuses.extend(got)

    started = time.perf_counter()
    try:
        with rp.testing.instant():
            for server in servers:
                server.script(*[Reply.error(503), Reply.ok("hi")] * per_thread)
            threads = [threading.Thread(target=worker, args=(s,)) for s in servers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stats = rp.EUGPT.stats()
    finally:
        for server in servers:
            server.stop()
    took = time.perf_counter() - started
    calls = len(statuses)
    given_up = sum(1 for s in statuses if s != 200)
    print(
        f"{calls} calls from {args.threads} threads, each a 503 then a 200: "
        f"{given_up} given up ({given_up / calls:.1%}); retries paid "
        f"{stats.counters['retries_allowed']}, refused {stats.counters['retries_refused']}; "
        f"budget at the end {stats.budget_level:.0f} of {stats.budget_capacity:.0f}; "
        f"{took:.1f} s"
    )


if __name__ == "__main__":
    main()
