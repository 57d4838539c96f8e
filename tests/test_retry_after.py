"""A server's wait hint is never undercut: parsing however large, the later header, give-up."""

from __future__ import annotations

import email.message
import email.utils
import math
import time
from datetime import UTC, datetime

import pytest

import retrypolicy as rp
from retrypolicy.transport import Outcome

NOW = 1_800_000_000.0
NEXT_CENTURY = email.utils.format_datetime(datetime(2125, 1, 1, tzinfo=UTC), usegmt=True)
NO_JITTER = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))
CAP = rp.EUGPT.rules[4].backoff.max_retry_after  # the 429 rule's own backoff  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("120", 120.0, id="delta-seconds"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="decimal seconds"),
        pytest.param("  42\t", 42.0, id="surrounding whitespace"),
        pytest.param(b"7", 7.0, id="bytes"),
        pytest.param("0" * 40 + "5", 5.0, id="leading zeros are not magnitude"),
        pytest.param("31622400", 31_622_400.0, id="a year and a day: kept (was dropped)"),
        pytest.param("9" * 30, pytest.approx(1e30), id="30 digits: a huge wait, not garbage"),
        pytest.param("1" + "0" * 400, math.inf, id="beyond a float: infinite"),
        pytest.param("1e400", math.inf, id="exponent overflow: infinite"),
        pytest.param(NEXT_CENTURY, pytest.approx(4_891_363_200.0 - NOW), id="date next century"),
        pytest.param(10**400, math.inf, id="huge int argument: no OverflowError"),
        pytest.param(math.inf, math.inf, id="infinite float argument"),
        pytest.param("-5", None, id="negative: no hint"),
        pytest.param(-1.0, None, id="negative number: no hint"),
        pytest.param(math.nan, None, id="NaN: no hint"),
        pytest.param("nan", None, id="the word nan"),
        pytest.param("inf", None, id="the word inf"),
        pytest.param("Infinity", None, id="the word Infinity"),
        pytest.param("1_000", None, id="underscores (float() would take them)"),
        pytest.param("12abc", None, id="trailing junk"),
        pytest.param("\u0661\u0662", None, id="non-ASCII digits"),
        pytest.param("soon", None, id="a word"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
        pytest.param(True, None, id="a bool is no number"),
        pytest.param(email.utils.formatdate(NOW - 30, usegmt=True), None, id="past date"),
        pytest.param("Wed, 99 Foo 2026 99:99:99 GMT", None, id="malformed date"),
    ],
)
def test_parse_retry_after_table(value: object, expected: object) -> None:
    """Every parseable hint, however large, is a (possibly infinite) number of seconds;
    negative and unparsable values are no hint (None). Never raises."""
    assert rp.transport.parse_retry_after(value, now=NOW) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("1" * 1_000_000, id="1 MB of digits"),
        pytest.param("1." + "0" * 1_000_000, id="1 MB of decimals"),
        pytest.param("x" * 1_000_000, id="1 MB of junk"),
        pytest.param("1" * 500_000 + "x" + "1" * 500_000, id="1 MB digits with junk inside"),
        pytest.param("Wed, 21 Oct 2015 " * 60_000, id="1 MB of date-like text"),
    ],
)
def test_huge_header_values_are_fast(value: str) -> None:
    """A 1 MB header value is parsed (or refused) without raising and without super-linear
    work: a backtracking or quadratic parser takes seconds to minutes on it; a linear one a
    few ms, so the bound (1 s) catches the first and never a loaded machine's noise."""
    start = time.perf_counter()
    for headers in ({"Retry-After": value}, {"retry-after-ms": value}):
        rp.transport.retry_after_from_headers(headers, now=NOW)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "9", "retry-after-ms": "1500"}, 9.0, id="seconds later"),
        pytest.param({"Retry-After": "1", "retry-after-ms": "2500"}, 2.5, id="ms later"),
        pytest.param({"Retry-After": "2", "retry-after-ms": "2000"}, 2.0, id="agree"),
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="ms alone"),
        pytest.param({"RETRY-AFTER": "3"}, 3.0, id="seconds alone, any case"),
        pytest.param({"Retry-After": "junk", "retry-after-ms": "1500"}, 1.5, id="bad seconds"),
        pytest.param({"Retry-After": "2", "retry-after-ms": "junk"}, 2.0, id="bad ms"),
        pytest.param({"Retry-After": "2", "retry-after-ms": "-5"}, 2.0, id="negative ms"),
        pytest.param({"Retry-After": NEXT_CENTURY, "retry-after-ms": "1500"},
                     pytest.approx(4_891_363_200.0 - NOW), id="date later than ms"),
        pytest.param({"Retry-After": "1", "retry-after-ms": "9" * 30},
                     pytest.approx(1e27), id="huge ms"),
        pytest.param([("retry-after", "4"), ("Retry-After-Ms", "100")], 4.0, id="pairs"),
        pytest.param({}, None, id="neither"),
    ],
)  # fmt: skip
def test_later_moment_wins(headers: object, expected: object) -> None:
    """When Retry-After and retry-after-ms are both usable and disagree, the later moment
    wins; an unusable one leaves the other; neither is no hint."""
    assert rp.transport.retry_after_from_headers(headers, now=NOW) == expected


IN_30 = email.utils.formatdate(NOW + 30, usegmt=True)  # "Fri, 15 Jan 2027 08:00:30 GMT"
IN_30_RFC850 = datetime.fromtimestamp(NOW + 30, UTC).strftime("%A, %d-%b-%y %H:%M:%S GMT")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("1, 7", 7.0, id="two delays: the later"),
        pytest.param("7,1", 7.0, id="the later first"),
        pytest.param(f"5, {IN_30}", 30.0, id="a delay and an HTTP-date"),
        pytest.param(f"{IN_30}, 5", 30.0, id="an HTTP-date and a delay"),
        pytest.param(f"{IN_30}, {IN_30}", 30.0, id="one date twice"),
        pytest.param(f"{IN_30_RFC850}, 2", 30.0, id="an obsolete RFC 850 date"),
        pytest.param("soon, 4", 4.0, id="garbage beside a usable hint"),
        pytest.param("-3, 2", 2.0, id="a negative beside a usable hint"),
        pytest.param("3, " + "9" * 30, pytest.approx(1e30), id="a huge one: give up later"),
        pytest.param("soon, later", None, id="nothing usable"),
        pytest.param(", ,", None, id="empty values"),
        pytest.param(",".join(["1"] * 40), None, id="more lines than any server sends"),
    ],
)
def test_a_hint_on_several_lines_is_its_latest_moment(value: str, expected: object) -> None:
    """A Retry-After value holding several hints (a header sent twice, its lines combined as
    requests, httpx and urllib3 combine them) is the latest usable one: never undercut."""
    assert rp.transport.parse_retry_after(value, now=NOW) == expected


def _multidict() -> object:
    multidict = pytest.importorskip("multidict")
    return multidict.CIMultiDictProxy(
        multidict.CIMultiDict([("Retry-After", "1"), ("retry-after", "7")])
    )


def _message() -> object:
    message = email.message.Message()
    message["Retry-After"] = "1"
    message["retry-after"] = "7"
    return message


def _httpx() -> object:
    httpx = pytest.importorskip("httpx")
    return httpx.Headers([("Retry-After", "1"), ("retry-after", "7")])


def _urllib3() -> object:
    urllib3 = pytest.importorskip("urllib3")
    headers = urllib3.HTTPHeaderDict()
    headers.add("Retry-After", "1")
    headers.add("retry-after", "7")
    return headers


def _requests() -> object:
    structures = pytest.importorskip("requests.structures")
    return structures.CaseInsensitiveDict(_urllib3())  # as requests builds response.headers


HEADERS_SENT_TWICE = {
    "aiohttp (multidict)": _multidict,
    "http.client (Message)": _message,
    "httpx": _httpx,
    "urllib3": _urllib3,
    "requests": _requests,
    "pairs": lambda: [("Retry-After", "1"), ("RETRY-AFTER", "7")],
    "a plain dict, two spellings": lambda: {"Retry-After": "1", "retry-after": "7"},
}


@pytest.mark.parametrize("kind", list(HEADERS_SENT_TWICE))
def test_every_header_container_gives_every_line(kind: str) -> None:
    """Whatever holds the headers, a field sent on two lines is read as both, in order and in
    any case (the multidicts', Message's and the pairs' get() would give the first alone)."""
    headers = HEADERS_SENT_TWICE[kind]()
    assert rp.transport.header_value(headers, "retry-after") == "1, 7"
    assert rp.transport.header_value(headers, "RETRY-AFTER") == "1, 7"
    assert rp.transport.retry_after_from_headers(headers, now=NOW) == 7.0
    assert rp.transport.header_value(headers, "retry-after-ms") is None


@pytest.mark.parametrize(
    ("hint", "action"),
    [
        pytest.param(7.0, "retry", id="within the cap: waited"),
        pytest.param(CAP, "retry", id="exactly the cap: waited"),
        pytest.param(CAP + 0.001, "give_up", id="just above the cap"),
        pytest.param(366 * 24 * 3600.0 + 1, "give_up", id="over a year (was ignored)"),
        pytest.param(1e30, "give_up", id="30 digits"),
        pytest.param(math.inf, "give_up", id="infinite"),
    ],
)
def test_decide_never_undercuts_a_hint(hint: float, action: str) -> None:
    """A 429 with a hint within max_retry_after waits at least the hint; a larger hint,
    however large (infinite too), gives up at once, and the decision carries it."""
    d = NO_JITTER.decide(Outcome(status=429, retry_after=hint))
    assert d.action == action
    assert d.retry_after == hint
    if action == "retry":
        assert d.delay >= hint
    else:
        assert "max_retry_after" in d.reason


@pytest.mark.parametrize(
    ("hint", "said"),
    [
        pytest.param(7.0, "server asked to wait 7s", id="small"),
        pytest.param(1e30, "server asked to wait 1e+30s", id="huge"),
        pytest.param(math.inf, "server asked to wait indefinitely", id="infinite"),
    ],
)
def test_errors_keep_the_hint(hint: float, said: str) -> None:
    """The RateLimitError raised on give-up keeps the hint, as a number and in its message."""
    err = rp.EUGPT.error_for(rp.parse_error(429, b'{"detail": "slow down"}'), retry_after=hint)
    assert isinstance(err, rp.RateLimitError)
    assert err.retry_after == hint
    assert said in str(err)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("9" * 30, id="30 digits"),
        pytest.param("1" + "0" * 400, id="beyond a float"),
        pytest.param(NEXT_CENTURY, id="date next century"),
    ],
)
def test_decorator_gives_up_at_once_on_a_huge_hint(
    value: str, instant: rp.testing.Instant, events: list[rp.instrumentation.RetryEvent]
) -> None:
    """A returned 429 whose Retry-After is huge is handed back after one call, without a
    wait: the hint is not mistaken for garbage and undercut by the backoff."""

    class Resp:
        def __init__(self) -> None:
            self.status_code = 429
            self.headers = {"Retry-After": value}

    calls: list[int] = []

    @rp.retry(NO_JITTER)
    def call() -> Resp:
        calls.append(1)
        return Resp()

    assert call().status_code == 429
    assert calls == [1]
    assert instant.waits == []
    assert [e.name for e in events] == [rp.instrumentation.GAVE_UP]
