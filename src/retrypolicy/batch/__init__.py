"""Batch jobs: a client-side dedupe ledger and a resumable batch runner.

The EU GPT endpoint ignores ``Idempotency-Key``: a retried request is a new,
billed response. For batch jobs the spec's advice is to dedupe on your side with a
job id and to retry only documented retriable failures. This package does that:

- a **ledger** (:class:`SQLiteLedger` for one machine, :class:`RedisLedger` for many)
  records each job's state — pending, running under a lease, done with its result,
  failed with its kind — one atomic step per change;
- :meth:`Ledger.run_once` runs a function for a job id at most once to success;
- :func:`run_batch` (threads) and :func:`arun_batch` (asyncio) run thousands of jobs
  through a ledger with a live progress display, so a batch killed at any point is
  resumed by running it again: only pending, retryable-failed and abandoned jobs run.

It is part of the apply layer: it uses the policy core and the attempt loop, and
the core never imports it. ``redis`` is never imported: pass your own client.
"""

from __future__ import annotations

from ._ledger_redis import RedisLedger
from ._ledger_sqlite import SQLiteLedger
from ._model import (
    UNSERIALIZABLE_RESULT,
    FailureInfo,
    JobBusyError,
    JobFailedError,
    JobRecord,
    JobState,
    Ledger,
    LedgerCounts,
    LedgerError,
)
from ._progress import Progress
from ._runner import BatchReport, arun_batch, run_batch

__all__ = [
    "UNSERIALIZABLE_RESULT",
    "BatchReport",
    "FailureInfo",
    "JobBusyError",
    "JobFailedError",
    "JobRecord",
    "JobState",
    "Ledger",
    "LedgerCounts",
    "LedgerError",
    "Progress",
    "RedisLedger",
    "SQLiteLedger",
    "arun_batch",
    "run_batch",
]
