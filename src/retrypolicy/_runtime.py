"""The process-wide state, in one object with one reset.

What a process shares between call paths — the default store, the storm guards
and the set of budgets seen below capacity, the instant-mode recorder, the
process-wide hooks, the exception registry's cache — lives behind
:data:`RUNTIME`, so that a test (``rp.testing.reset()``, the ``instant()``
block) can put all of it back as a fresh process has it.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from . import _clock
from .instrumentation import _hooks
from .stores import _base as _stores

__all__ = ["RUNTIME", "Runtime"]


class Runtime:
    """The process-wide state of retrypolicy (one instance: :data:`RUNTIME`)."""

    __slots__ = ("guards", "guards_lock", "unfull")

    def __init__(self) -> None:
        self.guards: dict[tuple[Any, ...], Any] = {}
        """One storm guard per (store, policy): local caches and counters."""
        self.guards_lock = threading.Lock()
        self.unfull: set[Any] = set()
        """The guards whose budget this process last saw below capacity: a first-try
        success refunds only while this is not empty (it costs one test per call)."""

    def forget_storm(self) -> None:
        """Forget every guard (local caches, counters) and which budgets were seen low."""
        with self.guards_lock:
            self.guards.clear()
            self.unfull.clear()

    def isolate(self) -> tuple[Any, ...]:
        """A fresh in-process default store and no storm state, until :meth:`restore` is
        given what this returns (what was in place)."""
        with self.guards_lock:
            saved = (_stores._default[0], self.guards, self.unfull)
            self.guards, self.unfull = {}, set()
        _stores.set_default_store(_stores.InProcessStore())
        return saved

    def restore(self, saved: tuple[Any, ...]) -> None:
        """Put back what :meth:`isolate` replaced."""
        store, guards, unfull = saved
        _stores.set_default_store(store)
        with self.guards_lock:
            self.guards, self.unfull = guards, unfull

    def reset(self) -> None:
        """Back to a fresh process: a new in-process default store, no storm state, real
        waits, the default hooks, the exception cache emptied (registrations are kept)."""
        from ._rules import _failure_cache, plain_failures  # noqa: PLC0415 - core state, cleared in place

        _stores.set_default_store(_stores.InProcessStore())
        self.forget_storm()
        _clock.set_instant_mode(None)
        _hooks.set_hooks((_hooks.DefaultHook(),))
        _failure_cache.clear()
        plain_failures.clear()


RUNTIME: Final = Runtime()
