"""The event every hook receives: one per decision the attempt loop carries out."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from ._outcome import Outcome
    from ._policy import Policy

__all__ = [
    "ATTEMPT",
    "BREAKER_CLOSED",
    "BREAKER_HALF_OPEN",
    "BREAKER_OPENED",
    "BUDGET_EXHAUSTED",
    "BUDGET_RECOVERED",
    "GAVE_UP",
    "LIMITER_RATE_CHANGED",
    "RATE_LIMIT_PERSISTENT",
    "SCHEDULED",
    "STORE_RECOVERED",
    "STORE_UNAVAILABLE",
    "SUCCEEDED",
    "RetryEvent",
]

SCHEDULED: Final = "retry.scheduled"
"""An attempt failed and another one is scheduled after ``delay`` seconds."""
GAVE_UP: Final = "retry.gave_up"
"""An attempt failed and the policy will not retry: the failure reaches the caller."""
SUCCEEDED: Final = "retry.succeeded"
"""An attempt after at least one retry succeeded."""
ATTEMPT: Final = "retry.attempt"
"""An attempt is about to start (only for ``before_attempt`` hooks, never logged)."""

# Storm protection (docs/storm.md): state changes of budgets, limiters, breakers and stores.
# ``call`` is "" and ``attempt`` 0 when a change is not tied to one call; ``extra`` holds the
# keys of each (flattened into ``to_log()``).
BUDGET_EXHAUSTED: Final = "budget.exhausted"
"""A retry found the budget too low: retries give up until it refills. ``tokens`` (the level),
``capacity``. Not ``level``: structlog's ``add_log_level`` owns that key and would overwrite it."""
BUDGET_RECOVERED: Final = "budget.recovered"
"""An exhausted budget is back at half its capacity. ``tokens``, ``capacity``."""
BREAKER_OPENED: Final = "breaker.opened"
"""A host's breaker opened: calls fail fast. ``host``, ``state``, ``retry_in``."""
BREAKER_HALF_OPEN: Final = "breaker.half_open"
"""An open breaker lets probes through. ``host``, ``state``."""
BREAKER_CLOSED: Final = "breaker.closed"
"""A probe succeeded: the breaker closed. ``host``, ``state``."""
LIMITER_RATE_CHANGED: Final = "limiter.rate_changed"
"""Pacing started, was cut by a 429, or stopped (``rate`` 0). ``rate``, ``previous``."""
RATE_LIMIT_PERSISTENT: Final = "retry.rate_limit_persistent"
"""429s keep coming: reported once per window, with the advice. ``consecutive``, ``window``,
``advice``."""
STORE_UNAVAILABLE: Final = "store.unavailable"
"""A shared store failed: a local fallback answers meanwhile. ``store``, ``error``."""
STORE_RECOVERED: Final = "store.recovered"
"""A shared store answers again: shared state resumes. ``store``."""

_NO_EXTRA: Final[Mapping[str, object]] = MappingProxyType({})


@attrs.frozen(kw_only=True, slots=False)  # no slots: faster frozen __init__
class RetryEvent:
    """What happened at one step of a retried call.

    ``attempt`` is 1-based: the attempt that just ended (or, for
    ``retry.attempt``, the one about to start). ``elapsed`` is seconds since
    the call started; ``delay`` the wait before the next attempt.
    """

    name: str
    call: str
    attempt: int
    policy: Policy = attrs.field(repr=False)
    kind: str | None = None
    status: int | None = None
    code: str | None = None
    delay: float = 0.0
    elapsed: float = 0.0
    reason: str = ""
    error: str | None = None
    """``Type: message`` of the exception, redacted; None when a response came back."""
    outcome: Outcome | None = attrs.field(default=None, repr=False)
    extra: Mapping[str, object] = _NO_EXTRA
    """Keys of a storm event (read-only); empty for the ``retry.*`` decision events."""

    def to_log(self) -> dict[str, Any]:
        """The flat key/value pairs of the log line (the documented, tested contract)."""
        out: dict[str, Any] = {
            "call": self.call,
            "policy": self.policy.name,
            "attempt": self.attempt,
            "kind": None if self.kind is None else str(self.kind),
            "status": self.status,
            "code": self.code,
            "delay": round(self.delay, 6),
            "elapsed": round(self.elapsed, 6),
        }
        if self.reason:
            out["reason"] = self.reason
        if self.error is not None:
            out["error"] = self.error
        if self.extra:
            out.update(self.extra)
        return out
