"""FakeEUGPT's fleet modes: a timed outage and a token-bucket rate limit, on a test clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_requests import RetryAdapter

TIMEOUT = 5.0
GOOD_KEY = "eugpt_test_0123456789"


class Clock:
    """A monotonic clock that moves only when told (also usable as a sleeper)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    """A test clock at 1000 s."""
    return Clock()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A plain keep-alive requests session (no retries)."""
    with requests.Session() as s:
        yield s


def post(server: FakeEUGPT, session: requests.Session, **kwargs: object) -> requests.Response:
    """One non-streamed POST to the endpoint."""
    return session.post(
        server.responses_url, json={"input": "hi", "stream": False}, timeout=TIMEOUT, **kwargs
    )


# --------------------------------------------------------------------------- outage


def test_outage_answers_503_for_its_duration_then_heals(
    clock: Clock, session: requests.Session
) -> None:
    """During outage(2) every request is the 503 envelope; from 2 s on the default answers."""
    with FakeEUGPT(clock=clock) as server:
        server.outage(2.0)
        assert server.in_outage
        first = post(server, session)
        clock.advance(1.999)
        second = post(server, session)
        clock.advance(0.001)
        assert not server.in_outage
        healed = post(server, session)
    assert [first.status_code, second.status_code, healed.status_code] == [503, 503, 200]
    assert first.json()["error"]["code"] == "service_unavailable"
    assert [r.source for r in server.requests] == ["outage", "outage", "default"]
    assert server.status_counts == {503: 2, 200: 1}
    assert server.errors == []


def test_outage_keeps_the_script_queued_and_can_start_later(
    clock: Clock, session: requests.Session
) -> None:
    """A delayed outage starts on time; scripted replies wait for it to end; outage(0) ends it."""
    with FakeEUGPT(clock=clock) as server:
        server.script(Reply.error(500), Reply.error(500))
        server.outage(5.0, after=1.0)
        before = post(server, session)  # takes the first scripted reply
        clock.advance(1.0)
        during = post(server, session)
        assert server.pending == 1
        server.outage(0)
        after = post(server, session)
    assert [before.status_code, during.status_code, after.status_code] == [500, 503, 500]
    assert [r.source for r in server.requests] == ["script", "outage", "script"]


def test_outage_reply_is_choosable_and_comes_before_the_key_check(
    clock: Clock, session: requests.Session
) -> None:
    """A custom outage reply (a load balancer's text 502) reaches even a request without a key."""
    with FakeEUGPT(clock=clock, require_key=True) as server:
        server.outage(1.0, reply=Reply.text(502, "Bad Gateway"))
        down = post(server, session)
        clock.advance(1.0)
        refused = post(server, session)
    assert (down.status_code, down.text) == (502, "Bad Gateway")
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "words"),
    [
        ((-1,), {}, ValueError, "seconds: expected a non-negative number"),
        ((1,), {"after": float("nan")}, ValueError, "after: expected a non-negative number"),
        ((1,), {"reply": 503}, TypeError, "reply: expected a Reply"),
    ],
)
def test_outage_rejects_bad_input(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    """Bad outage arguments fail where they are written, naming the argument."""
    server = FakeEUGPT()
    with pytest.raises(error, match=words):
        server.outage(*args, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_is_a_token_bucket(clock: Clock, session: requests.Session) -> None:
    """Burst 3 at 2/s: three pass, the fourth is a 429 with Retry-After; 0.5 s brings one back."""
    with FakeEUGPT(clock=clock, rate_limit=(2, 3)) as server:
        burst = [post(server, session).status_code for _ in range(3)]
        limited = post(server, session)
        clock.advance(0.5)
        refilled = post(server, session)
        again = post(server, session)
        clock.advance(10.0)  # the bucket holds at most the burst
        after_idle = [post(server, session).status_code for _ in range(4)]
    assert burst == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == {
        "detail": "Rate limit exceeded",
        "error": {
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "message": "Rate limit exceeded",
        },
    }
    assert (refilled.status_code, again.status_code) == (200, 429)
    assert after_idle == [200, 200, 200, 429]
    assert server.status_counts == {200: 7, 429: 3}
    assert [r.source for r in server.requests][3] == "rate_limit"


def test_rate_limit_retry_after_is_whole_seconds_until_a_token(
    clock: Clock, session: requests.Session
) -> None:
    """At 0.25 requests/s an empty bucket asks for 4 s; part of a token shortens the wait."""
    with FakeEUGPT(clock=clock, rate_limit=(0.25, 1)) as server:
        assert post(server, session).status_code == 200
        first = post(server, session)
        clock.advance(1.5)  # 0.375 of a token back: 2.5 s to go, rounded up
        second = post(server, session)
    assert (first.headers["Retry-After"], second.headers["Retry-After"]) == ("4", "3")


def test_rate_limit_keeps_the_script_and_counts_after_auth(
    clock: Clock, session: requests.Session
) -> None:
    """A 401 takes no token and a 429 takes no scripted reply."""
    auth = {"Authorization": f"Bearer {GOOD_KEY}"}
    with FakeEUGPT(clock=clock, rate_limit=(1, 1), require_key=True) as server:
        server.script(Reply.error(500), Reply.error(502))
        refused = post(server, session)
        passed = post(server, session, headers=auth)
        limited = post(server, session, headers=auth)
        clock.advance(1.0)
        later = post(server, session, headers=auth)
    statuses = [r.status_code for r in (refused, passed, limited, later)]
    assert statuses == [401, 500, 429, 502]
    assert [r.source for r in server.requests] == ["auth", "script", "rate_limit", "script"]


def test_retry_adapter_waits_out_the_rate_limit_on_the_same_clock(clock: Clock) -> None:
    """A RetryAdapter sleeping on the server's clock honours Retry-After and gets through."""
    with FakeEUGPT(clock=clock, rate_limit=(1, 2)) as server, requests.Session() as s:
        s.mount("http://", RetryAdapter(rp.EUGPT, clock=clock, sleep=clock.advance))
        statuses = [post(server, s).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert server.status_counts == {200: 5, 429: 3}
    assert clock.now == pytest.approx(1003.0, abs=0.5)  # three 1 s waits


@pytest.mark.parametrize(
    "value",
    [(0, 1), (-1, 5), (1, 0.5), (1,), (1, 2, 3), "10/s", (float("inf"), 1), (True, 1), None],
)
def test_rate_limit_rejects_bad_input(value: object) -> None:
    """rate_limit must be (rate_per_s > 0, burst >= 1): anything else names the option."""
    if value is None:
        FakeEUGPT(rate_limit=None)  # None: no limit, the default
        return
    with pytest.raises(ValueError, match=r"rate_limit: expected \(rate_per_s, burst\)"):
        FakeEUGPT(rate_limit=value)  # type: ignore[arg-type]


def test_clock_must_be_callable() -> None:
    """A clock that is not callable is refused at construction."""
    with pytest.raises(TypeError, match="clock: expected a callable"):
        FakeEUGPT(clock=1.0)  # type: ignore[arg-type]


def test_default_server_has_neither_mode(session: requests.Session) -> None:
    """Without the options nothing changes: no outage, no limit, statuses counted; clear resets."""
    with FakeEUGPT() as server:
        statuses = [post(server, session).status_code for _ in range(30)]
        assert not server.in_outage
        assert server.status_counts == {200: 30}
        server.clear()
        assert server.status_counts == {}
    assert statuses == [200] * 30
