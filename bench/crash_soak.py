"""Crash soak: `retrypolicy batch run` stopped with SIGKILL or SIGINT at random points, rerun
until done.

Run: python bench/crash_soak.py [--repetitions 20] [--jobs 500]
Issues 12 and 18: a batch of 500 jobs against the fake server in a subprocess, stopped at
random points (1 to 5 times, SIGKILL and SIGINT in turn), rerun until done, repeated 20
times; every job done exactly once in the ledger and exactly one result line per id; a
SIGINT exits 130 with one "interrupted" line and leaves no job running; the fake
server's log shows a job completed twice only when it was in flight at a SIGKILL (at
most concurrency x SIGKILLs), never otherwise. Concurrency alternates 8 and 32; every fourth
repetition keeps its ledger in Redis instead of SQLite. The checks are those of the
suite's fast crash test (tests/batch_crash.py); a failed check stops the soak.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from tests.batch_crash import crash_and_resume
from tests.redis_server import running_redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    total_kills = total_extra = total_bound = total_sigints = 0
    started = time.monotonic()
    print(
        f"{'rep':>3} {'ledger':>6} {'conc':>4} {'stops':>5} {'SIGINT':>6} {'extra':>5} "
        f"{'bound':>5} {'s':>6}"
    )
    with running_redis() as server:
        for rep in range(args.repetitions):
            concurrency = 8 if rep % 2 == 0 else 32
            kills = rng.randint(1, 5)
            use_redis = rep % 4 == 3
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory() as tmp:
                if use_redis:
                    redis.Redis.from_url(server.url).flushdb()
                    ledger = server.url
                else:
                    ledger = str(Path(tmp) / "jobs.db")
                soak = crash_and_resume(
                    Path(tmp),
                    jobs=args.jobs,
                    kills=kills,
                    concurrency=concurrency,
                    seed=rng.randrange(2**32),
                    ledger=ledger,
                    signals=(signal.SIGKILL, signal.SIGINT),
                )
            total_kills += soak.kills
            total_sigints += soak.sigints
            total_extra += soak.extra
            total_bound += soak.bound
            print(
                f"{rep:>3} {'redis' if use_redis else 'sqlite':>6} {concurrency:>4} "
                f"{soak.kills:>5} {soak.sigints:>6} {soak.extra:>5} {soak.bound:>5} "
                f"{time.monotonic() - t0:6.1f}",
                flush=True,
            )
    print(
        f"\n{args.repetitions} repetitions x {args.jobs} jobs, {total_kills - total_sigints} "
        f"SIGKILLs and {total_sigints} SIGINTs: every check held; {total_extra} jobs "
        f"completed twice (all in flight at a SIGKILL; bound {total_bound}); "
        f"{time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
