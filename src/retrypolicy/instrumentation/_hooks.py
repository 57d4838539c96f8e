"""The built-in hooks and the process-wide list of active ones.

Where events go by default: through structlog once the application has configured
it (``structlog.is_configured()``), through the stdlib ``logging`` module (logger
``retrypolicy``) before that. Never to standard output: an unconfigured structlog
prints there, mixing retry events into the program's own output, while an
unconfigured ``logging`` sends warnings and errors to standard error through its
last-resort handler and otherwise obeys whatever logging setup the application has.
The choice is made per event (see :class:`DefaultHook`).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import structlog

from .._events import (
    BREAKER_CLOSED,
    BREAKER_HALF_OPEN,
    BREAKER_OPENED,
    BUDGET_EXHAUSTED,
    BUDGET_RECOVERED,
    GAVE_UP,
    LIMITER_RATE_CHANGED,
    RATE_LIMIT_PERSISTENT,
    SCHEDULED,
    STORE_RECOVERED,
    STORE_UNAVAILABLE,
    SUCCEEDED,
    RetryEvent,
)
from .._redact import redact

if TYPE_CHECKING:
    from ..typing import RetryHook

__all__ = [
    "DefaultHook",
    "LoggingHook",
    "StructlogHook",
    "get_hooks",
    "internal_log",
    "set_hooks",
]

LOGGER_NAME: Final = "retrypolicy"
"""The name of the structlog and stdlib loggers events go to."""

_LEVELS: Final = {
    SCHEDULED: logging.WARNING,
    GAVE_UP: logging.ERROR,
    SUCCEEDED: logging.INFO,
    BUDGET_EXHAUSTED: logging.WARNING,
    BUDGET_RECOVERED: logging.INFO,
    BREAKER_OPENED: logging.WARNING,
    BREAKER_HALF_OPEN: logging.INFO,
    BREAKER_CLOSED: logging.INFO,
    LIMITER_RATE_CHANGED: logging.INFO,
    RATE_LIMIT_PERSISTENT: logging.ERROR,
    STORE_UNAVAILABLE: logging.ERROR,
    STORE_RECOVERED: logging.INFO,
}


def _text(event_name: str, fields: dict[str, Any]) -> str:
    """``retry.scheduled call='fetch' attempt=1 ...``: the fields that hold a value."""
    shown = " ".join(f"{k}={v!r}" for k, v in fields.items() if v is not None)
    return f"{event_name} {shown}" if shown else event_name


class StructlogHook:
    """Logs each event through structlog: ``logger.warning("retry.scheduled", attempt=1, ...)``.

    Always structlog, configured or not; the default hook (:class:`DefaultHook`)
    uses it only once structlog is configured.
    """

    __slots__ = ("_logger",)

    def __init__(self, logger: object | None = None) -> None:
        self._logger = logger if logger is not None else structlog.get_logger(LOGGER_NAME)

    def __call__(self, event: RetryEvent, /) -> None:
        level = _LEVELS.get(event.name)
        if level is None:
            return
        method = getattr(self._logger, logging.getLevelName(level).lower())
        method(event.name, **event.to_log())

    def __repr__(self) -> str:
        return "StructlogHook()"


class LoggingHook:
    """Logs each event through the stdlib ``logging`` module (logger ``retrypolicy``).

    The message reads ``retry.scheduled call='fetch' policy='eugpt' attempt=1 ...``
    (keys without a value left out); every key, ``None`` included, is also on the
    record as ``record.retry`` (a dict) for structured handlers.
    """

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)

    def __call__(self, event: RetryEvent, /) -> None:
        level = _LEVELS.get(event.name)
        if level is None or not self._logger.isEnabledFor(level):
            return
        fields = event.to_log()
        self._logger.log(level, "%s", _text(event.name, fields), extra={"retry": fields})

    def __repr__(self) -> str:
        return "LoggingHook()"


class DefaultHook:
    """The hook active out of the box: structlog once configured, stdlib logging before.

    Decided per event with ``structlog.is_configured()``, so configuring structlog
    later (or entering ``structlog.testing.capture_logs()``) takes effect at once.
    """

    __slots__ = ("_logging", "_structlog")

    def __init__(self) -> None:
        self._structlog = StructlogHook()
        self._logging = LoggingHook()

    def __call__(self, event: RetryEvent, /) -> None:
        if structlog.is_configured():
            self._structlog(event)
        else:
            self._logging(event)

    def __repr__(self) -> str:
        return "DefaultHook()"


class _InternalLog:
    """retrypolicy's own diagnostics (a hook that raised), routed like the default hook."""

    __slots__ = ()

    def exception(self, event: str, **fields: Any) -> None:
        """Log *event* at error level with the traceback of the exception being handled,
        redacted: the exception is someone else's (a hook's), and its message may hold a
        key that must not reach a log line."""
        fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        handled = sys.exc_info()[1]
        trace = None
        if handled is not None:
            trace = redact("".join(traceback.format_exception(handled)).rstrip())
        if structlog.is_configured():  # "exception": where format_exc_info puts a traceback
            structlog.get_logger(LOGGER_NAME).error(event, **fields, exception=trace)
        elif trace is None:
            logging.getLogger(LOGGER_NAME).error("%s", _text(event, fields))
        else:
            logging.getLogger(LOGGER_NAME).error("%s\n%s", _text(event, fields), trace)


internal_log: Final = _InternalLog()
"""Where the attempt loop reports its own trouble: never standard output."""

_hooks: tuple[RetryHook, ...] = (DefaultHook(),)


def set_hooks(hooks: Iterable[RetryHook]) -> None:
    """Replace the process-wide hooks (``[]`` turns instrumentation off)."""
    global _hooks  # noqa: PLW0603 - one process-wide setting, swapped atomically
    _hooks = tuple(hooks)


def get_hooks() -> tuple[RetryHook, ...]:
    """The process-wide hooks, in the order they are called."""
    return _hooks
