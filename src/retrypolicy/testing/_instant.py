"""``instant()``: every wait in its scope is zero, and recorded.

Tests assert the exact schedule a policy produced without sleeping; a virtual
clock advances by each skipped wait so deadlines behave as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._clock import Instant, set_instant_mode

__all__ = ["Instant", "instant", "set_instant"]


@contextmanager
def instant() -> Iterator[Instant]:
    """Within the block, retries do not wait; ``.waits`` lists the waits they would have made.

    ::

        with rp.testing.instant() as clock:
            call_that_retries()
        assert clock.waits == [0.5, 1.0]

    Process-wide (all threads); restores the previous mode on exit, so it nests.
    """
    recorder = Instant()
    previous = set_instant_mode(recorder)
    try:
        yield recorder
    finally:
        set_instant_mode(previous)


def set_instant(on: bool) -> Instant | None:
    """Turn instant mode on (returns the fresh recorder) or off, without a ``with`` block."""
    recorder = Instant() if on else None
    set_instant_mode(recorder)
    return recorder
