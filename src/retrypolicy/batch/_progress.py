"""Progress of a batch: a live bar on a terminal (rich), plain lines anywhere else.

The bar shows done / failed / retrying, the rate and an ETA; it is drawn by rich
(the ``batch`` extra), which redraws it from its own thread a few times a second.
Where there is no terminal (a log file, CI) or rich is not installed, a plain line
is printed at every tenth of the batch and at the end — nothing that needs a
terminal to read. Progress goes to standard error: standard output stays the
command's own.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from ..typing import Clock

__all__ = ["Progress", "make_progress"]

_STEPS: Final = 10  # plain mode: a line per tenth of the batch


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts what the runner reports; subclasses draw it. This base draws nothing."""

    def __init__(self, total: int, *, clock: Clock = time.monotonic) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.earlier = 0
        """Jobs found finished already (done or finally failed in an earlier run)."""
        self._retrying: set[str] = set()
        self._lock = threading.Lock()
        self._clock = clock
        self.started = clock()

    @property
    def finished(self) -> int:
        """Jobs with an outcome in this run, whatever it is."""
        return self.done + self.failed + self.earlier

    @property
    def retrying(self) -> int:
        """Running jobs waiting for, or in, a retry."""
        return len(self._retrying)

    def start(self) -> None:
        """The batch starts."""

    def stop(self) -> None:
        """The batch ended (or was interrupted)."""

    def retry(self, job_id: str) -> None:
        """A job scheduled a retry."""
        with self._lock:
            self._retrying.add(job_id)
        self._changed()

    def finish(self, job_id: str, *, failed: bool, earlier: bool) -> None:
        """A job reached an outcome (*earlier*: found in the ledger from an earlier run)."""
        with self._lock:
            self._retrying.discard(job_id)
            if earlier:
                self.earlier += 1
            elif failed:
                self.failed += 1
            else:
                self.done += 1
        self._changed()

    def _changed(self) -> None:
        """Something changed: redraw if needed."""

    def rate(self) -> float:
        """Jobs run per second in this run (jobs found finished are not counted)."""
        elapsed = self._clock() - self.started
        ran = self.done + self.failed
        return ran / elapsed if elapsed > 0 else 0.0

    def _rate_and_eta(self) -> tuple[float, str]:
        rate = self.rate()
        return rate, _duration((self.total - self.finished) / rate) if rate > 0 else "?"

    def line(self) -> str:
        """``120/500 done 110 failed 2 retrying 3 earlier 8 | 35.2 jobs/s | ETA 0:11``."""
        rate, eta = self._rate_and_eta()
        return (
            f"{self.finished}/{self.total} | done {self.done} failed {self.failed} "
            f"retrying {self.retrying} earlier {self.earlier} | {rate:.1f} jobs/s | ETA {eta}"
        )


class PlainProgress(Progress):
    """A line at each tenth of the batch, and at the end, to *stream*."""

    def __init__(self, total: int, stream: TextIO, *, clock: Clock = time.monotonic) -> None:
        super().__init__(total, clock=clock)
        self.stream = stream
        self._step = max(1, -(-total // _STEPS))
        self._next = self._step
        self._printed = -1

    def _print(self) -> None:
        finished = self.finished
        if finished == self._printed:
            return
        self._printed = finished
        with contextlib.suppress(OSError, ValueError):  # the stream went away: go on
            print(f"retrypolicy batch: {self.line()}", file=self.stream, flush=True)

    def _changed(self) -> None:
        with self._lock:
            due = self.finished >= self._next
            if due:  # the next multiple of the step past what is finished
                self._next = (self.finished // self._step + 1) * self._step
        if due:
            self._print()

    def stop(self) -> None:
        self._print()


class RichProgress(Progress):
    """A live bar (rich), redrawn by rich's own thread."""

    def __init__(self, total: int, stream: TextIO, *, clock: Clock = time.monotonic) -> None:
        super().__init__(total, clock=clock)
        from rich.console import Console  # noqa: PLC0415 - the optional extra
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn  # noqa: PLC0415
        from rich.progress import Progress as Bar  # noqa: PLC0415

        self._bar = Bar(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(file=stream),
            transient=False,
            refresh_per_second=8,
        )
        self._task = self._bar.add_task("batch", total=total, status=self._status())

    def _status(self) -> str:
        rate, eta = self._rate_and_eta()
        return (
            f"[green]done {self.done}[/] [red]failed {self.failed}[/] "
            f"[yellow]retrying {self.retrying}[/] earlier {self.earlier} "
            f"| {rate:.1f}/s | ETA {eta}"
        )

    def start(self) -> None:
        self._bar.start()

    def stop(self) -> None:
        self._changed()
        self._bar.stop()

    def _changed(self) -> None:
        self._bar.update(self._task, completed=self.finished, status=self._status())


def make_progress(
    total: int, progress: bool | TextIO | Progress | None, *, clock: Clock = time.monotonic
) -> Progress:
    """The progress display *progress* asks for.

    None or True: on standard error; a stream: on it. Either way a live bar when the
    stream is a terminal and rich is installed, plain lines otherwise. False: nothing.
    A :class:`Progress`: itself.
    """
    if isinstance(progress, Progress):
        return progress
    if progress is False:
        return Progress(total, clock=clock)
    stream: Any = sys.stderr if progress is None or progress is True else progress
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        with contextlib.suppress(ImportError):  # rich is the optional `batch` extra
            return RichProgress(total, stream, clock=clock)
    return PlainProgress(total, stream, clock=clock)
