"""Crash and resume `retrypolicy batch run`: SIGKILL (or SIGINT) a real subprocess at
random points.

Shared by the suite's fast crash test (tests/test_batch_cli.py: 200 jobs, 3 kills) and the
soak (bench/crash_soak.py: 500 jobs, 20 repetitions). The fake API runs in this process
and logs every completed response with the run it happened in; afterwards the ledger, the
results file and that log are checked:

- the ledger: every job done exactly once;
- the results file: exactly one line per id, every one ``done``;
- the server: a job completed twice only when the earlier completion was in a run that
  was killed with SIGKILL (it was in flight at the kill), never twice within one run, and
  at most concurrency x SIGKILLs extra completions in all;
- a SIGINT: the run exits 130 with one "interrupted: N done, M left" line, and leaves no
  job running under its own lease (its requests in flight ended and were recorded: never
  sent again; jobs of an earlier SIGKILLed run it had not reached yet stay as they were).
"""

from __future__ import annotations

import bisect
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from retrypolicy._cli._batch_command import open_ledger
from retrypolicy.batch import JobState
from retrypolicy.batch._jsonl import lines
from retrypolicy.testing import FakeEUGPT, RecordedRequest, Reply

if TYPE_CHECKING:
    import pytest

KEY = "eugpt_test_batch_key_0123456789"
_INTERRUPTED = re.compile(r"retrypolicy batch: interrupted: \d+ done, \d+ left; run the same")
EXE = [sys.executable, "-m", "retrypolicy"]


def batch_env(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    """The environment of an in-process `batch run`: the fake API's key, no policy file or
    profile from the machine's own environment, *where* as the working directory."""
    monkeypatch.setenv("EUGPT_API_KEY", KEY)
    for name in ("RETRYPOLICY_CONFIG", "RETRYPOLICY_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(where)


def write_input(path: Path, n: int, *, stream: bool = False) -> list[str]:
    """n request lines with ids job-0000...; the input text names the job too."""
    ids = [f"job-{i:04d}" for i in range(n)]
    with path.open("w", encoding="utf-8") as f:
        for job_id in ids:
            body: dict[str, object] = {"id": job_id, "input": f"question {job_id}"}
            if not stream:
                body["stream"] = False
            f.write(json.dumps(body) + "\n")
    return ids


class Completions:
    """The fake server's log: completed responses per job id, and in which run.

    A request belongs to the run that was going when the server received it (its number
    against the request count at each run's start), not to the run going when the reply
    was finished: a SIGKILLed client's last replies end after the next run started."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        """The server's request count when each run started."""
        self.lock = threading.Lock()
        self.numbers: list[tuple[str, int]] = []

    def __call__(self, request: RecordedRequest, status: int | None, outcome: str) -> None:
        if status == 200 and outcome == "sent":
            with self.lock:
                number = int(request.request_id.removeprefix("req_"))
                self.numbers.append((request.headers["idempotency-key"], number))

    @property
    def done(self) -> list[tuple[str, int]]:
        """(job id, run) of every completed response."""
        with self.lock:
            numbers = list(self.numbers)
        return [(job_id, bisect.bisect_left(self.starts, n) - 1) for job_id, n in numbers]


@attrs.frozen
class Soak:
    """One crash-and-resume: how many kills, runs, extra completions, and the bound."""

    kills: int
    runs: int
    extra: int
    bound: int
    sigints: int = 0


def crash_and_resume(
    tmp_path: Path,
    *,
    jobs: int,
    kills: int,
    concurrency: int,
    seed: int,
    ledger: str,
    signals: tuple[int, ...] = (signal.SIGKILL,),
) -> Soak:
    """Run `batch run` in a subprocess, stop it *kills* times at random points with one of
    *signals* (in turn), rerun to the end; then check the ledger, the results
    file and the server's log (see above)."""
    rng = random.Random(seed)
    ids = write_input(tmp_path / "in.jsonl", jobs)
    out = tmp_path / "out.jsonl"
    log = Completions()
    killed_runs: set[int] = set()
    sigints = 0
    env = {**os.environ, "EUGPT_API_KEY": KEY, "PYTHONDONTWRITEBYTECODE": "1"}
    with FakeEUGPT(default=Reply.ok(delay=0.004), on_request=log) as server:
        argv = [
            *EXE,
            "batch",
            "run",
            str(tmp_path / "in.jsonl"),
            "--ledger",
            ledger,
            "--out",
            str(out),
            "--base-url",
            server.url,
            "--concurrency",
            str(concurrency),
        ]
        for run in range(kills + 1):
            log.starts.append(server.request_count)
            proc = subprocess.Popen(  # noqa: S603 - our own module
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            if run < kills:
                target = server.request_count + rng.randint(5, jobs // (kills + 1))
                server.wait_for_requests(target, timeout=60)
                signum = signals[run % len(signals)]
                proc.send_signal(signum)
                if signum == signal.SIGKILL:
                    killed_runs.add(run)
                else:
                    sigints += 1
            _, err = proc.communicate(timeout=120)
            if run == kills:
                assert proc.returncode == 0, err.decode()
            elif run not in killed_runs:
                assert proc.returncode == 130, err.decode()
                assert len(_INTERRUPTED.findall(err.decode())) == 1, err.decode()
                with open_ledger(ledger, create=False) as check:  # none running under it
                    owners = [r.owner or "" for r in check.records(JobState.RUNNING)]
                assert [o for o in owners if o.split("/")[1:2] == [str(proc.pid)]] == []
    with open_ledger(ledger, create=False) as check:
        counts = check.counts()
    assert counts.states[JobState.DONE] == jobs
    assert counts.total == jobs
    found = list(lines(out))
    per_id = Counter(str(line["id"]) for line in found)
    assert sorted(per_id) == ids
    assert set(per_id.values()) == {1}
    assert {line["status"] for line in found} == {"done"}
    per_job: dict[str, list[int]] = {}
    for job_id, run in log.done:
        per_job.setdefault(job_id, []).append(run)
    assert sorted(per_job) == ids
    extra = 0
    for runs in per_job.values():
        assert len(set(runs)) == len(runs), runs  # never twice in one run
        assert all(r in killed_runs for r in runs[:-1]), runs  # earlier ones: cut by a kill
        extra += len(runs) - 1
    bound = concurrency * len(killed_runs)
    assert extra <= bound
    return Soak(kills=kills, runs=kills + 1, extra=extra, bound=bound, sigints=sigints)
