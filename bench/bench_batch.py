"""Batch jobs: the ledger's cost per job, and batch throughput against the fake API.

Run: python bench/bench_batch.py [--jobs N] [--rounds R]
Targets (issue 12): ledger overhead under 1 ms per job on SQLite; throughput at
concurrency 32 within 10% of the same requests sent without a ledger.

1. Ledger overhead: ``run_batch`` of N trivial jobs (the function returns a small dict)
   at concurrency 1 on a fresh SQLite file / a fresh Redis prefix, against the same
   function called N times under the same policy (``@rp.retry``) with no ledger; the
   difference per job is the ledger's cost (claim, finish, the runner's bookkeeping).
3. A typo's cost (issue 18): a wrong key (401) and a wrong base URL (404) on a batch of
   10,000 jobs at concurrency 32, by the real command (``retrypolicy batch run``, in
   this process) against FakeEUGPT: requests the server received before the run stopped
   (target <= 2 x concurrency), jobs left failed (target 0), and the rerun with the
   mistake fixed.
2. Throughput: N requests to the fake EU GPT API (in a subprocess: `retrypolicy
   serve-fake`, so the server does not share this process's GIL), through a requests
   session with the policy's RetryAdapter, at concurrency 1, 8 and 32 — by
   ``run_batch`` with an SQLite ledger, and by a plain thread pool of the same size
   with no ledger. Cases interleaved round by round; medians. The client's CPU time per
   request is shown too (``time.process_time``): on a shared machine it moves less than
   the wall clock, and for a CPU-bound client its ratio is what throughput follows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import io
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from tests.redis_server import running_redis

import retrypolicy as rp
from retrypolicy._cli import main as cli
from retrypolicy._cli._batch_command import _session, http_job
from retrypolicy.batch import JobState, RedisLedger, SQLiteLedger, run_batch
from retrypolicy.testing import FakeEUGPT

_names = itertools.count()


def trivial(n: int) -> dict[str, int]:
    return {"n": n}


def ledger_overhead(jobs: int, rounds: int, tmp: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    plain_fn = rp.retry(rp.EUGPT)(trivial)
    pairs = [(f"job-{i:06d}", i) for i in range(jobs)]

    def plain() -> None:
        for _, n in pairs:
            plain_fn(n)

    def sqlite() -> None:
        with SQLiteLedger(tmp / f"l{next(_names)}.db") as ledger:
            run_batch(pairs, trivial, ledger=ledger, concurrency=1, progress=False)

    def redis_ledger() -> None:
        with RedisLedger(client, prefix=f"bench{next(_names)}") as ledger:
            run_batch(pairs, trivial, ledger=ledger, concurrency=1, progress=False)

    cases: dict[str, Callable[[], None]] = {
        "no ledger": plain,
        "SQLiteLedger": sqlite,
        "RedisLedger": redis_ledger,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            start = time.perf_counter()
            case()
            samples[name].append((time.perf_counter() - start) / jobs)
    med = {name: statistics.median(s) for name, s in samples.items()}
    print(f"1. ledger overhead, {jobs} trivial jobs, concurrency 1, median of {rounds} rounds")
    print(f"{'case':<14} {'µs/job':>8} {'overhead µs/job':>16}")
    for name, sec in med.items():
        over = (sec - med["no ledger"]) * 1e6
        print(f"{name:<14} {sec * 1e6:8.1f} {over:16.1f}")
    client.flushdb()
    client.close()


def serve_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrypolicy", "serve-fake", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "serving the fake EU GPT API on http://.../v1/responses"
    url = line.split(" on ", 1)[1].strip()
    return proc, url.removesuffix("/v1/responses")


def throughput(jobs: int, rounds: int, tmp: Path) -> None:
    proc, base = serve_fake()
    try:
        url = base + "/v1/responses"
        print(f"\n2. throughput, {jobs} requests to the fake API (subprocess), 200 JSON")
        print(
            f"{'concurrency':>11} {'no ledger req/s':>16} {'run_batch+SQLite':>17} {'ratio':>6} "
            f"{'CPU µs/req':>9} {'(batch)':>9} {'ratio':>6}"
        )
        for concurrency in (1, 8, 32):
            session = _session(rp.EUGPT, concurrency)
            fn = http_job(session, url, "eugpt_bench_000000000000", 30.0)
            retried = rp.retry(rp.EUGPT)(fn)
            bodies = [(f"job-{i:06d}", {"input": f"q{i}", "stream": False}) for i in range(jobs)]

            def plain(
                retried: Callable[..., object] = retried,
                bodies: list[tuple[str, dict[str, object]]] = bodies,
                concurrency: int = concurrency,
            ) -> None:
                with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(retried, bodies))

            def batch(
                fn: Callable[..., object] = fn,
                bodies: list[tuple[str, dict[str, object]]] = bodies,
                concurrency: int = concurrency,
            ) -> None:
                with SQLiteLedger(tmp / f"t{next(_names)}.db") as ledger:
                    report = run_batch(
                        [(job_id, (job_id, body)) for job_id, body in bodies],
                        fn,
                        ledger=ledger,
                        concurrency=concurrency,
                        progress=False,
                    )
                assert report.done == jobs

            samples: dict[str, list[float]] = {"plain": [], "batch": []}
            cpu: dict[str, list[float]] = {"plain": [], "batch": []}
            plain()  # warm the connection pool
            for _ in range(rounds):
                for name, case in (("plain", plain), ("batch", batch)):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    case()
                    samples[name].append(jobs / (time.perf_counter() - start))
                    cpu[name].append((time.process_time() - start_cpu) / jobs)
            p, b = statistics.median(samples["plain"]), statistics.median(samples["batch"])
            pc, bc = statistics.median(cpu["plain"]), statistics.median(cpu["batch"])
            print(
                f"{concurrency:>11} {p:16.0f} {b:17.0f} {b / p:6.2f} "
                f"{pc * 1e6:9.0f} {bc * 1e6:9.0f} {pc / bc:6.2f}"
            )
            session.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_KEY = "eugpt_bench_key_0000000000000000"


def typo_cost(jobs: int, concurrency: int, tmp: Path) -> None:
    """A wrong key, then a wrong base URL: what reached the server before the stop."""
    print(f"\n3. a typo on {jobs} jobs at concurrency {concurrency}: the real command")
    print(
        f"{'mistake':<24} {'exit':>4} {'requests':>8} {'target':>6} {'failed':>6} "
        f"{'pending':>7} {'s':>5} {'rerun fixed: exit, done, requests':>34}"
    )
    with (tmp / "in.jsonl").open("w", encoding="utf-8") as f:
        for i in range(jobs):
            f.write(f'{{"id": "job-{i:05d}", "input": "q{i}", "stream": false}}\n')
    for mistake in ("wrong key (401)", "base URL + /api (404)"):
        name = f"t{next(_names)}"
        with FakeEUGPT(valid_keys=[_KEY]) as server:
            key, url = _KEY, server.url
            if "key" in mistake:
                key = "eugpt_revoked_000000000000000"
            else:
                url += "/api"
            argv = ["batch", "run", str(tmp / "in.jsonl"), "--ledger", str(tmp / f"{name}.db")]
            argv += ["--out", str(tmp / f"{name}.jsonl"), "--concurrency", str(concurrency)]
            start = time.perf_counter()
            code, _ = _run_cli([*argv, "--base-url", url], key)
            took = time.perf_counter() - start
            sent = server.request_count
            with SQLiteLedger(tmp / f"{name}.db") as ledger:
                states = ledger.counts().states
            again, _ = _run_cli([*argv, "--base-url", server.url], _KEY)
            with SQLiteLedger(tmp / f"{name}.db") as ledger:
                done = ledger.counts().states[JobState.DONE]
            rerun = f"{again}, {done}, {server.request_count - sent}"
        print(
            f"{mistake:<24} {code:>4} {sent:>8} {2 * concurrency:>6} "
            f"{states[JobState.FAILED]:>6} {states[JobState.PENDING]:>7} {took:5.2f} {rerun:>34}"
        )


def _run_cli(argv: list[str], key: str) -> tuple[int, str]:
    os.environ["EUGPT_API_KEY"] = key
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(argv)
    return code, out.getvalue() + err.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--typo-jobs", type=int, default=10_000)
    parser.add_argument(
        "--only", choices=["ledger", "throughput", "typo"], help="one part (default: all)"
    )
    args = parser.parse_args()
    rp.instrumentation.set_hooks([])
    print(f"Python {sys.version.split()[0]}\n")
    with tempfile.TemporaryDirectory() as tmp, running_redis() as server:
        if args.only in {None, "ledger"}:
            ledger_overhead(args.jobs, args.rounds, Path(tmp), server.url)
        if args.only in {None, "throughput"}:
            throughput(args.requests, args.rounds, Path(tmp))
        if args.only in {None, "typo"}:
            typo_cost(args.typo_jobs, 32, Path(tmp))


if __name__ == "__main__":
    main()
