"""What a ledger stores about a job, and the errors :meth:`Ledger.run_once` raises.

A job moves through four states (the h11 way: named states, one table of
transitions, tested as a table)::

    pending ──claim──▶ running ──finish──▶ done      (result stored; final)
                 ▲        │  └───fail────▶ failed    (kind, code, attempts, error)
                 │        │                  │
                 └────────┴── lease expired, │ retryable kind: claimable again
                              or released ◀──┘ non-retryable kind: final

A ``running`` job carries a lease: its owner and the moment it expires. The owner
renews it while the job runs; a crashed owner stops renewing, and once the lease
has expired another worker takes the job over.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

import attrs

if TYPE_CHECKING:
    from .._policy import Policy

__all__ = [
    "UNSERIALIZABLE_RESULT",
    "FailureInfo",
    "JobBusyError",
    "JobFailedError",
    "JobRecord",
    "JobState",
    "Ledger",
    "LedgerCounts",
    "LedgerError",
    "check_job_id",
    "idempotency_key",
    "job_id_problem",
]

R = TypeVar("R")

UNSERIALIZABLE_RESULT: Final = "unserializable_result"
"""The failure kind of a job whose function succeeded but returned something that is not
JSON-serializable. It is final: the call was paid for, running it again would pay twice."""

MAX_JOB_ID: Final = 512
"""Job ids longer than this (characters) are refused."""


class JobState(enum.StrEnum):
    """Where a job is: ``pending`` → ``running`` → ``done`` or ``failed``."""

    PENDING = "pending"
    """Known to the ledger, never claimed (or released by an interrupted worker)."""
    RUNNING = "running"
    """Claimed by a worker whose lease has not expired (or has, and nobody took over yet)."""
    DONE = "done"
    """Finished with a result, stored as JSON. Final: never run again."""
    FAILED = "failed"
    """The policy gave up. Claimable again on a rerun only when the failure's kind is
    retryable by the policy (a 429 or 503 that lasted longer than the retries)."""


@attrs.frozen(kw_only=True)
class FailureInfo:
    """Why a job failed: the policy's class of the last failure, and how hard we tried.

    ``message`` is redacted (never an API key or a bearer token) and cut to 500
    characters. ``retryable`` is the policy's verdict on ``kind``: a rerun claims the
    job again only when it is true.
    """

    kind: str
    retryable: bool
    attempts: int = 1
    code: str | None = None
    status: int | None = None
    message: str = ""


@attrs.frozen(kw_only=True)
class JobRecord:
    """One job as the ledger has it.

    ``result`` is the stored JSON value of a ``done`` job (None otherwise);
    ``failure`` says why a ``failed`` job failed; ``owner`` and ``lease_expires`` (on
    the ledger's clock) describe the lease of a ``running`` job; ``runs`` counts the
    claims so far (a takeover after a crash counts).
    """

    job_id: str
    state: JobState
    owner: str | None = None
    lease_expires: float | None = None
    runs: int = 0
    result: Any = None
    failure: FailureInfo | None = None
    updated: float | None = None
    attempts: int = 0
    """Requests the run that finished the job sent (1 + its retries); 0 when unknown."""
    resent: int = 0
    """How many times the job was taken over from a run that never recorded an outcome
    (killed while it ran): each time, its request was sent again."""
    took_over: bool = False
    """In the record a claim returns: True when this claim took the job over from such a
    run (so the request it is about to send is a re-send)."""

    @property
    def final(self) -> bool:
        """True for ``done`` and for a failure whose kind the policy never retries."""
        if self.state is JobState.DONE:
            return True
        return self.state is JobState.FAILED and not (
            self.failure is not None and self.failure.retryable
        )

    def to_line(self) -> dict[str, Any]:
        """The job's line in a results file: ``id``, ``status``, ``attempts`` (the requests
        its last run sent, each one paid), then ``response`` or ``error``."""
        line: dict[str, Any] = {"id": self.job_id, "status": str(self.state)}
        if self.state is JobState.DONE:
            line["attempts"] = max(1, self.attempts)  # done: at least one request
            line["response"] = self.result
        elif self.failure is not None:
            f = self.failure
            line["attempts"] = f.attempts
            line["error"] = {
                "kind": f.kind,
                "code": f.code,
                "status": f.status,
                "attempts": f.attempts,
                "retryable": f.retryable,
                "message": f.message,
            }
        return line


@attrs.frozen(kw_only=True)
class LedgerCounts:
    """``batch status``: jobs per state, and failed jobs per failure kind."""

    states: Mapping[JobState, int]
    failed_kinds: Mapping[str, int]
    retryable_failed: int = 0
    """How many of the failed jobs a rerun would claim again."""
    requests: int = 0
    """Requests recorded as sent, over every run (each one paid): a job's attempts are
    added when its run records an outcome or gives the job back."""
    retries: int = 0
    """How many of those requests were retries (a job's attempts beyond its first)."""
    resent: int = 0
    """Jobs sent again because the run that sent them was killed before it could record
    the answer (a takeover of an abandoned lease)."""
    sent_jobs: int = 0
    """Jobs with at least one request recorded."""

    @property
    def total(self) -> int:
        """Every job the ledger knows."""
        return sum(self.states.values())


class LedgerError(RuntimeError):
    """A ledger refused an operation (a bad job id, a result it cannot store...)."""


class JobBusyError(LedgerError):
    """The job is running under another worker's live lease: it is not run twice.

    ``record`` is the job as the ledger has it (its ``owner`` and ``lease_expires``).
    """

    def __init__(self, record: JobRecord) -> None:
        super().__init__(
            f"job {record.job_id!r} is running under another worker's lease "
            f"(owner {record.owner!r}); it is not run twice: retry once that lease ends"
        )
        self.record = record


class JobFailedError(LedgerError):
    """The job already failed with a kind the policy never retries; it is not run again.

    ``record.failure`` holds the kind, code, attempts and (redacted) message.
    """

    def __init__(self, record: JobRecord) -> None:
        f = record.failure
        why = f"{f.kind}" + (f" ({f.code})" if f and f.code else "") if f else "unknown"
        super().__init__(
            f"job {record.job_id!r} already failed with {why}, which is not retried; "
            "fix the cause, then `retrypolicy batch requeue` (or Ledger.requeue) puts it "
            "back to pending"
        )
        self.record = record


def job_id_problem(job_id: object) -> str | None:
    """Why *job_id* is not a usable id, or None: a non-empty str of at most 512
    characters that UTF-8 can encode (no lone surrogate such as JSON's ``"\\ud800"``)."""
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID:
        return f"expected a non-empty str of at most {MAX_JOB_ID} characters"
    try:
        job_id.encode()
    except UnicodeEncodeError:
        return "expected text UTF-8 can encode (it holds a lone surrogate)"
    return None


def check_job_id(job_id: object) -> str:
    """*job_id* if it is a usable id (see :func:`job_id_problem`); LedgerError otherwise."""
    problem = job_id_problem(job_id)
    if problem is not None:
        shown = repr(job_id) if len(repr(job_id)) < 80 else repr(job_id)[:77] + "..."
        msg = f"job id {shown}: {problem}"
        raise LedgerError(msg)
    return job_id  # type: ignore[return-value]  # job_id_problem checked it is a str


_HEADER_SAFE: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - {"%"}


def idempotency_key(job_id: str) -> str:
    """The ``Idempotency-Key`` header value of *job_id*: header-safe and one-to-one.

    An id made only of visible ASCII characters other than ``%`` is sent as it is;
    any other id (a space, a newline, ``é``, ``日本``, a ``%``) is sent percent-encoded
    as UTF-8 (``urllib.parse.quote(job_id, safe="")``), which always holds a ``%``:
    two different ids never share a key.
    """
    if all(c in _HEADER_SAFE for c in job_id):
        return job_id
    return quote(job_id, safe="")


def dump_result(job_id: str, value: object) -> str:
    """*value* as the JSON text a ledger stores; TypeError naming the job otherwise."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        msg = (
            f"job {job_id!r}: its function returned a {type(value).__name__}, which is not "
            f"JSON-serializable ({e}); the ledger stores results as JSON, so return plain "
            "data (e.g. response.json()). The job is recorded as failed with kind "
            f"{UNSERIALIZABLE_RESULT!r} and is not run again: the call was already paid for"
        )
        raise TypeError(msg) from e


@runtime_checkable
class Ledger(Protocol):
    """What a job ledger does; :class:`SQLiteLedger` and :class:`RedisLedger` implement it.

    Every state change is one atomic step (a transaction, a Lua script), so workers in
    several threads, processes or machines can share one ledger.
    """

    owner: str
    """Who this ledger object claims jobs as: ``host/pid/random``."""
    lease: float
    """Seconds a claim lasts unless renewed; renewed every third of it while running."""
    policy: Policy
    """The policy :meth:`run_once` runs functions under."""

    def add(self, job_ids: Iterable[str]) -> int:
        """Register *job_ids* as pending (known ones are left as they are); how many were new."""

    def claim(self, job_id: str, *, steal_from: str | None = None) -> tuple[bool, JobRecord]:
        """Try to take the job: (True, record) when this owner now holds its lease.

        Claimable: a new or pending job, a failed job whose kind is retryable, a
        running job whose lease expired (or whose owner is *steal_from*, a worker
        known to be dead). Otherwise (False, the job's record).
        """

    def finish(self, job_id: str, result_json: str, attempts: int = 1) -> bool:
        """Mark the job done with *result_json*, sent *attempts* times (counted as
        requests); False if it was already done (kept as is)."""

    def fail(self, job_id: str, failure: FailureInfo) -> bool:
        """Mark the job failed, if this owner still holds it; False (no change) otherwise."""

    def release(self, job_id: str, attempts: int = 0) -> bool:
        """Give a held job back (pending) without a result: an interrupted worker's exit
        (*attempts*: the requests it sent, counted); False if this owner does not hold it."""

    def requeue(
        self, *, kinds: Iterable[str] | None = None, job_ids: Iterable[str] | None = None
    ) -> int:
        """Put failed jobs back to pending — those of *kinds* (any kind when None) among
        *job_ids* (every failed job when None); how many were. Done, pending and running
        jobs are left as they are: a done job is never sent again."""

    def renew(self) -> int:
        """Extend the lease of every job this owner holds; how many were renewed."""

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None for a job the ledger never saw."""

    def counts(self) -> LedgerCounts:
        """Jobs per state and failed jobs per kind."""

    def run_once(self, job_id: str, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run ``fn(*args, **kwargs)`` under the policy unless the job already ran."""

    def close(self) -> None:
        """Stop renewing leases and release the store's connection."""
