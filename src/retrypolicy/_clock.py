"""The clock: the one module that reads time, sleeps, and knows instant mode.

Shells ask it for ``now`` (monotonic, for deadlines), ``wall`` (wall-clock
seconds, for storm state shared across machines) and to wait. Under
``rp.testing.instant()`` waits are recorded instead of slept, and a virtual
clock advances by them so that deadlines and budgets behave as if they had
happened. The virtual clock is per thread: eight threads each waiting one
second in parallel have lived one second, not eight — which is what real
threads would have seen.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Final

__all__ = [
    "ASYNC_SLEEP",
    "MONOTONIC",
    "SLEEP",
    "WALL",
    "Instant",
    "Skipped",
    "pause",
    "set_instant_mode",
]

MONOTONIC: Final = time.monotonic
WALL: Final = time.time
SLEEP: Final = time.sleep
ASYNC_SLEEP: Final = asyncio.sleep


class Skipped:
    """One thread's skipped seconds: how far its virtual clock is ahead.

    A plain object, reached once per call through :attr:`Instant.local` (a
    ``threading.local``, whose every attribute access costs several times a plain one);
    a shell then reads and advances ``offset`` here as often as it needs.
    """

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = 0.0


class _PerThread(threading.local):
    def __init__(self) -> None:  # runs once in each thread that looks
        self.skipped = Skipped()


class Instant:
    """The testing switch's state: waits are recorded instead of slept.

    ``waits`` lists every wait skipped, in order, from every thread. :attr:`offset`
    is the virtual time the *current* thread has skipped: the clocks a shell reads
    are advanced by it.
    """

    __slots__ = ("local", "waits")

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.local = _PerThread()
        """This thread's :class:`Skipped`, as ``local.skipped`` (:attr:`offset` is its
        ``offset``)."""

    def __repr__(self) -> str:
        return f"<Instant waits={len(self.waits)} offset={self.offset:g}>"

    @property
    def offset(self) -> float:
        """Seconds of waiting this thread skipped: its virtual clock is this far ahead."""
        value: float = self.local.skipped.offset
        return value

    def record(self, delay: float) -> None:
        """Skip a wait of *delay* seconds on this thread."""
        self.waits.append(delay)
        self.local.skipped.offset += delay


_instant: list[Instant | None] = [None]


def set_instant_mode(value: Instant | None) -> Instant | None:
    """Switch instant mode; returns the previous recorder (to restore it)."""
    previous = _instant[0]
    _instant[0] = value
    return previous


def pause(delay: float) -> float:
    """The seconds a shell must really wait for *delay*: 0 in instant mode (recorded)."""
    inst = _instant[0]
    if inst is not None:
        inst.record(delay)
        return 0.0
    return delay
