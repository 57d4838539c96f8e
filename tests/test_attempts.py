"""rp.attempts(): the attempt loop for a block of code, sync and async alike."""

from __future__ import annotations

import asyncio

import pytest

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))


class Resp:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def test_sync_loop_retries_then_succeeds(
    instant: rp.testing.Instant, events: list[RetryEvent]
) -> None:
    """An exception in `with attempt:` is swallowed while the policy retries; success ends it."""
    numbers = []
    for attempt in rp.attempts(FAST):
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise ConnectionRefusedError
    assert numbers == [1, 2, 3]
    assert instant.waits == [0.5, 1.0]
    assert [e.name for e in events] == ["retry.scheduled", "retry.scheduled", "retry.succeeded"]


def test_sync_loop_gives_up_with_the_exception(instant: rp.testing.Instant) -> None:
    """When the policy gives up, the block's exception propagates unchanged."""
    raised = []
    with pytest.raises(TimeoutError) as info:
        for attempt in rp.attempts(FAST):
            with attempt:
                raised.append(TimeoutError(attempt.number))
                raise raised[-1]
    assert info.value is raised[-1]
    assert len(raised) == 3


def test_check_a_response(instant: rp.testing.Instant) -> None:
    """attempt.check(response) lets a returned status decide; give-up leaves the last response."""
    seen = []
    for attempt in rp.attempts(FAST):
        with attempt:
            response = attempt.check(Resp(503))
            seen.append(response)
    assert len(seen) == 6
    assert response is seen[-1]
    assert instant.waits == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_not_retryable_propagates_at_once(instant: rp.testing.Instant) -> None:
    """A non-retryable exception ends the loop after one attempt."""
    count = 0
    with pytest.raises(KeyError):
        for attempt in rp.attempts(FAST):
            with attempt:
                count += 1
                raise KeyError("x")
    assert count == 1


def test_async_loop(instant: rp.testing.Instant) -> None:
    """`async for` runs the same loop and awaits its waits."""

    async def main() -> list[int]:
        numbers = []
        async for attempt in rp.attempts(FAST):
            with attempt:
                numbers.append(attempt.number)
                await asyncio.sleep(0)
                if attempt.number < 2:
                    raise ConnectionRefusedError
        return numbers

    assert asyncio.run(main()) == [1, 2]
    assert instant.waits == [0.5]


def test_async_loop_awaits_injected_sleeper() -> None:
    """Outside instant mode the async loop awaits the injected sleeper."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        async for attempt in rp.attempts(FAST, async_sleep=fake_sleep):
            with attempt:
                if attempt.number < 3:
                    raise ConnectionRefusedError

    asyncio.run(main())
    assert slept == [0.5, 1.0]


def test_before_attempt_hook(instant: rp.testing.Instant) -> None:
    """before_attempt sees each attempt's number before it runs."""
    seen: list[int] = []
    for attempt in rp.attempts(FAST, before_attempt=lambda e: seen.append(e.attempt)):
        with attempt:
            if attempt.number < 3:
                raise ConnectionRefusedError
    assert seen == [1, 2, 3]


def test_async_loop_reraises_what_the_budget_refused_to_retry(
    instant: rp.testing.Instant,
) -> None:
    """In `async for`, a failure whose retry the budget refuses (decided after the block,
    by an awaited store step) propagates unchanged from the loop, after 2 paid retries."""
    policy = rp.EUGPT.evolve(name="tiny", budget=rp.RetryBudget(capacity=10, refill_rate=0))
    seen: list[int] = []
    last = ConnectionRefusedError("down")

    async def main() -> None:
        async for attempt in rp.attempts(policy):
            with attempt:
                seen.append(attempt.number)
                raise last

    with pytest.raises(ConnectionRefusedError) as caught:
        asyncio.run(main())
    assert caught.value is last
    assert seen == [1, 2, 3]  # two retries paid (10 tokens), the third refused
    assert len(instant.waits) == 2
