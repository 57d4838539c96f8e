"""How long to wait before retry *n*: capped exponential backoff with jitter.

Pure arithmetic: no clock, no sleeping. Randomness comes from the ``rng``
argument (a :class:`random.Random`) so schedules are reproducible in tests.
Server wait hints (``Retry-After``, ``retry-after-ms``) are parsed here too,
with the wall-clock time passed in rather than read.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Iterable, Mapping
from typing import Final, Literal, TypeAlias

import attrs

__all__ = ["Backoff", "Jitter", "parse_retry_after", "retry_after_from_headers"]

Jitter: TypeAlias = Literal["full", "equal", "decorrelated", "none"]
JITTERS: Final[tuple[str, ...]] = ("full", "equal", "decorrelated", "none")

MAX_SANE_HINT: Final = 366 * 24 * 3600.0
"""A wait hint above a year is taken as garbage, not as advice."""
_MAX_HINT_CHARS: Final = 64

_default_rng: Final = random.Random()


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        msg = f"{attr.name} {value!r}: expected a number"
        raise TypeError(msg)
    if not math.isfinite(value) or value < 0:
        msg = f"{attr.name} {value!r}: expected a finite number >= 0"
        raise ValueError(msg)


def _multiplier(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    _positive(_inst, attr, value)
    if value < 1:
        msg = f"{attr.name} {value!r}: expected a number >= 1 (backoff must not shrink)"
        raise ValueError(msg)


def _jitter(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if value not in JITTERS:
        msg = f"{attr.name} {value!r}: expected one of {', '.join(map(repr, JITTERS))}"
        raise ValueError(msg)


@attrs.frozen
class Backoff:
    """Capped exponential backoff: ``initial * multiplier ** (n - 1)``, at most ``max_delay``.

    ``jitter`` spreads clients apart (AWS's three schemes): ``"full"`` waits
    uniformly in ``[0, d]``, ``"equal"`` in ``[d/2, d]``, ``"decorrelated"``
    in ``[initial, 3 * previous]``; ``"none"`` waits exactly ``d``.

    ``max_retry_after`` bounds how long a server may make us wait: a larger
    hint makes the policy give up at once rather than sleep for hours.
    """

    initial: float = attrs.field(default=0.5, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_multiplier)
    max_delay: float = attrs.field(default=8.0, validator=_positive)
    jitter: Jitter = attrs.field(default="full", validator=_jitter)
    max_retry_after: float = attrs.field(default=60.0, validator=_positive)

    def base(self, retry_number: int) -> float:
        """The un-jittered delay before retry *retry_number* (1-based)."""
        n = max(retry_number, 1) - 1
        try:
            d = self.initial * self.multiplier**n
        except OverflowError:
            return self.max_delay
        return min(d, self.max_delay)

    def delay(
        self,
        retry_number: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
        previous: float | None = None,
    ) -> float:
        """Seconds to wait before retry *retry_number* (1-based).

        With a valid *retry_after* (seconds), wait at least that long — never
        retry inside the server's window — and at most ``max_retry_after``.
        An invalid hint (negative, NaN, infinite) is ignored. *previous* is the
        last delay, used by decorrelated jitter.
        """
        computed = self._jittered(retry_number, rng or _default_rng, previous)
        if retry_after is None or not (0 <= retry_after <= MAX_SANE_HINT):
            # NaN fails the comparison too
            return computed
        return min(max(retry_after, computed), self.max_retry_after)

    def _jittered(self, retry_number: int, rng: random.Random, previous: float | None) -> float:
        # runs on every scheduled retry: rng.random() (C) rather than uniform(), base inlined
        jitter = self.jitter
        if jitter == "decorrelated":
            prev = self.initial if previous is None or previous < self.initial else previous
            hi = min(self.max_delay, prev * 3)
            lo = min(self.initial, hi)
            return lo + (hi - lo) * rng.random()
        try:
            d = self.initial * self.multiplier ** (retry_number - 1 if retry_number > 1 else 0)
        except OverflowError:
            d = self.max_delay
        d = min(d, self.max_delay)
        if jitter == "full":
            return d * rng.random()
        if jitter == "none":
            return d
        return d / 2 + d / 2 * rng.random()

    def schedule(self, retries: int, *, rng: random.Random | None = None) -> list[float]:
        """The waits before retries 1..*retries*, drawn once (for explaining a policy)."""
        rng = rng or _default_rng
        out: list[float] = []
        prev: float | None = None
        for n in range(1, retries + 1):
            prev = self.delay(n, rng=rng, previous=prev)
            out.append(prev)
        return out


def parse_retry_after(
    value: str | bytes | float | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when it is no usable hint.

    Accepts delta-seconds (``"120"``), decimal seconds (``"1.5"``) and an
    HTTP-date, which needs *now* (seconds since the epoch) to be turned into a
    wait. Negative, NaN, infinite, absurdly large (over a year), past dates and
    malformed values give None: the caller falls back to its own backoff.
    Never raises.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        text = value.strip()
        if not text or len(text) > _MAX_HINT_CHARS:
            return None
        try:
            seconds = float(text)
        except ValueError:
            from_date = _http_date_wait(text, now)
            if from_date is None:
                return None
            seconds = from_date
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_SANE_HINT:
        return None
    return seconds


def _http_date_wait(text: str, now: float | None) -> float | None:
    if now is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; a zone-less one is taken as such
        return None
    try:
        wait = when.timestamp() - now
    except (OverflowError, ValueError, OSError):
        return None
    return wait if wait > 0 else None


_CASE_INSENSITIVE: Final = frozenset({"CaseInsensitiveDict", "Headers", "HTTPHeaderDict"})
"""Header mappings of requests, httpx and urllib3: a missed ``get`` means absent."""

HeadersLike: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]


def header_value(headers: object, name: str) -> str | None:
    """Case-insensitive header look-up on a mapping or a list of pairs. Never raises."""
    if headers is None:
        return None
    lname = name.lower()
    try:
        if isinstance(headers, Mapping):
            # case-insensitive mappings (requests, httpx, urllib3) answer directly
            direct = headers.get(name)
            if direct is not None:
                return direct.decode("latin-1") if isinstance(direct, bytes) else str(direct)
            if type(headers).__name__ in _CASE_INSENSITIVE:
                return None
    except (TypeError, ValueError, AttributeError):
        return None
    try:
        items = headers.items() if isinstance(headers, Mapping) else headers
        for key, value in items:  # type: ignore[attr-defined] # any iterable of pairs; errors caught
            k = key.decode("latin-1") if isinstance(key, bytes) else str(key)
            if k.lower() == lname:
                return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    except (TypeError, ValueError, AttributeError):
        return None
    return None


def retry_after_from_headers(headers: object, *, now: float | None = None) -> float | None:
    """The server's wait hint in seconds: ``retry-after-ms`` first, then ``Retry-After``."""
    ms = header_value(headers, "retry-after-ms")
    if ms is not None:
        try:
            seconds = float(ms.strip()) / 1000.0 if len(ms) <= _MAX_HINT_CHARS else math.nan
        except ValueError:
            seconds = math.nan
        parsed = parse_retry_after(seconds)
        if parsed is not None:
            return parsed
    return parse_retry_after(header_value(headers, "retry-after"), now=now)
