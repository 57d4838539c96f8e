"""The process-wide state, in one object with one reset.

What a process shares between call paths — the default store, the storm guards
and the set of budgets seen below capacity, the instant-mode recorder, the
process-wide hooks, the exception registry's cache — lives behind
:data:`RUNTIME`, so that a test (``rp.testing.reset()``, the ``instant()``
block) can put all of it back as a fresh process has it.

:data:`RUNTIME.unfull <Runtime.unfull>` is what a first-try success tests (one truth
test per call): empty, the success has nothing to tell a budget. Besides the guards
seen below capacity it holds :data:`FLEET` while the default store is a shared one, whose
bucket other workers drain unseen: then every success asks its guard, which checks again
at most once a second (``Guard.refund_steps``). A call path given a shared store of its
own knows it itself (``Retrier.news``): the others pay nothing for it.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from . import _clock
from .instrumentation import _hooks
from .stores import _base as _stores

__all__ = ["FLEET", "RUNTIME", "Runtime"]

FLEET: Final = "fleet"
"""In :attr:`Runtime.unfull` while the default store is a shared one: a first-try success
then has news for its guard."""


class Runtime:
    """The process-wide state of retrypolicy (one instance: :data:`RUNTIME`)."""

    __slots__ = ("guards", "guards_lock", "unfull")

    def __init__(self) -> None:
        self.guards: dict[tuple[Any, ...], Any] = {}
        """One storm guard per (store, policy): local caches and counters."""
        self.guards_lock = threading.Lock()
        self.unfull: set[Any] = set()
        """The guards whose budget this process last saw below capacity, and :data:`FLEET`
        while the default store is a shared one: a first-try success refunds only while this is
        not empty (it costs one test per call)."""
        _stores.DEFAULT_WATCHERS.append(self._default_changed)

    def _default_changed(self, _store: Any) -> None:
        # the default as it is now, not as this change made it: the last of two changes
        # racing each other leaves the mark right
        self._mark(self.unfull, _stores._default[0])

    def _mark(self, unfull: set[Any], default: Any) -> None:
        """Put :data:`FLEET` in *unfull*, or take it out, for the default store *default*."""
        if getattr(default, "shared", False):
            unfull.add(FLEET)
        else:
            unfull.discard(FLEET)

    def forget_storm(self) -> None:
        """Forget every guard (local caches, counters) and which budgets were seen low."""
        with self.guards_lock:
            self.guards.clear()
            self.unfull.clear()
            self._mark(self.unfull, _stores._default[0])

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
            self._mark(unfull, store)  # a shared store may have come into use meanwhile

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
