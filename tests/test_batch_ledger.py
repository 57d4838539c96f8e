"""The ledger's state machine, one suite for both stores (SQLite file, real Redis).

Every transition of ``retrypolicy.batch`` as a table row, with an injected clock:
claim (new, pending, live lease, expired lease, dead owner, failed retryable/final,
done), finish, fail, release, renew; then ``run_once`` on top of them.
"""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import retrypolicy as rp
from retrypolicy.batch import (
    UNSERIALIZABLE_RESULT,
    FailureInfo,
    JobBusyError,
    JobFailedError,
    JobRecord,
    JobState,
    Ledger,
    LedgerError,
    RedisLedger,
    SQLiteLedger,
)
from retrypolicy.batch._states import can_claim, can_fail, can_requeue

LEASE = 30.0
T0 = 1_000_000.0
RETRYABLE = FailureInfo(kind="rate_limited", retryable=True, attempts=7, status=429)
FINAL = FailureInfo(kind="invalid_request", retryable=False, attempts=1, status=400, code="bad")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


MakeLedger = Callable[..., Ledger]
_prefixes = itertools.count()


@pytest.fixture(params=["sqlite", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLedger]:
    """``make(clock)``: a new ledger object (a new owner) on one shared store."""
    made: list[Ledger] = []
    prefix = f"t{next(_prefixes)}"
    client: redis.Redis | None = None
    if request.param == "redis":
        client = request.getfixturevalue("redis_client")

    def new(clock: Clock, **options: Any) -> Ledger:
        ledger: Ledger
        if client is not None:
            ledger = RedisLedger(client, prefix=prefix, lease=LEASE, clock=clock, **options)
        else:
            ledger = SQLiteLedger(tmp_path / "jobs.db", lease=LEASE, clock=clock, **options)
        made.append(ledger)
        return ledger

    yield new
    for ledger in made:
        ledger.close()


@pytest.fixture
def clock() -> Clock:
    """The injected clock, at T0."""
    return Clock()


def test_claim_new_job(make: MakeLedger, clock: Clock) -> None:
    """A job never seen is claimed: running, owned, leased until now + lease, first run."""
    a = make(clock)
    claimed, record = a.claim("j")
    assert claimed
    assert record.state is JobState.RUNNING
    assert record.owner == a.owner
    assert record.lease_expires == pytest.approx(T0 + LEASE)
    assert record.runs == 1
    assert a.get("j") == record


# (what happened before, who claims, seconds later, steal_from, claimed?, owner after, runs)
CLAIM_TABLE = [
    ("pending", "b", 0, None, True, "b", 1),
    ("running", "b", 10, None, False, "a", 1),
    ("running", "b", LEASE, None, True, "b", 2),  # expired at exactly now + lease
    ("running", "b", LEASE + 5, None, True, "b", 2),
    ("running", "b", 1, "a", True, "b", 2),  # its owner is known to be dead
    ("running", "b", 1, "someone-else", False, "a", 1),
    ("running", "a", 1, None, False, "a", 1),  # even its own owner does not run it twice
    ("failed-retryable", "b", 1, None, True, "b", 2),
    ("failed-final", "b", 1, None, False, None, 1),
    ("done", "b", 1, None, False, None, 1),
    ("done", "b", LEASE * 10, None, False, None, 1),
]


@pytest.mark.parametrize(
    ("before", "who", "later", "steal", "claimed", "owner", "runs"), CLAIM_TABLE
)
def test_claim_table(
    make: MakeLedger,
    clock: Clock,
    before: str,
    who: str,
    later: float,
    steal: str | None,
    claimed: bool,
    owner: str | None,
    runs: int,
) -> None:
    """Claim takes a job exactly when the transition table says so."""
    a, b = make(clock), make(clock)
    owners = {"a": a, "b": b}
    if before == "pending":
        assert a.add(["j"]) == 1
    else:
        assert a.claim("j")[0]
        if before == "failed-retryable":
            assert a.fail("j", RETRYABLE)
        elif before == "failed-final":
            assert a.fail("j", FINAL)
        elif before == "done":
            assert a.finish("j", '{"answer": 42}')
    clock.now += later
    steal_from = a.owner if steal == "a" else steal
    got, record = owners[who].claim("j", steal_from=steal_from)
    assert got is claimed
    assert record.owner == (owners[owner].owner if owner else None)
    assert record.runs == runs
    if before == "done":
        assert record.state is JobState.DONE
        assert record.result == {"answer": 42}
    if before == "failed-final":
        assert record.failure == FINAL


@pytest.mark.parametrize(
    ("before", "who", "later", "steal", "claimed", "owner", "runs"), CLAIM_TABLE
)
def test_the_pure_rules_say_what_the_table_says(
    before: str,
    who: str,
    later: float,
    steal: str | None,
    claimed: bool,
    owner: str | None,
    runs: int,
) -> None:
    """can_claim, the reference both stores implement, agrees with the table row."""
    del owner, runs
    state = {"pending": JobState.PENDING, "running": JobState.RUNNING, "done": JobState.DONE}
    failure = {"failed-retryable": RETRYABLE, "failed-final": FINAL}.get(before)
    record = JobRecord(
        job_id="j",
        state=state.get(before, JobState.FAILED),
        owner="a" if before == "running" else None,
        lease_expires=T0 + LEASE if before == "running" else None,
        failure=failure,
    )
    del who  # the pure rule does not know owners: a holder's own claim is a live lease too
    assert can_claim(record, now=T0 + later, steal_from=steal) is claimed
    assert can_claim(None, now=T0, steal_from=None)  # a job never seen


@pytest.mark.parametrize(
    ("state", "holder", "allowed"),
    [
        (None, None, False),
        (JobState.PENDING, None, False),
        (JobState.RUNNING, "a", True),
        (JobState.RUNNING, "b", False),
        (JobState.DONE, None, False),
        (JobState.FAILED, None, False),
    ],
)
def test_the_pure_fail_rule(state: JobState | None, holder: str | None, allowed: bool) -> None:
    """can_fail: only the holder of a running job records its failure."""
    record = None if state is None else JobRecord(job_id="j", state=state, owner=holder)
    assert can_fail(record, owner="a") is allowed


def test_finish_stores_the_result_once(make: MakeLedger, clock: Clock) -> None:
    """finish marks done with the result; a second finish (any owner) keeps the first."""
    a, b = make(clock), make(clock)
    a.claim("j")
    assert a.finish("j", '{"n": 1}')
    assert not b.finish("j", '{"n": 2}')
    record = b.get("j")
    assert record is not None
    assert record.state is JobState.DONE
    assert record.result == {"n": 1}
    assert record.owner is None
    assert record.final


def test_fail_only_by_the_lease_holder(make: MakeLedger, clock: Clock) -> None:
    """fail is recorded by the holder only; a worker whose lease was taken over is ignored."""
    a, b = make(clock), make(clock)
    a.claim("j")
    assert not b.fail("j", FINAL)
    clock.now += LEASE + 1
    assert b.claim("j")[0]  # a crashed, b took over
    assert not a.fail("j", FINAL)  # a's late failure does not clobber b's run
    assert b.fail("j", RETRYABLE)
    record = a.get("j")
    assert record is not None
    assert record.state is JobState.FAILED
    assert record.failure == RETRYABLE
    assert not record.final


def test_late_success_of_a_taken_over_worker_wins(make: MakeLedger, clock: Clock) -> None:
    """A worker that lost its lease but succeeded records done: the paid-for result is kept,
    and the worker that took over finds the job done."""
    a, b = make(clock), make(clock)
    a.claim("j")
    clock.now += LEASE + 1
    assert b.claim("j")[0]
    assert a.finish("j", '"first"')
    assert not b.finish("j", '"second"')
    record = b.get("j")
    assert record is not None
    assert record.result == "first"


def test_release_gives_the_job_back(make: MakeLedger, clock: Clock) -> None:
    """release (an interrupted worker) makes the job pending at once; only its holder can."""
    a, b = make(clock), make(clock)
    a.claim("j")
    assert not b.release("j")
    assert a.release("j")
    record = b.get("j")
    assert record is not None
    assert record.state is JobState.PENDING
    assert b.claim("j")[0]


def test_renew_extends_every_held_lease(make: MakeLedger, clock: Clock) -> None:
    """renew pushes the lease of each job the owner holds, and of no other."""
    a, b = make(clock), make(clock)
    a.claim("j1")
    a.claim("j2")
    b.claim("j3")
    a.claim("j4")
    a.finish("j4", "null")
    clock.now += 20
    assert a.renew() == 2
    clock.now += 15  # past the first lease, inside the renewed one
    assert not b.claim("j1")[0]
    assert not b.claim("j2")[0]
    assert a.claim("j3")[0]  # b never renewed
    clock.now += 20
    assert b.claim("j1")[0]


def test_add_registers_pending_and_keeps_known_jobs(make: MakeLedger, clock: Clock) -> None:
    """add inserts new ids as pending and never resets a known job."""
    a = make(clock)
    a.claim("x")
    a.finish("x", "1")
    assert a.add(["x", "y", "z"]) == 2
    assert a.add(["y"]) == 0
    x, y = a.get("x"), a.get("y")
    assert x is not None
    assert x.state is JobState.DONE
    assert y is not None
    assert y.state is JobState.PENDING
    assert a.get("nope") is None


def test_add_counts_a_repeated_id_once(make: MakeLedger, clock: Clock) -> None:
    """An id given twice to one add is one new job, on both ledgers (it answers how many
    jobs are new, not how many ids it was given)."""
    a = make(clock)
    assert a.add(["r", "r", "s"]) == 2
    assert a.counts().states[JobState.PENDING] == 2


def test_a_failure_reads_back_as_written(make: MakeLedger, clock: Clock) -> None:
    """A failure recorded with no attempt sent (refused before any request) reads back with
    its 0 attempts, on both ledgers, as every other field does."""
    a = make(clock)
    a.claim("z")
    unsent = FailureInfo(kind="invalid_request", retryable=False, attempts=0)
    assert a.fail("z", unsent)
    record = a.get("z")
    assert record is not None
    assert record.failure == unsent


def test_counts_per_state_and_kind(make: MakeLedger, clock: Clock) -> None:
    """counts: jobs per state, failed jobs per kind, how many a rerun would retry."""
    a = make(clock)
    a.add(["p"])
    for job, end in [("d", None), ("f1", FINAL), ("f2", FINAL), ("r", RETRYABLE), ("run", 0)]:
        a.claim(job)
        if end is None:
            a.finish(job, "null")
        elif isinstance(end, FailureInfo):
            a.fail(job, end)
    counts = a.counts()
    assert counts.states == {
        JobState.PENDING: 1,
        JobState.RUNNING: 1,
        JobState.DONE: 1,
        JobState.FAILED: 3,
    }
    assert counts.failed_kinds == {"invalid_request": 2, "rate_limited": 1}
    assert counts.retryable_failed == 1
    assert counts.total == 6


# (state before, kinds, ids, requeued?)
REQUEUE_TABLE = [
    ("failed-final", None, None, True),
    ("failed-retryable", None, None, True),
    ("failed-final", ["invalid_request"], None, True),
    ("failed-final", ["not_found"], None, False),
    ("failed-final", [], None, False),
    ("failed-final", None, ["j"], True),
    ("failed-final", None, ["other"], False),
    ("failed-final", ["invalid_request"], ["j", "other"], True),
    ("done", None, None, False),
    ("done", None, ["j"], False),
    ("pending", None, ["j"], False),
    ("running", None, ["j"], False),
]


@pytest.mark.parametrize(("before", "kinds", "ids", "requeued"), REQUEUE_TABLE)
def test_requeue_table(
    make: MakeLedger,
    clock: Clock,
    before: str,
    kinds: list[str] | None,
    ids: list[str] | None,
    requeued: bool,
) -> None:
    """requeue puts failed jobs (of the kinds, among the ids) back to pending, their
    failure cleared; done, pending and running jobs stay as they are. The pure rule says
    the same."""
    a = make(clock)
    reach(a, before)
    old = a.get("j")
    assert a.requeue(kinds=kinds, job_ids=ids) == int(requeued)
    record = a.get("j")
    assert record is not None
    assert old is not None
    if requeued:
        assert record.state is JobState.PENDING
        assert record.failure is None
        assert a.claim("j")[0]
    else:
        assert record.state is old.state
    kind_set = None if kinds is None else frozenset(kinds)
    in_ids = ids is None or "j" in ids
    assert (can_requeue(old, kinds=kind_set) and in_ids) is requeued


def reach(ledger: Ledger, state: str) -> None:
    """Bring job "j" to *state* (pending, running, done, failed-final, failed-retryable)."""
    if state == "pending":
        ledger.add(["j"])
        return
    ledger.claim("j")
    if state == "done":
        ledger.finish("j", "null")
    elif state == "failed-final":
        ledger.fail("j", FINAL)
    elif state == "failed-retryable":
        ledger.fail("j", RETRYABLE)


def test_cost_is_counted_per_job_and_ledger_wide(make: MakeLedger, clock: Clock) -> None:
    """Requests and retries add up over finish, fail and release; a takeover of an
    abandoned lease is a re-send, flagged on the claim that made it; the done record
    carries its attempts."""
    a, b = make(clock), make(clock)
    a.claim("d")
    a.finish("d", "1", 3)  # 3 requests, 2 retries
    a.claim("f")
    a.fail("f", RETRYABLE)  # 7 requests, 6 retries
    a.claim("r")
    a.release("r", 2)  # interrupted after 2 requests
    claimed, record = a.claim("k")
    assert claimed
    assert not record.took_over
    clock.now += LEASE + 1  # a dies: its lease on k runs out
    claimed, record = b.claim("k")
    assert claimed
    assert record.took_over
    b.finish("k", "2")
    counts = b.counts()
    assert (counts.requests, counts.retries, counts.resent) == (3 + 7 + 2 + 1, 2 + 6 + 1, 1)
    assert counts.sent_jobs == 4
    done = b.get("d")
    assert done is not None
    assert done.attempts == 3
    assert done.to_line()["attempts"] == 3
    resent = b.get("k")
    assert resent is not None
    assert resent.resent == 1


def test_read_only_ledger_reads_and_refuses_writes(tmp_path: Path) -> None:
    """SQLiteLedger(read_only=True) counts an existing file and refuses to change it."""
    with SQLiteLedger(tmp_path / "jobs.db") as a:
        a.claim("j")
        a.finish("j", "1")
    with SQLiteLedger(tmp_path / "jobs.db", read_only=True) as ro:
        assert ro.counts().states[JobState.DONE] == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.add(["x"])
    with pytest.raises(LedgerError, match="no such file"):
        SQLiteLedger(tmp_path / "missing.db", read_only=True)


def test_an_older_ledger_file_gets_the_cost_columns(tmp_path: Path) -> None:
    """A ledger file made before the cost columns opens, keeps its jobs, counts zero cost."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE retrypolicy_jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, "
            "owner TEXT, expires REAL, runs INTEGER NOT NULL DEFAULT 0, result TEXT, "
            "kind TEXT, retryable INTEGER, attempts INTEGER, code TEXT, status INTEGER, "
            "message TEXT, updated REAL) WITHOUT ROWID"
        )
        conn.execute("INSERT INTO retrypolicy_jobs (id, state, result) VALUES ('x', 'done', '1')")
    conn.close()
    with SQLiteLedger(path) as ledger:
        counts = ledger.counts()
        record = ledger.get("x")
    assert counts.states[JobState.DONE] == 1
    assert counts.requests == 0
    assert record is not None
    assert record.result == 1


@pytest.mark.parametrize("bad", ["", "x" * 513, 17, None, "lone \ud800"])
def test_bad_job_ids(make: MakeLedger, clock: Clock, bad: Any) -> None:
    """A job id must be a non-empty str of at most 512 characters: claiming or looking up
    a bad one is an error naming it (in every ledger alike), not a silent miss."""
    ledger = make(clock)
    with pytest.raises(LedgerError, match="job id"):
        ledger.claim(bad)
    with pytest.raises(LedgerError, match="job id"):
        ledger.get(bad)
    with pytest.raises(LedgerError, match="job id"):
        ledger.requeue(kinds=[], job_ids=[bad])  # no kind to requeue: the ids still checked


def test_bad_lease(tmp_path: Path) -> None:
    """A lease must be a positive number of seconds."""
    with pytest.raises(ValueError, match="lease"):
        SQLiteLedger(tmp_path / "x.db", lease=0)


# -- run_once ------------------------------------------------------------------------------


def error(status: int) -> rp.APIError:
    return rp.EUGPT.error_for(rp.parse_error(status, b'{"detail": "no", "error": "boom"}'))


class _UnprintableError(ValueError):
    """An exception whose ``str()`` itself raises (a broken ``__str__``)."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_run_once_records_an_unprintable_failure(make: MakeLedger, clock: Clock) -> None:
    """A job that raises an exception whose ``str()`` raises is recorded as failed (its
    message says so) and the job's own exception is re-raised unchanged — describing a
    failure never replaces it with another, nor leaves the job running."""
    a = make(clock)
    raised = _UnprintableError()

    def job() -> None:
        raise raised

    with pytest.raises(_UnprintableError) as info:
        a.run_once("u", job)
    assert info.value is raised
    record = a.get("u")
    assert record is not None
    assert record.state is JobState.FAILED
    assert record.failure is not None
    assert record.failure.message == "_UnprintableError: <str() failed>"


@pytest.mark.usefixtures("instant")
def test_run_once_runs_then_returns_the_stored_result(make: MakeLedger, clock: Clock) -> None:
    """A done job returns its stored result without calling fn, from any ledger object."""
    a, b = make(clock), make(clock)
    calls: list[int] = []

    def job(n: int) -> dict[str, int]:
        calls.append(n)
        return {"n": n}

    assert a.run_once("j", job, 1) == {"n": 1}
    assert b.run_once("j", job, 2) == {"n": 1}
    assert a.run_once("j", job, n=3) == {"n": 1}
    assert calls == [1]


@pytest.mark.usefixtures("instant")
def test_run_once_retries_by_the_policy(make: MakeLedger, clock: Clock) -> None:
    """fn runs under the ledger's policy: two 503s are retried, then the result is stored."""
    a = make(clock)
    replies = iter([error(503), error(503), None])

    def job() -> str:
        e = next(replies)
        if e is not None:
            raise e
        return "ok"

    assert a.run_once("j", job) == "ok"
    record = a.get("j")
    assert record is not None
    assert record.state is JobState.DONE


@pytest.mark.usefixtures("instant")
def test_run_once_final_failure_is_never_rerun(make: MakeLedger, clock: Clock) -> None:
    """A 400 is recorded as failed for good and re-raised unchanged; the next run_once
    raises JobFailedError without calling fn."""
    a = make(clock)
    calls: list[int] = []
    raised = error(400)

    def job() -> None:
        calls.append(1)
        raise raised

    with pytest.raises(rp.BadRequestError) as info:
        a.run_once("j", job)
    assert info.value is raised
    with pytest.raises(JobFailedError, match="invalid_request") as failed:
        make(clock).run_once("j", job)
    assert calls == [1]
    f = failed.value.record.failure
    assert f is not None
    assert (f.kind, f.retryable, f.status, f.code, f.attempts) == (
        "invalid_request",
        False,
        400,
        "boom",
        1,
    )


@pytest.mark.usefixtures("instant")
def test_run_once_retryable_give_up_runs_again(make: MakeLedger, clock: Clock) -> None:
    """When the policy gives up on 503s the job is failed-retryable: a rerun runs it again."""
    a = make(clock)
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise error(503)

    with pytest.raises(rp.ServiceUnavailableError):
        a.run_once("j", failing)
    record = a.get("j")
    assert record is not None
    assert record.failure is not None
    assert record.failure.kind == "unavailable"
    assert record.failure.retryable
    assert record.failure.attempts == 6  # the EU GPT contract: 5 retries
    assert len(calls) == 6
    assert a.run_once("j", lambda: "later") == "later"


def test_run_once_busy_job_is_not_run_twice(make: MakeLedger, clock: Clock) -> None:
    """A job under another worker's live lease raises JobBusyError, fn uncalled; once the
    lease expires (the worker crashed), it is taken over."""
    a, b = make(clock), make(clock)
    a.claim("j")
    with pytest.raises(JobBusyError, match="not run twice"):
        b.run_once("j", pytest.fail)
    clock.now += LEASE
    assert b.run_once("j", lambda: 7) == 7
    record = a.get("j")
    assert record is not None
    assert record.runs == 2


def test_run_once_unserializable_result(make: MakeLedger, clock: Clock) -> None:
    """A result that is not JSON: TypeError naming the job; failed for good, not rerun."""
    a = make(clock)
    with pytest.raises(TypeError, match=r"job 'j'.*set.*not JSON-serializable"):
        a.run_once("j", lambda: {1, 2})
    record = a.get("j")
    assert record is not None
    assert record.failure is not None
    assert record.failure.kind == UNSERIALIZABLE_RESULT
    with pytest.raises(JobFailedError):
        a.run_once("j", pytest.fail)


def test_run_once_interrupt_releases_the_job(make: MakeLedger, clock: Clock) -> None:
    """KeyboardInterrupt passes through and gives the job back: pending, not leased."""
    a = make(clock)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        a.run_once("j", interrupted)
    record = a.get("j")
    assert record is not None
    assert record.state is JobState.PENDING


def test_run_once_unknown_error_is_final_and_redacted(make: MakeLedger, clock: Clock) -> None:
    """A bug in fn (not an API failure) is unknown, never retried, and its message never
    keeps an API key."""
    a = make(clock)

    def buggy() -> None:
        msg = "used key eugpt_abcdefghijklmnop1234 wrongly"
        raise ValueError(msg)

    with pytest.raises(ValueError, match="wrongly"):
        a.run_once("j", buggy)
    record = a.get("j")
    assert record is not None
    assert record.failure is not None
    assert record.failure.kind == "unknown"
    assert not record.failure.retryable
    assert "eugpt_abcdefghijklmnop1234" not in record.failure.message
    assert "ValueError" in record.failure.message


@pytest.mark.usefixtures("instant")
def test_run_once_returned_failed_response(make: MakeLedger, clock: Clock) -> None:
    """A response fn returns with a failing status is retried, then recorded as failed
    (returned as @rp.retry returns it)."""

    class Response:
        status_code = 404
        headers: dict[str, str] = {}  # noqa: RUF012 - a stand-in response

    a = make(clock)
    got = a.run_once("j", Response)
    assert got.status_code == 404
    record = a.get("j")
    assert record is not None
    assert record.failure is not None
    assert (record.failure.kind, record.failure.status) == ("not_found", 404)


def test_dead_owner_is_taken_over_without_waiting(make: MakeLedger, clock: Clock) -> None:
    """A lease held by a process of this machine that no longer exists is taken at once;
    one held by a live process (this one) is waited for."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    a = make(clock)
    a.claim("live")
    ghost = make(clock)
    host = a.owner.split("/")[0]
    ghost.owner = f"{host}/{dead.pid}/cafe"  # as if the dead process had claimed it
    ghost.claim("orphan")
    b = make(clock)
    assert b.run_once("orphan", lambda: "taken over") == "taken over"
    with pytest.raises(JobBusyError):
        b.run_once("live", pytest.fail)


def test_group_commit_under_many_threads(tmp_path: Path) -> None:
    """32 threads claiming and finishing at once (their steps share commits): every change
    lands; a step that fails (an unbindable value) fails alone, its group still commits."""
    ledger = SQLiteLedger(tmp_path / "jobs.db")
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        for i in range(20):
            job = f"t{k}-{i}"
            try:
                assert ledger.claim(job)[0]
                if i == 7 and k == 3:
                    bad = FailureInfo(kind="x", retryable=False, message=object())  # type: ignore[arg-type]
                    ledger.fail(job, bad)
                else:
                    assert ledger.finish(job, str(i))
            except Exception as e:  # noqa: BLE001 - collected for the assertion
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = ledger.counts()
    ledger.close()
    assert [type(e).__name__ for e in errors] == ["ProgrammingError"]
    assert counts.states[JobState.DONE] == 32 * 20 - 1
    assert counts.states[JobState.RUNNING] == 1


@pytest.mark.usefixtures("instant")
def test_a_refusal_by_an_open_breaker_stays_retryable(make: MakeLedger, clock: Clock) -> None:
    """A job the policy's circuit breaker refused (never sent) fails retryably: a rerun
    runs it, whatever storm protection said this time."""
    a = make(clock)

    def refused() -> None:
        raise rp.CircuitOpenError("open", retry_in=1.0, host="api")

    with pytest.raises(rp.CircuitOpenError):
        a.run_once("j", refused)
    record = a.get("j")
    assert record is not None
    assert record.failure is not None
    assert (record.failure.kind, record.failure.retryable) == ("unavailable", True)
    assert a.run_once("j", lambda: "sent") == "sent"
