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
import queue as queues
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeVar

import attrs

from .._shell import NEVER_RETRIED
from ._ledger import (
    _CURRENT,
    JobRun,
    claim_job,
    job_retrier,
    job_retry_hook,
    record_of,
    run_claimed,
    settle,
)
from ._model import FailureInfo, JobRecord, JobState, LedgerError, check_job_id
from ._progress import Progress, make_progress
from ._setup import PROBE, may_show_setup, setup_error

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

    The cost of this run: ``requests`` sent (each one paid) for ``sent_jobs`` jobs, of
    which ``retries`` were retries; ``resent`` jobs were sent again because the run that
    sent them before was killed before it could record the answer.

    ``stopped`` is the failure of a setup error (see :mod:`._setup`: a 401, or the first
    few jobs all failing with one kind and none succeeding) that stopped the run; the
    ``requeued`` jobs that got it are pending again, not failed.
    """

    total: int
    done: int = 0
    failed: int = 0
    earlier_done: int = 0
    earlier_failed: int = 0
    retryable_failed: int = 0
    failed_kinds: Mapping[str, int] = attrs.field(factory=dict)
    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0
    sent_jobs: int = 0
    resent: int = 0
    stopped: FailureInfo | None = None
    requeued: int = 0

    @property
    def ok(self) -> bool:
        """True when every job is done."""
        return self.done + self.earlier_done == self.total


def _items(
    jobs: Mapping[str, P] | Iterable[tuple[str, P]], concurrency: int
) -> list[tuple[str, P]]:
    """The (job_id, payload) pairs of *jobs*, checked, and *concurrency* checked."""
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
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        msg = f"concurrency: expected a whole number >= 1, got {concurrency!r}"
        raise ValueError(msg)
    return pairs


class _Batch:
    """What both shells share: the tally, the progress, the report of each job, and the
    watch for setup errors (the failures held back until a success says they are the
    jobs' own, or a setup error says they are the batch's)."""

    def __init__(  # noqa: PLR0917 - private, called from two places
        self,
        ledger: Ledger,
        policy: Policy | None,
        fn: Callable[..., Any],
        total: int,
        progress: bool | TextIO | Progress | None,
        on_finish: Callable[[JobRecord], None] | None,
        clock: Clock,
        notify: Callable[[], None],
        stop_on_setup_error: bool = True,
    ) -> None:
        self.ledger = ledger
        self.progress = make_progress(total, progress, clock=clock)
        self.on_finish = on_finish
        self.lock = threading.Lock()
        self.clock = clock
        self.started = clock()
        self.total = total
        self.done = self.failed = self.earlier_done = self.earlier_failed = 0
        self.retryable_failed = 0
        self.failed_kinds: dict[str, int] = {}
        self.requests = self.retries = self.sent_jobs = self.resent = self.requeued = 0
        self.watch = stop_on_setup_error
        self.held: list[JobRecord] = []
        """Failures of a setup kind while no job of this run succeeded: not reported yet."""
        self.held_kinds: dict[str, int] = {}
        self.stopped: FailureInfo | None = None
        self.stop = threading.Event()
        """Set when no more jobs are to be handed out (a setup error, an interrupt)."""
        self.notify = notify
        """Wakes the workers waiting in :meth:`may_start` (a job ended, or the run stops)."""
        self.started_jobs = 0
        """Jobs taken by a worker and not ended yet (claimed or about to be)."""
        self.running: set[str] = set()
        """Jobs claimed by this run and not ended yet."""
        # one Retrier for every job: its hook finds the running job in a context variable
        self.retrier = job_retrier(policy or ledger.policy, fn, job_retry_hook)
        self.cap = min(max(ledger.lease / 10, _MIN_POLL), _MAX_POLL)
        self.poll = _MIN_POLL

    def may_start(self) -> bool:
        """Whether a worker may take one more job now (then counted in :attr:`started_jobs`).

        While a setup error can still stop the run (no job of it succeeded yet), the jobs
        started and those held back with one setup kind stay under :data:`PROBE`: a wrong
        key, URL or model costs at most PROBE requests, not one per worker. After the
        first success (or without the watch) every worker takes jobs."""
        with self.lock:
            held = max(self.held_kinds.values(), default=0)
            if (
                self.stop.is_set()
                or self.done
                or not self.watch
                or self.started_jobs == 0
                or self.started_jobs + held < PROBE
            ):
                self.started_jobs += 1
                return True
            return False

    def left(self) -> None:
        """A job taken after :meth:`may_start` is over (ended, found finished or held
        elsewhere, or it raised): the workers waiting to start one look again."""
        with self.lock:
            self.started_jobs -= 1
        self.notify()

    def halt(self) -> None:
        """No more jobs are handed out; the workers waiting to start one leave."""
        self.stop.set()
        self.notify()

    def next_poll(self) -> float:
        """How long to wait before the next round over jobs held elsewhere: 20 ms at first
        (the other worker is usually about to finish), doubling up to a tenth of the lease
        (2 s at most), since a crashed worker's lease needs that long to run out anyway."""
        poll = self.poll
        self.poll = min(poll * 2, self.cap)
        return poll

    def job(self, job_id: str, claim: JobRecord) -> JobRun:
        """A claimed job starts: counted as running (and as re-sent after a takeover), its
        lease renewed while it runs."""
        start_renewing = getattr(self.ledger, "_start_renewing", None)  # LedgerBase's
        if start_renewing is not None:
            start_renewing()
        with self.lock:
            self.running.add(job_id)
            self.resent += claim.took_over
        return JobRun(job_id, on_retry=self.progress.retry)

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
        failed = record.state is not JobState.DONE
        flushed: list[JobRecord] = []
        with self.lock:
            self.running.discard(record.job_id)
            if record.state is JobState.RUNNING:
                return False
            attempts = record.failure.attempts if record.failure is not None else record.attempts
            self.requests += attempts
            self.retries += max(attempts - 1, 0)
            self.sent_jobs += 1
            if record.failure is not None and failed:
                if self._hold(record, record.failure):
                    return True
                self._failed(record)
            else:
                self.done += 1
                self._report(record)
                if self.held and self.stopped is None:  # a success: they are the jobs' own
                    flushed, self.held = self.held, []
                    for held in flushed:
                        self._failed(held)
        for held in flushed:
            self.progress.finish(held.job_id, failed=True, earlier=False)
        self.progress.finish(record.job_id, failed=failed, earlier=False)
        return True

    def _hold(self, record: JobRecord, failure: FailureInfo) -> bool:
        """Hold back a failure that may be the batch's, not the job's; stop the batch when
        it shows a setup error. (Under the lock.)"""
        if (
            not self.watch
            or self.done
            or not may_show_setup(failure.kind, retryable=failure.retryable)
        ):
            return False  # the job's own failure: recorded, and it holds no worker back
        self.held.append(record)
        self.held_kinds[failure.kind] = self.held_kinds.get(failure.kind, 0) + 1
        if self.stopped is None and setup_error(
            failure.kind, retryable=failure.retryable, succeeded=0, failed=self.held_kinds
        ):
            self.stopped = failure
            self.stop.set()  # the caller's left() wakes the waiting workers
        return True

    def _failed(self, record: JobRecord) -> None:
        failure = record.failure
        assert failure is not None  # noqa: S101 - a failed record has its failure
        self.failed += 1
        self.retryable_failed += failure.retryable
        self.failed_kinds[failure.kind] = self.failed_kinds.get(failure.kind, 0) + 1
        self._report(record)

    def held_ids(self) -> list[str]:
        """The ids of the failures held back so far."""
        with self.lock:
            return [record.job_id for record in self.held]

    def settle_held(self) -> list[str]:
        """The run is over: the held failures' ids to put back to pending (a setup error
        stopped it), or none (they are reported now as the jobs' own failures)."""
        with self.lock:
            held, self.held = self.held, []
            if self.stopped is not None:
                return [r.job_id for r in held]
            for record in held:
                self._failed(record)
        for record in held:
            self.progress.finish(record.job_id, failed=True, earlier=False)
        return []

    def _report(self, record: JobRecord) -> None:
        if self.on_finish is not None:
            self.on_finish(record)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def report(self) -> BatchReport:
        """The report: each field is this object's attribute of the same name."""
        values = {field.name: getattr(self, field.name) for field in attrs.fields(BatchReport)}
        return BatchReport(**{**values, "failed_kinds": dict(self.failed_kinds)})


def run_batch(  # noqa: PLR0915 - one shell, read top to bottom
    jobs: Mapping[str, P] | Iterable[tuple[str, P]],
    fn: Callable[[P], Any],
    *,
    ledger: Ledger,
    policy: Policy | None = None,
    concurrency: int = 8,
    progress: bool | TextIO | Progress | None = None,
    on_finish: Callable[[JobRecord], None] | None = None,
    clock: Clock = time.monotonic,
    stop_on_setup_error: bool = True,
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

    *stop_on_setup_error*: a 401, or the first few jobs failing with one client-error
    kind before any succeeded (a wrong URL, model or plan), stops handing out jobs; the
    jobs that got it are put back to pending, and the report's ``stopped`` says why.
    Until a job of the run succeeds, at most :data:`._setup.PROBE` jobs are in flight,
    so such a mistake costs a few calls, not one per worker.

    Ctrl-C (a :class:`KeyboardInterrupt` in the calling thread) stops handing out jobs,
    lets the running ones end, and re-raises it; a second one gives the running jobs back
    to the ledger (pending) at once. Either way no job is left ``running``.
    """
    pairs = _items(jobs, concurrency)
    ledger.add(job_id for job_id, _ in pairs)
    changed = threading.Condition()

    def notify() -> None:
        with changed:
            changed.notify_all()

    batch = _Batch(
        ledger, policy, fn, len(pairs), progress, on_finish, clock, notify, stop_on_setup_error
    )
    queue: Iterator[tuple[str, P]] = iter(pairs)
    take = threading.Lock()
    stop = batch.stop
    waiting: list[tuple[str, P]] = []
    """Jobs held by another worker's live lease: tried again in the next round."""
    errors: list[BaseException] = []

    def one(job_id: str, payload: P) -> bool:
        claimed, record = claim_job(ledger, job_id)
        if not claimed:
            return batch.found(record)
        run = batch.job(job_id, record)
        settled = run_claimed(ledger, job_id, batch.retrier, fn, (payload,), {}, run)
        _, stored = record_of(ledger, job_id, settled, record.runs)
        return batch.ended(stored)

    def worker() -> None:
        try:
            while not stop.is_set():
                with changed:  # a setup error may still stop the run: a few jobs at a time
                    changed.wait_for(batch.may_start)
                try:
                    if stop.is_set():
                        return
                    with take:
                        item = next(queue, None)
                    if item is None:
                        return
                    if not one(*item):
                        with take:
                            waiting.append(item)
                finally:
                    batch.left()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            batch.halt()

    def give_back() -> None:  # a second Ctrl-C: the running jobs go back to pending now
        with batch.lock:
            running = list(batch.running)
        for job_id in running:
            with contextlib.suppress(Exception):
                ledger.release(job_id)

    batch.progress.start()
    try:
        while True:
            try:
                _run_threads(worker, concurrency, batch.halt, give_back)
            except KeyboardInterrupt:  # failures held back never got a verdict: pending
                if held := batch.held_ids():
                    ledger.requeue(job_ids=held)
                raise
            if not waiting or stop.is_set():
                break
            # jobs other workers hold: a round later they are done, or taken over (their
            # lease expired, or their process died): a timed wait, not a sleep
            stop.wait(batch.next_poll())
            queue = iter(list(waiting))
            waiting.clear()
        if requeue := batch.settle_held():
            batch.requeued = ledger.requeue(job_ids=requeue)
    finally:
        batch.progress.stop()
    if errors:
        raise errors[0]
    return batch.report()


def _run_threads(
    worker: Callable[[], None],
    concurrency: int,
    halt: Callable[[], None],
    give_back: Callable[[], None],
) -> None:
    """Run *concurrency* workers to their end. Ctrl-C calls *halt* (no new jobs) and waits
    for the running ones; a second Ctrl-C calls *give_back* and leaves.

    The wait is a timed ``get`` on a queue each worker signals as it ends, never
    ``Thread.join``: on Python 3.11-3.13 a KeyboardInterrupt inside ``join(timeout)`` can
    leave the thread looking finished (bpo-45274), and the caller would then close the
    ledger under jobs still running."""
    ended: queues.SimpleQueue[None] = queues.SimpleQueue()
    lock = threading.Lock()
    left = [0]  # started and not ended; counted down by the workers themselves

    def run(began: threading.Event) -> None:
        began.set()
        try:
            worker()  # once halted, a worker claims nothing more
        finally:
            with lock:
                left[0] -= 1
            ended.put(None)

    def wait() -> None:
        while left[0] > 0:
            with contextlib.suppress(queues.Empty):
                ended.get(timeout=0.25)  # timed: Ctrl-C reaches the main thread

    try:
        for i in range(concurrency):
            began = threading.Event()
            thread = threading.Thread(target=run, args=(began,), name=f"batch-worker-{i}")
            thread.daemon = True
            with lock:
                left[0] += 1
            try:
                thread.start()
            except KeyboardInterrupt:
                halt()
                if not began.wait(2.0):  # interrupted before it was launched: never runs
                    with lock:
                        left[0] -= 1
                raise
        wait()
    except KeyboardInterrupt:
        halt()  # no new jobs; the running ones end
        try:
            wait()
        except KeyboardInterrupt:
            give_back()
            raise
        raise


async def arun_batch(  # noqa: PLR0915 - one shell, read top to bottom
    jobs: Mapping[str, P] | Iterable[tuple[str, P]],
    fn: Callable[[P], Awaitable[Any]],
    *,
    ledger: Ledger,
    policy: Policy | None = None,
    concurrency: int = 8,
    progress: bool | TextIO | Progress | None = None,
    on_finish: Callable[[JobRecord], None] | None = None,
    clock: Clock = time.monotonic,
    stop_on_setup_error: bool = True,
) -> BatchReport:
    """:func:`run_batch` for a coroutine function: *concurrency* tasks on the running loop.

    The ledger's steps run in a worker thread, so a store round trip never blocks the
    loop; cancelling the call gives the job being run back to the ledger.
    """
    pairs = _items(jobs, concurrency)
    await asyncio.to_thread(ledger.add, [job_id for job_id, _ in pairs])
    changed = asyncio.Event()  # set by the loop's own thread only: ended() runs in a task
    batch = _Batch(
        ledger,
        policy,
        fn,
        len(pairs),
        progress,
        on_finish,
        clock,
        changed.set,
        stop_on_setup_error,
    )
    waiting: list[tuple[str, P]] = []

    async def claim(job_id: str) -> tuple[bool, JobRecord]:
        # the claim goes on in its thread when this task is cancelled: what it took is
        # given back, never left running under a lease this live process renews
        step = asyncio.ensure_future(asyncio.to_thread(claim_job, ledger, job_id))
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if (await asyncio.shield(step))[0]:
                    await asyncio.shield(asyncio.to_thread(ledger.release, job_id))
            raise

    async def one(job_id: str, payload: P) -> bool:
        claimed, record = await claim(job_id)
        if not claimed:
            return batch.found(record)
        run = batch.job(job_id, record)
        token = _CURRENT.set(run)
        try:
            ending = await batch.retrier.afinish(fn, (payload,), {})
        except NEVER_RETRIED:
            await asyncio.shield(asyncio.to_thread(ledger.release, job_id, 1 + run.retries))
            raise
        finally:
            _CURRENT.reset(token)
        settled = settle(job_id, batch.retrier, ending, run)
        _, stored = await asyncio.to_thread(record_of, ledger, job_id, settled, record.runs)
        return batch.ended(stored)

    errors: list[Exception] = []

    async def worker(queue: Iterator[tuple[str, P]]) -> None:
        try:
            while not batch.stop.is_set():
                while not batch.may_start():  # a setup error may still stop the run
                    changed.clear()
                    await changed.wait()
                try:
                    # one iterator shared by the tasks: each item is taken once
                    item = None if batch.stop.is_set() else next(queue, None)
                    if item is None:
                        return
                    if not await one(*item):
                        waiting.append(item)
                finally:
                    batch.left()
        except Exception as exc:  # noqa: BLE001 - raised as it is once the others end
            # as run_batch does: the other tasks finish their jobs (a TaskGroup would cancel
            # them and raise an ExceptionGroup the caller's ``except LedgerError`` misses)
            errors.append(exc)
            batch.halt()

    batch.progress.start()
    queue: Iterator[tuple[str, P]] = iter(pairs)
    never = asyncio.Event()
    try:
        while True:
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(concurrency):
                        group.create_task(worker(queue))
            except asyncio.CancelledError:  # failures held back never got a verdict: pending
                if held := batch.held_ids():
                    await asyncio.shield(asyncio.to_thread(ledger.requeue, job_ids=held))
                raise
            if not waiting or batch.stop.is_set():
                break
            with contextlib.suppress(TimeoutError):  # jobs held elsewhere: a timed wait
                await asyncio.wait_for(never.wait(), batch.next_poll())
            queue = iter(list(waiting))
            waiting.clear()
        if requeue := batch.settle_held():
            batch.requeued = await asyncio.to_thread(ledger.requeue, job_ids=requeue)
    finally:
        batch.progress.stop()
    if errors:
        raise errors[0]
    return batch.report()
