"""Storm protection's defaults never hurt a healthy caller (issue 17): AWS's refund rule,
tests isolated from each other, coherent virtual clocks, stats that only read, storm
events on a call's own hooks, no store asked before the first 429."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import requests

import retrypolicy as rp
from retrypolicy._clock import set_instant_mode
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_requests import RetryAdapter


class Flaky:
    """A call that fails once (a connection refused) every *every* calls, then succeeds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: set[int] = set()

    def __call__(self, n: int) -> int:
        with self.lock:
            first = n not in self.pending
            self.pending.add(n)
        if first:
            raise ConnectionRefusedError("restarting")
        return n


def test_retries_that_fix_things_never_drain_the_budget() -> None:
    """2,000 calls from 16 threads, each failing once then succeeding, with the default
    budget: none gives up (a retried success refunds its retry's cost)."""
    flaky = Flaky()
    retried = rp.retry(flaky)
    failures: list[BaseException] = []

    def worker(first: int) -> None:
        for n in range(first, first + 125):
            try:
                retried(n)
            except ConnectionRefusedError as e:
                failures.append(e)

    with rp.testing.instant():
        threads = [threading.Thread(target=worker, args=(i * 1000,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = rp.EUGPT.stats()
    assert failures == []
    assert stats.counters["retries_allowed"] == 2000
    assert stats.counters["retries_refused"] == 0
    assert stats.budget_level == stats.budget_capacity


def test_a_mounted_adapter_keeps_retrying_transient_503s() -> None:
    """Through one RetryAdapter(rp.EUGPT), 400 calls from 8 threads that each meet a 503 then
    a 200 all succeed (with the old refund rule retrying stopped after about 125 calls)."""
    statuses: list[int] = []
    adapter = RetryAdapter(rp.EUGPT, pool_maxsize=8)

    def worker(server: FakeEUGPT) -> None:  # one server per thread: each call gets 503, 200
        with requests.Session() as s:
            s.mount(server.url, adapter)
            for _ in range(50):
                r = s.post(server.responses_url, json={"input": "x", "stream": False})
                statuses.append(r.status_code)

    servers = [FakeEUGPT().start() for _ in range(8)]
    try:
        with rp.testing.instant():
            for server in servers:
                server.script(*[Reply.error(503), Reply.ok("hi")] * 50)
            threads = [threading.Thread(target=worker, args=(s,)) for s in servers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            counters = rp.EUGPT.stats().counters
    finally:
        for server in servers:
            server.stop()
    assert statuses == [200] * 400
    assert (counters["retries_allowed"], counters["retries_refused"]) == (400, 0)


def test_a_full_outage_still_pays_at_most_capacity_over_cost_plus_refill() -> None:
    """200 calls that always fail: retries paid stay within 500/5 plus what refilled."""
    calls = [0]

    @rp.retry
    def down() -> None:
        calls[0] += 1
        raise ConnectionRefusedError("down")

    with rp.testing.instant() as clock:
        for _ in range(200):
            with contextlib.suppress(ConnectionRefusedError):
                down()
        stats = rp.EUGPT.stats()
        skipped = clock.offset
    paid = stats.counters["retries_allowed"]
    assert paid == calls[0] - 200
    assert paid <= 100 + skipped * 1.0 / 5 + 1  # capacity/cost, plus refill_rate x time / cost
    assert stats.counters["retries_refused"] > 0


def test_threads_waiting_side_by_side_do_not_add_up_their_clocks() -> None:
    """Under instant(), each thread's virtual clock advances by its own waits only: eight
    threads that each retry once have each lived one wait, not the eight waits together."""
    barrier = threading.Barrier(8)
    seen: dict[int, float] = {}

    def worker(i: int, recorder: rp.testing.Instant) -> None:
        failed: list[int] = []

        @rp.retry
        def once() -> int:
            if not failed:
                failed.append(1)
                raise ConnectionRefusedError("once")
            return 1

        barrier.wait()
        once()
        seen[i] = recorder.offset

    with rp.testing.instant() as recorder:
        threads = [threading.Thread(target=worker, args=(i, recorder)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert recorder.offset == 0.0  # this thread waited for nothing
        assert len(recorder.waits) == 8
        total = sum(recorder.waits)
    offsets = list(seen.values())
    assert len(offsets) == 8
    assert max(offsets) < total  # no thread lived the others' waits
    assert sorted(offsets) == sorted(recorder.waits)  # each lived exactly its own


def test_instant_mode_switched_during_a_call_takes_effect_at_the_next_wait() -> None:
    """A call reads instant mode at each wait, not once: switched on after the call began
    (here by the retry hook, between a failure and its wait), that wait is skipped and
    recorded on the new recorder's clock; switched off, the next wait is slept (by the
    call's sleep)."""
    slept: list[float] = []
    recorders: list[rp.testing.Instant] = []
    calls = [0]
    with contextlib.ExitStack() as stack:

        def switch_on(event: RetryEvent) -> None:
            if not recorders:
                recorders.append(stack.enter_context(rp.testing.instant()))

        @rp.retry(sleep=slept.append, on_retry=switch_on)
        def turns_it_on() -> str:
            calls[0] += 1
            if calls[0] < 3:
                raise ConnectionRefusedError("down")
            return "ok"

        assert turns_it_on() == "ok"
        assert slept == []
        (recorder,) = recorders
        assert len(recorder.waits) == 2
        assert recorder.offset == sum(recorder.waits)

    slept.clear()
    calls[0] = 0
    with rp.testing.instant() as recorder:

        @rp.retry(sleep=slept.append)
        def turns_it_off() -> str:
            calls[0] += 1
            if calls[0] == 1:
                raise ConnectionRefusedError("first")
            if calls[0] == 2:  # the first wait was skipped; real waits from here on
                set_instant_mode(None)
                raise ConnectionRefusedError("second")
            return "ok"

        try:
            assert turns_it_off() == "ok"
        finally:
            set_instant_mode(recorder)
        assert len(recorder.waits) == 1
        assert len(slept) == 1


SMALL = rp.EUGPT.evolve(name="small", budget=rp.RetryBudget(capacity=20, refill_rate=0))
"""A budget an outage empties in a few calls, and never refilled by time."""


def test_an_instant_block_starts_on_a_fresh_store() -> None:
    """A budget drained in one instant() block is full again in the next (tests isolated)."""

    @rp.retry(SMALL)
    def down() -> None:
        raise ConnectionRefusedError("down")

    with rp.testing.instant():
        for _ in range(10):
            with contextlib.suppress(ConnectionRefusedError):
                down()
        assert SMALL.stats().budget_exhausted
    with rp.testing.instant():
        stats = SMALL.stats()
        assert stats.budget_level == stats.budget_capacity
        assert stats.counters["retries_allowed"] == 0


def test_a_store_given_inside_the_block_is_used() -> None:
    """instant() isolates the default store, but a store the test sets is the one used."""
    mine = rp.stores.InProcessStore()
    n = [0]

    @rp.retry
    def once() -> int:
        n[0] += 1
        if n[0] == 1:
            raise ConnectionRefusedError("once")
        return 1

    with rp.testing.instant(), rp.stores.use_store(mine):
        once()
        assert rp.stores.stats(rp.EUGPT, store=mine).counters["retries_allowed"] == 1


def test_reset_forgets_every_storm_state() -> None:
    """rp.testing.reset(): a drained budget and its counters are gone."""

    @rp.retry(SMALL)
    def down() -> None:
        raise ConnectionRefusedError("down")

    previous = rp.testing.set_instant(True)
    try:
        for _ in range(10):
            with contextlib.suppress(ConnectionRefusedError):
                down()
        assert SMALL.stats().budget_exhausted
        rp.testing.reset()
        assert rp.testing.set_instant(False) is None  # reset turned instant mode off too
        stats = SMALL.stats()
        assert stats.budget_level == stats.budget_capacity
        assert stats.counters["retries_refused"] == 0
    finally:
        rp.testing.set_instant(False)
    assert previous is not None


def test_stats_only_read() -> None:
    """stats() changes nothing: the same answer twice, the pending refund still pending,
    and the budget's recovery still reported once by the step that makes it."""
    policy = rp.EUGPT.evolve(name="reader", budget=rp.RetryBudget(capacity=20, refill_rate=0))
    now = [1000.0]
    events: list[RetryEvent] = []
    fail = [True]

    @rp.retry(policy, wall_clock=lambda: now[0], on_retry=events.append)
    def call() -> int:
        if fail[0]:
            raise ConnectionRefusedError("down")
        return 1

    with rp.testing.instant():
        with contextlib.suppress(ConnectionRefusedError):
            call()  # 4 retries (20 tokens), then refused: exhausted
        fail[0] = False
        for _ in range(9):
            call()  # first-try successes refund 1 each: pending below a retry's cost
        first = policy.stats()
        assert policy.stats() == first
        assert first.budget_level == 9.0
        assert "budget.recovered" not in [e.name for e in events]
        call()  # the 10th refund reaches half the capacity: recovered, reported once
        assert policy.stats().budget_level == 10.0
    assert [e.name for e in events].count("budget.recovered") == 1


def test_stats_read_with_the_call_paths_clock() -> None:
    """A policy used with wall_clock= is read with that clock (refill included)."""
    policy = rp.EUGPT.evolve(name="clocked", budget=rp.RetryBudget(capacity=20, refill_rate=1))
    now = [5000.0]

    @rp.retry(policy, wall_clock=lambda: now[0])
    def down() -> None:
        raise ConnectionRefusedError("down")

    with rp.testing.instant() as clock:
        with contextlib.suppress(ConnectionRefusedError):
            down()
        low = policy.stats().budget_level
        assert low is not None
        now[0] += 3.0
        assert policy.stats().budget_level == min(20.0, low + 3.0)
        assert clock.offset > 0


def test_storm_events_reach_the_calls_own_hooks() -> None:
    """budget.exhausted goes to the call's on_give_up as well as to the process's hooks."""
    policy = rp.EUGPT.evolve(name="hooked", budget=rp.RetryBudget(capacity=10, refill_rate=0))
    seen: list[str] = []

    @rp.retry(policy, on_give_up=lambda e: seen.append(e.name))
    def down() -> None:
        raise ConnectionRefusedError("down")

    with rp.testing.instant(), contextlib.suppress(ConnectionRefusedError):
        down()
    assert seen == ["budget.exhausted", "retry.gave_up"]


class CountingStore(rp.stores.InProcessStore):
    """An in-process store that counts its limiter steps."""

    def __init__(self) -> None:
        super().__init__()
        self.limiter_steps = 0

    def limiter(self, *args: Any, **kwargs: Any) -> Any:
        self.limiter_steps += 1
        return super().limiter(*args, **kwargs)


def test_no_store_is_asked_about_the_limiter_before_the_first_429() -> None:
    """With a limiter, 200 successful calls ask the store nothing; after a 429 it is asked."""
    policy = rp.EUGPT.evolve(name="paced", limiter=rp.AdaptiveLimiter())
    store = CountingStore()
    replies = [200] * 200 + [429, 200, 200]

    class Response:
        def __init__(self, status: int) -> None:
            self.status_code = status

    @rp.retry(policy, store=store)
    def call() -> Response:
        return Response(replies.pop(0))

    with rp.testing.instant():
        for _ in range(200):
            call()
        assert store.limiter_steps == 0
        call()  # a 429, retried
        call()
    assert store.limiter_steps > 0
