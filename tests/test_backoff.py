"""Backoff: capped exponential delays, jitter, and server wait hints."""

from __future__ import annotations

import email.utils
import math
import random

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import retrypolicy as rp

from .strategies import backoffs


def test_exponential_without_jitter() -> None:
    """Without jitter: initial * multiplier ** (n - 1), capped at max_delay."""
    b = rp.Backoff(initial=0.5, multiplier=2.0, max_delay=8.0, jitter="none")
    assert [b.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_base_is_the_unjittered_curve() -> None:
    """base(n) is the delay before jitter: what `explain` prints as the upper bound."""
    b = rp.Backoff(initial=1.0, multiplier=3.0, max_delay=20.0)
    assert [b.base(n) for n in range(6)] == [1.0, 1.0, 3.0, 9.0, 20.0, 20.0]
    assert b.base(5000) == 20.0


def test_huge_retry_number_does_not_overflow() -> None:
    """A retry number far past the cap still returns the cap."""
    assert rp.Backoff(jitter="none").delay(10_000) == 8.0


@pytest.mark.parametrize(
    ("jitter", "lo", "hi"),
    [("full", 0.0, 4.0), ("equal", 2.0, 4.0), ("none", 4.0, 4.0)],
)
def test_jitter_ranges(jitter: str, lo: float, hi: float) -> None:
    """Full jitter waits in [0, d], equal in [d/2, d], none exactly d (retry 4: d = 4)."""
    b = rp.Backoff(jitter=jitter)  # type: ignore[arg-type]
    rng = random.Random(1)
    draws = [b.delay(4, rng=rng) for _ in range(200)]
    assert all(lo <= d <= hi for d in draws)


def test_decorrelated_jitter() -> None:
    """Decorrelated jitter draws in [initial, 3 * previous], capped."""
    b = rp.Backoff(jitter="decorrelated")
    rng = random.Random(2)
    prev = None
    for n in range(1, 30):
        d = b.delay(n, rng=rng, previous=prev)
        upper = min(8.0, 3 * max(prev or 0.5, 0.5))
        assert 0.5 <= d <= upper
        prev = d


def test_rng_makes_it_reproducible() -> None:
    """The same seeded RNG gives the same schedule."""
    b = rp.Backoff()
    assert b.schedule(6, rng=random.Random(7)) == b.schedule(6, rng=random.Random(7))


def test_retry_after_is_a_floor() -> None:
    """A server hint is honoured: never wait less than the server asked."""
    b = rp.Backoff(jitter="none")
    assert b.delay(1, retry_after=3.0) == 3.0
    assert b.delay(5, retry_after=1.0) == 8.0  # backoff still grows if the hint is smaller


def test_retry_after_is_capped() -> None:
    """delay() never returns more than max_retry_after."""
    assert rp.Backoff(max_retry_after=30.0).delay(1, retry_after=500.0) == 30.0


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        pytest.param(-1.0, 1.0, id="negative: ignored"),
        pytest.param(math.nan, 1.0, id="NaN: ignored"),
        pytest.param(math.inf, 60.0, id="infinite: never undercut, capped"),
        pytest.param(1e30, 60.0, id="over a year: never undercut, capped"),
    ],
)
def test_hint_edge_values(hint: float, expected: float) -> None:
    """A negative or NaN hint is ignored in favour of the computed backoff (1.0 here); a huge
    or infinite one is honoured up to max_retry_after, never undercut by the backoff."""
    assert rp.Backoff(jitter="none").delay(2, retry_after=hint) == expected


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        (b"7", 7.0),
        (" 3 ", 3.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), None),  # past date: fall back
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("1e400", math.inf),
        ("9" * 70, pytest.approx(1e70)),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 99 Foo 2026 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(value: str | bytes | None, expected: object) -> None:
    """Delta-seconds, decimal seconds and HTTP-dates parse, however large; garbage falls back
    to None."""
    assert rp.transport.parse_retry_after(value, now=NOW) == expected


def test_http_date_needs_now() -> None:
    """The core never reads the clock: an HTTP-date without `now` is no hint."""
    assert rp.transport.parse_retry_after(email.utils.formatdate(NOW + 30, usegmt=True)) is None


def test_later_hint_wins() -> None:
    """When retry-after-ms and Retry-After disagree the later moment wins; both are read
    case-insensitively, and an unusable one leaves the other."""
    headers = {"Retry-After": "9", "Retry-After-Ms": "1500"}
    assert rp.transport.retry_after_from_headers(headers) == 9.0
    assert (
        rp.transport.retry_after_from_headers({"Retry-After": "1", "Retry-After-Ms": "1500"}) == 1.5
    )
    assert (
        rp.transport.retry_after_from_headers({"retry-after-ms": "junk", "retry-after": "2"}) == 2.0
    )
    assert rp.transport.retry_after_from_headers({}) is None


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"initial": -1.0}, "initial"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"jitter": "sometimes"}, "jitter"),
        ({"max_retry_after": -3}, "max_retry_after"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict[str, object], word: str) -> None:
    """A bad Backoff value raises an error naming the field and what was expected."""
    with pytest.raises(ValueError, match=word):
        rp.Backoff(**kwargs)  # type: ignore[arg-type]


@given(backoffs, st.integers(min_value=1, max_value=200), st.integers())
def test_delays_within_cap(b: rp.Backoff, n: int, seed: int) -> None:
    """Every delay lies in [0, max_delay] (jitter can only shorten)."""
    d = b.delay(n, rng=random.Random(seed))
    assert 0 <= d <= b.max_delay


@given(backoffs, st.floats(min_value=0, max_value=10_000), st.integers())
def test_hint_within_bounds(b: rp.Backoff, hint: float, seed: int) -> None:
    """With a hint, the wait is at least min(hint, max_retry_after) and at most max_retry_after."""
    d = b.delay(1, retry_after=hint, rng=random.Random(seed))
    assert d >= min(hint, b.max_retry_after)
    assert d <= b.max_retry_after


@given(backoffs)
def test_without_jitter_never_decreases(b: rp.Backoff) -> None:
    """Without jitter the schedule is non-decreasing."""
    b = rp.Backoff(b.initial, b.multiplier, b.max_delay, "none", b.max_retry_after)
    delays = [b.delay(n) for n in range(1, 40)]
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    "backoff",
    [
        rp.Backoff(jitter="none"),
        rp.Backoff(initial=0.1, multiplier=3.0, max_delay=30.0, jitter="none"),
        rp.Backoff(initial=2.0, multiplier=1.0, max_delay=2.0, jitter="none"),
        rp.Backoff(initial=1.0, multiplier=1e300, max_delay=5.0, jitter="none"),  # overflows
    ],
)
def test_the_waits_looked_up_are_the_waits_computed(backoff: rp.Backoff) -> None:
    """A retry's un-jittered wait comes from a table worked out once; it equals ``base(n)``
    for the first retries and past the table's end, and an evolved backoff has its own."""
    rng = random.Random(0)
    for n in range(1, 40):
        assert backoff.delay(n, rng=rng) == backoff.base(n)
    doubled = attrs.evolve(backoff, initial=backoff.initial * 2)
    assert [doubled.delay(n, rng=rng) for n in range(1, 5)] == [
        doubled.base(n) for n in range(1, 5)
    ]
