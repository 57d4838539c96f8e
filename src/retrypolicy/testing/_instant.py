"""``instant()`` and ``reset()``: tests that never sleep and never see another test's state.

Tests assert the exact schedule a policy produced without sleeping; a virtual
clock advances by each skipped wait so deadlines behave as in production. Storm
protection's state (budgets, limiters, breakers) is process-wide in production,
which a test suite run in one process must not inherit from the test before:
each ``instant()`` block runs on a fresh in-process store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._clock import Instant, set_instant_mode
from .._runtime import RUNTIME

__all__ = ["Instant", "instant", "isolated", "reset", "set_instant"]


@contextmanager
def isolated() -> Iterator[None]:
    """Within the block, storm protection starts afresh: a new in-process default store, no
    budget, limiter or breaker state, no counters; what was there is back after it. (A
    store passed with ``store=`` or set inside the block is used as given.)"""
    saved = RUNTIME.isolate()
    try:
        yield
    finally:
        RUNTIME.restore(saved)


@contextmanager
def instant(*, isolated: bool = True) -> Iterator[Instant]:
    """Within the block, retries do not wait; ``.waits`` lists the waits they would have made.

    ::

        with rp.testing.instant() as clock:
            call_that_retries()
        assert clock.waits == [0.5, 1.0]

    Process-wide (all threads); restores the previous mode on exit, so it nests. Each
    thread's virtual clock advances by its own waits: threads waiting side by side live
    through the same seconds, as they would for real. With *isolated* (the default) the
    block runs on a fresh in-process default store, with no storm state: a budget an
    earlier test drained stays drained for nobody (a store the test sets inside the
    block, or passes with ``store=``, is used as given).
    """
    recorder = Instant()
    saved = RUNTIME.isolate() if isolated else None
    previous = set_instant_mode(recorder)
    try:
        yield recorder
    finally:
        set_instant_mode(previous)
        if saved is not None:
            RUNTIME.restore(saved)


def set_instant(on: bool) -> Instant | None:
    """Turn instant mode on (returns the fresh recorder) or off, without a ``with`` block."""
    recorder = Instant() if on else None
    set_instant_mode(recorder)
    return recorder


def reset() -> None:
    """Back to a fresh process: a new in-process default store and no storm state (budgets,
    limiters, breakers, counters), real waits, the default hooks. Exceptions registered
    with ``register_exception`` stay registered. For a test suite's setup and teardown;
    ``retrypolicy.testing.pytest_plugin`` does it around every test."""
    RUNTIME.reset()
