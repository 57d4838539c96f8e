"""A typo costs a few requests, never one per worker: until a job of the run succeeds,
the runners (run_batch, arun_batch, `retrypolicy batch run`) keep at most PROBE jobs in
flight, so a wrong key, base URL, model or plan is found after at most PROBE requests,
whatever --concurrency says; after the first success every worker runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import retrypolicy as rp
from retrypolicy._cli import main
from retrypolicy.batch import JobState, SQLiteLedger, arun_batch, run_batch
from retrypolicy.batch._setup import PROBE
from retrypolicy.testing import FakeEUGPT

from .batch_crash import KEY, write_input
from .test_batch_runner import Recorder

CONCURRENCY = 16
JOBS = {f"job-{i:03d}": i for i in range(100)}


def run_sync(fn: Recorder, ledger: SQLiteLedger) -> object:
    return run_batch(JOBS, fn, ledger=ledger, concurrency=CONCURRENCY, progress=False)


def run_async(fn: Recorder, ledger: SQLiteLedger) -> object:
    return asyncio.run(
        arun_batch(JOBS, fn.acall, ledger=ledger, concurrency=CONCURRENCY, progress=False)
    )


RUNNERS: dict[str, Callable[[Recorder, SQLiteLedger], object]] = {
    "run_batch": run_sync,
    "arun_batch": run_async,
}

SETUP_ERRORS = [
    # status every job gets, the kind that stops the run
    (401, "authentication"),  # a wrong or revoked key
    (404, "not_found"),  # a wrong base URL
    (400, "invalid_request"),  # a wrong model
    (403, "permission"),  # a plan without the API
]


@pytest.mark.usefixtures("instant")
@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize(("status", "kind"), SETUP_ERRORS)
def test_a_setup_error_costs_at_most_probe_requests(
    tmp_path: Path, runner: str, status: int, kind: str
) -> None:
    """Every job would get the same 4xx: with 16 workers, at most PROBE requests are sent
    before the run stops, and every job is pending again."""
    fn = Recorder(dict.fromkeys(JOBS.values(), status))  # every job gets *status*
    with SQLiteLedger(tmp_path / "jobs.db") as ledger:
        report = RUNNERS[runner](fn, ledger)
        counts = ledger.counts()
    assert report.stopped is not None  # type: ignore[attr-defined]
    assert report.stopped.kind == kind  # type: ignore[attr-defined]
    assert len(fn.calls) <= PROBE
    assert report.requests == len(fn.calls)  # type: ignore[attr-defined]
    assert counts.states[JobState.PENDING] == len(JOBS)


def _barrier_job(barrier: threading.Barrier, first: threading.Event) -> Callable[[int], object]:
    """The first call succeeds at once; every later one waits at *barrier* (timed), which
    only opens when CONCURRENCY of them run at the same time."""

    def job(n: int) -> dict[str, int]:
        if first.is_set():
            barrier.wait()
        first.set()
        return {"n": n}

    return job


@pytest.mark.parametrize("watch", [True, False], ids=["after-a-success", "no-watch"])
def test_after_the_first_success_every_worker_runs(tmp_path: Path, watch: bool) -> None:
    """Once a job of the run succeeded (or without the setup watch), CONCURRENCY jobs run
    at the same time: the barrier of CONCURRENCY callers opens (it breaks after 10 s)."""
    barrier = threading.Barrier(CONCURRENCY, timeout=10)
    jobs = {f"job-{i:03d}": i for i in range(1 + CONCURRENCY)}
    with SQLiteLedger(tmp_path / "jobs.db") as ledger:
        report = run_batch(
            jobs,
            _barrier_job(barrier, threading.Event()),
            ledger=ledger,
            concurrency=CONCURRENCY,
            progress=False,
            stop_on_setup_error=watch,
        )
    assert (report.done, report.failed) == (len(jobs), 0)


def test_after_the_first_success_every_task_runs(tmp_path: Path) -> None:
    """arun_batch, likewise: once a job succeeded, CONCURRENCY tasks run at once (an
    asyncio barrier of CONCURRENCY parties, under a 10 s timeout)."""
    jobs = {f"job-{i:03d}": i for i in range(1 + CONCURRENCY)}

    async def go() -> object:
        barrier = asyncio.Barrier(CONCURRENCY)
        first = asyncio.Event()

        async def job(n: int) -> dict[str, int]:
            if first.is_set():
                await barrier.wait()
            first.set()
            return {"n": n}

        with SQLiteLedger(tmp_path / "jobs.db") as ledger:
            return await asyncio.wait_for(
                arun_batch(jobs, job, ledger=ledger, concurrency=CONCURRENCY, progress=False),
                10,
            )

    report = asyncio.run(go())
    assert (report.done, report.failed) == (len(jobs), 0)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("suffix", "key", "stopped_by"),
    [
        ("/api", KEY, "HTTP 404 not_found"),
        ("/v2", KEY, "HTTP 404 not_found"),
        ("", "eugpt_revoked_0000", "HTTP 401 authentication"),
    ],
    ids=["wrong-path", "wrong-version", "wrong-key"],
)
def test_the_command_pays_at_most_probe_requests_for_a_typo(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    suffix: str,
    key: str,
    stopped_by: str,
) -> None:
    """`batch run --concurrency 32` with a mistyped --base-url or key: at most PROBE
    requests reach the server, the run exits 2, and its cost line says so."""
    monkeypatch.setenv("EUGPT_API_KEY", key)
    monkeypatch.delenv("RETRYPOLICY_CONFIG", raising=False)
    monkeypatch.delenv("RETRYPOLICY_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "in.jsonl", 200)
    with FakeEUGPT(valid_keys=[KEY]) as server:
        code = main(
            [
                "batch", "run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl",
                "--base-url", server.url + suffix, "--concurrency", "32",
            ]
        )  # fmt: skip
        sent = server.request_count
    out, err = capsys.readouterr()
    assert code == 2
    assert f"got {stopped_by}" in err
    assert 1 <= sent <= PROBE
    assert f"cost: {sent} request{'s' if sent > 1 else ''} sent" in out
    assert (tmp_path / "out.jsonl").read_text() == ""
    with SQLiteLedger(tmp_path / "jobs.db") as ledger:
        assert ledger.counts().states[JobState.PENDING] == 200


RETRIED_404 = rp.EUGPT.evolve(
    name="retried-404",
    rules=(rp.Rule(kind="not_found", retry=True, max_retries=1, status=404), *rp.EUGPT.rules),
)
"""A policy whose 404s are the jobs' own (retried), not a setup error."""


def test_failures_of_a_retried_kind_never_hold_workers_back(tmp_path: Path) -> None:
    """With a policy that retries 404s, a 404 is a job's own failure, which can never stop
    the run: the run keeps PROBE jobs in flight while none has succeeded (later jobs meet
    at a barrier of PROBE parties, 10 s timeout), instead of one at a time once PROBE of
    them failed (they used to be held back as if they might show a setup error)."""
    barrier = threading.Barrier(PROBE, timeout=10)
    first_calls: set[int] = set()
    lock = threading.Lock()

    def job(n: int) -> None:
        with lock:
            first = n not in first_calls
            first_calls.add(n)
        if first and n >= PROBE:
            barrier.wait()  # PROBE jobs must be in flight together
        raise rp.EUGPT.error_for(rp.parse_error(404, b'{"detail": "no such document"}'))

    jobs = {f"job-{i:03d}": i for i in range(3 * PROBE)}
    with rp.testing.instant(), SQLiteLedger(tmp_path / "jobs.db") as ledger:
        report = run_batch(
            jobs, job, ledger=ledger, policy=RETRIED_404, concurrency=CONCURRENCY, progress=False
        )
        failures = [r.failure for r in ledger.records(JobState.FAILED)]
    assert report.stopped is None
    assert [f.kind for f in failures if f is not None] == ["not_found"] * len(jobs)
