"""One event emitter: the event of a decision, the same keys on every call path."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

from ._events import RetryEvent
from ._redact import error_text
from .instrumentation._hooks import internal_log

if TYPE_CHECKING:
    from ._outcome import Outcome
    from .typing import RetryHook

__all__ = [
    "MAX_ERROR_TEXT",
    "REPORTED",
    "mark_reported",
    "reported",
    "retry_event",
    "safe_call",
]

MAX_ERROR_TEXT: Final = 500
"""An event's ``error`` text is cut to this many characters."""
REPORTED: Final = "retrypolicy_reported"
"""Set (True) on a failure — an exception, a response handed back — whose give-up a retry
layer reported to the process's hooks: an outer layer giving up on it too does not log it a
second time (its call's own ``on_give_up`` still hears of it)."""


def mark_reported(obj: object) -> None:
    """Mark *obj*'s give-up as reported (best effort: some types refuse attributes)."""
    try:  # noqa: SIM105 - not contextlib.suppress: this runs on every give-up
        setattr(obj, REPORTED, True)
    except (AttributeError, TypeError):
        pass


def reported(obj: object) -> bool:
    """Whether a retry layer already reported giving up on *obj*."""
    try:
        return getattr(obj, REPORTED, False) is True
    except Exception:  # noqa: BLE001 - a hostile __getattr__ must not break a give-up
        return False


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
        error=None if exc is None else error_text(exc, MAX_ERROR_TEXT),
        outcome=outcome,
    )


def safe_call(hook: RetryHook, event: RetryEvent) -> None:
    """Call *hook*: a hook must never break the call it observes (its failure is logged)."""
    try:
        hook(event)
    except Exception as exc:  # noqa: BLE001 - a hook must never break the call it observes
        # logged, never raising itself: a hook whose repr fails goes by its type's name
        with contextlib.suppress(Exception):
            internal_log.exception(
                "retry.hook_failed",
                hook=_describe(hook),
                retry_event=event.name,
                error=error_text(exc, MAX_ERROR_TEXT),
            )


def _describe(hook: object) -> str:
    try:
        return repr(hook)
    except Exception:  # noqa: BLE001 - a hostile __repr__
        return f"<{type(hook).__name__}>"
