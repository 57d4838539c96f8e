"""The in-place budget (``_budget.Bucket``, ``Guard.pay``) is the pure transition, float for float.

The in-process store and the guard's fast path step a mutable bucket instead of calling
``budget_step``; these tests hold them to it on random step sequences, and hold
``Guard.pay`` to ``Guard.spend`` (results, counters, events, the pending refund).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import retrypolicy as rp
from retrypolicy._budget import Bucket, BudgetState, budget_step
from retrypolicy._runtime import RUNTIME
from retrypolicy._storm import Guard
from retrypolicy.stores import InProcessStore

budgets = st.builds(
    rp.RetryBudget,
    capacity=st.floats(min_value=0.5, max_value=100),
    retry_cost=st.floats(min_value=0, max_value=30),
    timeout_cost=st.floats(min_value=0, max_value=30),
    success_refund=st.floats(min_value=0, max_value=10),
    refill_rate=st.floats(min_value=0, max_value=5),
)
steps = st.lists(
    st.tuples(
        st.floats(min_value=-1, max_value=5),  # time moves on (or back: another machine's clock)
        st.one_of(st.floats(min_value=-40, max_value=40), st.just(0.0)),
    ),
    max_size=40,
)


@given(budgets, steps)
def test_bucket_steps_are_budget_step(
    budget: rp.RetryBudget, ops: list[tuple[float, float]]
) -> None:
    """Bucket.step gives exactly budget_step's result and next state, for any sequence."""
    state: BudgetState | None = None
    bucket: Bucket | None = None
    now = 1000.0
    for dt, delta in ops:
        now += dt
        state, expected = budget_step(budget, state, now, delta)
        if bucket is None:
            bucket = Bucket(budget.capacity, now)
        got = bucket.step(budget, now, delta)
        assert got == (expected.ok, expected.level, expected.event)
        assert (bucket.level, bucket.stamp, bucket.exhausted) == (
            state.level,
            state.stamp,
            state.exhausted,
        )


class _Generic(InProcessStore):
    """An in-process store whose budget step the guard cannot take over (the general path)."""

    def budget(self, key: str, config: rp.RetryBudget, now: float, delta: float) -> object:  # type: ignore[override]
        return super().budget(key, config, now, delta)


kinds = st.sampled_from(["connection", "timeout", "server_error"])
calls = st.lists(
    st.tuples(
        st.sampled_from(["pay", "refund", "retried"]), kinds, st.floats(min_value=0, max_value=3)
    ),
    max_size=40,
)


@given(budgets, calls)
def test_guard_pay_is_spend(budget: rp.RetryBudget, ops: list[tuple[str, str, float]]) -> None:
    """Guard.pay on an in-process store does what Guard.spend does through the store API."""
    policy = rp.EUGPT.evolve(name="bucket", budget=budget)
    fast, slow = Guard(InProcessStore(), policy), Guard(_Generic(), policy)
    assert fast._buckets is not None
    assert slow._buckets is None
    seen: dict[Guard, list[tuple[str, dict[str, object]]]] = {fast: [], slow: []}
    for guard in (fast, slow):
        guard.emit = lambda name, _c, _a, g=guard, **extra: seen[g].append((name, extra))  # type: ignore[method-assign]
    now = 0.0
    for op, kind, dt in ops:
        now += dt
        if op == "refund":  # a first try's success
            fast.refund(now)
            slow.refund(now)
            continue
        if op == "retried":  # a retried call's success: its last retry's cost comes back
            fast.refund(now, budget.cost_of(kind), paid=True)
            slow.refund(now, budget.cost_of(kind), paid=True)
            continue
        a = fast.pay(budget.cost_of(kind), now, "c", 2)
        b = slow.pay(budget.cost_of(kind), now, "c", 2)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert (a.ok, a.level, a.capacity, a.event) == (b.ok, b.level, b.capacity, b.event)
        assert fast.full == slow.full
        assert fast._pending_refund == slow._pending_refund
        mine = fast._buckets.get("bucket:budget")
        theirs = slow.store._budgets.get("bucket:budget")  # type: ignore[attr-defined]
        if mine is None or theirs is None:
            assert mine is theirs
        else:  # the bucket itself, float for float
            assert (mine.level, mine.stamp, mine.exhausted) == (
                theirs.level,
                theirs.stamp,
                theirs.exhausted,
            )
    assert fast.counters == slow.counters
    assert seen[fast] == seen[slow]
    assert fast.stats(now).budget_level == slow.stats(now).budget_level
    RUNTIME.unfull.discard(fast)
    RUNTIME.unfull.discard(slow)
