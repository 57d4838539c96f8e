"""One event emitter: the event of a decision, the same keys on every call path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ._events import RetryEvent
from ._redact import redact
from .instrumentation._hooks import internal_log

if TYPE_CHECKING:
    from ._outcome import Outcome
    from .typing import RetryHook

__all__ = ["MAX_ERROR_TEXT", "retry_event", "safe_call"]

MAX_ERROR_TEXT: Final = 500
"""An event's ``error`` text is cut to this many characters."""


def retry_event(
    retrier: Any,
    name: str,
    outcome: Outcome | None,
    decision: Any,
    *,
    attempt: int,
    started: float,
    now: float,
) -> RetryEvent:
    """The event for one decision of the attempt machine (*retrier*: its call path)."""
    exc = outcome.exception if outcome is not None else None
    return RetryEvent(
        name=name,
        call=retrier.name,
        attempt=attempt,
        policy=retrier.policy,
        kind=decision.classification.kind if decision is not None else None,
        status=outcome.status if outcome is not None else None,
        code=outcome.code if outcome is not None else None,
        delay=decision.delay if decision is not None and decision.retry else 0.0,
        elapsed=now - started,
        reason=decision.reason if decision is not None else "",
        error=None if exc is None else redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_TEXT],
        outcome=outcome,
    )


def safe_call(hook: RetryHook, event: RetryEvent) -> None:
    """Call *hook*: a hook must never break the call it observes (its failure is logged)."""
    try:
        hook(event)
    except Exception as exc:  # noqa: BLE001 - a hook must never break the call it observes
        internal_log.exception(
            "retry.hook_failed", hook=repr(hook), retry_event=event.name, error=repr(exc)
        )
