"""What a call returned or raised, as an Outcome: responses judged per value, the exhausted
marker found on a response or anywhere in an exception's chain."""

from __future__ import annotations

import http
import subprocess
import sys
from collections.abc import Callable

import attrs
import pytest
import requests
import urllib3

import retrypolicy as rp
from retrypolicy._extract import never_a_response, outcome_of_exception, outcome_of_value
from retrypolicy._outcome import mark_exhausted

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))


def wall() -> float:
    return 1_800_000_000.0


def _maybe_class() -> type:
    """A fresh class whose instances have a status_code only when given one."""

    class Maybe:
        def __init__(self, status: object = None) -> None:
            if status is not None:
                self.status_code = status

    return Maybe


@pytest.mark.parametrize(
    ("statuses", "failed"),
    [
        pytest.param([None, 503], [False, True], id="plain first, then a 503"),
        pytest.param([503, None], [True, False], id="a 503 first, then plain"),
        pytest.param([200, "503", 503], [False, False, True], id="a str status is no status"),
        pytest.param([None, True, 429], [False, False, True], id="a bool status is no status"),
        pytest.param(
            [None, http.HTTPStatus.SERVICE_UNAVAILABLE], [False, True], id="an IntEnum status"
        ),
    ],
)
def test_a_response_is_judged_per_value(statuses: list[object], failed: list[bool]) -> None:
    """Instances of one class are judged each on its own: a value's status is read on the
    value every time, never decided once for its type (values seen earlier change nothing)."""
    cls = _maybe_class()
    got = [outcome_of_value(cls(s), FAST, wall=wall) is not None for s in statuses]
    assert got == failed


def test_status_attribute_on_some_instances_only(instant: rp.testing.Instant) -> None:
    """@rp.retry retries a returned 503 even after the same class was returned plain."""
    cls = _maybe_class()
    plain = rp.retry(FAST)(cls)
    assert not hasattr(plain(), "status_code")
    values = [cls(503), cls(200)]
    result = rp.retry(FAST)(lambda: values.pop(0))()
    assert result.status_code == 200
    assert instant.waits == [0.5]


@pytest.mark.parametrize(
    ("value", "is_failure"),
    [
        pytest.param(None, False, id="None"),
        pytest.param(503, False, id="an int is not a response"),
        pytest.param({"status_code": 503}, False, id="a dict is not a response"),
        pytest.param(type("D", (dict,), {"status_code": 503})(), True, id="a dict subclass"),
        pytest.param(type("S", (), {"status": 502})(), True, id="status (urllib3, aiohttp)"),
        pytest.param(ValueError("x"), False, id="an exception's status is not a response's"),
    ],
)
def test_what_is_a_response(value: object, is_failure: bool) -> None:
    """Exact builtins are never responses; anything else is when it has an int status."""
    assert (outcome_of_value(value, FAST, wall=wall) is not None) is is_failure


def test_never_a_response() -> None:
    """A type declared never_a_response is not a response whatever it carries (exact type)."""

    @never_a_response
    class Judged:
        status_code = 503

    class Sub(Judged):
        pass

    assert outcome_of_value(Judged(), FAST, wall=wall) is None
    assert outcome_of_value(Sub(), FAST, wall=wall) is not None


# -- the exhausted marker ---------------------------------------------------------------


def _marked() -> Exception:
    e = urllib3.exceptions.MaxRetryError(None, "/v1/responses")  # type: ignore[arg-type]
    mark_exhausted(e)
    return e


def _wrapped_in_except() -> BaseException:
    """What requests does: raise its ConnectionError inside ``except MaxRetryError``."""
    try:
        try:
            raise _marked()
        except urllib3.exceptions.MaxRetryError as e:
            raise requests.ConnectionError(e)  # noqa: B904 - as requests does
    except requests.ConnectionError as outer:
        return outer


def _raised_from() -> BaseException:
    try:
        raise ConnectionError("outer") from _marked()
    except ConnectionError as e:
        return e


def _chain(depth: int) -> BaseException:
    """An exception whose marked ancestor is *depth* links down its context chain."""
    exc: BaseException = _marked()
    for i in range(depth):
        nxt = ConnectionError(f"level {i}")
        nxt.__context__ = exc
        exc = nxt
    return exc


def _cycle() -> BaseException:
    a, b = ConnectionError("a"), ConnectionError("b")
    a.__context__, b.__context__ = b, a
    a.__cause__ = b
    return a


@pytest.mark.parametrize(
    ("make", "exhausted"),
    [
        pytest.param(_marked, True, id="marked itself"),
        pytest.param(lambda: ConnectionError("plain"), False, id="unmarked, no chain"),
        pytest.param(_wrapped_in_except, True, id="requests wraps it in an except: context"),
        pytest.param(_raised_from, True, id="raise ... from marked: cause"),
        pytest.param(lambda: _chain(7), True, id="8 exceptions deep: found"),
        pytest.param(lambda: _chain(8), False, id="9 deep: beyond the bound"),
        pytest.param(_cycle, False, id="a cycle ends"),
    ],
)
def test_exhausted_marker_in_the_chain(make: Callable[[], BaseException], exhausted: bool) -> None:
    """An exception counts as exhausted when it, or one of the first 8 exceptions of its
    cause/context chain, carries retrypolicy_exhausted = True; cycles do not hang."""
    assert outcome_of_exception(make(), wall=wall).exhausted is exhausted


class Resp:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


@pytest.mark.parametrize(
    ("mark", "exhausted"),
    [
        pytest.param(lambda r: None, False, id="unmarked"),
        pytest.param(mark_exhausted, True, id="mark_exhausted(response)"),
        pytest.param(
            lambda r: setattr(r, rp.transport.EXHAUSTED, "yes"), False, id="only True counts"
        ),
        pytest.param(lambda r: setattr(r, "retry_attempts", 3), False, id="attempts alone"),
        pytest.param(
            lambda r: setattr(r, "raw", type("Raw", (), {rp.transport.EXHAUSTED: True})()),
            True,
            id="wrapped transport response marked",
        ),
    ],
)
def test_exhausted_response(
    mark: Callable[[Resp], None], exhausted: bool, instant: rp.testing.Instant
) -> None:
    """A failed response a retry layer marked (itself, or the transport response it wraps)
    is exhausted: an outer @rp.retry gives up on it at once. An attempts count alone is
    not a mark: an adapter that was not allowed to retry still records its one attempt."""
    r = Resp(503)
    mark(r)
    outcome = outcome_of_value(r, FAST, wall=wall)
    assert outcome is not None
    assert outcome.exhausted is exhausted
    calls: list[int] = []

    def call() -> Resp:
        calls.append(1)
        return r

    assert rp.retry(FAST)(call)() is r
    assert len(calls) == (1 if exhausted else 6)


def test_threads_classifying_first_all_see_the_whole_table() -> None:
    """Eight threads making a fresh process's first classification together all get
    requests' ConnectionError as `connection` (the table is never half loaded)."""
    script = (
        "import threading, requests, retrypolicy as rp\n"
        "barrier = threading.Barrier(8)\n"
        "kinds = []\n"
        "def first():\n"
        "    barrier.wait()\n"
        "    kinds.append(rp.EUGPT.classify(exception=requests.ConnectionError()).kind)\n"
        "threads = [threading.Thread(target=first) for _ in range(8)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join()\n"
        "print(sorted(set(kinds)))\n"
    )
    for _ in range(4):
        out = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "[<Kind.CONNECTION: 'connection'>]"


def test_a_type_seen_plain_is_still_read_per_instance() -> None:
    """Once a type is known to be a plain transport failure, its next instances take a fast
    path; an instance that carries the exhausted marker, a marked cause or a response is
    still read for what it carries."""

    class FlakyError(ConnectionError):
        pass

    for _ in range(3):  # learnt on the first, the fast path after
        plain = FlakyError()
        out = outcome_of_exception(plain, wall=wall)
        assert (out.failure, out.exception, out.exhausted) == (rp.Failure.CONNECTION, plain, False)
    marked = FlakyError()
    mark_exhausted(marked)
    assert outcome_of_exception(marked, wall=wall).exhausted
    chained = FlakyError()
    chained.__cause__ = _marked()
    assert outcome_of_exception(chained, wall=wall).exhausted
    answered = FlakyError()
    answered.response = Resp(503)  # type: ignore[attr-defined]
    assert outcome_of_exception(answered, wall=wall).status == 503


def test_registering_a_type_already_seen_changes_its_outcome() -> None:
    """The fast path forgets what it learnt when the exception registry changes."""

    class LateError(ConnectionError):
        pass

    assert outcome_of_exception(LateError(), wall=wall).failure == rp.Failure.CONNECTION
    assert outcome_of_exception(LateError(), wall=wall).failure == rp.Failure.CONNECTION
    rp.register_exception(LateError, "timeout")
    assert outcome_of_exception(LateError(), wall=wall).failure == rp.Failure.TIMEOUT


def test_the_fast_outcome_is_an_ordinary_outcome() -> None:
    """An outcome built on the fast path equals, hashes, prints and evolves like one built
    with ``Outcome(...)``."""
    exc = ConnectionRefusedError()
    outcome_of_exception(ConnectionRefusedError(), wall=wall)  # learn the type
    fast = outcome_of_exception(exc, wall=wall)
    built = rp.transport.Outcome(failure=rp.Failure.CONNECTION, exception=exc)
    assert fast == built
    assert hash(fast) == hash(built)
    assert repr(fast) == repr(built)
    assert attrs.evolve(fast, status=503) == attrs.evolve(built, status=503)
    assert (fast.status, fast.code, fast.retry_after, fast.value, fast.error) == (None,) * 5
