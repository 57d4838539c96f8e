"""The event every hook receives: one per decision the attempt loop carries out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from ._outcome import Outcome
    from ._policy import Policy

__all__ = ["ATTEMPT", "GAVE_UP", "SCHEDULED", "SUCCEEDED", "RetryEvent"]

SCHEDULED: Final = "retry.scheduled"
"""An attempt failed and another one is scheduled after ``delay`` seconds."""
GAVE_UP: Final = "retry.gave_up"
"""An attempt failed and the policy will not retry: the failure reaches the caller."""
SUCCEEDED: Final = "retry.succeeded"
"""An attempt after at least one retry succeeded."""
ATTEMPT: Final = "retry.attempt"
"""An attempt is about to start (only for ``before_attempt`` hooks, never logged)."""


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
        return out
