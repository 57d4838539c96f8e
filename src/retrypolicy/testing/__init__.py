"""Testing helpers for code that uses retrypolicy: no sleeping, a fake EU GPT server."""

from __future__ import annotations

from ._fake import FakeEUGPT, RecordedRequest, Reply
from ._instant import Instant, instant, set_instant

__all__ = ["FakeEUGPT", "Instant", "RecordedRequest", "Reply", "instant", "set_instant"]
