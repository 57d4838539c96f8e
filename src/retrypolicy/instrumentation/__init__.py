"""Instrumentation: hooks that see every retry event, structlog by default.

Event names (``retry.scheduled`` at warning, ``retry.gave_up`` at error,
``retry.succeeded`` at info) and their keys are a documented contract.
"""

from __future__ import annotations

from .._events import ATTEMPT, GAVE_UP, SCHEDULED, SUCCEEDED, RetryEvent
from ._hooks import LoggingHook, StructlogHook, get_hooks, set_hooks

__all__ = [
    "ATTEMPT",
    "GAVE_UP",
    "SCHEDULED",
    "SUCCEEDED",
    "LoggingHook",
    "RetryEvent",
    "StructlogHook",
    "get_hooks",
    "set_hooks",
]
