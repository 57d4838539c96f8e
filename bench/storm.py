"""Storm protection under a fleet: retry amplification in an outage, recovery, 429 limiting.

Run:
    python bench/storm.py                         # both scenarios, client threads (~1 min each)
    python bench/storm.py --scenario outage --threads 16 --outage 10
    python bench/storm.py --processes 3           # 3 client processes sharing a RedisStore
                                                  # (starts its own redis-server on a free port)

Issue 11 targets. Outage: K clients call the fake EU GPT server through the requests
adapter (``RetryAdapter``) while it plays healthy → every request a 503 for T seconds →
healthy again; with the defaults, retry amplification during the outage (requests sent /
logical calls) ≤ 1.1 (≈ 1 + max_retries without protection), every client back to
successful calls within 2 s of the service healing, and no call lost outside the outage.
429: the server enforces a real token bucket (``FakeEUGPT(rate_limit=...)``); with
adaptive limiting the fleet's 429 share falls under 5% within 10 s and its throughput
stays within 10% of the limit.

How it is measured. Every logical call carries an ``x-call`` header, so the server side
(its ``on_request`` callback, one ``time.monotonic()`` per request: the clock is
system-wide, so client processes' times compare) knows which call each request belongs
to. Amplification: requests sent by the calls that began during the outage (whenever
sent), per call; a call the breaker refused counts with none. Recovery: from the heal
until every call the outage caught has returned and no new call fails. Lost: calls that
began after the heal or ended before the outage and did not succeed. In the outage
scenario the clients are an open loop by default (each starts a call every 1/rate s
whatever happened to the last: callers keep arriving in an outage, which is what turns
retries into a storm; ``--load closed`` for a call-think-call loop); in the 429 scenario
each client thread calls back to back. Each row's policy is all that differs.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import requests

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent, set_hooks
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_requests import RetryAdapter

BODY = {"input": "hi", "stream": False}
OK = Reply.json(200, {"id": "resp_1", "object": "response", "output_text": "ok"})
TIMEOUT = 5.0
STORMS = hasattr(rp, "RetryBudget")  # issue 11's storm protection has landed

# --------------------------------------------------------------------------- policies


def policy_for(mode: str, tuning: dict[str, dict[str, float]] | None = None) -> rp.Policy:
    """The policy of one row of the table (*tuning*: keyword arguments per storm part)."""
    tuning = tuning or {}
    base = rp.EUGPT
    if mode == "none":
        if not STORMS:
            return base
        return base.evolve(budget=None, breaker=None, limiter=None)
    if not STORMS:
        raise SystemExit(f"mode {mode!r} needs rp.RetryBudget (issue 11), not found")
    if "budget" in tuning:
        base = base.evolve(budget=rp.RetryBudget(**tuning["budget"]))
    if mode == "defaults":
        return base
    if mode == "breaker":
        return base.evolve(breaker=rp.CircuitBreaker(**tuning.get("breaker", {})))
    if mode == "adaptive":
        return base.evolve(limiter=rp.AdaptiveLimiter(**tuning.get("limiter", {})))
    raise SystemExit(f"unknown mode {mode!r}")


def fresh_store(redis_url: str | None, prefix: str) -> None:
    """Every run starts from full budgets and closed breakers: a new default store."""
    if not STORMS:
        return
    from retrypolicy import stores  # noqa: PLC0415 - present only once issue 11 landed

    if redis_url is None:
        stores.set_default_store(stores.InProcessStore())
        return
    import redis  # noqa: PLC0415 - only the --processes variant needs it

    client = redis.Redis.from_url(redis_url)
    stores.set_default_store(stores.RedisStore(client, prefix=prefix))


# --------------------------------------------------------------------------- clients


@dataclasses.dataclass(frozen=True)
class Call:
    """One logical call as a client saw it."""

    client: str
    call_id: str
    start: float
    end: float
    ok: bool
    what: str  # "200", "503", "CircuitOpenError", ...


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every client process needs: where to call, what policy, until when.

    ``rate`` > 0: open loop, each client starts a call every ``1 / rate`` seconds
    whether or not its earlier calls returned (callers keep arriving during an outage,
    which is what turns retries into a storm); ``rate`` 0: closed loop, a call, then
    ``think`` seconds, then the next.
    """

    url: str
    mode: str
    redis_url: str | None
    threads: int
    think: float
    start_at: float
    stop_at: float
    rate: float = 0.0
    tuning: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """The Redis key prefix of this run (shared by its processes, new for every run)."""
        return f"storm-{self.mode}-{self.start_at:.3f}"


class EventCounter:
    """A process-wide hook counting events by name (replaces the logging hook in benches)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, event: RetryEvent, /) -> None:
        with self._lock:
            self.counts[event.name] += 1


_local = threading.local()


def one_call(plan: Plan, policy: rp.Policy, name: str, call_id: str, start: float) -> Call:
    """One logical call through a RetryAdapter (one keep-alive session per worker thread)."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.mount("http://", RetryAdapter(policy))
    try:
        response = session.post(plan.url, json=BODY, headers={"x-call": call_id}, timeout=TIMEOUT)
        what, ok = str(response.status_code), response.status_code == 200
        response.close()
    except Exception as exc:
        what, ok = type(exc).__name__, False
    return Call(name, call_id, start, time.monotonic(), ok, what)


def client_thread(
    plan: Plan,
    name: str,
    policy: rp.Policy,
    out: list[Call],
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """One client from ``start_at`` to ``stop_at`` (open or closed loop); every call recorded."""
    n = 0
    while time.monotonic() < plan.start_at:
        time.sleep(0.001)
    if plan.rate <= 0:  # closed loop
        while (start := time.monotonic()) < plan.stop_at:
            n += 1
            out.append(one_call(plan, policy, name, f"{name}-{n}", start))
            if plan.think:
                time.sleep(plan.think)
        return
    futures = []
    due = plan.start_at
    while due < plan.stop_at:
        n += 1
        futures.append(pool.submit(one_call, plan, policy, name, f"{name}-{n}", due))
        due += 1.0 / plan.rate
        time.sleep(max(0.0, due - time.monotonic()))
    out.extend(f.result() for f in futures)


def run_clients(plan: Plan, prefix: str) -> tuple[list[Call], dict[str, int]]:
    """Run *plan.threads* client threads in this process; their calls and event counts."""
    counter = EventCounter()
    set_hooks([counter])
    fresh_store(plan.redis_url, plan.prefix)
    policy = policy_for(plan.mode, plan.tuning)
    calls: list[Call] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1024) as pool:
        threads = [
            threading.Thread(
                target=client_thread, args=(plan, f"{prefix}c{i}", policy, calls, pool)
            )
            for i in range(plan.threads)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    return calls, dict(counter.counts)


def process_main(plan: Plan, index: int) -> tuple[list[Call], dict[str, int]]:
    """Entry point of one client process (spawned)."""
    return run_clients(plan, f"p{index}")


Fleet = Callable[[Plan], tuple[list[Call], dict[str, int]]]


def warm_up(_: int) -> int:
    """A first task per worker process: it has started and imported everything."""
    time.sleep(0.3)  # long enough for every worker to take one
    return os.getpid()


@contextlib.contextmanager
def fleet(processes: int) -> Iterator[Fleet]:
    """Runs a plan on the whole fleet: threads here, or in *processes* spawned processes
    of threads each, started (and warm) before the plan's start time is chosen."""
    if processes <= 1:
        yield lambda plan: run_clients(plan, "p0")
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        list(pool.map(warm_up, range(processes)))

        def run(plan: Plan) -> tuple[list[Call], dict[str, int]]:
            calls: list[Call] = []
            events: collections.Counter[str] = collections.Counter()
            for got, counts in pool.map(process_main, [plan] * processes, range(processes)):
                calls += got
                events.update(counts)
            return calls, dict(events)

        yield run


# --------------------------------------------------------------------------- the server side


class Arrivals:
    """When each request reached the server, its status, and its logical call."""

    def __init__(self) -> None:
        self.log: list[tuple[float, int, str]] = []

    def __call__(self, request: Any, status: int | None, outcome: str) -> None:
        self.log.append((time.monotonic(), status or 0, request.headers.get("x-call", "")))


@contextlib.contextmanager
def redis_server(enabled: bool) -> Iterator[str | None]:
    """A throwaway redis-server on a free port (as tests/redis_server.py), or None."""
    if not enabled:
        yield None
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--processes needs redis-server on PATH (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="rp-storm-") as tmp:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", tmp, "--loglevel", "warning"]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603 - our argv
        try:
            for _ in range(500):
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2) as c,
                ):
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        break
                time.sleep(0.02)
            else:
                raise SystemExit(f"redis-server did not answer on port {port}")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait(timeout=10)


# --------------------------------------------------------------------------- outage scenario


@dataclasses.dataclass
class OutageRow:
    mode: str
    amplification: float
    amplification_late: float
    outage_rps: float
    healthy_rps: float
    recovery_full: float
    recovery_median: float | None
    still_failing: bool
    lost: int
    calls_outside: int
    failed_during: int
    calls_during: int
    events: dict[str, int]


def outage_run(mode: str, args: argparse.Namespace, redis_url: str | None) -> OutageRow:
    """One row: the fleet through healthy → outage → healthy with *mode*'s policy."""
    arrivals = Arrivals()
    with fleet(args.processes) as run, FakeEUGPT(default=OK, on_request=arrivals) as server:
        start_at = time.monotonic() + (2.0 if args.processes > 1 else 0.3)
        outage_at = start_at + args.warmup + args.healthy
        heal = outage_at + args.outage
        stop_at = heal + args.after
        server.outage(args.outage, after=outage_at - time.monotonic())
        plan = Plan(
            server.responses_url,
            mode,
            redis_url,
            args.threads,
            args.think,
            start_at,
            stop_at,
            0.0 if args.load == "closed" else args.call_rate / (args.threads * args.processes),
            tuning(args),
        )
        calls, events = run(plan)
        assert server.errors == [], server.errors
    during = [a for a in arrivals.log if outage_at <= a[0] < heal]
    healthy = [a for a in arrivals.log if start_at + args.warmup <= a[0] < outage_at]
    sent = collections.Counter(c for _, _, c in arrivals.log)
    # amplification: requests sent (at any time) by the calls that began during the outage,
    # per call; a call the breaker refused sent none. "late": those of its second half,
    # once the first reactions (a full budget's retries, a breaker's window) are spent
    hit = [c for c in calls if outage_at <= c.start < heal]
    late = [c for c in hit if c.start >= outage_at + args.outage / 2]
    # back to normal: every call caught by the outage has returned and no new call fails
    caught = [c.end - heal for c in calls if c.start < heal <= c.end]
    failing_after = [c.end - heal for c in calls if c.start >= heal and not c.ok]
    outside = [c for c in calls if c.start >= heal or c.end < outage_at]
    inside = [c for c in calls if not (c.start >= heal or c.end < outage_at)]
    return OutageRow(
        mode=mode,
        amplification=sum(sent[c.call_id] for c in hit) / max(len(hit), 1),
        amplification_late=sum(sent[c.call_id] for c in late) / max(len(late), 1),
        outage_rps=len(during) / args.outage,
        healthy_rps=len(healthy) / args.healthy,
        recovery_full=max([0.0, *caught, *failing_after]),
        recovery_median=statistics.median(caught) if caught else None,
        still_failing=any(c.start >= stop_at - 0.5 and not c.ok for c in calls),
        lost=sum(not c.ok for c in outside),
        calls_outside=len(outside),
        failed_during=sum(not c.ok for c in inside),
        calls_during=len(inside),
        events=events,
    )


def show_outage(rows: Sequence[OutageRow], args: argparse.Namespace) -> None:
    fleet = f"{args.processes} processes x " if args.processes > 1 else ""
    load = (
        f"closed loop, think {args.think * 1000:.0f} ms"
        if args.load == "closed"
        else f"open loop, {args.call_rate:g} calls/s in all"
    )
    print(
        f"\nOutage: {fleet}{args.threads} clients, {load}; "
        f"healthy {args.healthy:g} s -> 100% 503 for {args.outage:g} s -> healthy "
        f"{args.after:g} s"
    )
    head = (
        f"{'mode':<10} {'amplif.':>8} {'2nd half':>9} {'req/s out':>10} {'req/s ok':>9} "
        f"{'recovery':>10} {'(median)':>9} {'lost':>10} {'failed in outage':>17}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        full = f"{'>' if r.still_failing else ''}{r.recovery_full:.2f} s"
        med = "-" if r.recovery_median is None else f"{r.recovery_median:.2f} s"
        print(
            f"{r.mode:<10} {r.amplification:8.2f} {r.amplification_late:9.2f} "
            f"{r.outage_rps:10.0f} {r.healthy_rps:9.0f} "
            f"{full:>10} {med:>9} {f'{r.lost}/{r.calls_outside}':>10} "
            f"{f'{r.failed_during}/{r.calls_during}':>17}"
        )
    print(
        "amplif.: requests sent by the calls begun in the outage, per call (2nd half: those "
        "begun in its second half);\nreq/s out / ok: what the server received during the "
        "outage / while healthy; recovery: from the heal until every\ncall caught by the "
        "outage returned and no new call fails ('>': still failing at the end); lost: calls "
        "outside\nthe outage that failed"
    )
    for r in rows:
        storm = {k: v for k, v in sorted(r.events.items()) if not k.startswith("retry.")}
        retry = {k: v for k, v in sorted(r.events.items()) if k.startswith("retry.")}
        print(f"  {r.mode}: {retry} {storm}")


# --------------------------------------------------------------------------- 429 scenario


@dataclasses.dataclass
class LimitRow:
    mode: str
    series: list[tuple[float, float, float]]  # (second, 429 share, 200/s)
    settled_at: float | None  # first second from which the 429 share stays < 5%
    share_late: float
    throughput_late: float
    events: dict[str, int]


def limit_run(mode: str, args: argparse.Namespace, redis_url: str | None) -> LimitRow:
    """One row: the fleet against a token bucket of ``--rate`` requests/s."""
    arrivals = Arrivals()
    limited = FakeEUGPT(default=OK, on_request=arrivals, rate_limit=(args.rate, args.burst))
    with fleet(args.processes) as run, limited as server:
        start_at = time.monotonic() + (2.0 if args.processes > 1 else 0.3)
        stop_at = start_at + args.duration
        plan = Plan(
            server.responses_url,
            mode,
            redis_url,
            args.threads,
            0.0,
            start_at,
            stop_at,
            0.0,
            tuning(args),
        )
        _, events = run(plan)
        assert server.errors == [], server.errors
    seconds = int(args.duration)
    per: list[collections.Counter[int]] = [collections.Counter() for _ in range(seconds)]
    for t, status, _ in arrivals.log:
        i = int(t - start_at)
        if 0 <= i < seconds:
            per[i][status] += 1
    series = []
    for i, counts in enumerate(per):
        total = sum(counts.values()) or 1
        series.append((float(i), counts[429] / total, float(counts[200])))
    settled = None
    for i in range(seconds):
        if all(share < 0.05 for _, share, _ in series[i:]):
            settled = float(i)
            break
    late = per[seconds // 2 :]
    late_total = sum(sum(c.values()) for c in late) or 1
    return LimitRow(
        mode=mode,
        series=series,
        settled_at=settled,
        share_late=sum(c[429] for c in late) / late_total,
        throughput_late=sum(c[200] for c in late) / max(len(late), 1),
        events=events,
    )


def show_limit(rows: Sequence[LimitRow], args: argparse.Namespace) -> None:
    fleet = f"{args.processes} processes x " if args.processes > 1 else ""
    print(
        f"\n429: {fleet}{args.threads} threads, no think time, against a token bucket of "
        f"{args.rate:g} requests/s (burst {args.burst:g}) for {args.duration:g} s"
    )
    step = max(1, int(args.duration) // 10)
    for r in rows:
        shares = " ".join(f"{share * 100:4.0f}%" for _, share, _ in r.series[::step])
        rates = " ".join(f"{ok:5.0f}" for _, _, ok in r.series[::step])
        print(f"  {r.mode:<10} 429 share every {step} s: {shares}")
        print(f"  {'':<10} 200/s     every {step} s: {rates}")
    head = f"{'mode':<10} {'429 < 5% from':>14} {'429 share (2nd half)':>21} {'200/s vs limit':>15}"
    print(head)
    print("-" * len(head))
    for r in rows:
        settled = "never" if r.settled_at is None else f"{r.settled_at:.0f} s"
        print(
            f"{r.mode:<10} {settled:>14} {r.share_late * 100:20.1f}% "
            f"{r.throughput_late / args.rate:14.2f}x"
        )
    for r in rows:
        print(f"  {r.mode}: {dict(sorted(r.events.items()))}")


# --------------------------------------------------------------------------- main


OUTAGE_FIELDS = ("amplification", "amplification_late", "outage_rps", "recovery_full", "lost")
LIMIT_FIELDS = ("settled_at", "share_late", "throughput_late")


def show_median(rows: Sequence[Any], modes: Sequence[str], fields: Sequence[str]) -> None:
    """The median of each field over the rounds, per mode ("never" counts as infinite)."""
    print(f"\nmedians over {len(rows) // len(modes)} rounds:")
    for mode in modes:
        mine = [r for r in rows if r.mode == mode]
        values = []
        for name in fields:
            got = [getattr(r, name) for r in mine]
            med = statistics.median(float("inf") if v is None else v for v in got)
            values.append(f"{name}={med:.3g}")
        print(f"  {mode:<10} {' '.join(values)}")


def tuning(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """``--budget/--breaker/--limiter 'name=value,...'`` as keyword arguments."""
    out: dict[str, dict[str, float]] = {}
    for part in ("budget", "breaker", "limiter"):
        text = getattr(args, part)
        if text:
            pairs = (item.split("=", 1) for item in text.split(","))
            out[part] = {k.strip(): float(v) for k, v in pairs}
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=["outage", "429", "both"], default="both")
    p.add_argument("--threads", type=int, default=8, help="clients (threads) per process")
    p.add_argument("--processes", type=int, default=1, help="client processes sharing Redis")
    p.add_argument("--modes", default=None, help="comma-separated rows (default: all known)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of every mode (medians)")
    p.add_argument("--load", choices=["open", "closed"], default="open", help="outage load model")
    p.add_argument("--call-rate", type=float, default=80.0, help="open loop: calls/s in all")
    p.add_argument("--think", type=float, default=0.01, help="closed loop: seconds between calls")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--healthy", type=float, default=3.0, help="healthy seconds before")
    p.add_argument("--outage", type=float, default=6.0, help="seconds of 100%% 503")
    p.add_argument("--after", type=float, default=5.0, help="healthy seconds after")
    p.add_argument("--rate", type=float, default=100.0, help="the 429 scenario's limit, req/s")
    p.add_argument("--burst", type=float, default=20.0)
    p.add_argument("--duration", type=float, default=20.0, help="the 429 scenario's length")
    for part, example in [
        ("budget", "capacity=100"),
        ("breaker", "open_for=2"),
        ("limiter", "increase=10"),
    ]:
        p.add_argument(f"--{part}", default="", help=f"{part} settings, e.g. '{example}'")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    print(
        f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; storm protection "
        f"{'present' if STORMS else 'absent (baseline only)'}"
    )
    chosen = args.modes.split(",") if args.modes else None
    with redis_server(args.processes > 1) as redis_url:
        rounds = range(args.repeat)  # the modes take turns, round after round
        if args.scenario in ("outage", "both"):
            modes = chosen or (["none", "defaults", "breaker"] if STORMS else ["none"])
            rows = [outage_run(m, args, redis_url) for _ in rounds for m in modes]
            show_outage(rows, args)
            if args.repeat > 1:
                show_median(rows, modes, OUTAGE_FIELDS)
        if args.scenario in ("429", "both"):
            modes = chosen or (["none", "adaptive"] if STORMS else ["none"])
            limits = [limit_run(m, args, redis_url) for _ in rounds for m in modes]
            show_limit(limits, args)
            if args.repeat > 1:
                show_median(limits, modes, LIMIT_FIELDS)
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
