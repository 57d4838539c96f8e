"""A worker process for the multi-process ledger tests (tests/test_batch_multiprocess.py).

``python -m tests.batch_worker LEDGER EXECUTIONS JOBS SEED``: runs JOBS jobs (ids
``job-00000``...) through ``run_batch`` on LEDGER (an SQLite path or a redis:// URL), in
an order shuffled by SEED, once it has been told to start (a line on stdin, after it
printed ``ready``). Each execution that succeeds appends its job id to the file
EXECUTIONS (one ``write`` with O_APPEND: lines from several processes never mix), then
returns; the test counts the lines per id.
"""

from __future__ import annotations

import os
import random
import sys

from retrypolicy.batch import RedisLedger, SQLiteLedger, run_batch
from retrypolicy.batch._ledger import LedgerBase


def main(argv: list[str]) -> int:
    ledger_spec, executions, count, seed = argv[0], argv[1], int(argv[2]), int(argv[3])
    ids = [f"job-{i:05d}" for i in range(count)]
    random.Random(seed).shuffle(ids)
    ledger: LedgerBase
    if ledger_spec.startswith("redis://"):
        import redis  # noqa: PLC0415

        ledger = RedisLedger(redis.Redis.from_url(ledger_spec), prefix="multi")
    else:
        ledger = SQLiteLedger(ledger_spec)
    fd = os.open(executions, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # ready, then wait for the word to start: every worker has imported and opened its
    # ledger before any claims a job, so a worker that started late still finds work
    print("ready", flush=True)
    sys.stdin.readline()

    def execute(job_id: str) -> str:
        os.write(fd, f"{job_id}\n".encode())
        return job_id

    with ledger:
        report = run_batch(
            [(i, i) for i in ids], execute, ledger=ledger, concurrency=4, progress=False
        )
    os.close(fd)
    print(f"{report.done} {report.earlier_done}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
