"""What both ledgers share: owner identity, lease renewal, and :meth:`run_once`.

A store (SQLite, Redis) only implements the atomic steps — ``claim``, ``finish``,
``fail``, ``release``, ``renew`` — with the transition rules of :mod:`._states`.
Running a job (claim, call the function under the policy, record what came of it)
is written once, here, for the sync runner, the async runner and ``run_once``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from .._errors import APIError
from .._redact import error_text, redact
from .._rules import Kind
from .._shell import MAX_ERROR_TEXT, NEVER_RETRIED, Ending, Retrier
from ..instrumentation._hooks import internal_log
from ._model import (
    UNSERIALIZABLE_RESULT,
    FailureInfo,
    JobBusyError,
    JobFailedError,
    JobRecord,
    JobState,
    Ledger,
    check_job_id,
    dump_result,
)

if TYPE_CHECKING:
    from .._events import RetryEvent
    from .._policy import Policy
    from ..typing import Clock

__all__ = [
    "JobRun",
    "LedgerBase",
    "Settled",
    "chunks",
    "claim_job",
    "job_retry_hook",
    "new_owner",
    "owner_is_dead",
    "settle",
]

R = TypeVar("R")

_CHUNK: Final = 500
"""Ids per statement or script: under SQLite's limit of bound parameters."""


def chunks(ids: list[str]) -> Iterator[list[str]]:
    """*ids* in slices of at most :data:`_CHUNK`, one statement or script each."""
    return (ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK))


def _machine() -> str:
    """This host's name, and on Linux its pid namespace: two containers that share a
    hostname and a ledger file never mistake each other's live processes for dead ones."""
    try:
        namespace = f"#{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        namespace = ""
    return socket.gethostname().replace("/", "_") + namespace


_HOST: Final = _machine()


def new_owner() -> str:
    """``host/pid/random``: unique per ledger object; host and pid let a worker on the
    same machine see that a lease's owner died (see :func:`owner_is_dead`)."""
    return f"{_HOST}/{os.getpid()}/{os.urandom(4).hex()}"


def owner_is_dead(owner: str) -> bool:
    """True when *owner* was a process on this machine that no longer exists.

    Its lease is then taken over at once instead of when it expires: a worker killed
    with SIGKILL does not make the rerun wait a whole lease. Only ever True for a
    certainly dead process (a reused pid looks alive: we then wait for the lease).
    """
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, someone else's
        return False
    return False


def claim_job(ledger: Ledger, job_id: str) -> tuple[bool, JobRecord]:
    """:meth:`Ledger.claim`, taking over at once from an owner known to be dead."""
    claimed, record = ledger.claim(job_id)
    if (
        not claimed
        and record.state is JobState.RUNNING
        and record.owner is not None
        and owner_is_dead(record.owner)
    ):
        claimed, record = ledger.claim(job_id, steal_from=record.owner)
    return claimed, record


# -- one job's run ------------------------------------------------------------------------


@attrs.define
class JobRun:
    """The retries of one running job, seen by the hooks of every retry layer it uses."""

    job_id: str
    on_retry: Callable[[str], None] | None = None
    retries: int = 0

    def retried(self, event: RetryEvent) -> None:
        del event
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry(self.job_id)


_CURRENT: contextvars.ContextVar[JobRun | None] = contextvars.ContextVar(
    "retrypolicy_batch_job", default=None
)


def job_retry_hook(event: RetryEvent) -> None:
    """An ``on_retry`` hook for an adapter used inside a batch job: counts its retries
    towards the job's attempts and shows them in the progress (a no-op outside a job)."""
    run = _CURRENT.get()
    if run is not None:
        run.retried(event)


@attrs.frozen
class Settled:
    """What came of a claimed job: a result to store, or a failure to record."""

    value: Any
    result_json: str | None = None
    failure: FailureInfo | None = None
    error: BaseException | None = None
    """The exception to re-raise (run_once), when the job failed by raising."""
    attempts: int = 1
    """Requests the run sent (1 + its retries at every layer)."""


def _message(text: str) -> str:
    return redact(text)[:MAX_ERROR_TEXT]


def settle(job_id: str, retrier: Retrier, ending: Ending, run: JobRun) -> Settled:
    """What the job's machine decided, to record: its result, or its last failure as the
    machine classified it when it gave up (nothing is classified again here)."""
    attempts = max(1 + run.retries, ending.attempts)
    error = ending.error
    if error is None and ending.outcome is None:
        try:
            return Settled(
                ending.value, result_json=dump_result(job_id, ending.value), attempts=attempts
            )
        except TypeError as e:
            failure = FailureInfo(
                kind=UNSERIALIZABLE_RESULT,
                retryable=False,
                attempts=attempts,
                message=_message(str(e)),
            )
            return Settled(ending.value, failure=failure, error=e, attempts=attempts)
    outcome, decision = ending.outcome, ending.decision
    if decision is not None and outcome is not None:
        c = decision.classification
        status, code = outcome.status, outcome.code
    else:  # raised outside an attempt (an open circuit): classify what reached us
        assert error is not None  # noqa: S101 - no outcome, so the call raised
        c = retrier.policy.classify(exception=error)
        status, code = getattr(error, "status", None), getattr(error, "code", None)
    if isinstance(error, APIError):
        attempts = max(attempts, error.attempts)
    kind = str(c.kind) if c.kind != Kind.SUCCESS else str(Kind.UNKNOWN)
    if error is not None:
        message = error_text(error, MAX_ERROR_TEXT)  # never raises, even for a broken str()
    else:
        info = outcome.error if outcome is not None else None
        message = f"HTTP {status}" + (f": {info.message}" if info else "")
    failure = FailureInfo(
        kind=kind,
        retryable=c.retryable and kind != Kind.UNKNOWN,
        attempts=attempts,
        code=code if isinstance(code, str) else None,
        status=status if isinstance(status, int) else None,
        message=_message(message),
    )
    return Settled(ending.value, failure=failure, error=error, attempts=attempts)


def record_of(ledger: Ledger, job_id: str, settled: Settled, runs: int) -> tuple[bool, JobRecord]:
    """Store *settled* in *ledger*; (whether it changed the ledger, the job's new record)."""
    failure = settled.failure
    if failure is None:
        assert settled.result_json is not None  # noqa: S101 - a Settled holds a result or a failure
        changed = ledger.finish(job_id, settled.result_json, settled.attempts)
    else:
        changed = ledger.fail(job_id, failure)
    record = JobRecord(
        job_id=job_id,
        state=JobState.DONE if failure is None else JobState.FAILED,
        result=settled.value if failure is None else None,
        failure=failure,
        runs=runs,
        attempts=settled.attempts,  # settle() gives a failure the same attempts
    )
    # unchanged: our lease was lost and the job is another worker's, or done elsewhere
    # (the first result stays): the stored record says so
    if not changed and (stored := ledger.get(job_id)) is not None:
        return False, stored
    return changed, record


def run_claimed(  # noqa: PLR0917 - the pieces of one call, as Retrier.call takes them
    ledger: Ledger,
    job_id: str,
    retrier: Retrier,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    run: JobRun,
) -> Settled:
    """Call *fn* under *retrier* for a job this worker holds; release it if interrupted."""
    token = _CURRENT.set(run)
    try:
        ending = retrier.finish(fn, args, kwargs)
    except NEVER_RETRIED:
        with contextlib.suppress(Exception):  # the interrupt matters more than the release
            ledger.release(job_id, 1 + run.retries)
        raise
    finally:
        _CURRENT.reset(token)
    return settle(job_id, retrier, ending, run)


def job_retrier(
    policy: Policy, fn: Callable[..., Any], on_retry: Callable[[RetryEvent], None]
) -> Retrier:
    """The Retrier jobs run *fn* under: the policy, and *on_retry* to count their retries."""
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return Retrier(policy=policy, name=name, on_retry=on_retry)


# -- the base class -----------------------------------------------------------------------


class LedgerBase(Ledger):
    """Owner, lease renewal and :meth:`run_once`; subclasses implement the atomic steps of
    :class:`Ledger`."""

    _clock: Clock | None

    def _init_base(self, *, policy: Policy | None, lease: float, clock: Clock | None) -> None:
        from .._defaults import default_policy  # noqa: PLC0415 - reads the environment

        if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
            msg = f"lease: expected a number of seconds > 0, got {lease!r}"
            raise ValueError(msg)
        self.owner = new_owner()
        self.lease = float(lease)
        self.policy = policy if policy is not None else default_policy()
        self._clock = clock
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self._renewer_lock = threading.Lock()

    # lease renewal: one thread per ledger object renews every job it holds at once
    def _start_renewing(self) -> None:
        if self._renewer is not None or self._stop.is_set():
            return
        with self._renewer_lock:
            if self._renewer is None:
                thread = threading.Thread(
                    target=self._renew_loop, name=f"lease-renewer:{self.owner}", daemon=True
                )
                thread.start()
                self._renewer = thread

    def _renew_loop(self) -> None:
        every = self.lease / 3
        while not self._stop.wait(every):  # a timed wait, not a sleep: close() ends it at once
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - a store hiccup: try again next round
                internal_log.exception(
                    "batch.lease_renew_failed", owner=self.owner, error=error_text(exc, 500)
                )

    def close(self) -> None:
        """Stop renewing leases; idempotent. (A client you passed is yours to close.)"""
        self._stop.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run_once(self, job_id: str, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Run ``fn(*args, **kwargs)`` for *job_id* at most once to success, under the policy.

        - a ``done`` job returns its stored result (parsed from JSON) without calling *fn*;
        - a job running under another worker's live lease raises :class:`JobBusyError`;
        - a job that failed with a kind the policy never retries raises
          :class:`JobFailedError` (a retryable failure is claimed and run again);
        - otherwise the job is claimed (taking over an expired lease), *fn* runs with the
          policy's retries, and its result is stored (it must be JSON-serializable: if
          not, :class:`TypeError` names the job, which is recorded as failed, kind
          ``unserializable_result``, never run again) — or, when the policy gives up, the
          failure is recorded (kind, code, attempts, redacted message) and *fn*'s last
          exception re-raised unchanged (a failed response it returned is returned).
        """
        check_job_id(job_id)
        claimed, record = claim_job(self, job_id)
        if not claimed:
            if record.state is JobState.DONE:
                return record.result  # type: ignore[no-any-return]
            if record.state is JobState.RUNNING:
                raise JobBusyError(record)
            raise JobFailedError(record)
        self._start_renewing()
        run = JobRun(job_id)
        retrier = job_retrier(self.policy, fn, run.retried)
        settled = run_claimed(self, job_id, retrier, fn, args, kwargs, run)
        record_of(self, job_id, settled, record.runs)
        if settled.error is not None:
            raise settled.error
        return settled.value  # type: ignore[no-any-return]
