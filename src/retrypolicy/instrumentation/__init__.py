"""Instrumentation: hooks that see every retry event.

Event names (``retry.scheduled`` at warning, ``retry.gave_up`` at error,
``retry.succeeded`` at info) and their keys are a documented contract.

By default (:class:`DefaultHook`) events never go to standard output: they go
through structlog once the application has configured it, and through the stdlib
``logging`` module (logger ``retrypolicy``) before that, so an application without
any logging setup sees warnings and errors on standard error.
"""

from __future__ import annotations

from .._events import ATTEMPT, GAVE_UP, SCHEDULED, SUCCEEDED, RetryEvent
from ._hooks import DefaultHook, LoggingHook, StructlogHook, get_hooks, set_hooks

__all__ = [
    "ATTEMPT",
    "GAVE_UP",
    "SCHEDULED",
    "SUCCEEDED",
    "DefaultHook",
    "LoggingHook",
    "RetryEvent",
    "StructlogHook",
    "get_hooks",
    "set_hooks",
]
