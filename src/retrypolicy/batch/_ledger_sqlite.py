"""``SQLiteLedger``: the embedded default, one file shared by the processes of one machine.

Why these settings:

- WAL journal: readers never block the writer and a commit is one append to the log.
- ``synchronous=NORMAL`` (the default): a commit survives any crash of the process
  (SIGKILL included) and never corrupts the file; only a power loss or an OS crash may
  undo the last commits, and then those jobs run again — at-least-once, never lost.
  ``durable=True`` sets ``FULL``: every commit is fsynced (about a millisecond more).
- One statement per state change, in its own transaction (autocommit): a claim is one
  ``UPDATE … WHERE <claimable> RETURNING runs``, a finish one ``UPDATE``, a failure one
  ``UPDATE … WHERE <held by me>``. A single statement is atomic in SQLite and takes the
  write lock for itself, so a claim's check and its write are one step across processes;
  ``busy_timeout`` makes other processes queue for the lock instead of failing. (SQLite
  before 3.35 has no ``RETURNING``: there each statement of a claim and the read of its
  run count are one ``BEGIN IMMEDIATE`` transaction.)
- One connection per ledger object, serialised by a lock: SQLite runs one writer at a
  time anyway, and the threads of a runner then need no connection each. One statement
  per step holds that lock across one release of the GIL, where ``BEGIN`` … ``COMMIT``
  held it across three: measured, that was the difference at concurrency 32.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._ledger import LedgerBase, chunks
from ._model import FailureInfo, JobRecord, JobState, LedgerCounts, LedgerError, check_job_id
from ._states import can_claim

if TYPE_CHECKING:
    from .._policy import Policy
    from ..typing import Clock

__all__ = ["SQLiteLedger"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS retrypolicy_jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    owner TEXT,
    expires REAL,
    runs INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    kind TEXT,
    retryable INTEGER,
    attempts INTEGER,
    code TEXT,
    status INTEGER,
    message TEXT,
    updated REAL,
    requests INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    resent INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID
"""
_COST_COLUMNS: Final = ("requests", "retries", "resent")
"""Added after the first release: a ledger file made before gets them on open."""
_COLUMNS: Final = (
    "id, state, owner, expires, runs, result, kind, retryable, attempts, code, status, "
    "message, updated, resent"
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM retrypolicy_jobs WHERE id = ?"  # noqa: S608 - constants
_BUSY_TIMEOUT_MS: Final = 60_000
_WAL_ATTEMPTS: Final = 200
_RETURNING: Final = sqlite3.sqlite_version_info >= (3, 35)
"""``UPDATE ... RETURNING`` (SQLite 3.35, 2021): a claim reads its run count in the same
statement."""
_RETURN_RUNS: Final = " RETURNING runs, resent" if _RETURNING else ""
_CLAIM_SET: Final = (
    "UPDATE retrypolicy_jobs SET state = 'running', owner = ?, expires = ?, "
    "runs = runs + 1, updated = ?, result = NULL, kind = NULL, retryable = NULL, "
    "attempts = NULL, code = NULL, status = NULL, message = NULL"
)
_CLAIM: Final = (
    _CLAIM_SET
    + " WHERE id = ? AND (state = 'pending' OR (state = 'failed' AND retryable = 1))"
    + _RETURN_RUNS
)
"""A claim of a free job: pending, or failed with a retryable kind."""
_TAKE_OVER: Final = (
    _CLAIM_SET + ", resent = resent + 1 WHERE id = ? AND state = 'running' "
    "AND (expires IS NULL OR expires <= ? OR owner = ?)" + _RETURN_RUNS
)
"""A claim of an abandoned job (expired lease, or a dead owner): its request is re-sent."""
_INSERT_RUNNING: Final = (
    "INSERT INTO retrypolicy_jobs (id, state, owner, expires, runs, updated) "
    "VALUES (?, 'running', ?, ?, 1, ?) ON CONFLICT (id) DO NOTHING" + _RETURN_RUNS
)
_RUNS: Final = "SELECT runs, resent FROM retrypolicy_jobs WHERE id = ?"
_CLAIM_ATTEMPTS: Final = 5


def _columns(conn: sqlite3.Connection) -> set[str]:
    """The columns of the jobs table (none when the file has no such table)."""
    return {row[1] for row in conn.execute("PRAGMA table_info(retrypolicy_jobs)")}


def _error(path: Path, text: str) -> LedgerError:
    """A LedgerError about the ledger file *path*."""
    return LedgerError(f"ledger {str(path)!r}: {text}")


def _wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL. Two processes opening a new file at once race for it, and
    SQLite answers the loser "database is locked" at once (the busy timeout does not cover
    a journal-mode change): try again for up to ~10 s, with timed waits."""
    pause = threading.Event()
    for attempt in range(_WAL_ATTEMPTS):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return  # already WAL: no lock needed
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == _WAL_ATTEMPTS - 1:
                raise
            pause.wait(0.01 * (1 + attempt % 10))
        else:
            return


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing ledger file (``batch status``).

    In WAL mode even a reader needs to create ``-shm`` beside the file; in a directory it
    may not write, the file is then read as it stands (``immutable``: no writer can be
    at work there anyway)."""
    if not path.is_file():
        raise _error(path, "no such file")
    uri = path.resolve().as_uri()
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + query, uri=True, check_same_thread=False, timeout=60.0)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            have = _columns(conn)
        except sqlite3.DatabaseError as e:
            conn.close()
            if isinstance(e, sqlite3.OperationalError) and (
                "unable to open" in str(e) or "readonly" in str(e)
            ):
                continue  # no -shm and no right to create it: read the file as it stands
            raise _error(path, _why_unusable(path, e)) from e
        if not have:
            conn.close()
            raise _error(path, "an SQLite file, but not a retrypolicy batch ledger")
        if not have.issuperset(_COST_COLUMNS):  # older: a writer adds the cost columns
            conn.close()
            raise _error(path, "made by an older version; open it writable once")
        return conn
    raise _error(path, "cannot open it for reading (check its permissions)")


def _why_unusable(path: Path, error: sqlite3.DatabaseError) -> str:
    """The message for a file SQLite refused: a permission problem says so."""
    text = str(error)
    if "readonly" in text or "unable to open" in text:
        where = path.parent if str(path.parent) else Path()
        return (
            f"cannot write it or its directory {str(where)!r} ({text}): an SQLite ledger "
            "needs a writable file in a writable directory (it keeps a journal beside it)"
        )
    return f"not a usable SQLite database ({text})"


def _record(row: tuple[Any, ...]) -> JobRecord:
    job_id, state, owner, expires, runs, result, kind, retryable = row[:8]
    attempts, code, status, message, updated, resent = row[8:]
    failure = None
    if kind is not None:
        failure = FailureInfo(
            kind=kind,
            retryable=bool(retryable),
            attempts=1 if attempts is None else attempts,  # None: a ledger from before it
            code=code,
            status=status,
            message=message or "",
        )
    return JobRecord(
        job_id=job_id,
        state=JobState(state),
        owner=owner,
        lease_expires=expires,
        runs=runs,
        result=json.loads(result) if result is not None else None,
        failure=failure,
        updated=updated,
        attempts=attempts or 0,
        resent=resent or 0,
    )


def _add_cost_columns(c: sqlite3.Connection) -> None:
    """Give a ledger file made before the cost columns existed those columns (zero)."""
    have = _columns(c)
    for column in _COST_COLUMNS:
        if column not in have:
            c.execute(
                f"ALTER TABLE retrypolicy_jobs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
            )


class SQLiteLedger(LedgerBase):
    """A job ledger in the SQLite file *path* (created if missing).

    Several threads and several processes on one machine may share the file (not a
    network file system: SQLite's locks need a local disk). *lease* is how long a claim
    lasts without renewal, in seconds of *clock* (default: :func:`time.time`, the wall
    clock, since leases are compared across processes); held leases are renewed every
    ``lease / 3`` seconds by one thread per ledger object. *policy* is what
    :meth:`run_once` runs functions under (default: the environment's, else ``rp.EUGPT``).
    *read_only* opens an existing file for reading only (``batch status``): it works in a
    directory this process may not write, and any step that writes raises LedgerError.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        policy: Policy | None = None,
        lease: float = 30.0,
        clock: Clock = time.time,
        durable: bool = False,
        read_only: bool = False,
    ) -> None:
        self._init_base(policy=policy, lease=lease, clock=clock)
        self.path = Path(path)
        self._now: Clock = clock
        self._lock = threading.Lock()
        self._added: set[str] = set()
        if read_only:
            self._conn: sqlite3.Connection | None = _open_read_only(self.path)
            return
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60.0
            )
        except sqlite3.Error as e:
            raise _error(self.path, f"cannot open it as an SQLite database ({e})") from e
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            _wal(conn)
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            with self._write() as c:
                c.execute(_SCHEMA)
                _add_cost_columns(c)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise _error(self.path, _why_unusable(self.path, e)) from e

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r}, owner={self.owner!r}, lease={self.lease})"

    # -- transactions ----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The open connection (call under ``self._lock``); LedgerError once closed."""
        if self._conn is None:
            msg = f"ledger {str(self.path)!r} is closed"
            raise LedgerError(msg)
        return self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding SQLite's write lock (and this object's lock)."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement as its own transaction (autocommit): (rows it returned, rows it
        changed). A single ``UPDATE``/``INSERT`` is atomic in SQLite and takes the write lock
        for itself; one statement per state change also means one release of the GIL while
        this object's lock is held, not the three of ``BEGIN`` … ``COMMIT``, which keeps 32
        threads from queueing behind a thread waiting for the GIL."""
        with self._lock:
            cur = self._connection().execute(sql, params)
            rows = cur.fetchall()  # a RETURNING statement completes (and commits) here
            return rows, cur.rowcount

    def _claim_step(self, job_id: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One statement of a claim of *job_id*: [(runs, resent)] when it took the job, else
        []. Before SQLite 3.35 (no ``RETURNING``) the statement and that read are one
        transaction."""
        if _RETURNING:
            return self._one(sql, params)[0]
        with self._write() as c:  # pragma: no cover - SQLite older than 3.35 (2021)
            if not c.execute(sql, params).rowcount:
                return []
            return c.execute(_RUNS, (job_id,)).fetchall()

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    # -- the steps -------------------------------------------------------------------

    def add(self, job_ids: Iterable[str]) -> int:
        """Register *job_ids* as pending (known ones keep their state); how many were new."""
        now = self._now()
        rows = [(job_id, now) for job_id in dict.fromkeys(check_job_id(j) for j in job_ids)]
        with self._write() as c:
            known = {
                r[0]
                for chunk in chunks([job_id for job_id, _ in rows])
                for r in c.execute(
                    "SELECT id FROM retrypolicy_jobs WHERE id IN "  # noqa: S608 - placeholders
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                )
            }
            new = [row for row in rows if row[0] not in known]
            c.executemany(
                "INSERT OR IGNORE INTO retrypolicy_jobs (id, state, updated) "
                "VALUES (?, 'pending', ?)",
                new,
            )
        # jobs this object inserted were pending a moment ago: their claim skips the read
        # that spares a done job the write lock (the claim's own update is safe either way)
        self._added.update(job_id for job_id, _ in new)
        return len(new)

    def claim(self, job_id: str, *, steal_from: str | None = None) -> tuple[bool, JobRecord]:
        """Take the job if it is claimable (see :class:`Ledger`); (taken?, its record).

        One statement: an ``UPDATE`` whose ``WHERE`` clause is :func:`._states.can_claim`
        in SQL, returning the run count; for a job the ledger never saw, an ``INSERT``.
        """
        check_job_id(job_id)
        if job_id not in self._added:  # done is final: a read says so without a write
            rows = self._read(_SELECT, (job_id,))
            if rows and rows[0][1] == JobState.DONE:
                return False, _record(rows[0])
        record: JobRecord | None = None
        for _ in range(_CLAIM_ATTEMPTS):
            now = self._now()
            expires = now + self.lease
            took_over = False
            rows = self._claim_step(job_id, _CLAIM, (self.owner, expires, now, job_id))
            if not rows:
                rows = self._claim_step(job_id, _INSERT_RUNNING, (job_id, self.owner, expires, now))
            if not rows:
                took_over = True
                params = (self.owner, expires, now, job_id, now, steal_from)
                rows = self._claim_step(job_id, _TAKE_OVER, params)
            if rows:
                return True, JobRecord(
                    job_id=job_id,
                    state=JobState.RUNNING,
                    owner=self.owner,
                    lease_expires=expires,
                    runs=rows[0][0],
                    resent=rows[0][1],
                    took_over=took_over,
                    updated=now,
                )
            found = self._read(_SELECT, (job_id,))
            record = _record(found[0]) if found else None
            if record is not None and not can_claim(record, now=now, steal_from=steal_from):
                return False, record
            # it changed between the two statements (released, say): look again
        if record is None:  # pragma: no cover - deleted under us, five times in a row
            msg = f"job {job_id!r}: its row vanished while it was being claimed"
            raise LedgerError(msg)
        return False, record

    def finish(self, job_id: str, result_json: str, attempts: int = 1) -> bool:
        """Mark the job done with *result_json* after *attempts* requests, unless it is done
        already (then False)."""
        # one upsert: a job never claimed here is stored all the same, a done one is kept
        _, changed = self._one(
            "INSERT INTO retrypolicy_jobs (id, state, result, attempts, updated, requests, "
            "retries) VALUES (?, 'done', ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "state = 'done', result = excluded.result, owner = NULL, expires = NULL, "
            "kind = NULL, retryable = NULL, attempts = excluded.attempts, code = NULL, "
            "status = NULL, message = NULL, updated = excluded.updated, "
            "requests = requests + excluded.requests, retries = retries + excluded.retries "
            "WHERE state != 'done'",
            (job_id, result_json, attempts, self._now(), attempts, max(attempts - 1, 0)),
        )
        return changed > 0

    def fail(self, job_id: str, failure: FailureInfo) -> bool:
        """Record *failure* if this owner holds the job; False (no change) otherwise.

        One ``UPDATE`` whose ``WHERE`` clause is :func:`._states.can_fail` in SQL.
        """
        _, changed = self._one(
            "UPDATE retrypolicy_jobs SET state = 'failed', owner = NULL, expires = NULL, "
            "kind = ?, retryable = ?, attempts = ?, code = ?, status = ?, message = ?, "
            "updated = ?, requests = requests + ?, retries = retries + ? "
            "WHERE id = ? AND state = 'running' AND owner = ?",
            (
                failure.kind,
                int(failure.retryable),
                failure.attempts,
                failure.code,
                failure.status,
                failure.message,
                self._now(),
                failure.attempts,
                max(failure.attempts - 1, 0),
                job_id,
                self.owner,
            ),
        )
        return changed > 0

    def release(self, job_id: str, attempts: int = 0) -> bool:
        """Put a job this owner holds back to pending (counting the *attempts* it sent);
        False if it does not hold it."""
        _, changed = self._one(
            "UPDATE retrypolicy_jobs SET state = 'pending', owner = NULL, expires = NULL, "
            "updated = ?, requests = requests + ?, retries = retries + ? "
            "WHERE id = ? AND state = 'running' AND owner = ?",
            (self._now(), attempts, max(attempts - 1, 0), job_id, self.owner),
        )
        return changed > 0

    def requeue(
        self, *, kinds: Iterable[str] | None = None, job_ids: Iterable[str] | None = None
    ) -> int:
        """Put failed jobs (of *kinds*, among *job_ids*) back to pending; how many were.

        One ``UPDATE`` per chunk of ids whose ``WHERE`` clause is
        :func:`._states.can_requeue` in SQL.
        """
        kind_list = None if kinds is None else sorted(set(kinds))
        where = "state = 'failed'"
        params: list[Any] = []
        if kind_list is not None:
            where += f" AND kind IN ({','.join('?' * len(kind_list))})"
            params += kind_list
        sql = (
            "UPDATE retrypolicy_jobs SET state = 'pending', kind = NULL, "  # noqa: S608
            "retryable = NULL, attempts = NULL, code = NULL, status = NULL, message = NULL, "
            f"updated = ? WHERE {where}"
        )
        if job_ids is None:
            return self._one(sql, (self._now(), *params))[1]
        ids = sorted({check_job_id(j) for j in job_ids})
        return sum(
            self._one(
                f"{sql} AND id IN ({','.join('?' * len(chunk))})", (self._now(), *params, *chunk)
            )[1]
            for chunk in chunks(ids)
        )

    def renew(self) -> int:
        """Push the lease of every job this owner holds to ``now + lease``."""
        return self._one(
            "UPDATE retrypolicy_jobs SET expires = ? WHERE state = 'running' AND owner = ?",
            (self._now() + self.lease, self.owner),
        )[1]

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None for a job this ledger never saw."""
        rows = self._read(_SELECT, (check_job_id(job_id),))
        return _record(rows[0]) if rows else None

    def records(self, state: JobState | None = None) -> Iterator[JobRecord]:
        """Every job (in a given *state*), ordered by id."""
        where, params = ("", ()) if state is None else ("WHERE state = ?", (str(state),))
        sql = f"SELECT {_COLUMNS} FROM retrypolicy_jobs {where} ORDER BY id"  # noqa: S608
        return iter([_record(r) for r in self._read(sql, params)])

    def counts(self) -> LedgerCounts:
        """Jobs per state, and failed jobs per kind (``batch status``)."""
        rows = self._read(
            "SELECT state, kind, retryable, COUNT(*), SUM(requests), SUM(retries), SUM(resent), "
            "SUM(requests > 0) FROM retrypolicy_jobs GROUP BY state, kind, retryable"
        )
        states = dict.fromkeys(JobState, 0)
        kinds: dict[str, int] = {}
        retryable = requests = retries = resent = sent_jobs = 0
        for state, kind, again, n, sent, retried, again_sent, jobs_sent in rows:
            states[JobState(state)] += n
            requests, retries, resent = requests + sent, retries + retried, resent + again_sent
            sent_jobs += jobs_sent
            if state == JobState.FAILED:
                kinds[kind] = kinds.get(kind, 0) + n
                retryable += n if again else 0
        return LedgerCounts(
            states=states,
            failed_kinds=kinds,
            retryable_failed=retryable,
            requests=requests,
            retries=retries,
            resent=resent,
            sent_jobs=sent_jobs,
        )

    def close(self) -> None:
        """Stop renewing leases and close the connection to the file; idempotent."""
        super().close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
