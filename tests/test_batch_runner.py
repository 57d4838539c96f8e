"""run_batch (threads) and arun_batch (asyncio): every job once, resumable, with progress."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import retrypolicy as rp
from retrypolicy.batch import (
    BatchReport,
    JobRecord,
    JobState,
    LedgerError,
    SQLiteLedger,
    arun_batch,
    run_batch,
)
from retrypolicy.batch._progress import PlainProgress, RichProgress, make_progress

JOBS = {f"job-{i:03d}": i for i in range(200)}


def error(status: int) -> rp.APIError:
    return rp.EUGPT.error_for(rp.parse_error(status, b'{"detail": "no"}'))


class Recorder:
    """A job function that records its calls; fails for the ids it is told to."""

    def __init__(self, fail: dict[int, int] | None = None) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()
        self.fail = fail or {}

    def __call__(self, n: int) -> dict[str, int]:
        with self.lock:
            self.calls.append(n)
        if n in self.fail:
            raise error(self.fail[n])
        return {"square": n * n}

    async def acall(self, n: int) -> dict[str, int]:
        return self(n)


@pytest.fixture
def ledger(tmp_path: Path) -> SQLiteLedger:
    """A fresh SQLite ledger."""
    with SQLiteLedger(tmp_path / "jobs.db") as ledger:
        yield ledger  # type: ignore[misc]


def test_every_job_runs_once_and_reruns_run_nothing(ledger: SQLiteLedger) -> None:
    """200 jobs on 8 threads: each runs once, each is reported once; a rerun runs none and
    reports every stored result."""
    fn = Recorder()
    seen: list[JobRecord] = []
    report = run_batch(
        JOBS, fn, ledger=ledger, concurrency=8, progress=False, on_finish=seen.append
    )
    assert sorted(fn.calls) == list(range(200))
    assert (report.done, report.failed, report.earlier_done, report.ok) == (200, 0, 0, True)
    assert sorted(r.job_id for r in seen) == sorted(JOBS)
    again: list[JobRecord] = []
    rerun = run_batch(
        JOBS, fn, ledger=ledger, concurrency=8, progress=False, on_finish=again.append
    )
    assert len(fn.calls) == 200
    assert (rerun.done, rerun.earlier_done, rerun.ok) == (0, 200, True)
    assert {r.job_id: r.result for r in again}["job-007"] == {"square": 49}


@pytest.mark.usefixtures("instant")
def test_failures_by_kind_and_only_retryable_ones_rerun(ledger: SQLiteLedger) -> None:
    """400s fail for good, 503s fail retryably once the policy gives up; a rerun runs only
    the retryable ones."""
    fn = Recorder(fail={3: 400, 4: 400, 5: 503})
    report = run_batch(JOBS, fn, ledger=ledger, concurrency=4, progress=False)
    assert (report.done, report.failed, report.retryable_failed) == (197, 3, 1)
    assert report.failed_kinds == {"invalid_request": 2, "unavailable": 1}
    assert not report.ok
    fn.calls.clear()
    fn.fail = {}
    rerun = run_batch(JOBS, fn, ledger=ledger, concurrency=4, progress=False)
    assert fn.calls == [5]
    assert (rerun.done, rerun.earlier_done, rerun.earlier_failed) == (1, 197, 2)


def test_a_job_held_elsewhere_is_waited_for(tmp_path: Path) -> None:
    """A job under another worker's live lease is not run: the runner waits for it and
    reports the other worker's result."""
    path = tmp_path / "jobs.db"
    with SQLiteLedger(path, lease=0.5) as mine, SQLiteLedger(path, lease=60) as other:
        assert other.claim("a")[0]

        def finish_elsewhere(record: JobRecord) -> None:
            if record.job_id == "b":
                other.finish("a", '"from the other worker"')

        fn = Recorder()
        seen: dict[str, Any] = {}

        def report(record: JobRecord) -> None:
            finish_elsewhere(record)
            seen[record.job_id] = record.result

        result = run_batch(
            [("a", 1), ("b", 2)], fn, ledger=mine, concurrency=1, progress=False, on_finish=report
        )
    assert fn.calls == [2]
    assert seen == {"b": {"square": 4}, "a": "from the other worker"}
    assert (result.done, result.earlier_done) == (1, 1)


def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    """A job whose owner stopped renewing (crashed) runs once its lease has expired."""
    now = [100.0]
    path = tmp_path / "jobs.db"
    with SQLiteLedger(path, lease=30, clock=lambda: now[0]) as crashed:
        crashed.claim("a")
    now[0] += 31
    with SQLiteLedger(path, lease=30, clock=lambda: now[0]) as ledger:
        fn = Recorder()
        report = run_batch({"a": 1}, fn, ledger=ledger, progress=False)
        record = ledger.get("a")
    assert fn.calls == [1]
    assert report.done == 1
    assert record is not None
    assert record.runs == 2


def test_a_failure_after_the_lease_was_lost_is_not_recorded(tmp_path: Path) -> None:
    """A worker whose lease was taken over (it stalled past the lease) does not clobber the
    job with its failure: the job's record is the other worker's result."""
    now = [100.0]
    path = tmp_path / "jobs.db"
    with (
        SQLiteLedger(path, lease=30, clock=lambda: now[0]) as mine,
        SQLiteLedger(path, lease=30, clock=lambda: now[0]) as other,
    ):

        def stalls_then_fails(n: int) -> None:
            now[0] += 31  # stalled past its lease: the other worker takes over and finishes
            assert other.claim("a")[0]
            assert other.finish("a", '"from the other worker"')
            raise error(400)

        seen: list[JobRecord] = []
        report = run_batch(
            {"a": 1}, stalls_then_fails, ledger=mine, progress=False, on_finish=seen.append
        )
    assert (report.done, report.failed) == (1, 0)
    assert [(r.state, r.result) for r in seen] == [(JobState.DONE, "from the other worker")]


def test_bad_jobs_and_options(ledger: SQLiteLedger) -> None:
    """Duplicate ids, bad ids and a bad concurrency are refused before anything runs."""
    fn = Recorder()
    with pytest.raises(LedgerError, match="appears twice"):
        run_batch([("a", 1), ("a", 2)], fn, ledger=ledger)
    with pytest.raises(LedgerError, match="job id"):
        run_batch([("", 1)], fn, ledger=ledger)
    with pytest.raises(ValueError, match="concurrency"):
        run_batch({"a": 1}, fn, ledger=ledger, concurrency=0)
    assert fn.calls == []


def test_a_store_failure_stops_the_batch(tmp_path: Path) -> None:
    """A ledger that cannot record (here: closed) stops the batch with its error."""
    ledger = SQLiteLedger(tmp_path / "jobs.db")
    ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        run_batch(JOBS, Recorder(), ledger=ledger, progress=False)


class _FailsToRecord(SQLiteLedger):
    """A ledger whose store fails while the batch runs: its third ``finish`` raises."""

    finished = 0

    def finish(self, job_id: str, result_json: str, attempts: int = 1) -> bool:
        self.finished += 1
        if self.finished == 3:
            msg = "ledger: the disk is full"
            raise LedgerError(msg)
        return super().finish(job_id, result_json, attempts)


@pytest.mark.parametrize("runner", ["sync", "async"])
def test_a_store_failure_mid_batch_is_raised_as_it_is(tmp_path: Path, runner: str) -> None:
    """A ledger failing in the middle of a batch stops it with that very error, from both
    runners alike (not an ExceptionGroup from the async one's tasks): ``except LedgerError``
    catches it; the other workers end the jobs they hold, and nothing more is claimed."""
    fn = Recorder()
    with _FailsToRecord(tmp_path / "jobs.db") as ledger:
        with pytest.raises(LedgerError, match="disk is full"):
            if runner == "sync":
                run_batch(JOBS, fn, ledger=ledger, concurrency=4, progress=False)
            else:
                asyncio.run(
                    arun_batch(JOBS, fn.acall, ledger=ledger, concurrency=4, progress=False)
                )
        states = ledger.counts().states
    assert len(fn.calls) <= 3 + 4  # stopped at once: at most the ones already running
    assert states[JobState.DONE] == ledger.finished - 1
    assert states[JobState.RUNNING] <= 1  # only the job whose result could not be stored


def test_interrupt_gives_the_job_back(ledger: SQLiteLedger) -> None:
    """Ctrl-C inside a job re-raises KeyboardInterrupt; the job is pending again, the jobs
    done before it stay done."""

    def job(n: int) -> int:
        if n == 5:
            raise KeyboardInterrupt
        return n

    with pytest.raises(KeyboardInterrupt):
        run_batch(JOBS, job, ledger=ledger, concurrency=1, progress=False)
    counts = ledger.counts()
    assert counts.states[JobState.DONE] == 5
    record = ledger.get("job-005")
    assert record is not None
    assert record.state is JobState.PENDING


# -- asyncio ------------------------------------------------------------------------------


@pytest.mark.usefixtures("instant")
def test_async_runner_mirrors_the_sync_one(ledger: SQLiteLedger) -> None:
    """arun_batch: every job once, failures by kind, and a rerun that runs only what is left."""
    fn = Recorder(fail={9: 400, 10: 503})
    report = asyncio.run(arun_batch(JOBS, fn.acall, ledger=ledger, concurrency=16, progress=False))
    assert isinstance(report, BatchReport)
    assert (report.done, report.failed, report.retryable_failed) == (198, 2, 1)
    assert sorted(set(fn.calls)) == list(range(200))
    fn.calls.clear()
    fn.fail = {}
    rerun = asyncio.run(arun_batch(JOBS, fn.acall, ledger=ledger, progress=False))
    assert fn.calls == [10]
    assert (rerun.done, rerun.earlier_done, rerun.earlier_failed) == (1, 198, 1)


def test_async_runner_waits_for_a_job_held_elsewhere(tmp_path: Path) -> None:
    """arun_batch leaves a job under another live lease to its worker, and takes it over
    once that worker's lease has expired (it crashed)."""
    now = [100.0]
    path = tmp_path / "jobs.db"
    with (
        SQLiteLedger(path, lease=0.2, clock=lambda: now[0]) as mine,
        SQLiteLedger(path, lease=5, clock=lambda: now[0]) as crashed,
    ):
        crashed.claim("a")
        fn = Recorder()

        def later(record: JobRecord) -> None:
            if record.job_id == "b":
                now[0] += 6  # the crashed worker's lease runs out

        report = asyncio.run(
            arun_batch(
                [("a", 1), ("b", 2)],
                fn.acall,
                ledger=mine,
                concurrency=1,
                progress=False,
                on_finish=later,
            )
        )
        record = mine.get("a")
    assert fn.calls == [2, 1]
    assert report.done == 2
    assert record is not None
    assert record.runs == 2


def test_async_cancel_gives_the_job_back(ledger: SQLiteLedger) -> None:
    """Cancelling arun_batch gives the running job back to the ledger (pending)."""

    async def main() -> None:
        started = asyncio.Event()

        async def job(n: int) -> int:
            started.set()
            await asyncio.Event().wait()  # never finishes: cancelled
            return n

        task = asyncio.create_task(
            arun_batch({"a": 1}, job, ledger=ledger, concurrency=1, progress=False)
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    record = ledger.get("a")
    assert record is not None
    assert record.state is JobState.PENDING


# -- progress -----------------------------------------------------------------------------


def test_plain_progress_prints_a_line_per_tenth(ledger: SQLiteLedger) -> None:
    """Without a terminal: a line at each tenth of the batch, with done/failed/retrying,
    the rate and an ETA; the last says 200/200."""
    out = io.StringIO()
    ticks = iter(float(i) for i in range(10_000))
    run_batch(JOBS, Recorder(), ledger=ledger, progress=out, clock=lambda: next(ticks))
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 11
    assert lines[-1].startswith(
        "retrypolicy batch: 200/200 | done 200 failed 0 retrying 0 earlier 0 |"
    )
    assert "jobs/s | ETA" in lines[0]


def test_progress_counts_retries_while_they_wait() -> None:
    """retrying counts running jobs that scheduled a retry; an outcome clears them."""
    p = PlainProgress(10, io.StringIO(), clock=lambda: 1.0)
    p.retry("a")
    p.retry("a")
    p.retry("b")
    assert p.retrying == 2
    p.finish("a", failed=False, earlier=False)
    assert (p.retrying, p.done) == (1, 1)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal gets rich's bar, or plain lines without rich; a pipe gets plain lines;
    False draws nothing."""
    assert isinstance(make_progress(3, Terminal()), RichProgress)
    assert isinstance(make_progress(3, io.StringIO()), PlainProgress)
    assert type(make_progress(3, False)).__name__ == "Progress"
    monkeypatch.setitem(sys.modules, "rich.progress", None)  # rich not installed
    assert isinstance(make_progress(3, Terminal()), PlainProgress)


def test_rich_bar_draws_counts_rate_and_eta() -> None:
    """The rich bar shows done/failed/retrying, the rate and an ETA."""
    term = io.StringIO()
    bar = RichProgress(4, term, clock=iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]).__next__)
    bar.start()
    bar.retry("a")
    bar.finish("a", failed=False, earlier=False)
    bar.finish("b", failed=True, earlier=False)
    bar.stop()
    drawn = term.getvalue()
    for part in ("done 1", "failed 1", "retrying 0", "/s", "ETA", "2/4"):
        assert part in drawn


# -- setup errors -----------------------------------------------------------------------------

SETUP_RUNS = [
    # status every job gets, stop?, stopped kind, most calls (concurrency 4)
    (401, True, "authentication", 4),
    (404, True, "not_found", 4 + 3),
    (403, True, "permission", 4 + 3),
    (404, False, None, 200),
]


@pytest.mark.usefixtures("instant")
@pytest.mark.parametrize(("status", "watch", "kind", "most"), SETUP_RUNS)
def test_a_setup_error_stops_the_batch_and_requeues_its_jobs(
    ledger: SQLiteLedger, status: int, watch: bool, kind: str | None, most: int
) -> None:
    """Every job failing with a 401 (at once) or a 4xx (after the first few, none done):
    no more jobs are handed out, the report says why, the jobs that got it are pending
    again and nothing is reported as failed. With the watch off, every job fails."""
    fn = Recorder(fail=dict.fromkeys(JOBS.values(), status))
    finished: list[JobRecord] = []
    report = run_batch(
        JOBS,
        fn,
        ledger=ledger,
        concurrency=4,
        progress=False,
        on_finish=finished.append,
        stop_on_setup_error=watch,
    )
    assert len(fn.calls) <= most
    if kind is None:
        assert report.stopped is None
        assert report.failed == 200
        return
    assert report.stopped is not None
    assert report.stopped.kind == kind
    assert report.requeued == len(fn.calls)
    assert report.failed == 0
    assert finished == []
    counts = ledger.counts()
    assert counts.states[JobState.FAILED] == 0
    assert counts.states[JobState.RUNNING] == 0
    assert counts.requests == len(fn.calls)


@pytest.mark.usefixtures("instant")
def test_async_runner_stops_on_a_setup_error_too(ledger: SQLiteLedger) -> None:
    """arun_batch: the first 404s with no success stop it; its jobs are pending again."""
    fn = Recorder(fail=dict.fromkeys(JOBS.values(), 404))
    report = asyncio.run(arun_batch(JOBS, fn.acall, ledger=ledger, concurrency=4, progress=False))
    assert report.stopped is not None
    assert report.stopped.kind == "not_found"
    assert len(fn.calls) <= 4 + 3
    assert report.requeued == len(fn.calls)
    assert ledger.counts().states[JobState.FAILED] == 0


@pytest.mark.usefixtures("instant")
def test_failures_held_back_are_reported_after_the_first_success(ledger: SQLiteLedger) -> None:
    """Two 404s, then a success: the 404s are the jobs' own (reported, failed for good);
    a batch smaller than the probe ends with its failures reported too."""
    fn = Recorder(fail={0: 404, 1: 404})
    report = run_batch(
        dict(list(JOBS.items())[:5]), fn, ledger=ledger, concurrency=1, progress=False
    )
    assert (report.done, report.failed, report.stopped) == (3, 2, None)
    small = run_batch(
        {"x": 0, "y": 1}, Recorder(fail={0: 404, 1: 404}), ledger=ledger, progress=False
    )
    assert (small.failed, small.stopped) == (2, None)


_FIRST_USE = """
import tempfile, threading
from pathlib import Path
import requests
import retrypolicy as rp
from retrypolicy.batch import SQLiteLedger, run_batch

try:
    requests.get("http://127.0.0.1:1", timeout=5)
except requests.ConnectionError as e:
    refused = e
together = threading.Barrier(4)

def job(n):
    together.wait(10)
    raise refused

with tempfile.TemporaryDirectory() as tmp, SQLiteLedger(Path(tmp) / "j.db") as ledger, \
        rp.testing.instant():
    jobs = {f"j{i}": i for i in range(4)}
    report = run_batch(jobs, job, ledger=ledger, concurrency=4, progress=False,
                       stop_on_setup_error=False)
print(sorted(report.failed_kinds.items()))
"""


def test_a_fresh_process_classifies_its_first_failures_in_every_thread() -> None:
    """Four workers of a fresh process failing at once with a refused connection: each is
    `connection` (retryable), none `unknown` (the exception table loads before they start)."""
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _FIRST_USE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('connection', 4)]"


def test_a_failed_job_logs_one_give_up_and_is_recorded_as_its_machine_decided(
    ledger: SQLiteLedger, events: list[rp.instrumentation.RetryEvent]
) -> None:
    """A job whose adapter retried a 503 to the end: one retry.gave_up (the adapter's), and
    the ledger records the kind and retryability the job's machine gave up with."""
    import requests  # noqa: PLC0415 - this test's transport

    from retrypolicy.testing import FakeEUGPT, Reply  # noqa: PLC0415
    from retrypolicy_requests import RetryAdapter  # noqa: PLC0415

    with FakeEUGPT() as server, rp.testing.instant(), requests.Session() as session:
        server.script(*[Reply.error(503)] * 6, *[Reply.error(404)] * 1)
        session.mount(server.url, RetryAdapter(rp.EUGPT))

        def post(n: int) -> requests.Response:
            return session.post(server.responses_url, json={"input": str(n), "stream": False})

        report = rp.batch.run_batch(
            [("unavailable", 1), ("gone", 2)],
            post,
            ledger=ledger,
            concurrency=1,
            stop_on_setup_error=False,
        )
    gave_up = [e for e in events if e.name == "retry.gave_up"]
    assert [(e.call, e.kind) for e in gave_up] == [
        ("requests.send", "unavailable"),
        ("requests.send", "not_found"),
    ]
    assert report.failed == 2
    unavailable = ledger.get("unavailable")
    gone = ledger.get("gone")
    assert unavailable is not None
    assert gone is not None
    assert unavailable.failure is not None
    assert gone.failure is not None
    assert (unavailable.failure.kind, unavailable.failure.retryable) == ("unavailable", True)
    assert (gone.failure.kind, gone.failure.retryable) == ("not_found", False)
