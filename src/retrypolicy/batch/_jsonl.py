"""JSON Lines in and out: the batch's input (one request per line) and its results file.

The results file is written so that it holds exactly one line per finished job,
whatever kills the process and whenever:

1. the ledger records the outcome first (one commit), then the line is appended
   with one ``write`` (no user-space buffer to lose), fsynced in groups;
2. on every run, the file is read first: a last line cut short by a crash is cut
   off, and the ids it already holds are never written again;
3. every job of the input is then reported — run now, or found finished in the
   ledger — so a job whose outcome was committed but whose line was lost (killed
   between 1's two steps) gets its line from the stored result on the next run.

A power loss may also undo the last ledger commits (SQLite ``synchronous=NORMAL``):
those jobs run again, and the ids already in the file still get no second line.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import attrs

from ._model import MAX_JOB_ID, JobRecord

if TYPE_CHECKING:
    from ..typing import Clock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock on the results file
    fcntl = None  # type: ignore[assignment]

__all__ = ["BadLine", "ResultsFile", "read_jobs"]

_FSYNC_LINES: Final = 64
_FSYNC_SECONDS: Final = 1.0


@attrs.frozen
class BadLine:
    """An input line that is not a job: its number (1-based) and why."""

    number: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.problem}"


def read_jobs(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[BadLine]]:
    """The jobs of a JSON Lines file — ``(id, request body without id)`` — and its bad lines.

    A line must be a JSON object with an ``id`` that is a non-empty string (at most 512
    characters); a blank line is skipped; the second line with an id already seen is
    bad (the first one wins).
    """
    jobs: list[tuple[str, dict[str, Any]]] = []
    bad: list[BadLine] = []
    first_line: dict[str, int] = {}
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                value = json.loads(text)
            except (ValueError, RecursionError) as e:
                bad.append(BadLine(number, f"not JSON ({_short(e)})"))
                continue
            if not isinstance(value, dict):
                bad.append(BadLine(number, f"expected a JSON object, got {type(value).__name__}"))
                continue
            job_id = value.pop("id", None)
            if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID:
                got = "no id" if job_id is None else f"id {_short(repr(job_id))}"
                bad.append(
                    BadLine(
                        number,
                        f'{got}: expected an "id" field holding a non-empty string '
                        f"(at most {MAX_JOB_ID} characters), the job's id",
                    )
                )
                continue
            if job_id in first_line:
                bad.append(
                    BadLine(
                        number,
                        f"duplicate id {_short(repr(job_id))} (first on line "
                        f"{first_line[job_id]}): skipped, the first one runs",
                    )
                )
                continue
            first_line[job_id] = number
            jobs.append((job_id, value))
    return jobs, bad


def _short(value: object, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


class ResultsFileBusyError(OSError):
    """Another process is writing the same results file."""


class ResultsFile:
    """An append-only JSON Lines file with one line per job id (see the module docstring).

    Held with an exclusive advisory lock (POSIX ``flock``) while open: two runs writing
    one file would each append the other's jobs.
    """

    def __init__(self, path: Path, *, clock: Clock = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._file: IO[bytes] = path.open("a+b")
        try:
            self._lock()
            self.ids, self.cut = self._recover()
        except BaseException:
            self._file.close()
            raise
        self.written = 0
        self._unsynced = 0
        self._synced_at = clock()

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"{self.path}: another `retrypolicy batch run` is writing this file"
            raise ResultsFileBusyError(msg) from None

    def _recover(self) -> tuple[set[str], int]:
        """The ids already in the file; a last line cut short by a crash is cut off."""
        f = self._file
        f.seek(0)
        data = f.read()
        end = data.rfind(b"\n") + 1
        cut = len(data) - end
        if cut:
            f.truncate(end)
        ids: set[str] = set()
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                job_id = json.loads(line).get("id")
                if isinstance(job_id, str):
                    ids.add(job_id)
        return ids, cut

    def write(self, record: JobRecord) -> bool:
        """Append the record's line unless its id has one; True when written."""
        if record.job_id in self.ids:
            return False
        line = json.dumps(record.to_line(), ensure_ascii=False, separators=(",", ":")) + "\n"
        os.write(self._file.fileno(), line.encode())  # one write: no buffer to lose
        self.ids.add(record.job_id)
        self.written += 1
        self._unsynced += 1
        if self._unsynced >= _FSYNC_LINES or self._clock() - self._synced_at >= _FSYNC_SECONDS:
            self.sync()
        return True

    def sync(self) -> None:
        """fsync what was written (a process crash loses nothing anyway; a power loss...)."""
        if self._unsynced:
            os.fsync(self._file.fileno())
            self._unsynced = 0
        self._synced_at = self._clock()

    def close(self) -> None:
        """fsync and close (releasing the lock)."""
        if not self._file.closed:
            try:
                self.sync()
            finally:
                self._file.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a results file (for tests and tools)."""
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                yield json.loads(raw)
