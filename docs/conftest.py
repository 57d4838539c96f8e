"""Doctests of the docs pages: retry events are not printed into the examples' output."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import retrypolicy as rp


@pytest.fixture(autouse=True)
def _quiet_events() -> Iterator[None]:
    previous = rp.instrumentation.get_hooks()
    rp.instrumentation.set_hooks([])
    yield
    rp.instrumentation.set_hooks(previous)
