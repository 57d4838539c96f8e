"""Four processes on one ledger share 2,000 jobs: no job is executed to success twice.

Once on one SQLite file, once on one real Redis server (started by the test session),
and once through HTTP: two `retrypolicy batch run` processes on one ledger against the
fake API, counting what the server completed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from retrypolicy.testing import FakeEUGPT, RecordedRequest, Reply

from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
JOBS = 2000
WORKERS = 4


def run_workers(ledger: str, executions: Path) -> list[tuple[int, int]]:
    """Start the workers, let them go at once, wait for all; each one's (done by it, found
    done)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [
        subprocess.Popen(  # noqa: S603 - our own module
            [
                sys.executable,
                "-m",
                "tests.batch_worker",
                ledger,
                str(executions),
                str(JOBS),
                str(i),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    # a start barrier: on a loaded machine one worker could otherwise do every job before
    # another has even imported the library, and "the work was shared" would not hold
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stderr is not None
        line = proc.stdout.readline()
        assert line == "ready\n", (line, proc.wait(timeout=120), proc.stderr.read())
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        done, earlier = out.split()
        reports.append((int(done), int(earlier)))
    return reports


def check(executions: Path, reports: list[tuple[int, int]]) -> None:
    counts = Counter(executions.read_text().split())
    assert len(counts) == JOBS
    assert [job for job, n in counts.items() if n > 1] == []
    assert sum(done for done, _ in reports) == JOBS  # each job done by exactly one worker
    assert all(done + earlier == JOBS for done, earlier in reports)  # each saw every job end
    assert sum(1 for done, _ in reports if done > 0) >= 2  # the work really was shared


def test_four_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    """4 processes x 2,000 jobs on one SQLite ledger: every job executed exactly once."""
    executions = tmp_path / "executions.txt"
    check(executions, run_workers(str(tmp_path / "jobs.db"), executions))


def test_four_processes_on_one_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    """4 processes x 2,000 jobs on one Redis ledger: every job executed exactly once."""
    import redis  # noqa: PLC0415

    redis.Redis.from_url(redis_server.url).flushdb()
    executions = tmp_path / "executions.txt"
    check(executions, run_workers(redis_server.url, executions))


def test_two_cli_processes_share_a_ledger_through_http(tmp_path: Path) -> None:
    """Two `batch run` processes on one ledger (own results files) against one fake API:
    the server completes each job exactly once, and each results file has every job."""
    n = 200
    ids = [f"j{i:04d}" for i in range(n)]
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": i, "input": i, "stream": False}) + "\n" for i in ids)
    )
    completed: Counter[str] = Counter()

    def log(request: RecordedRequest, status: int | None, outcome: str) -> None:
        if status == 200 and outcome == "sent":
            completed[request.headers["idempotency-key"]] += 1

    env = {**os.environ, "EUGPT_API_KEY": "eugpt_multi_0000000000", "PYTHONDONTWRITEBYTECODE": "1"}
    with FakeEUGPT(default=Reply.ok(delay=0.002), on_request=log) as server:
        procs = [
            subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "retrypolicy",
                    "batch",
                    "run",
                    str(tmp_path / "in.jsonl"),
                    "--ledger",
                    str(tmp_path / "jobs.db"),
                    "--out",
                    str(tmp_path / f"out{k}.jsonl"),
                    "--base-url",
                    server.url,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(completed) == ids
    assert set(completed.values()) == {1}
    for k in range(2):
        lines = (tmp_path / f"out{k}.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["id"] for line in lines) == ids
