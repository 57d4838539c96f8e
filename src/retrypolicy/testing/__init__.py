"""Testing helpers for code that uses retrypolicy: no sleeping, a fake EU GPT server."""

from __future__ import annotations

from ._instant import Instant, instant, isolated, reset, set_instant
from ._replies import Reply
from ._server import FakeEUGPT, RecordedRequest

__all__ = [
    "FakeEUGPT",
    "Instant",
    "RecordedRequest",
    "Reply",
    "instant",
    "isolated",
    "reset",
    "set_instant",
]
