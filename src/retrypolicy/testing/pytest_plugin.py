"""A pytest plugin: every test starts from a fresh retrypolicy, and may wait instantly.

Enable it in a ``conftest.py``::

    pytest_plugins = ["retrypolicy.testing.pytest_plugin"]

Then every test runs after ``rp.testing.reset()`` (no budget drained, breaker
opened or hook installed by the test before it), and the ``rp_instant``
fixture gives a test ``rp.testing.instant()`` (no waits, recorded).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._instant import Instant, instant, reset

__all__ = ["rp_instant", "rp_reset"]


@pytest.fixture(autouse=True)
def rp_reset() -> Iterator[None]:
    """retrypolicy's process-wide state, fresh for this test and forgotten after it."""
    reset()
    yield
    reset()


@pytest.fixture
def rp_instant() -> Iterator[Instant]:
    """``rp.testing.instant()`` around the test: no waits; ``.waits`` records them."""
    with instant() as recorder:
        yield recorder
