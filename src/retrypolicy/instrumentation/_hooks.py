"""The built-in hooks and the process-wide list of active ones."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import structlog

from .._events import GAVE_UP, SCHEDULED, SUCCEEDED, RetryEvent

if TYPE_CHECKING:
    from ..typing import RetryHook

__all__ = ["LoggingHook", "StructlogHook", "get_hooks", "set_hooks"]

_LEVELS: Final = {SCHEDULED: logging.WARNING, GAVE_UP: logging.ERROR, SUCCEEDED: logging.INFO}


class StructlogHook:
    """Logs each event through structlog: ``logger.warning("retry.scheduled", attempt=1, ...)``."""

    __slots__ = ("_logger",)

    def __init__(self, logger: object | None = None) -> None:
        self._logger = logger if logger is not None else structlog.get_logger("retrypolicy")

    def __call__(self, event: RetryEvent, /) -> None:
        level = _LEVELS.get(event.name)
        if level is None:
            return
        method = getattr(self._logger, logging.getLevelName(level).lower())
        method(event.name, **event.to_log())

    def __repr__(self) -> str:
        return "StructlogHook()"


class LoggingHook:
    """Logs each event through the stdlib ``logging`` module (logger ``retrypolicy``)."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger if logger is not None else logging.getLogger("retrypolicy")

    def __call__(self, event: RetryEvent, /) -> None:
        level = _LEVELS.get(event.name)
        if level is None:
            return
        fields = event.to_log()
        text = " ".join(f"{k}={v!r}" for k, v in fields.items())
        self._logger.log(level, "%s %s", event.name, text, extra={"retry": fields})

    def __repr__(self) -> str:
        return "LoggingHook()"


_hooks: tuple[RetryHook, ...] = (StructlogHook(),)


def set_hooks(hooks: Iterable[RetryHook]) -> None:
    """Replace the process-wide hooks (``[]`` turns instrumentation off)."""
    global _hooks  # noqa: PLW0603 - one process-wide setting, swapped atomically
    _hooks = tuple(hooks)


def get_hooks() -> tuple[RetryHook, ...]:
    """The process-wide hooks, in the order they are called."""
    return _hooks
