"""The circuit breaker: closed -> open -> half-open -> closed, and fail-fast calls."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import retrypolicy as rp
from retrypolicy._breaker import BreakerState, breaker_step
from retrypolicy.instrumentation import RetryEvent

BR = rp.CircuitBreaker(failure_rate=0.5, min_calls=4, window=10.0, open_for=5.0)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


CLOSED = BreakerState("closed", 0, 0, 0.0, 0.0, 0)


@pytest.mark.parametrize(
    ("state", "now", "op", "failures", "successes", "after", "allowed", "event"),
    [
        # closed: attempts pass; the rate counts only with min_calls attempts
        (CLOSED, 1.0, "allow", 0, 0, "closed", True, ""),
        (CLOSED, 1.0, "record", 1, 0, "closed", True, ""),
        (BreakerState("closed", 1, 3, 0.0), 1.0, "record", 1, 0, "open", True, "opened"),
        (BreakerState("closed", 0, 3, 0.0), 1.0, "record", 0, 1, "closed", True, ""),
        (BreakerState("closed", 1, 4, 0.0), 1.0, "record", 1, 0, "closed", True, ""),  # 2/5
        # the window rolled over: old counts are gone
        (BreakerState("closed", 3, 3, 0.0), 10.0, "record", 1, 0, "closed", True, ""),
        # open: refused until open_for has passed, then one probe (half-open)
        (BreakerState("open", 0, 0, 0.0, 5.0), 4.0, "allow", 0, 0, "open", False, ""),
        (BreakerState("open", 0, 0, 0.0, 5.0), 5.0, "allow", 0, 0, "half_open", True, "half_open"),
        (BreakerState("open", 0, 0, 0.0, 5.0), 4.0, "record", 1, 0, "open", True, ""),  # late
        # half-open: one probe at a time; its answer decides
        (BreakerState("half_open", 0, 0, 0.0, 10.0, 1), 6.0, "allow", 0, 0, "half_open", False, ""),
        (BreakerState("half_open", 0, 0, 0.0, 10.0, 1), 10.0, "allow", 0, 0, "half_open", True, ""),
        (
            BreakerState("half_open", 0, 0, 0.0, 10.0, 1),
            6.0,
            "record",
            1,
            0,
            "open",
            True,
            "opened",
        ),
        (
            BreakerState("half_open", 0, 0, 0.0, 10.0, 1),
            6.0,
            "record",
            0,
            1,
            "closed",
            True,
            "closed",
        ),
    ],
)
def test_breaker_transitions(
    state: BreakerState,
    now: float,
    op: str,
    failures: int,
    successes: int,
    after: str,
    allowed: bool,
    event: str,
) -> None:
    """Every transition of the breaker, as a table, with an injected clock."""
    _, r = breaker_step(BR, state, now, op, failures=failures, successes=successes)  # type: ignore[arg-type]
    assert (r.state, r.allowed, r.event) == (after, allowed, event)


def test_open_says_when_the_next_probe_is() -> None:
    """An open breaker's retry_in is the time until open_for has passed."""
    _, r = breaker_step(BR, BreakerState("open", 2, 4, 0.0, 5.0), 3.5, "allow")
    assert r.retry_in == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("failure_rate", 0), ("failure_rate", 1.5), ("min_calls", 0), ("kinds", [])],
)
def test_breaker_refuses_bad_values(field: str, value: Any) -> None:
    """A breaker with an impossible setting is refused, naming it."""
    with pytest.raises(ValueError, match=field):
        rp.CircuitBreaker(**{field: value})


def test_circuit_open_error() -> None:
    """CircuitOpenError is a retryable APIError with retry_in = retry_after; pickles whole."""
    err = rp.CircuitOpenError("circuit open", retry_in=3.0, host="api.example")
    assert isinstance(err, rp.APIError)
    assert (err.retryable, err.retry_in, err.retry_after, err.host) == (
        True,
        3.0,
        3.0,
        "api.example",
    )
    c = rp.EUGPT.classify(exception=err)
    assert (c.kind, c.retryable) == ("unavailable", True)
    back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert (type(back), back.retry_in, back.host) == (rp.CircuitOpenError, 3.0, "api.example")


def test_breaker_through_the_decorator(
    instant: rp.testing.Instant, events: list[RetryEvent]
) -> None:
    """Failures open the breaker (the call gives up with its own error), the next call fails
    fast with CircuitOpenError, a probe after open_for closes it again."""
    clock = Clock()
    policy = rp.EUGPT.evolve(name="guarded", breaker=BR.evolve(min_calls=2))
    failing = [True]
    calls = []

    @rp.retry(policy, wall_clock=clock)
    def fetch() -> int:
        calls.append(clock.now)
        if failing[0]:
            raise ConnectionError("refused")
        return 1

    with pytest.raises(ConnectionError):
        fetch()
    assert len(calls) == 2  # opened by the second failure: no third attempt
    assert "circuit open" in events[-1].reason
    opened = next(e for e in events if e.name == "breaker.opened").to_log()
    assert (opened["host"], opened["state"], opened["retry_in"]) == ("", "open", 5.0)
    with pytest.raises(rp.CircuitOpenError) as caught:
        fetch()
    assert len(calls) == 2  # nothing was sent
    assert 0 < caught.value.retry_in <= 5.0
    assert policy.stats().breakers == {"": "open"}
    clock.now += 10.0
    failing[0] = False
    events.clear()
    assert fetch() == 1
    assert [e.name for e in events] == ["breaker.half_open", "breaker.closed"]
    assert policy.stats().breakers == {"": "closed"}
    assert policy.stats().counters["circuit_rejected"] == 1


def test_a_failed_probe_opens_again(instant: rp.testing.Instant, events: list[RetryEvent]) -> None:
    """Half-open lets one probe through; when it fails, the breaker opens for another open_for."""
    clock = Clock()
    policy = rp.EUGPT.evolve(name="probe", breaker=BR.evolve(min_calls=1))

    @rp.retry(policy, wall_clock=clock)
    def fetch() -> int:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        fetch()
    clock.now += 6.0
    events.clear()
    with pytest.raises(ConnectionError):
        fetch()  # the probe: it fails, and no retry waits through the next open_for
    assert [e.name for e in events] == ["breaker.half_open", "breaker.opened", "retry.gave_up"]
    with pytest.raises(rp.CircuitOpenError):
        fetch()


def test_an_outer_retry_waits_for_the_probe(instant: rp.testing.Instant) -> None:
    """An outer @rp.retry treats CircuitOpenError as retryable and waits its retry_after."""
    clock = Clock()
    inner = rp.EUGPT.evolve(name="inner", breaker=BR.evolve(min_calls=1, open_for=3.0))
    outer = rp.EUGPT.evolve(name="outer", budget=None)
    state = {"n": 0}

    @rp.retry(inner, wall_clock=clock)
    def inner_call() -> int:
        state["n"] += 1
        if state["n"] == 1:
            raise ConnectionError("refused")
        return state["n"]

    with pytest.raises(ConnectionError):
        inner_call()  # opens the breaker

    def advance(event: RetryEvent) -> None:
        clock.now += event.delay  # the outer wait passes on the inner breaker's clock too

    @rp.retry(outer, on_retry=advance)
    def outer_call() -> int:
        return inner_call()

    assert outer_call() == 2
    assert instant.waits[-1] == pytest.approx(3.0, abs=0.01)


def test_breaker_in_toml(tmp_path: Any) -> None:
    """[policies.x.breaker] turns a breaker on with the keys given; kinds is an array."""
    path = tmp_path / "p.toml"
    path.write_text(
        '[policies.a.breaker]\nmin_calls = 5\nopen_for = 30\nkinds = ["unavailable"]\n',
        encoding="utf-8",
    )
    policy = rp.load_policy(path)
    assert policy.breaker == rp.CircuitBreaker(min_calls=5, open_for=30.0, kinds=["unavailable"])
    back = tmp_path / "back.toml"
    back.write_text(rp.dump_policy(policy), encoding="utf-8")
    assert rp.load_policy(back) == policy
