"""Adaptive client-side rate limiting after 429s: AIMD pacing, and persistent-limit detection.

Why AIMD and not CUBIC: AWS's adaptive mode uses CUBIC, whose recovery curve
needs the measured send rate and the rate at the last throttle, per process.
Here one limiter may be shared by a whole fleet through Redis, and what the
fleet shares must be a few numbers updated atomically in one short script.
AIMD (TCP Reno's rule, also gRPC's and Finagle's choice for adaptive
throttling) is exactly that: on a 429 the rate is multiplied by ``decrease``
(0.5); while no 429 comes it grows by ``increase`` requests per second every
second. A fleet sharing one rate converges on the service's limit — the
multiplicative cut removes any overshoot within one round, the additive probe
is gentle — instead of every worker oscillating on its own.

How the pieces work:

- **Off until the first 429.** Before it, nothing is paced and nothing is
  asked of a store (a request costs nothing). The first 429 starts pacing at
  ``initial_rate``, or at the sending rate measured in this process times
  ``decrease``.
- **Pacing**: each request reserves the next free slot (a virtual schedule:
  one request every ``1 / rate`` seconds) and waits until it.
- **Once per ``cooldown``**: the 429s that answer requests sent at the old rate
  arrive together; only the first one in ``cooldown`` seconds cuts the rate.
- **Back to unpaced** after ``idle_reset`` seconds without a 429.
- **Persistent limits**: ``persist_after`` 429s in a row (no other answer
  between them, across every caller of the policy) mean the limit will not go
  away by waiting a few seconds: ``retry.rate_limit_persistent`` is reported
  once per ``persist_window`` with the spec's advice, and 429s are not retried
  until an answer other than 429 comes back.

Pure: :func:`limiter_step` takes ``now``; stores apply it atomically.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias

import attrs

from ._budget import as_float, number_at_least, whole_at_least

__all__ = ["AdaptiveLimiter", "LimiterOp", "LimiterResult", "LimiterState", "limiter_step"]

LimiterOp: TypeAlias = Literal["acquire", "throttled", "answered", "read"]

PERSISTENT_ADVICE: Final = (
    "The API keeps returning 429: slow down, try again later, and contact the provider if "
    "you consistently hit limits during normal operation."
)
"""What the spec tells a caller that keeps hitting its rate limits."""


@attrs.frozen(kw_only=True)
class AdaptiveLimiter:
    """Client-side rate limiting that adapts to 429s (AIMD), shared by every call of a policy."""

    decrease: float = attrs.field(
        default=0.5, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """The factor a 429 multiplies the rate by (below 1)."""
    increase: float = attrs.field(default=0.5, converter=as_float, validator=number_at_least(0))
    """Requests per second added to the rate for every second without a 429."""
    min_rate: float = attrs.field(
        default=0.5, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """The floor of the rate, in requests per second."""
    initial_rate: float | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(as_float),
        validator=attrs.validators.optional(number_at_least(0, strict=True)),
    )
    """The rate pacing starts at after the first 429; None: the measured rate x ``decrease``."""
    cooldown: float = attrs.field(default=1.0, converter=as_float, validator=number_at_least(0))
    """Seconds after a cut during which further 429s do not cut again."""
    idle_reset: float = attrs.field(
        default=60.0, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """Seconds without a 429 after which pacing stops."""
    persist_after: int = attrs.field(default=10, validator=whole_at_least(1))
    """429s in a row that make a rate limit persistent."""
    persist_window: float = attrs.field(
        default=60.0, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """Seconds between two ``retry.rate_limit_persistent`` reports."""

    def __attrs_post_init__(self) -> None:
        if self.decrease >= 1:
            msg = f"decrease {self.decrease!r}: expected a number > 0 and < 1"
            raise ValueError(msg)

    def evolve(self, **changes: Any) -> AdaptiveLimiter:
        """A copy with *changes* applied."""
        return attrs.evolve(self, **changes)


@attrs.frozen
class LimiterState:
    """The shared pacing state: ``rate`` (requests/s) as of ``stamp``, the next free slot."""

    active: bool = False
    rate: float = 0.0
    stamp: float = 0.0
    slot: float = 0.0
    last_cut: float = 0.0
    last_seen: float = 0.0
    """When the last 429 came back."""
    consecutive: int = 0
    reported: float = -1e18
    """When ``retry.rate_limit_persistent`` was last reported."""


@attrs.frozen
class LimiterResult:
    """What one step did.

    ``wait``: seconds to wait before sending (acquire). ``changed``: the rate
    changed in a way worth an event (a cut, the start or end of pacing), from
    ``previous``. ``persistent``: 429s are persistent right now; ``report``:
    this step is the one to report it (once per window).
    """

    wait: float = 0.0
    rate: float = 0.0
    previous: float = 0.0
    active: bool = False
    changed: bool = False
    consecutive: int = 0
    persistent: bool = False
    report: bool = False
    notice: tuple[str, str] | None = None


def _grown(config: AdaptiveLimiter, s: LimiterState, now: float) -> float:
    return s.rate + config.increase * max(0.0, now - s.stamp)


def limiter_step(
    config: AdaptiveLimiter,
    state: LimiterState | None,
    now: float,
    op: LimiterOp,
    measured: float = 0.0,
) -> tuple[LimiterState, LimiterResult]:
    """One step of the limiter.

    ``acquire``: a request is about to be sent; its wait. ``throttled``: a 429
    came back (*measured*: this process's sending rate, requests/s).
    ``answered``: anything else came back (ends a run of 429s). ``read``: no change.
    """
    s = state if state is not None else LimiterState()
    if s.active and now - s.last_seen >= config.idle_reset:  # quiet for long enough: unpaced
        previous = _grown(config, s, now)
        s = attrs.evolve(s, active=False, rate=0.0, stamp=now, slot=0.0)
        if op != "throttled":
            return s, LimiterResult(
                rate=0.0, previous=previous, changed=True, consecutive=s.consecutive
            )
    persistent = s.consecutive >= config.persist_after
    if op == "acquire":
        if not s.active:
            return s, LimiterResult(consecutive=s.consecutive, persistent=persistent)
        rate = _grown(config, s, now)
        start = max(s.slot, now)
        s = attrs.evolve(s, rate=rate, stamp=now, slot=start + 1.0 / rate)
        return s, LimiterResult(
            wait=start - now,
            rate=rate,
            active=True,
            consecutive=s.consecutive,
            persistent=persistent,
        )
    if op == "answered":
        if s.consecutive:
            s = attrs.evolve(s, consecutive=0)
        rate = _grown(config, s, now) if s.active else 0.0
        return s, LimiterResult(rate=rate, active=s.active)
    if op == "read":
        rate = _grown(config, s, now) if s.active else 0.0
        return s, LimiterResult(
            rate=rate, active=s.active, consecutive=s.consecutive, persistent=persistent
        )
    # throttled
    consecutive = s.consecutive + 1
    changed = False
    previous = _grown(config, s, now) if s.active else 0.0
    if not s.active:
        start = (
            config.initial_rate if config.initial_rate is not None else measured * config.decrease
        )
        rate = max(config.min_rate, start)
        # the 429 answered a request sent now: the next one waits a whole slot
        s = attrs.evolve(s, active=True, rate=rate, stamp=now, slot=now + 1.0 / rate, last_cut=now)
        changed = True
    elif now - s.last_cut >= config.cooldown:
        rate = max(config.min_rate, previous * config.decrease)
        s = attrs.evolve(s, rate=rate, stamp=now, slot=max(s.slot, now + 1.0 / rate), last_cut=now)
        changed = rate != previous
    else:  # an answer to a request sent before the last cut: counted, not cut again
        rate = previous
        s = attrs.evolve(s, rate=rate, stamp=now)
    persistent = consecutive >= config.persist_after
    report = persistent and now - s.reported >= config.persist_window
    s = attrs.evolve(
        s, consecutive=consecutive, last_seen=now, reported=now if report else s.reported
    )
    return s, LimiterResult(
        rate=rate,
        previous=previous,
        active=True,
        changed=changed,
        consecutive=consecutive,
        persistent=persistent,
        report=report,
    )


def limiter_ttl(config: AdaptiveLimiter) -> float:
    """Seconds after which an untouched limiter may be forgotten (it would be unpaced)."""
    return max(config.idle_reset, config.persist_window) + 60.0
