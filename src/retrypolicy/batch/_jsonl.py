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

Which line is final: for each id, **the last line**. A ``done`` line is never followed
by another line for its id (and an id with a ``done`` line is never sent again, whatever
the ledger says); a ``failed`` line is followed by a newer one only when the job was put
back to pending (``batch requeue``) and ran again with another outcome.

A power loss may also undo the last ledger commits (SQLite ``synchronous=NORMAL``):
those jobs run again, and the ids already in the file still get no second line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import attrs

from ._model import MAX_JOB_ID, JobRecord, job_id_problem

if TYPE_CHECKING:
    from ..typing import Clock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock on the results file
    fcntl = None  # type: ignore[assignment]

__all__ = ["BadLine", "NotAResultsFileError", "ResultsFile", "read_jobs"]

_FSYNC_LINES: Final = 64
_FSYNC_SECONDS: Final = 1.0
_LINE_START: Final = b'{"id":'
"""How every line :meth:`ResultsFile.write` appends begins: a tail cut short by a crash
begins so too (after any zero bytes a power loss left)."""
_STATUSES: Final = frozenset({"done", "failed"})
_CUT: Final = object()
"""What :func:`_parse` answers for bytes that are no JSON value."""
_PEEK: Final = 64 * 1024
"""Bytes of a line read before it must look like a result line (a JSON object) to be read
on: some other file given as ``--out`` is refused without being read whole."""


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
    characters, text UTF-8 can encode: any such id can be sent, see
    :func:`._model.idempotency_key`); a blank line is skipped; the second line with an id
    already seen is bad (the first one wins).
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
            if job_id_problem(job_id) is not None:
                got = "no id" if job_id is None else f"id {_short(repr(job_id))}"
                bad.append(
                    BadLine(
                        number,
                        f'{got}: expected an "id" field holding a non-empty string '
                        f"(at most {MAX_JOB_ID} characters of text UTF-8 can encode), the "
                        "job's id",
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


class NotAResultsFileError(ValueError):
    """The file holds a line no results file has: it is some other file (a typo in the
    path, the input, the ledger), left exactly as it was."""


class ResultsFile:
    """An append-only JSON Lines file with one line per job id (see the module docstring).

    Held with an exclusive advisory lock (POSIX ``flock``) while open: two runs writing
    one file would each append the other's jobs.
    """

    def __init__(self, path: Path, *, clock: Clock = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._file: IO[bytes] = path.open("a+b")
        self.last: dict[str, tuple[str, str]] = {}
        """Per id, its last line: (status, the line's outcome as canonical JSON)."""
        self._done_at: dict[str, tuple[int, int]] = {}
        """Per id with a ``done`` line: where that line is (offset, length)."""
        try:
            self._lock()
            self.cut = self._recover()
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

    def _recover(self) -> int:
        """Read the lines already there; a last line cut short by a crash is cut off.

        Every whole line must be a result line (a JSON object with a text ``id`` and a
        ``done`` or ``failed`` status), and a cut-off tail the start of one: otherwise the
        file is some other file, and NotAResultsFileError leaves it untouched."""
        f = self._file
        f.seek(0)
        end = number = 0  # end: where the whole lines end (the offset of the next one)
        tail = b""
        while line := f.readline(_PEEK):  # a line at a time: the file may be larger than memory
            number += 1
            if len(line) == _PEEK and not line.endswith(b"\n"):  # a long line: a result line
                begun = line.lstrip(b"\x00 \t\r")  # is a JSON object, else this is some
                if begun and not begun.startswith(b"{"):  # other file, not to be read on
                    raise self._not_results(f"line {number}")
                line += f.readline()
            if not line.endswith(b"\n"):
                tail = line  # the last line, its newline missing: whole, or cut short
                break
            self._found(line[:-1], number, end)
            end += len(line)
        started = tail.lstrip(b"\x00")  # a power loss may leave zero bytes
        value = _parse(started)
        whole = bool(tail) and _as_result(value) is not None  # only its newline is missing
        if whole:
            self._found(tail, number, end, value)
        # cut short: the start of a line of ours; a whole JSON value is some other file's
        cut_short = value is _CUT and (
            _LINE_START.startswith(started) or started.startswith(_LINE_START)
        )
        if tail and not whole and not cut_short:
            raise self._not_results(f"line {number}")
        # nothing was changed before every line was read: some other file stays as it is
        if whole:
            os.write(f.fileno(), b"\n")
            return 0
        if tail:
            f.truncate(end)
        return len(tail)

    def _found(self, line: bytes, number: int, offset: int, parsed: object = _CUT) -> None:
        """Take in line *number* of the file, at *offset*: a result line, or a blank one
        (zero bytes a power loss left before a line are skipped). *parsed*: the line's
        JSON value, when the caller parsed it already."""
        begun = line.lstrip(b"\x00")
        offset += len(line) - len(begun)
        line = begun
        value = _as_result(_parse(line) if parsed is _CUT else parsed)
        if value is None:
            if line.strip():
                raise self._not_results(f"line {number}")
        elif value["id"] not in self._done_at:  # done: final
            self.last[value["id"]] = (value["status"], _outcome(value))
            if value["status"] == "done":
                self._done_at[value["id"]] = (offset, len(line))

    def _not_results(self, where: str) -> NotAResultsFileError:
        return NotAResultsFileError(
            f"{self.path}: {where} is not a line of a `batch run` results file (a JSON "
            'object with an "id" and a "status", done or failed): this is some other file, '
            "left as it is; give --out a new file or the results file of this batch"
        )

    def done_response(self, job_id: str) -> Any:
        """The ``response`` of *job_id*'s ``done`` line; KeyError if it has none."""
        offset, length = self._done_at[job_id]
        return json.loads(os.pread(self._file.fileno(), length, offset))["response"]

    @property
    def done_ids(self) -> set[str]:
        """The ids with a ``done`` line: never sent again."""
        return set(self._done_at)

    def write(self, record: JobRecord) -> bool:
        """Append the record's line unless its id's last line is ``done`` or says the same
        outcome; True when written (the new line is then the id's final one)."""
        value = record.to_line()
        last = self.last.get(record.job_id)
        outcome = _outcome(value)
        if last is not None and (last[0] == "done" or last == (value["status"], outcome)):
            return False
        line = json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"
        data = line.encode()
        offset = os.lseek(self._file.fileno(), 0, os.SEEK_END)
        os.write(self._file.fileno(), data)  # one write: no buffer to lose
        self.last[record.job_id] = (str(value["status"]), outcome)
        if value["status"] == "done":
            self._done_at[record.job_id] = (offset, len(data) - 1)
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


def _parse(data: bytes) -> object:
    """*data*'s JSON value, or :data:`_CUT` when it is none (a line cut short, or text)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _CUT


def _as_result(value: object) -> dict[str, Any] | None:
    """*value* as a result line (a JSON object with a text ``id`` and a ``done`` or
    ``failed`` status), or None."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and value.get("status") in _STATUSES
    ):
        return value
    return None


def _outcome(line: dict[str, Any]) -> str:
    """What a line says about its job, as canonical JSON: its status and its error (its
    ``attempts`` and response aside: a repeated failure with the same error is one line)."""
    return json.dumps([line.get("status"), line.get("error")], sort_keys=True)


def final_lines(path: Path) -> dict[str, dict[str, Any]]:
    """The final line of each id of a results file: its last one (see the module doc)."""
    return {str(line["id"]): line for line in lines(path)}


def lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a results file (for tests and tools)."""
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                yield json.loads(raw)
