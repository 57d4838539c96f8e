"""Ctrl-C and SIGTERM never leave a job `running` (bpo-45274 on Python 3.11-3.13 made
``Thread.join`` return early after an interrupted ``join(timeout)``).

A real `retrypolicy batch run` subprocess against the fake API in this process gets a real
SIGINT or SIGTERM while requests are in flight; the runner's thread shell is driven with
``_thread.interrupt_main`` for the second interrupt.
"""

from __future__ import annotations

import _thread
import asyncio
import os
import re
import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest

import retrypolicy as rp
from retrypolicy.batch import JobState, SQLiteLedger, arun_batch, run_batch
from retrypolicy.batch._jsonl import final_lines
from retrypolicy.batch._runner import _run_threads
from retrypolicy.testing import FakeEUGPT, Reply

from .batch_crash import EXE, KEY, Completions, write_input

INTERRUPTED = re.compile(
    r"^retrypolicy batch: interrupted: (\d+) done, (\d+) left; run the same command to resume$",
    re.MULTILINE,
)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_lets_running_jobs_end_and_says_what_is_left(
    tmp_path: Path, signum: int, code: int
) -> None:
    """The signal stops handing out jobs, the requests in flight end and are recorded, one
    line says done / left / how to resume; no job is running in the ledger, every done job
    has its line, and the rerun sends only the jobs left (none twice)."""
    ids = write_input(tmp_path / "in.jsonl", 60)
    log = Completions()
    env = {**os.environ, "EUGPT_API_KEY": KEY, "PYTHONDONTWRITEBYTECODE": "1"}
    log.starts.append(0)
    with FakeEUGPT(default=Reply.ok(delay=0.05), on_request=log) as server:
        argv = [*EXE, "batch", "run", str(tmp_path / "in.jsonl"), "--base-url", server.url]
        argv += ["--ledger", str(tmp_path / "jobs.db"), "--out", str(tmp_path / "out.jsonl")]
        argv += ["--concurrency", "4"]
        proc = subprocess.Popen(  # noqa: S603 - our own module
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert server.wait_for_requests(8, timeout=60)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        found = INTERRUPTED.findall(err)
        assert len(found) == 1, err
        done, left = map(int, found[0])
        assert done + left == 60
        assert left > 0
        assert "Traceback" not in err
        with SQLiteLedger(tmp_path / "jobs.db") as ledger:
            states = ledger.counts().states
        assert states[JobState.RUNNING] == 0
        assert states[JobState.DONE] == done
        assert states[JobState.PENDING] == left
        assert len(final_lines(tmp_path / "out.jsonl")) == done
        log.starts.append(server.request_count)
        rerun = subprocess.run(  # noqa: S603 - our own module
            argv, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert rerun.returncode == 0, rerun.stderr
    assert sorted(final_lines(tmp_path / "out.jsonl")) == ids
    per_job = Counter(job_id for job_id, _ in log.done)
    assert sorted(per_job) == ids
    assert set(per_job.values()) == {1}  # in-flight jobs ended: nothing was paid twice


def test_ctrl_c_in_run_batch_leaves_nothing_running(tmp_path: Path) -> None:
    """A KeyboardInterrupt in the calling thread re-raises after the running jobs ended:
    every job is done or pending, none running."""
    jobs = {f"job-{i:03d}": i for i in range(100)}

    def job(n: int) -> int:
        if n == 10:
            _thread.interrupt_main()
        return n

    with SQLiteLedger(tmp_path / "jobs.db") as ledger:
        with pytest.raises(KeyboardInterrupt):
            run_batch(jobs, job, ledger=ledger, concurrency=4, progress=False)
        states = ledger.counts().states
    assert states[JobState.RUNNING] == 0
    assert states[JobState.DONE] + states[JobState.PENDING] == 100
    assert states[JobState.DONE] >= 11


def test_a_second_interrupt_gives_the_running_jobs_back() -> None:
    """The first interrupt halts (stop is set) and waits for the workers; a second one calls
    give_back (the shell then releases its running jobs) and re-raises at once."""
    stop = threading.Event()
    hold = threading.Event()
    ready = threading.Event()
    given_back: list[bool] = []

    def worker() -> None:
        ready.set()
        hold.wait(30)  # bounded: released by give_back below

    def interrupter() -> None:
        if not ready.wait(30):  # the main thread is in _run_threads: now the first
            return
        _thread.interrupt_main()
        if stop.wait(30):  # the first interrupt was handled: now the second
            _thread.interrupt_main()

    def give_back() -> None:
        given_back.append(True)
        hold.set()

    helper = threading.Thread(target=interrupter)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _run_threads(worker, 2, stop.set, give_back)
    finally:
        hold.set()
        helper.join(30)
    assert stop.is_set()
    assert given_back == [True]


def test_failures_held_back_at_an_interrupt_go_back_to_pending(tmp_path: Path) -> None:
    """4xx failures held back (no success yet, no setup error shown) never got a verdict:
    an interrupt puts them back to pending, not failed."""
    statuses = {0: 404, 1: 404, 2: 400, 3: 403}

    def job(n: int) -> int:
        if n == 3:
            _thread.interrupt_main()
        raise rp.EUGPT.error_for(rp.parse_error(statuses[n], b'{"detail": "no"}'))

    with SQLiteLedger(tmp_path / "jobs.db") as ledger:
        with pytest.raises(KeyboardInterrupt):
            run_batch(
                {f"j{n}": n for n in statuses}, job, ledger=ledger, concurrency=1, progress=False
            )
        states = ledger.counts().states
    assert states[JobState.PENDING] == 4
    assert states[JobState.FAILED] == states[JobState.RUNNING] == 0


def test_cancelling_arun_batch_puts_held_failures_back_to_pending(tmp_path: Path) -> None:
    """arun_batch cancelled while 4xx failures are held back (no success yet): those jobs
    are pending again, as is the job it was running."""

    async def main(ledger: SQLiteLedger) -> None:
        blocked = asyncio.Event()

        async def job(n: int) -> int:
            if n < 2:
                raise rp.EUGPT.error_for(rp.parse_error(404, b'{"detail": "no"}'))
            blocked.set()
            await asyncio.Event().wait()  # never finishes: cancelled
            return n

        task = asyncio.create_task(
            arun_batch({"a": 0, "b": 1, "c": 2}, job, ledger=ledger, concurrency=1, progress=False)
        )
        await blocked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with SQLiteLedger(tmp_path / "jobs.db") as ledger:
        asyncio.run(main(ledger))
        states = ledger.counts().states
    assert states[JobState.PENDING] == 3
    assert states[JobState.FAILED] == states[JobState.RUNNING] == 0
