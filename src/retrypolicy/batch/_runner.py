"""``run_batch`` and ``arun_batch``: many jobs, a few workers, one ledger.

Each job goes through the ledger: claimed (or found done, or held elsewhere), run
under the policy, its result or failure recorded, then reported. So a batch can be
killed at any moment and run again: what is done stays done, and only pending,
retryable-failed and abandoned jobs run.

The two shells share one :class:`_Batch` (what to do with each claim and each
outcome) and differ only in the lines that do I/O — threads and ``fn()`` here,
tasks and ``await fn()`` there, where the ledger's steps run in a worker thread
(:func:`asyncio.to_thread`) so a store round trip never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeVar

import attrs

from .._shell import NEVER_RETRIED, Retrier
from ._ledger import (
    _CURRENT,
    JobRun,
    claim_job,
    job_retry_hook,
    record_of,
    run_claimed,
    settle_error,
    settle_value,
)
from ._model import JobRecord, JobState, LedgerError, check_job_id
from ._progress import Progress, make_progress

if TYPE_CHECKING:
    from .._policy import Policy
    from ..typing import Clock
    from ._model import Ledger

__all__ = ["BatchReport", "arun_batch", "run_batch"]

P = TypeVar("P")

_MAX_POLL: Final = 2.0
_MIN_POLL: Final = 0.02


@attrs.frozen(kw_only=True)
class BatchReport:
    """What a batch run did.

    ``done`` and ``failed`` count the jobs run to an outcome in this run;
    ``earlier_done`` and ``earlier_failed`` the jobs found finished in the ledger (in an
    earlier run, or by another worker), which were not run; ``failed_kinds`` counts this
    run's failures by kind; ``retryable_failed`` how many of them a rerun would try again.
    """

    total: int
    done: int = 0
    failed: int = 0
    earlier_done: int = 0
    earlier_failed: int = 0
    retryable_failed: int = 0
    failed_kinds: Mapping[str, int] = attrs.field(factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every job is done."""
        return self.done + self.earlier_done == self.total


def _items(jobs: Mapping[str, P] | Iterable[tuple[str, P]]) -> list[tuple[str, P]]:
    pairs = list(jobs.items()) if isinstance(jobs, Mapping) else list(jobs)
    seen: set[str] = set()
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            msg = f"jobs: expected (job_id, payload) pairs or a mapping, got {pair!r:.80}"
            raise LedgerError(msg)
        job_id = check_job_id(pair[0])
        if job_id in seen:
            msg = f"jobs: job id {job_id!r} appears twice; each job needs its own id"
            raise LedgerError(msg)
        seen.add(job_id)
    return pairs


class _Batch:
    """What both shells share: the tally, the progress, and the report of each job."""

    def __init__(  # noqa: PLR0917 - private, called from two places
        self,
        ledger: Ledger,
        policy: Policy,
        fn: Callable[..., Any],
        total: int,
        progress: Progress,
        on_finish: Callable[[JobRecord], None] | None,
        clock: Clock,
    ) -> None:
        self.ledger = ledger
        self.progress = progress
        self.on_finish = on_finish
        self.lock = threading.Lock()
        self.clock = clock
        self.started = clock()
        self.total = total
        self.done = self.failed = self.earlier_done = self.earlier_failed = self.retryable = 0
        self.kinds: dict[str, int] = {}
        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        # one Retrier for every job: its hook finds the running job in a context variable
        self.retrier = Retrier(policy=policy, name=name, on_retry=job_retry_hook)
        self.cap = min(max(ledger.lease / 10, _MIN_POLL), _MAX_POLL)
        self.poll = _MIN_POLL

    def next_poll(self) -> float:
        """How long to wait before the next round over jobs held elsewhere: 20 ms at first
        (the other worker is usually about to finish), doubling up to a tenth of the lease
        (2 s at most), since a crashed worker's lease needs that long to run out anyway."""
        poll = self.poll
        self.poll = min(poll * 2, self.cap)
        return poll

    def job(self, job_id: str) -> tuple[JobRun, Retrier]:
        return JobRun(job_id, on_retry=self.progress.retry), self.retrier

    def found(self, record: JobRecord) -> bool:
        """A claim that did not take the job: report it; False if it is held elsewhere."""
        if record.state is JobState.RUNNING:
            return False
        with self.lock:
            if record.state is JobState.DONE:
                self.earlier_done += 1
            else:
                self.earlier_failed += 1
            self._report(record)
        self.progress.finish(record.job_id, failed=False, earlier=True)
        return True

    def ended(self, record: JobRecord) -> bool:
        """A job this worker ran has *record* now; False if another worker holds it (our
        lease was lost while it ran, and the failure we saw was not recorded)."""
        if record.state is JobState.RUNNING:
            return False
        failed = record.state is not JobState.DONE
        with self.lock:
            if record.failure is not None and failed:
                self.failed += 1
                self.retryable += record.failure.retryable
                kind = record.failure.kind
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
            else:
                self.done += 1
            self._report(record)
        self.progress.finish(record.job_id, failed=failed, earlier=False)
        return True

    def _report(self, record: JobRecord) -> None:
        if self.on_finish is not None:
            self.on_finish(record)

    def report(self) -> BatchReport:
        return BatchReport(
            total=self.total,
            done=self.done,
            failed=self.failed,
            earlier_done=self.earlier_done,
            earlier_failed=self.earlier_failed,
            retryable_failed=self.retryable,
            failed_kinds=dict(self.kinds),
            elapsed=self.clock() - self.started,
        )


def run_batch(
    jobs: Mapping[str, P] | Iterable[tuple[str, P]],
    fn: Callable[[P], Any],
    *,
    ledger: Ledger,
    policy: Policy | None = None,
    concurrency: int = 8,
    progress: bool | TextIO | Progress | None = None,
    on_finish: Callable[[JobRecord], None] | None = None,
    clock: Clock = time.monotonic,
) -> BatchReport:
    """Run ``fn(payload)`` for every ``(job_id, payload)`` of *jobs* at most once to success.

    *concurrency* threads share the jobs. Each job is claimed in *ledger* first: a job
    done in an earlier run is not run (its stored result is reported), a job running
    under another worker's live lease is left to it and waited for, an abandoned one
    (expired lease, or a dead process on this machine) is taken over. ``fn`` runs under
    *policy* (default: the ledger's) exactly as ``@rp.retry`` runs it — so retries,
    ``Retry-After`` and any storm protection of the policy apply — and its result
    (JSON-serializable) or its failure is recorded. *on_finish* receives the record of
    every job that reached an outcome (done or failed, now or earlier), one call at a
    time. *progress*: see :func:`make_progress`; None draws a bar on a terminal.

    Ctrl-C stops handing out jobs, lets the running ones end, and re-raises
    :class:`KeyboardInterrupt`; a job cut short is given back to the ledger.
    """
    pairs = _items(jobs)
    _check_concurrency(concurrency)
    ledger.add(job_id for job_id, _ in pairs)
    shown = make_progress(len(pairs), progress, clock=clock)
    batch = _Batch(ledger, policy or ledger.policy, fn, len(pairs), shown, on_finish, clock)
    queue: Iterator[tuple[str, P]] = iter(pairs)
    take = threading.Lock()
    stop = threading.Event()
    waiting: list[tuple[str, P]] = []
    """Jobs held by another worker's live lease: tried again in the next round."""
    errors: list[BaseException] = []

    def one(job_id: str, payload: P) -> bool:
        claimed, record = claim_job(ledger, job_id)
        if not claimed:
            return batch.found(record)
        _keep_renewing(ledger)
        run, retrier = batch.job(job_id)
        settled = run_claimed(ledger, job_id, retrier, fn, (payload,), {}, run)
        _, stored = record_of(ledger, job_id, settled, record.runs)
        return batch.ended(stored)

    def worker() -> None:
        try:
            while not stop.is_set():
                with take:
                    item = next(queue, None)
                if item is None:
                    return
                if not one(*item):
                    with take:
                        waiting.append(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()

    shown.start()
    try:
        while True:
            _run_threads(worker, concurrency, stop)
            if not waiting or stop.is_set():
                break
            # jobs other workers hold: a round later they are done, or taken over (their
            # lease expired, or their process died): a timed wait, not a sleep
            stop.wait(batch.next_poll())
            queue = iter(list(waiting))
            waiting.clear()
    finally:
        shown.stop()
    if errors:
        raise errors[0]
    return batch.report()


def _run_threads(worker: Callable[[], None], concurrency: int, stop: threading.Event) -> None:
    threads = [
        threading.Thread(target=worker, name=f"batch-worker-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.25)  # a timed join: Ctrl-C reaches the main thread
    except KeyboardInterrupt:
        stop.set()  # no new jobs; the running ones end (a second Ctrl-C leaves at once)
        for t in threads:
            t.join()
        raise


def _check_concurrency(concurrency: int) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        msg = f"concurrency: expected a whole number >= 1, got {concurrency!r}"
        raise ValueError(msg)


def _keep_renewing(ledger: Ledger) -> None:
    start = getattr(ledger, "_start_renewing", None)
    if start is not None:
        start()


async def arun_batch(
    jobs: Mapping[str, P] | Iterable[tuple[str, P]],
    fn: Callable[[P], Awaitable[Any]],
    *,
    ledger: Ledger,
    policy: Policy | None = None,
    concurrency: int = 8,
    progress: bool | TextIO | Progress | None = None,
    on_finish: Callable[[JobRecord], None] | None = None,
    clock: Clock = time.monotonic,
) -> BatchReport:
    """:func:`run_batch` for a coroutine function: *concurrency* tasks on the running loop.

    The ledger's steps run in a worker thread, so a store round trip never blocks the
    loop; cancelling the call gives the job being run back to the ledger.
    """
    pairs = _items(jobs)
    _check_concurrency(concurrency)
    await asyncio.to_thread(ledger.add, [job_id for job_id, _ in pairs])
    shown = make_progress(len(pairs), progress, clock=clock)
    batch = _Batch(ledger, policy or ledger.policy, fn, len(pairs), shown, on_finish, clock)
    waiting: list[tuple[str, P]] = []

    async def one(job_id: str, payload: P) -> bool:
        claimed, record = await asyncio.to_thread(claim_job, ledger, job_id)
        if not claimed:
            return batch.found(record)
        _keep_renewing(ledger)
        run, retrier = batch.job(job_id)
        token = _CURRENT.set(run)
        try:
            value = await retrier.acall(fn, None, (payload,), {})
        except NEVER_RETRIED:
            await asyncio.shield(asyncio.to_thread(ledger.release, job_id))
            raise
        except BaseException as exc:  # noqa: BLE001 - recorded, then reported
            settled = settle_error(retrier, exc, run)
        else:
            settled = settle_value(job_id, retrier, value, run)
        finally:
            _CURRENT.reset(token)
        _, stored = await asyncio.to_thread(record_of, ledger, job_id, settled, record.runs)
        return batch.ended(stored)

    async def worker(queue: Iterator[tuple[str, P]]) -> None:
        for item in queue:  # one iterator shared by the tasks: each item is taken once
            if not await one(*item):
                waiting.append(item)

    shown.start()
    queue: Iterator[tuple[str, P]] = iter(pairs)
    never = asyncio.Event()
    try:
        while True:
            async with asyncio.TaskGroup() as group:
                for _ in range(concurrency):
                    group.create_task(worker(queue))
            if not waiting:
                break
            with contextlib.suppress(TimeoutError):  # jobs held elsewhere: a timed wait
                await asyncio.wait_for(never.wait(), batch.next_poll())
            queue = iter(list(waiting))
            waiting.clear()
    finally:
        shown.stop()
    return batch.report()
