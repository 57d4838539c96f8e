"""The adaptive limiter: AIMD pacing after 429s, and persistent rate limits."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import retrypolicy as rp
from retrypolicy._limiter import PERSISTENT_ADVICE, LimiterState, limiter_step
from retrypolicy.instrumentation import RetryEvent

LIM = rp.AdaptiveLimiter(
    decrease=0.5, increase=1.0, min_rate=0.5, cooldown=1.0, idle_reset=30.0, persist_after=3
)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@attrs.define
class Response:
    """Something the decorator takes for an HTTP response."""

    status_code: int
    headers: dict[str, str] = attrs.field(factory=dict)


def test_unpaced_until_the_first_429() -> None:
    """Before any 429, acquiring costs no wait and changes nothing."""
    state, result = limiter_step(LIM, None, 5.0, "acquire")
    assert (result.wait, result.active, state) == (0.0, False, LimiterState())


def test_the_first_429_starts_pacing_at_the_measured_rate_times_decrease() -> None:
    """The first 429 paces at measured x decrease (or initial_rate), never below min_rate."""
    _, r = limiter_step(LIM, None, 0.0, "throttled", 10.0)
    assert (r.active, r.rate, r.previous, r.changed) == (True, 5.0, 0.0, True)
    _, r = limiter_step(LIM.evolve(initial_rate=2.0), None, 0.0, "throttled", 10.0)
    assert r.rate == 2.0
    _, r = limiter_step(LIM, None, 0.0, "throttled", 0.0)
    assert r.rate == 0.5


def test_pacing_spaces_requests_by_one_over_the_rate() -> None:
    """Requests reserve consecutive slots 1/rate apart; a caller waits until its slot."""
    state, _ = limiter_step(LIM.evolve(increase=0.0), None, 0.0, "throttled", 8.0)  # 4/s
    waits = []
    for _ in range(4):
        state, r = limiter_step(LIM.evolve(increase=0.0), state, 0.0, "acquire")
        waits.append(r.wait)
    assert waits == pytest.approx([0.25, 0.5, 0.75, 1.0])  # the throttled request took a slot


def test_multiplicative_decrease_once_per_cooldown() -> None:
    """429s within the cooldown count but do not cut again; after it, one cut halves the rate."""
    lim = LIM.evolve(increase=0.0, persist_after=100)
    state, _ = limiter_step(lim, None, 0.0, "throttled", 8.0)  # 4/s
    state, r = limiter_step(lim, state, 0.5, "throttled")
    assert (r.rate, r.changed, r.consecutive) == (4.0, False, 2)
    state, r = limiter_step(lim, state, 1.5, "throttled")
    assert (r.rate, r.previous, r.changed) == (2.0, 4.0, True)


def test_additive_increase_without_429s() -> None:
    """Every second without a 429 adds ``increase`` requests per second."""
    state, _ = limiter_step(LIM, None, 0.0, "throttled", 4.0)  # 2/s
    _, r = limiter_step(LIM, state, 3.0, "acquire")
    assert r.rate == pytest.approx(5.0)


def test_pacing_stops_after_idle_reset() -> None:
    """After idle_reset seconds without a 429 the limiter is unpaced again, and says so."""
    state, _ = limiter_step(LIM, None, 0.0, "throttled", 4.0)
    state, r = limiter_step(LIM, state, 30.0, "acquire")
    assert (r.active, r.changed, r.rate, r.wait) == (False, True, 0.0, 0.0)
    _, r = limiter_step(LIM, state, 31.0, "acquire")
    assert (r.active, r.changed) == (False, False)


def test_persistent_limits_are_reported_once_per_window() -> None:
    """persist_after 429s in a row are persistent, reported once per window; an answer resets."""
    state: LimiterState | None = None
    reports = []
    persistent = []
    for t in (0.0, 0.1, 0.2, 0.3, 0.4):
        state, r = limiter_step(LIM, state, t, "throttled", 4.0)
        reports.append(r.report)
        persistent.append(r.persistent)
    assert persistent == [False, False, True, True, True]
    assert reports == [False, False, True, False, False]
    state, r = limiter_step(LIM, state, 1.0, "answered")
    assert r.consecutive == 0
    for t in (61.0, 61.1, 61.2):  # persistent again, a window later: reported again
        state, r = limiter_step(LIM, state, t, "throttled")
    assert (r.persistent, r.report) == (True, True)


@pytest.mark.parametrize(
    ("field", "value"), [("decrease", 1.0), ("decrease", 0), ("min_rate", 0), ("persist_after", 0)]
)
def test_limiter_refuses_bad_values(field: str, value: Any) -> None:
    """A limiter with an impossible setting is refused, naming it."""
    with pytest.raises(ValueError, match=field):
        rp.AdaptiveLimiter(**{field: value})


def test_limiter_through_the_decorator(
    instant: rp.testing.Instant, events: list[RetryEvent]
) -> None:
    """429s start pacing (limiter.rate_changed), the retry waits for its slot, and persistent
    429s give up early with the spec's advice (retry.rate_limit_persistent, once)."""
    clock = Clock()
    policy = rp.EUGPT.evolve(name="paced", limiter=LIM.evolve(initial_rate=0.5))
    replies = [429, 429, 429, 429, 429, 200]

    @rp.retry(policy, wall_clock=clock)
    def call() -> Response:
        return Response(replies.pop(0))

    response = call()
    assert response.status_code == 429  # given up after 3 in a row, not after 6 retries
    assert len(replies) == 3
    names = [e.name for e in events]
    assert names[0:2] == ["limiter.rate_changed", "retry.scheduled"]
    assert names.count("retry.rate_limit_persistent") == 1
    assert names[-1] == "retry.gave_up"
    changed = next(e for e in events if e.name == "limiter.rate_changed").to_log()
    assert (changed["rate"], changed["previous"]) == (0.5, 0.0)
    persistent = next(e for e in events if e.name == "retry.rate_limit_persistent").to_log()
    assert persistent["consecutive"] == 3
    assert persistent["window"] == 60.0
    assert persistent["advice"] == PERSISTENT_ADVICE
    assert "rate limit persistent" in events[-1].reason
    assert events[-1].kind == "rate_limited"
    # the second retry waited for its slot: at 0.5/s, 2 s after the first
    assert max(instant.waits) >= 1.0
    stats = policy.stats()
    assert stats.limiter_consecutive_429 == 3
    assert stats.counters["throttled"] == 3
    assert stats.counters["persistent"] == 1


def test_an_answer_ends_the_run_of_429s(instant: rp.testing.Instant) -> None:
    """A non-429 answer resets the count: 429s are retried again afterwards."""
    clock = Clock()
    policy = rp.EUGPT.evolve(name="resets", limiter=LIM.evolve(initial_rate=50.0))
    replies = [429, 429, 200, 429, 429, 200]

    @rp.retry(policy, wall_clock=clock)
    def call() -> Response:
        return Response(replies.pop(0))

    assert call().status_code == 200
    assert call().status_code == 200
    assert replies == []
    assert policy.stats().limiter_consecutive_429 == 0


def test_limiter_in_toml(tmp_path: Any) -> None:
    """limiter = true turns it on with the defaults; a table sets keys; initial_rate = false."""
    path = tmp_path / "p.toml"
    path.write_text(
        "[policies.a]\nlimiter = true\n"
        "[policies.b.limiter]\ndecrease = 0.7\ninitial_rate = 5\npersist_after = 4\n"
        '[policies.c]\nextends = "b"\n[policies.c.limiter]\ninitial_rate = false\n',
        encoding="utf-8",
    )
    policies = rp._config.load_policies(path)
    assert policies["a"].limiter == rp.AdaptiveLimiter()
    assert policies["b"].limiter == rp.AdaptiveLimiter(
        decrease=0.7, initial_rate=5.0, persist_after=4
    )
    assert policies["c"].limiter == rp.AdaptiveLimiter(decrease=0.7, persist_after=4)
    assert rp.EUGPT.limiter is None
