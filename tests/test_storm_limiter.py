"""The adaptive limiter: cubic pacing after 429s, cut to the measured limit; persistent limits."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import retrypolicy as rp
from retrypolicy._limiter import PERSISTENT_ADVICE, LimiterState, limiter_step
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.transport import AdapterOptions, AttemptLoop, Outcome

LIM = rp.AdaptiveLimiter(
    decrease=0.5, increase=0.03, min_rate=0.5, cooldown=1.0, idle_reset=30.0, persist_after=3
)
K = (0.3 / 0.03) ** (1 / 3)  # seconds from 0.7 x w_max back to w_max at increase 0.03


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


def test_a_slot_waited_for_goes_when_the_rate_was_not_cut_meanwhile() -> None:
    """A request confirms, after its wait, the slot it reserved: with no cut since, it goes
    at once and nothing changes."""
    lim = LIM.evolve(increase=0.0)
    state, _ = limiter_step(lim, None, 0.0, "throttled", 8.0)  # 4/s
    state, slot = limiter_step(lim, state, 0.0, "acquire")
    assert (slot.wait, slot.epoch) == (0.25, 0.0)  # reserved while the last cut was at 0.0
    assert state.held == 1  # waiting for its slot: not sent yet
    after, r = limiter_step(lim, state, 0.25, "confirm", slot.epoch)
    assert (r.wait, r.active, r.epoch) == (0.0, True, 0.0)
    assert after == attrs.evolve(state, held=0)  # it goes: nothing else changes


def test_a_slot_reserved_before_a_cut_is_reserved_again_at_the_new_rate() -> None:
    """Slots reserved at a rate a 429 then showed too high are not spent on more 429s: a cut
    frees them (the next slot is one new interval away), and each request waiting for one
    reserves again when it confirms; it was counted as sent once, when it first reserved."""
    lim = LIM.evolve(increase=0.0, persist_after=100)
    state, _ = limiter_step(lim, None, 0.0, "throttled", 16.0)  # 8/s
    slots = []
    for _ in range(4):  # four callers wait for slots 0.125 s apart, up to 0.5 s
        state, r = limiter_step(lim, state, 0.0, "acquire")
        slots.append(r)
    state, cut = limiter_step(lim, state, 1.0, "throttled")  # the window saw 4 sent, 0 let through
    assert (cut.changed, state.slot, state.sent) == (True, 1.0 + 1 / cut.rate, 0)
    waits = []
    for r in slots:  # each wakes at its slot... and confirms it
        state, again = limiter_step(lim, state, 1.0, "confirm", r.epoch)
        waits.append(again.wait)
        assert again.epoch == 1.0  # reserved again after the cut at 1.0
    assert waits == pytest.approx([k / cut.rate for k in range(1, 5)])
    assert (state.sent, state.held) == (0, 4)  # confirming is not sending: still waiting
    state, r = limiter_step(lim, state, 1.0 + 4 / cut.rate, "confirm", 1.0)
    assert (r.wait, state.held) == (0.0, 3)  # no cut since: it goes


def test_a_confirmation_after_pacing_stopped_goes_at_once() -> None:
    """A slot confirmed after ``idle_reset`` seconds without a 429: pacing is off, it goes."""
    state, _ = limiter_step(LIM, None, 0.0, "throttled", 8.0)
    state, slot = limiter_step(LIM, state, 0.0, "acquire")
    _, r = limiter_step(LIM, state, 31.0, "confirm", slot.epoch)
    assert (r.wait, r.active) == (0.0, False)


def test_one_cut_per_cooldown() -> None:
    """429s within the cooldown are counted (not those before the first slot after the cut,
    which answer earlier requests) but do not cut; after it, one does."""
    lim = LIM.evolve(increase=0.0, persist_after=100)
    state, _ = limiter_step(lim, None, 0.0, "throttled", 8.0)  # 4/s: the first slot at 0.25
    state, r = limiter_step(lim, state, 0.1, "throttled")
    assert (r.rate, r.changed, r.consecutive, state.throttled) == (4.0, False, 2, 0)
    state, r = limiter_step(lim, state, 0.5, "throttled")
    assert (r.rate, r.changed, r.consecutive, state.throttled) == (4.0, False, 3, 1)
    state, r = limiter_step(lim, state, 1.5, "throttled")  # nothing let through: the floor
    assert (r.rate, r.previous, r.changed, state.last_cut) == (0.5, 4.0, True, 1.5)


@pytest.mark.parametrize("scale", [1.0, 20.0, 1000.0])
@pytest.mark.parametrize(
    ("after", "times_w_max"),
    [
        (0.0, 0.7),  # right after a cut to 0.7 x the measured limit
        (1.0, 1 + 0.03 * (1 - K) ** 3),  # most of the way back within a second
        (K, 1.0),  # back to the limit
        (K + 1, 1.03),  # then probing above it: +3% after 1 s
        (K + 2, 1.24),  # +24% after 2 s
        (K + (1 / 0.03) ** (1 / 3), 2.0),  # twice the limit after 3.2 s
    ],
)
def test_cubic_growth_is_scale_free(scale: float, after: float, times_w_max: float) -> None:
    """Without a 429 the rate follows w_max x (1 + increase x (t - K)^3): the same curve,
    relative to the measured limit, at 1, 20 or 1000 requests/s."""
    state = LimiterState(active=True, rate=0.7 * scale, w_max=scale, last_cut=10.0)
    _, r = limiter_step(LIM, state, 10.0 + after, "read")
    assert r.rate == pytest.approx(times_w_max * scale)
    _, flat = limiter_step(LIM.evolve(increase=0.0), state, 10.0 + after, "read")
    assert flat.rate == pytest.approx(0.7 * scale)  # increase 0: no growth


CUTS: list[tuple[str, dict[str, Any], float, float, float]] = [
    # what, the state (last cut at 0), when the cutting 429 comes, the rate after, w_max
    (
        "above the limit: cut to what was let through (20 in 2 s), x decrease",
        {"rate": 20.0, "w_max": 20.0, "sent": 41, "throttled": 20},
        2.0,
        5.0,
        10.0,
    ),
    (
        "let through more than the rate at the 429: the rate is the limit",
        {"rate": 5.0, "w_max": 10.0, "sent": 40},
        3.0,
        0.5 * 10 * (1 + 0.03 * (3 - (0.5 / 0.03) ** (1 / 3)) ** 3),
        10 * (1 + 0.03 * (3 - (0.5 / 0.03) ** (1 / 3)) ** 3),
    ),
    (
        "the first window, one 429: the bucket may have spilled, at most decrease^2 deep",
        {"rate": 20.0, "sent": 5},
        2.0,
        0.5 * 0.5 * 24.8,
        0.5 * 24.8,
    ),
    (
        "the first window, 429s all along: what was let through (the floor here)",
        {"rate": 20.0, "sent": 5, "throttled": 2},
        2.0,
        0.5,
        1.0,
    ),
    (
        "a lone 429 of the probe, 20 % or more above the last limit: that limit held",
        {"rate": 7.0, "w_max": 10.0, "sent": 25},
        6.0,
        5.0,
        10.0,
    ),
    (
        "a probe's 429 after others in the window: what was let through (4/s)",
        {"rate": 7.0, "w_max": 10.0, "sent": 26, "throttled": 1},
        6.0,
        2.0,
        4.0,
    ),
    (
        "requests waiting for their slots (6, up to 0.5 s ahead) are not counted as let through",
        {"rate": 10.0, "w_max": 10.0, "sent": 30, "throttled": 5, "slot": 2.5, "held": 6},
        2.0,
        4.5,
        9.0,
    ),
]


@pytest.mark.parametrize(("what", "fields", "now", "rate", "w_max"), CUTS, ids=[c[0] for c in CUTS])
def test_a_cut_measures_the_limit(
    what: str, fields: dict[str, Any], now: float, rate: float, w_max: float
) -> None:
    """A cut takes the limit to be (sent - pending - 429s) / seconds since the last cut,
    capped by the rate at the 429 — or, for a probe's lone 429 well above the last limit,
    that limit — and paces at decrease x that."""
    state = LimiterState(active=True, last_cut=0.0, last_seen=0.0, **fields)
    after, r = limiter_step(LIM, state, now, "throttled")
    assert (r.changed, r.rate, after.w_max) == (True, pytest.approx(rate), pytest.approx(w_max))
    assert (after.last_cut, after.throttled) == (now, 0)
    # still waiting: counted in the next window (at most the slots ahead at the 429's rate)
    assert after.sent == min(state.held, int(max(0.0, state.slot - now) * r.previous))


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


def test_a_request_waiting_for_its_slot_waits_again_when_a_429_cuts_the_rate() -> None:
    """Through the transport seam, with a real in-process store: a request paced by the
    limiter asks ``begin()`` again after its wait; a 429 that cut the rate meanwhile makes
    it wait for a slot at the new rate instead of going out on one already known too early.
    Without a cut, the second ``begin()`` lets it go at once."""
    clock = Clock(0.0)
    store = rp.stores.InProcessStore()
    policy = rp.EUGPT.evolve(name="confirm", limiter=LIM.evolve(increase=0.0, initial_rate=4.0))
    cut_while_waiting: list[AttemptLoop] = []
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        for other in cut_while_waiting:  # another request's 429, while this one waits
            other.begin()
            other.failed(Outcome(status=429))
        cut_while_waiting.clear()

    options = AdapterOptions(policy=policy, store=store, wall_clock=clock, clock=clock, sleep=sleep)
    first = options.loop("POST")
    first.begin()
    assert first.failed(Outcome(status=429)) is not None  # pacing starts: 4/s
    clock.now = 5.0
    paced = [options.loop("POST") for _ in range(3)]
    holds = [loop.begin() for loop in paced]  # three slots at 4/s: now, +0.25 s, +0.5 s
    assert holds == pytest.approx([0.0, 0.25, 0.5])

    sleep(holds[1])
    assert paced[1].begin() == 0.0  # no cut since its reservation: it goes now

    cut_while_waiting.append(options.loop("POST"))  # a 429 arrives during the next wait
    sleep(holds[2] - holds[1])
    again = paced[2].begin()
    assert again > 0  # the rate was cut: a new slot at the lower rate, not a send
    sleep(again)
    assert paced[2].begin() == 0.0  # confirmed now: no cut since it reserved again


def test_an_adapter_that_never_confirms_still_sends_after_its_wait() -> None:
    """An adapter written before slots were confirmed (one ``begin()`` per attempt, then the
    send) keeps working: its next ``begin()`` after a failure begins the next attempt."""
    clock = Clock(0.0)
    policy = rp.EUGPT.evolve(name="once", limiter=LIM.evolve(increase=0.0, initial_rate=4.0))
    options = AdapterOptions(
        policy=policy, store=rp.stores.InProcessStore(), wall_clock=clock, clock=clock
    )
    starter = options.loop("POST")
    starter.begin()
    starter.failed(Outcome(status=429))
    loop = options.loop("POST")
    assert loop.begin() > 0  # paced; it sleeps and sends without asking again
    clock.now += 1.0
    wait = loop.failed(Outcome(status=503))
    assert wait is not None
    clock.now += wait
    loop.begin()  # the next attempt (no confirmation left pending)
    assert loop.attempts == 2
