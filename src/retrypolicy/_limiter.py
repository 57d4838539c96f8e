"""Adaptive client-side rate limiting after 429s: cubic pacing, and persistent-limit detection.

The law (a scale-free CUBIC, TCP's and AWS's adaptive mode's recovery curve, with
the limit measured from what the service let through):

- **A cut** (a 429, at most once per ``cooldown``): the service's limit is
  taken to be what it accepted since the last cut, ``(sent - 429s) / elapsed``
  (capped by the rate at the 429). A token bucket that answered 429 at both ends
  of the window was empty at both, so what it let through between them is its
  refill rate whatever the sending rate was: an overshoot of 5x is undone in one
  cut, not in log(5)/log(1/decrease) of them. The rate drops to that limit times
  ``decrease`` (0.7) and the limit is remembered (``w_max``). One exception: a
  lone 429 (none since the last cut) that ends a probe at least ``PROBED`` (1.2x)
  above ``w_max`` keeps ``w_max``: the probe passed it without a 429, and what was
  let through understates the limit by the tokens the service's bucket spilled
  while the rate climbed back to it.
- **Recovery**: ``rate(t) = w_max * (1 + increase * (t - K)**3)``, ``t`` seconds
  after the cut, ``K = ((1 - decrease) / increase) ** (1/3)``: fast back to
  ``w_max`` (2.2 s with the defaults), flat around it, then an ever faster probe
  above it (+3% after 1 s, +24% after 2 s, x2 after 3.2 s) that finds a raised limit,
  or a limit first guessed far too low, within seconds.

Every constant is relative or in seconds, so the same defaults fit a limit of
5 requests/s and one of 500 (``min_rate`` is only a floor). AIMD's additive
``increase`` requests/s per second could not: right for one scale, 20x too slow
(or fast) for another, and a cut to half left half the capacity unused while
it crawled back. AIMD's argument — several independent senders converge to a
fair share — does not apply here: a shared limiter is one rate for the whole
fleet (one Redis hash), so there is no one to be fair to; what matters is
throughput near the limit with few 429s. The state is still a few numbers
stepped atomically in one short script (the curve is a closed form of the time
since the cut). A probe cannot see the service's limit before its burst is
spent, so it overshoots; the slots callers reserved at the probe's rate are not
spent on more 429s (see **Pacing**): about one 429 per probe comes back (1-2 % of
the requests at 5 requests/s with 8 callers, 0.2 % at 100/s; bench/README.md).

How the pieces work:

- **Off until the first 429.** Before it, nothing is paced and nothing is
  asked of a store (a request costs nothing). The first 429 starts pacing at
  ``initial_rate``, or at the sending rate measured in this process times
  ``decrease``, and probes upward from there (no limit measured yet; the first
  cut after it is at most ``decrease`` squared deep, since while the rate climbed
  from a low guess the service's bucket may have filled and spilled, so what it
  accepted understates its limit).
- **Pacing**: each request reserves the next free slot (a virtual schedule:
  one request every ``1 / rate`` seconds) and waits until it; then it confirms
  the slot (``confirm``, with the ``epoch`` it was given: the last cut's time). A
  cut meanwhile frees every reserved slot (the next is one new interval away), and
  a request that confirms a slot reserved before it reserves again at the new
  rate: the cut reaches the requests already waiting, not only later ones.
- **Once per ``cooldown``**: the 429s that answer requests sent at the old rate
  arrive together; only the first one in ``cooldown`` seconds cuts the rate.
  The others are counted for the next measurement, except those arriving
  before the first slot after the cut (they answer requests sent before it);
  requests still waiting for their slots at a cut (``held``: reserved with a wait,
  not yet confirmed) were not sent, and count in the next window (a request is
  counted once, when it first reserves, however often it reserves again).
- **Back to unpaced** after ``idle_reset`` seconds without a 429.
- **Persistent limits**: ``persist_after`` 429s in a row (no other answer
  between them, across every caller of the policy) mean the limit will not go
  away by waiting a few seconds: ``retry.rate_limit_persistent`` is reported
  once per ``persist_window`` with the spec's advice, and 429s are not retried
  until an answer other than 429 comes back.

Pure: :func:`limiter_step` takes ``now``; stores apply it atomically.
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal, TypeAlias

import attrs

from ._budget import as_float, number_at_least, whole_at_least

__all__ = ["AdaptiveLimiter", "LimiterOp", "LimiterResult", "LimiterState", "limiter_step"]

LimiterOp: TypeAlias = Literal["acquire", "confirm", "throttled", "answered", "read"]

PERSISTENT_ADVICE: Final = (
    "The API keeps returning 429: slow down, try again later, and contact the provider if "
    "you consistently hit limits during normal operation."
)
"""What the spec tells a caller that keeps hitting its rate limits."""


@attrs.frozen(kw_only=True)
class AdaptiveLimiter:
    """Client-side rate limiting that adapts to 429s (cubic), shared by every call of a policy."""

    decrease: float = attrs.field(
        default=0.7, converter=as_float, validator=number_at_least(0, strict=True)
    )
    """The factor a cut multiplies the measured limit by (below 1)."""
    increase: float = attrs.field(default=0.03, converter=as_float, validator=number_at_least(0))
    """How fast the rate grows without a 429, relative and scale-free: ``t`` seconds past the
    last measured limit the rate is that limit x (1 + increase x t**3); 0: no growth."""
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
    """The shared pacing state: the curve since the last cut (``rate`` right after it, at
    ``last_cut``; ``w_max``), the next free slot, and what was sent and refused since."""

    active: bool = False
    rate: float = 0.0
    """The rate right after the last cut (or the start): where the curve starts."""
    w_max: float = 0.0
    """The limit measured at the last cut (0: none yet): the curve returns to it, then probes."""
    slot: float = 0.0
    last_cut: float = 0.0
    sent: int = 0
    """Requests paced since the last cut."""
    throttled: int = 0
    """429s since the last cut."""
    last_seen: float = 0.0
    """When the last 429 came back."""
    consecutive: int = 0
    reported: float = -1e18
    """When ``retry.rate_limit_persistent`` was last reported."""
    held: int = 0
    """Requests waiting for a slot (reserved with a wait, not yet confirmed): not sent."""


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
    epoch: float = 0.0
    """``acquire``/``confirm``: the time of the last cut when the slot was reserved; a
    ``confirm`` with it after the wait tells whether the rate was cut meanwhile."""


PROBED: Final = 1.2
"""A 429 at this multiple of the last measured limit came from the probe above it."""


def _grown(config: AdaptiveLimiter, s: LimiterState, now: float) -> float:
    """The rate at *now* on the cubic curve that started at the last cut (see the module)."""
    c = config.increase
    if c <= 0:
        return s.rate
    top = max(s.w_max, s.rate)
    k = math.pow((top - s.rate) / (c * top), 1.0 / 3.0)  # seconds back to top (Lua's ^)
    d = max(0.0, now - s.last_cut) - k
    return top * (1.0 + c * d * d * d)


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
        s = attrs.evolve(
            s, active=False, rate=0.0, w_max=0.0, slot=0.0, sent=0, throttled=0, held=0
        )
        if op != "throttled":
            return s, LimiterResult(
                rate=0.0, previous=previous, changed=True, consecutive=s.consecutive
            )
    persistent = s.consecutive >= config.persist_after
    rate = _grown(config, s, now) if s.active else 0.0
    if op == "confirm" and s.active and s.last_cut == measured:
        if s.held:
            s = attrs.evolve(s, held=s.held - 1)
        return s, LimiterResult(  # not cut since the slot was reserved: it goes
            rate=rate, active=True, consecutive=s.consecutive, persistent=persistent, epoch=measured
        )
    if op in {"acquire", "confirm"}:  # a slot reserved before a cut is reserved again
        if not s.active:
            return s, LimiterResult(consecutive=s.consecutive, persistent=persistent)
        start = max(s.slot, now)
        # a request is counted once, when it first reserves (a cut carries it over), and
        # held while it waits for its slot (a confirmation that waits again stays held)
        held = s.held + (start > now) - (op == "confirm")
        s = attrs.evolve(
            s, slot=start + 1.0 / rate, sent=s.sent + (op == "acquire"), held=max(0, held)
        )
        return s, LimiterResult(
            wait=start - now,
            rate=rate,
            active=True,
            consecutive=s.consecutive,
            persistent=persistent,
            epoch=s.last_cut,
        )
    if op == "answered":
        if s.consecutive:
            s = attrs.evolve(s, consecutive=0)
        return s, LimiterResult(rate=rate, active=s.active)
    if op == "read":
        return s, LimiterResult(
            rate=rate, active=s.active, consecutive=s.consecutive, persistent=persistent
        )
    # throttled
    consecutive = s.consecutive + 1
    changed = False
    previous = rate
    if not s.active:
        start = (
            config.initial_rate if config.initial_rate is not None else measured * config.decrease
        )
        rate = max(config.min_rate, start)
        # the 429 answered a request sent now: the next one waits a whole slot
        s = attrs.evolve(
            s,
            active=True,
            rate=rate,
            w_max=0.0,
            slot=now + 1.0 / rate,
            last_cut=now,
            sent=0,
            throttled=0,
        )
        changed = True
    elif now - s.last_cut >= config.cooldown:
        # what the service let through since the last cut: its limit, when we were above it
        # (requests still waiting for their slots were not sent: they count in the next;
        # the slots ahead at this rate bound them, should some holder never confirm)
        pending = min(s.held, int(max(0.0, s.slot - now) * previous))
        elapsed = now - s.last_cut
        accepted = max(0, s.sent - pending - s.throttled - 1)
        served = accepted / elapsed if elapsed > 0 else previous
        if s.w_max > 0 and not s.throttled and previous >= s.w_max * PROBED:
            # a lone 429 of the probe, well above the last limit: that limit held (what was
            # let through understates it, by the tokens the bucket spilled while the
            # rate climbed back to it)
            top = min(previous, max(served, s.w_max))
        elif s.w_max > 0 or s.throttled:
            top = min(previous, served)
        else:  # from a guess to one 429: the bucket may have spilled while the rate climbed
            top = min(previous, max(served, previous * config.decrease))
        rate = max(config.min_rate, top * config.decrease)
        s = attrs.evolve(
            s,
            rate=rate,
            w_max=top,
            slot=now + 1.0 / rate,
            last_cut=now,
            sent=pending,
            throttled=0,
        )
        changed = rate != previous
    elif now - s.last_cut >= 1.0 / s.rate:
        # within the cooldown: not cut again, counted for the next measurement (sooner, it
        # answered a request sent before the cut)
        s = attrs.evolve(s, throttled=s.throttled + 1)
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
