"""Policy.decide: per-kind limits, max_attempts, deadline, Retry-After; pure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import retrypolicy as rp
from retrypolicy import Failure, Kind
from retrypolicy.transport import AttemptState, Outcome

NO_JITTER = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"), max_attempts=None)


def run(
    policy: rp.Policy, outcomes: list[Outcome], now: float = 0.0
) -> list[rp.transport.Decision]:
    """Feed outcomes in order, stepping the state, until one is not a retry."""
    state = AttemptState(started=now)
    decisions = []
    for outcome in outcomes:
        d = policy.decide(outcome, state, now=now, rng=random.Random(0))
        decisions.append(d)
        if not d.retry:
            break
        state = d.state
        now += d.delay
    return decisions


@pytest.mark.parametrize(
    ("outcome", "retries"),
    [
        (Outcome(status=429), 6),
        (Outcome(status=500), 2),
        (Outcome(status=503), 5),
        (Outcome(failure=Failure.CONNECTION), 5),
        (Outcome(failure=Failure.TIMEOUT), 2),
        (Outcome(status=200, code="upstream_timeout"), 3),
        (Outcome(status=200, code="internal_error"), 1),
        (Outcome(status=200, failure=Failure.INCOMPLETE_STREAM), 2),
        (Outcome(status=400), 0),
        (Outcome(status=200, code="cancelled"), 0),
    ],
)
def test_per_kind_limit(outcome: Outcome, retries: int) -> None:
    """The same failure is retried exactly its kind's limit, then the policy gives up."""
    decisions = run(NO_JITTER, [outcome] * 20)
    assert [d.action for d in decisions] == ["retry"] * retries + ["give_up"]


def test_limits_are_per_kind() -> None:
    """Retries of one kind do not use up another kind's allowance."""
    outcomes = [Outcome(status=500)] * 2 + [Outcome(status=503)] * 5 + [Outcome(status=500)]
    decisions = run(NO_JITTER, outcomes)
    assert [d.action for d in decisions] == ["retry"] * 7 + ["give_up"]


def test_max_attempts_caps_everything() -> None:
    """max_attempts counts the first try and caps all kinds together."""
    policy = NO_JITTER.evolve(max_attempts=3)
    decisions = run(policy, [Outcome(status=503)] * 10)
    assert [d.action for d in decisions] == ["retry", "retry", "give_up"]
    assert "max_attempts" in decisions[-1].reason


def test_success() -> None:
    """A success is a success, at any attempt."""
    d = rp.EUGPT.decide(Outcome(status=200))
    assert d.action == "succeed"


def test_backoff_schedule_without_jitter() -> None:
    """503s wait 0.5, 1, 2, 4, 8 s (the default backoff)."""
    decisions = run(NO_JITTER, [Outcome(status=503)] * 6)
    assert [d.delay for d in decisions[:-1]] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_rate_limit_starts_slower() -> None:
    """429 has its own backoff: it starts at 1 s and caps at 20 s."""
    policy = NO_JITTER.evolve(
        rules=[
            rp.Rule(
                kind=Kind.RATE_LIMITED,
                retry=True,
                max_retries=6,
                status=429,
                backoff=rp.Backoff(initial=1.0, max_delay=20.0, jitter="none"),
            ),
            *rp.EUGPT.rules,
        ]
    )
    decisions = run(policy, [Outcome(status=429)] * 7)
    assert [d.delay for d in decisions[:-1]] == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0]


def test_retry_after_honoured() -> None:
    """A Retry-After within the cap is waited, never less."""
    d = NO_JITTER.decide(Outcome(status=429, retry_after=7.0))
    assert (d.action, d.delay, d.retry_after) == ("retry", 7.0, 7.0)


def test_retry_after_above_cap_gives_up_now() -> None:
    """A hint above max_retry_after gives up at once, and the decision carries the hint."""
    d = NO_JITTER.decide(Outcome(status=429, retry_after=3600.0))
    assert d.action == "give_up"
    assert d.retry_after == 3600.0
    assert "3600" in d.reason


def test_deadline() -> None:
    """No wait is scheduled that would end past the deadline."""
    policy = NO_JITTER.evolve(deadline=3.0)
    decisions = run(policy, [Outcome(status=503)] * 10)
    # waits 0.5 + 1 = 1.5 s; the next (2 s) would end at 3.5 s > 3 s
    assert [d.action for d in decisions] == ["retry", "retry", "give_up"]
    assert "deadline" in decisions[-1].reason


def test_decide_is_pure() -> None:
    """The same outcome, state, time and seed give the same decision; the state is not mutated."""
    state = AttemptState(started=0.0)
    a = rp.EUGPT.decide(Outcome(status=503), state, now=1.0, rng=random.Random(3))
    b = rp.EUGPT.decide(Outcome(status=503), state, now=1.0, rng=random.Random(3))
    assert a == b
    assert state == AttemptState(started=0.0)
    assert a.state.attempt == 2
    assert a.state.retries_of(Kind.UNAVAILABLE) == 1


def test_exception_outcome() -> None:
    """An outcome carrying only an exception is classified through the registry."""
    d = NO_JITTER.decide(Outcome(exception=ConnectionRefusedError()))
    assert d.classification.kind == Kind.CONNECTION
    assert d.retry
    assert NO_JITTER.decide(Outcome(exception=KeyError("x"))).action == "give_up"


def test_policy_is_frozen_and_evolves() -> None:
    """Policies are immutable; evolve returns a changed copy."""
    p = rp.EUGPT.evolve(max_attempts=3)
    assert p.max_attempts == 3
    assert rp.EUGPT.max_attempts == 10
    with pytest.raises(AttributeError):
        rp.EUGPT.max_attempts = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"max_attempts": 0}, "max_attempts"), ({"deadline": -1.0}, "deadline")],
)
def test_bad_policy_values(kwargs: dict[str, object], word: str) -> None:
    """Bad limits are rejected with the field's name."""
    with pytest.raises(ValueError, match=word):
        rp.EUGPT.evolve(**kwargs)


def test_classify_cache_is_bounded() -> None:
    """Codes are remote data: thousands of distinct codes do not grow the cache without bound."""
    p = rp.EUGPT.evolve()
    for i in range(5000):
        p.classify(200, f"code_{i}")
    assert len(p._cache) <= 1024


OUTCOMES = [
    Outcome(status=429),
    Outcome(status=500),
    Outcome(status=503),
    Outcome(status=404),
    Outcome(failure=Failure.CONNECTION),
    Outcome(failure=Failure.TIMEOUT),
    Outcome(status=200, code="upstream_error"),
    Outcome(status=200, code="cancelled"),
    Outcome(status=429, retry_after=5.0),
]


@given(
    st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=40),
    st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
    st.integers(),
)
def test_decide_never_exceeds_a_limit(
    outcomes: list[Outcome], max_attempts: int | None, seed: int
) -> None:
    """Whatever fails in whatever order: per-kind and overall limits hold, waits stay bounded."""
    policy = rp.EUGPT.evolve(max_attempts=max_attempts)
    rng = random.Random(seed)
    state = AttemptState()
    now = 0.0
    per_kind: dict[str, int] = {}
    for outcome in outcomes:
        d = policy.decide(outcome, state, now=now, rng=rng)
        c = d.classification
        if not d.retry:
            break
        per_kind[c.kind] = per_kind.get(c.kind, 0) + 1
        assert c.retryable
        assert per_kind[c.kind] <= c.max_retries
        assert d.state.attempt == state.attempt + 1
        cap = c.rule.backoff if c.rule is not None and c.rule.backoff else policy.backoff
        assert 0 <= d.delay <= max(cap.max_delay, cap.max_retry_after)
        if outcome.retry_after is not None:
            assert d.delay >= outcome.retry_after
        state, now = d.state, now + d.delay
    if max_attempts is not None:
        assert state.attempt <= max_attempts
