"""The transition rules, as pure functions: the reference both stores implement.

The SQLite ledger writes them as the ``WHERE`` clauses of its one-statement steps (and
re-checks :func:`can_claim` when a job changed between two of them); the Redis ledger's
Lua scripts mirror them line by line. One table of tests (tests/test_batch_ledger.py)
holds the functions and both stores to the same transitions."""

from __future__ import annotations

from ._model import JobRecord, JobState

__all__ = ["can_claim", "can_fail", "can_requeue"]


def can_claim(record: JobRecord | None, *, now: float, steal_from: str | None) -> bool:
    """Whether a claim at *now* takes the job.

    New or pending: yes. Failed: only with a retryable kind. Running: when the lease
    expired, or its owner is *steal_from* (a worker known to be dead). Done: never.
    """
    if record is None or record.state is JobState.PENDING:
        return True
    if record.state is JobState.FAILED:
        return record.failure is not None and record.failure.retryable
    if record.state is JobState.RUNNING:
        expired = record.lease_expires is None or record.lease_expires <= now
        return expired or (steal_from is not None and record.owner == steal_from)
    return False


def can_fail(record: JobRecord | None, *, owner: str) -> bool:
    """A failure is recorded only by the lease's holder (a taken-over worker's is dropped)."""
    return record is not None and record.state is JobState.RUNNING and record.owner == owner


def can_requeue(record: JobRecord | None, *, kinds: frozenset[str] | None = None) -> bool:
    """``batch requeue`` puts a job back to pending only when it failed (of one of *kinds*):
    a done job is never sent again, a running one is its worker's."""
    if record is None or record.state is not JobState.FAILED:
        return False
    return kinds is None or (record.failure is not None and record.failure.kind in kinds)
