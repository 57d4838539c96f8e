"""Shared fixtures: instant waits and captured retry events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent, get_hooks, set_hooks


@pytest.fixture
def instant() -> Iterator[rp.testing.Instant]:
    """Every retry wait in the test is zero, and recorded."""
    with rp.testing.instant() as recorder:
        yield recorder


@pytest.fixture
def events() -> Iterator[list[RetryEvent]]:
    """The retry events of the test, in order (the process-wide hooks are restored after)."""
    seen: list[RetryEvent] = []
    previous = get_hooks()
    set_hooks([*previous, seen.append])
    try:
        yield seen
    finally:
        set_hooks(previous)
