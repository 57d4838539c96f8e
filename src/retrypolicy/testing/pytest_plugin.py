"""A pytest plugin: every test starts from a fresh retrypolicy, and may wait instantly.

Enable it in a ``conftest.py``::

    pytest_plugins = ["retrypolicy.testing.pytest_plugin"]

Then every test runs in ``rp.testing.isolated()``: a fresh in-process store, no
budget drained or breaker opened by the test before it, and nothing left for the
test after it — neither storm state, nor the hooks or the instant mode a test set
(``set_hooks``, ``set_instant``, ``prometheus.install``): what was in place when the
test started (what your ``conftest.py`` installed) is put back after it. The
``rp_instant`` fixture gives a test ``rp.testing.instant()`` (no waits, recorded).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._clock import _instant, set_instant_mode
from ..instrumentation._hooks import get_hooks, set_hooks
from ._instant import Instant, instant, isolated

__all__ = ["rp_instant", "rp_isolated"]


@pytest.fixture(autouse=True)
def rp_isolated() -> Iterator[None]:
    """Storm protection's process-wide state, fresh for this test and forgotten after it; the
    hooks and the instant mode in place before the test are back after it."""
    hooks, mode = get_hooks(), _instant[0]
    try:
        with isolated():
            yield
    finally:
        set_hooks(hooks)
        set_instant_mode(mode)


@pytest.fixture
def rp_instant() -> Iterator[Instant]:
    """``rp.testing.instant()`` around the test: no waits; ``.waits`` records them."""
    with instant() as recorder:
        yield recorder
