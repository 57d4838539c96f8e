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
from collections.abc import Mapping
from datetime import UTC
from email.message import Message
from typing import Final, Literal, TypeAlias

import attrs

from ._budget import number_at_least

__all__ = ["Backoff", "Jitter", "parse_retry_after", "retry_after_from_headers"]

Jitter: TypeAlias = Literal["full", "equal", "decorrelated", "none"]
JITTERS: Final[tuple[str, ...]] = ("full", "equal", "decorrelated", "none")

_MAX_FLOAT_CHARS: Final = 64
"""Hints up to this long may use any form ``float()`` reads (``1e3``, ``+5``)."""
_MAX_DATE_CHARS: Final = 64
"""An HTTP-date is 29 characters (obsolete forms a few more): longer text is no date."""
_DAY_NAMES: Final = frozenset(
    name.lower()
    for day in ("Mon", "Tues", "Wednes", "Thurs", "Fri", "Satur", "Sun")
    for name in (day[:3], f"{day}day")
)
"""What an HTTP-date starts with, before its comma (IMF-fixdate and the obsolete RFC 850)."""
_MAX_HINT_PIECES: Final = 16
"""Comma-separated pieces of a hint field read (eight HTTP-dates): a field sent on more
lines than that is no usable hint."""
_EXACT_DIGITS: Final = 15
"""Whole-second digits read exactly; a longer number is approximated from its leading
digits and its length (a float cannot hold more anyway), so a 1 MB hint costs a scan."""

_default_rng: Final = random.Random()


_positive: Final = number_at_least(0)


def _multiplier(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    _positive(_inst, attr, value)
    if value < 1:
        msg = f"{attr.name} {value!r}: expected a number >= 1 (backoff must not shrink)"
        raise ValueError(msg)


def _jitter(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if value not in JITTERS:
        msg = f"{attr.name} {value!r}: expected one of {', '.join(map(repr, JITTERS))}"
        raise ValueError(msg)


_BASES: Final = 16
"""How many retries' un-jittered waits a :class:`Backoff` keeps at hand (index 0 is retry 1's
too: ``base`` counts from 1 and treats 0 as 1)."""


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
    _bases: tuple[float, ...] = attrs.field(init=False, eq=False, repr=False, hash=False)
    """:meth:`base` of the first retries, worked out once: a retry looks its wait up here."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_bases", tuple(self.base(n) for n in range(_BASES + 1)))

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

        With a *retry_after* (seconds, however large — infinity too), wait at least
        that long — never retry inside the server's window — and at most
        ``max_retry_after`` (the policy gives up before waiting on a hint above it).
        An invalid hint (negative, NaN) is ignored. *previous* is the last delay,
        used by decorrelated jitter.
        """
        computed = self._jittered(retry_number, rng or _default_rng, previous)
        if retry_after is None or not retry_after >= 0:  # NaN fails the comparison too
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
        d = self._bases[retry_number] if retry_number <= _BASES else self.base(retry_number)
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

    def bounds(self, retries: int) -> list[tuple[float, float]]:
        """The shortest and longest wait before retries 1..*retries*, whatever the draws.

        For explaining a policy: the range the jitter spreads :meth:`base` over
        (decorrelated jitter's grows with the longest wait before it).
        """
        out: list[tuple[float, float]] = []
        for n in range(1, retries + 1):
            if self.jitter == "decorrelated":
                prev = self.initial if not out or out[-1][1] < self.initial else out[-1][1]
                high = min(self.max_delay, prev * 3)
                low = min(self.initial, high)
            else:
                high = self.base(n)
                low = {"full": 0.0, "equal": high / 2}.get(self.jitter, high)
            out.append((low, high))
        return out


def parse_retry_after(
    value: str | bytes | float | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when it is no usable hint.

    Accepts delta-seconds (``"120"``), decimal seconds (``"1.5"``) and an
    HTTP-date, which needs *now* (seconds since the epoch) to be turned into a
    wait. A hint is never undercut: any parseable value however large (thirty
    digits, a date next century) comes back as a large float — ``inf`` past what a
    float holds — so that the policy gives up at once, carrying the hint, instead of
    retrying inside the server's window. Negative, NaN, past dates and malformed
    values give None: the caller falls back to its own backoff. Never raises, and
    reads a long value in one linear scan.

    A value holding several hints, comma-separated (a header the server sent on
    several lines, combined as RFC 9110 combines them), is the latest moment of
    those usable: the server's wait is never undercut.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            return math.inf if value > 0 else None
        return seconds if seconds >= 0 else None  # NaN fails the comparison too
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if "," not in text:
        return _one_hint(text, now)
    latest = None  # several values (a header sent twice, its lines combined): never undercut one
    for one in _values(text) or ():
        wait = _one_hint(one, now)
        if wait is not None and (latest is None or wait > latest):
            latest = wait
    return latest


def _one_hint(text: str, now: float | None) -> float | None:
    """:func:`parse_retry_after` of one stripped value (delta-seconds or an HTTP-date)."""
    if not text:
        return None
    number = _number(text)
    if number is not None:
        return number if number >= 0 else None
    if len(text) > _MAX_DATE_CHARS:
        return None
    return _http_date_wait(text, now)


def _values(text: str) -> list[str] | None:
    """The values of a combined hint field, stripped: a field sent on several lines comes
    as one value, its lines joined by commas (RFC 9110 5.3). An HTTP-date holds a comma of
    its own after its day name (``Wed, 21 Oct 2015 07:28:00 GMT``): the name is joined back
    to its date. None for more pieces than any server sends (linear work on any value)."""
    pieces = text.split(",", _MAX_HINT_PIECES)
    if len(pieces) > _MAX_HINT_PIECES:
        return None
    values: list[str] = []
    day = ""
    for piece in pieces:
        one = piece.strip()
        if day:
            values.append(f"{day}, {one}")
            day = ""
        elif one.lower() in _DAY_NAMES:  # "Wed" of "Wed, 21 Oct 2015 ...": its date follows
            day = one
        else:
            values.append(one)
    return values


def _number(text: str) -> float | None:
    """*text* (stripped, non-empty) as a number of seconds, or None if it is not one.

    Plain decimals (``[0-9]+(.[0-9]*)?``) of any length are read in linear time; a
    short ASCII text may also take the other forms ``float()`` reads (``+5``, ``1e3``).
    Text that spells a non-number (``inf``, ``nan``) is not a number.
    """
    if not text.isascii():
        return None  # float() would read other scripts' digits
    whole, _, frac = text.partition(".")
    if _all_digits(whole) and (not frac or _all_digits(frac)):
        digits = whole.lstrip("0")
        if len(digits) <= _EXACT_DIGITS:
            return float(f"{digits or '0'}.{frac[:_EXACT_DIGITS] or '0'}")
        # a float keeps 17 significant digits: read those, scale by the length
        try:
            return float(digits[:17]) * 10.0 ** (len(digits) - 17)
        except OverflowError:
            return math.inf
    if len(text) > _MAX_FLOAT_CHARS or "_" in text:  # float() reads "1_0" as 10
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None
    if math.isnan(seconds) or (math.isinf(seconds) and "n" in text.lower()):
        return None  # "nan", "inf", "infinity": words, not numbers
    return seconds


def _all_digits(ascii_text: str) -> bool:
    """True if *ascii_text* is non-empty and all [0-9] (bytes.isdigit: ~10x faster if long)."""
    if len(ascii_text) <= _MAX_FLOAT_CHARS:
        return ascii_text.isdigit()
    return ascii_text.encode("ascii").isdigit()


def _http_date_wait(text: str, now: float | None) -> float | None:
    if now is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; a zone-less one (asctime's form, which
        when = when.replace(tzinfo=UTC)  # RFC 9110 says to accept, or "-0000") is taken as such
    try:
        wait = when.timestamp() - now
    except (OverflowError, ValueError, OSError):
        return None
    return wait if wait > 0 else None


_CASE_INSENSITIVE: Final = frozenset(
    {"CaseInsensitiveDict", "Headers", "HTTPHeaderDict", "CIMultiDictProxy", "CIMultiDict"}
)
"""Header mappings of requests, httpx, urllib3 and aiohttp: a missed ``get`` means absent."""
_FIRST_LINE_ONLY: Final = frozenset({"CIMultiDictProxy", "CIMultiDict"})
"""Of those, the ones whose ``get`` answers a field's first line only (``getall``: every line);
requests, httpx and urllib3 combine the lines themselves."""


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def header_value(headers: object, name: str) -> str | None:
    """Case-insensitive header look-up on a mapping or a list of pairs. Never raises.

    A field sent on several lines is one value, its lines joined by ``", "`` in order
    (as RFC 9110 combines them, and requests, httpx and urllib3 do), whatever holds
    the headers: a list-valued field is read whole, a field sent twice is not half-read.
    """
    if headers is None:
        return None
    try:
        if isinstance(headers, Message):  # http.client, urllib.request: case-insensitive
            lines = headers.get_all(name)
            return None if not lines else ", ".join(map(str, lines))
        kind = type(headers).__name__
        if kind in _FIRST_LINE_ONLY:  # aiohttp's multidicts: every line in one look-up
            found = headers.getall(name, ())  # type: ignore[attr-defined]
            return ", ".join(map(_text, found)) if found else None
        if isinstance(headers, Mapping) and kind in _CASE_INSENSITIVE:
            # requests, httpx and urllib3 answer directly; any other mapping (a dict may
            # hold "Retry-After" and "retry-after") is read as pairs, below
            direct = headers.get(name)
            return None if direct is None else _text(direct)
        lname = name.lower()
        items = headers.items() if isinstance(headers, Mapping) else headers
        lines = []
        for key, value in items:  # type: ignore[attr-defined] # any iterable of pairs; errors caught
            if _text(key).lower() == lname:
                lines.append(_text(value))
        return ", ".join(lines) if lines else None
    except (TypeError, ValueError, AttributeError):
        return None


def retry_after_from_headers(headers: object, *, now: float | None = None) -> float | None:
    """The server's wait hint in seconds from ``retry-after-ms`` and ``Retry-After``.

    When both are usable and disagree, the later moment wins: a hint is never
    undercut. Either alone is used as it is; neither gives None. A header sent
    on several lines counts every line (the latest moment of all wins).
    """
    hint = parse_retry_after(header_value(headers, "retry-after"), now=now)
    ms = header_value(headers, "retry-after-ms")
    if ms is not None:
        text = ms.strip()
        for one in (text,) if "," not in text else _values(text) or ():
            millis = _number(one) if one else None
            if millis is not None and millis >= 0:
                seconds = millis / 1000.0
                if hint is None or seconds > hint:
                    hint = seconds
    return hint
