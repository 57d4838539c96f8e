"""What storm protection costs per step: the in-process store against Redis (a local server).

Run: python bench/bench_stores.py   (needs redis-server on PATH; starts its own, on loopback)

A success with a full budget touches no store at all (see bench_decorator.py); these are
the steps a retry (a budget spend), a paced request (a limiter acquire) and a breaker
check cost, and the success path of a decorated call with each mechanism turned on.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import redis
from _timing import interleaved
from tests.redis_server import running_redis

import retrypolicy as rp
from retrypolicy.stores import InProcessStore, RedisStore

BIG = rp.RetryBudget(capacity=1e12, refill_rate=0)
LIMITER = rp.AdaptiveLimiter(initial_rate=1e9)
BREAKER = rp.CircuitBreaker()


def bare() -> int:
    return 1


def main() -> None:
    with running_redis() as server:
        client = redis.Redis.from_url(server.url)
        stores = {"in-process": InProcessStore(), "redis": RedisStore(client, prefix="bench")}
        print(f"Python {sys.version.split()[0]}; medians of interleaved rounds\n")
        print(f"{'step':<40} {'in-process':>12} {'redis':>12}")
        for store in stores.values():
            store.limiter("p:limiter", LIMITER, 0.0, "throttled", 1e9)
        steps = {
            "budget spend (a retry)": lambda s: s.budget("p:budget", BIG, 0.0, -5.0),
            "limiter acquire (a paced request)": lambda s: s.limiter(
                "p:limiter", LIMITER, 0.0, "acquire"
            ),
            "breaker allow (closed)": lambda s: s.breaker("p:breaker:h", BREAKER, 0.0, "allow"),
        }
        for name, step in steps.items():
            got = {
                kind: interleaved({kind: lambda s=s, step=step: step(s)}, number=2000, rounds=5)[
                    kind
                ]
                for kind, s in stores.items()
            }
            print(f"{name:<40} {got['in-process'] / 1000:>9.1f} µs {got['redis'] / 1000:>9.1f} µs")

        print("\nsuccess path of a decorated call, ns per call")
        cases = {
            "EUGPT (budget on, full)": rp.retry(rp.EUGPT)(bare),
            "no budget": rp.retry(rp.EUGPT.evolve(name="none", budget=None))(bare),
            "breaker on, in-process": rp.retry(
                rp.EUGPT.evolve(name="br", breaker=BREAKER), store=stores["in-process"]
            )(bare),
            "breaker on, redis (batched)": rp.retry(
                rp.EUGPT.evolve(name="br", breaker=BREAKER), store=stores["redis"]
            )(bare),
        }
        for name, ns in interleaved(cases, number=20000, rounds=5).items():
            print(f"{name:<40} {ns:>9.0f} ns")
        client.close()


if __name__ == "__main__":
    main()
