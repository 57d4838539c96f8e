"""The retry budget: the token bucket's transitions, and the attempt loop giving up on it."""

from __future__ import annotations

import pytest

import retrypolicy as rp
from retrypolicy._budget import BudgetState, budget_step
from retrypolicy.instrumentation import RetryEvent


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


SMALL = rp.RetryBudget(capacity=10, retry_cost=5, timeout_cost=10, success_refund=1, refill_rate=0)


@pytest.mark.parametrize(
    ("level", "exhausted", "delta", "ok", "after", "event"),
    [
        (10.0, False, -5.0, True, 5.0, ""),  # a retry is paid for
        (5.0, False, -5.0, True, 0.0, ""),  # the last tokens
        (4.0, False, -5.0, False, 4.0, "exhausted"),  # too few: refused, reported
        (4.0, True, -5.0, False, 4.0, ""),  # still too few: refused, not reported again
        (4.0, True, 1.0, True, 5.0, "recovered"),  # back to half the capacity
        (3.0, True, 1.0, True, 4.0, ""),  # below half: still exhausted
        (10.0, False, 1.0, True, 10.0, ""),  # a refund never passes the capacity
        (2.0, False, 0.0, True, 2.0, ""),  # a read changes nothing
    ],
)
def test_budget_transitions(
    level: float, exhausted: bool, delta: float, ok: bool, after: float, event: str
) -> None:
    """Each transition of the bucket, as a table: spend, refuse, refund, recover, read."""
    state, result = budget_step(SMALL, BudgetState(level, 0.0, exhausted), 0.0, delta)
    assert (result.ok, result.level, result.event) == (ok, after, event)
    assert state.level == after


def test_time_refills_the_bucket() -> None:
    """refill_rate tokens per second flow back, up to the capacity; a missing state is full."""
    budget = SMALL.evolve(refill_rate=2.0)
    state, _ = budget_step(budget, BudgetState(0.0, 0.0, True), 1.5, 0.0)
    assert state.level == 3.0
    assert budget_step(budget, BudgetState(0.0, 0.0), 100.0, 0.0)[0].level == 10.0
    assert budget_step(budget, None, 0.0, 0.0)[0].level == 10.0


def test_timeouts_cost_more() -> None:
    """A retry after a timeout costs timeout_cost; any other kind, retry_cost."""
    assert SMALL.cost_of("timeout") == 10.0
    assert SMALL.cost_of("upstream_timeout") == 10.0
    assert SMALL.cost_of("unavailable") == 5.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("capacity", 0), ("capacity", -1), ("retry_cost", -1), ("refill_rate", float("inf"))],
)
def test_budget_refuses_bad_values(field: str, value: float) -> None:
    """A budget with an impossible number is refused, naming the field."""
    with pytest.raises(ValueError, match=field):
        rp.RetryBudget(**{field: value})


def test_eugpt_has_the_aws_standard_budget() -> None:
    """rp.EUGPT carries a budget of 500 tokens, 5 per retry, 10 per timeout, 1 per success."""
    assert rp.EUGPT.budget == rp.RetryBudget(
        capacity=500, retry_cost=5, timeout_cost=10, success_refund=1
    )
    assert rp.EUGPT.limiter is None
    assert rp.EUGPT.breaker is None


def test_an_empty_budget_gives_up_now(
    instant: rp.testing.Instant, events: list[RetryEvent]
) -> None:
    """With the bucket empty, a retryable failure gives up at once, saying why; kind stays."""
    clock = Clock()
    policy = rp.EUGPT.evolve(name="small", budget=SMALL)
    calls = []

    @rp.retry(policy, wall_clock=clock)
    def fetch() -> None:
        calls.append(1)
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        fetch()
    assert len(calls) == 3  # two retries paid for (10 tokens), the third refused
    names = [e.name for e in events]
    assert names == [
        "retry.scheduled",
        "retry.scheduled",
        "budget.exhausted",
        "retry.gave_up",
    ]
    exhausted, gave_up = events[2], events[3]
    assert exhausted.to_log()["tokens"] == 0.0
    assert exhausted.to_log()["capacity"] == 10.0
    assert exhausted.call == "test_an_empty_budget_gives_up_now.<locals>.fetch"
    assert gave_up.kind == "connection"
    assert "retry budget exhausted" in gave_up.reason
    # the next call: no retry at all, and no second "exhausted"
    events.clear()
    calls.clear()
    with pytest.raises(ConnectionError):
        fetch()
    assert len(calls) == 1
    assert [e.name for e in events] == ["retry.gave_up"]


def test_successes_refund(instant: rp.testing.Instant) -> None:
    """Every success puts success_refund back: a drained bucket pays for retries again."""
    clock = Clock()
    policy = rp.EUGPT.evolve(name="refunds", budget=SMALL)
    fail = [True]

    @rp.retry(policy, wall_clock=clock)
    def fetch() -> int:
        if fail[0]:
            raise ConnectionError("refused")
        return 1

    with pytest.raises(ConnectionError):
        fetch()
    assert policy.stats().budget_level == 0.0
    fail[0] = False
    for _ in range(5):
        assert fetch() == 1
    stats = policy.stats()
    assert stats.budget_level == 5.0
    assert stats.counters["refunds"] == 5
    assert stats.counters["retries_allowed"] == 2
    assert stats.counters["retries_refused"] == 1


def test_a_retried_calls_refund_rides_with_the_next_payment(instant: rp.testing.Instant) -> None:
    """In-process, a call that retried twice takes two payments from the bucket: its refund
    (the last retry's cost) waits for the next payment instead of a step of its own, while
    stats() counts it in and the bucket ends where stepping at once would leave it."""
    budget = rp.RetryBudget(capacity=100, retry_cost=5, refill_rate=0)
    policy = rp.EUGPT.evolve(name="rides", budget=budget)
    attempts = [0]

    @rp.retry(policy, wall_clock=Clock())
    def fetch() -> int:
        attempts[0] += 1
        if attempts[0] % 3:
            raise ConnectionError("refused")
        return 1

    def bucket() -> float:
        store = rp.stores.get_default_store()
        assert isinstance(store, rp.stores.InProcessStore)
        return store._budgets["rides:budget"].level

    assert fetch() == 1
    assert bucket() == 90.0  # two payments; the refund of 5 is pending, not stepped
    assert policy.stats().budget_level == 95.0  # 100 - 10 + 5, the pending refund counted
    assert bucket() == 90.0  # (stats() reads it without stepping the refund in)
    assert fetch() == 1
    assert bucket() == 85.0  # the refund rode with the next payment (5 - 5), then 5 more
    assert policy.stats().budget_level == 90.0
    counters = policy.stats().counters
    assert (counters["retries_allowed"], counters["refunds"]) == (4, 2)


def test_recovered_event(instant: rp.testing.Instant, events: list[RetryEvent]) -> None:
    """Once an exhausted bucket is back at half its capacity, budget.recovered is reported."""
    clock = Clock()
    policy = rp.EUGPT.evolve(name="recovers", budget=SMALL.evolve(refill_rate=1.0))

    @rp.retry(policy, wall_clock=clock)
    def fetch() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        fetch()
    clock.now += 5.5  # 5 tokens back: half the capacity
    events.clear()
    with pytest.raises(ConnectionError):
        fetch()
    assert [e.name for e in events][:2] == ["budget.recovered", "retry.scheduled"]


def test_budget_in_toml(tmp_path: object) -> None:
    """[policies.x.budget] sets keys on the inherited budget; budget = false turns it off."""
    from pathlib import Path  # noqa: PLC0415 - a tmp_path is a Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "p.toml"
    path.write_text(
        "[policies.a.budget]\ncapacity = 50\nretry_cost = 2\n"
        "[policies.b]\nbudget = false\n"
        "[policies.c]\nextends = false\nbudget = true\n"
        "[policies.d.budget]\nenabled = false\n",
        encoding="utf-8",
    )
    policies = rp._config.load_policies(path)
    assert policies["a"].budget == rp.RetryBudget(capacity=50, retry_cost=2)
    assert policies["b"].budget is None
    assert policies["c"].budget == rp.RetryBudget()
    assert policies["d"].budget is None
    for policy in policies.values():
        back = tmp_path / f"{policy.name}.toml"
        back.write_text(rp.dump_policy(policy), encoding="utf-8")
        assert rp.load_policy(back) == policy


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[policies.a.budget]\ncapacity = 0\n", "policies.a.budget.capacity: expected number > 0"),
        ("[policies.a.budget]\ncapacty = 1\n", "policies.a.budget.capacty: unknown key"),
        ("[policies.a]\nbudget = 3\n", "policies.a.budget: expected table, or true/false"),
        ("[policies.a.budget]\nenabled = 1\n", "policies.a.budget.enabled: expected boolean"),
        ("[policies.a.limiter]\ndecrease = 1.5\n", "policies.a.limiter.decrease: expected"),
        ("[policies.a.breaker]\nkinds = []\n", "policies.a.breaker.kinds: expected"),
        ("[policies.a.breaker]\nfailure_rate = 2\n", "policies.a.breaker.failure_rate"),
    ],
)
def test_storm_keys_are_validated(tmp_path: object, text: str, problem: str) -> None:
    """A wrong storm key is reported with the file, its key path and what was expected."""
    from pathlib import Path  # noqa: PLC0415

    assert isinstance(tmp_path, Path)
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(rp.ConfigError) as caught:
        rp.load_policy(path)
    assert str(path) in str(caught.value)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
