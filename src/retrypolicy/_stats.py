"""What ``policy.stats()`` returns: a frozen snapshot of a policy's storm protection."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = ["StormStats"]


@attrs.frozen(kw_only=True)
class StormStats:
    """A snapshot of one policy's storm protection: the state in its store, and this
    process's counters (for dashboards). Read with ``policy.stats()``.

    ``budget_level``/``budget_capacity`` are None without a budget;
    ``limiter_rate`` is the pacing rate in requests/s (0.0 while unpaced, None
    without a limiter); ``breakers`` maps each host seen to its state
    (``"closed"``, ``"open"``, ``"half_open"``; the decorator's host is ``""``).
    ``counters`` (this process, since the guard was made): ``retries_allowed``,
    ``retries_refused`` (budget), ``refunds``, ``throttled`` (429s seen),
    ``persistent`` (reports), ``rate_changes``, ``circuit_rejected`` (calls failed
    fast), ``breaker_opened``, ``store_unavailable``.
    """

    policy: str
    store: str
    budget_level: float | None
    budget_capacity: float | None
    budget_exhausted: bool
    limiter_rate: float | None
    limiter_consecutive_429: int
    breakers: Mapping[str, str]
    counters: Mapping[str, int]
