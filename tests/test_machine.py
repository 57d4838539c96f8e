"""The attempt machine, answer by answer, and the storm verdict composed into the decision:
pure tables, no clock, no store, no sleep."""

from __future__ import annotations

import random
from typing import Any

import pytest

import retrypolicy as rp
from retrypolicy._budget import BudgetResult
from retrypolicy._verdict import NO_OBJECTION, StormVerdict, storm_decision
from retrypolicy.transport import (
    DONE,
    SEND,
    Ask,
    AttemptMachine,
    AttemptState,
    Fail,
    Gate,
    Outcome,
    Report,
    Settle,
    Wait,
)

PLAIN = rp.EUGPT.evolve(budget=None, backoff=rp.Backoff(jitter="none"))
BUDGETED = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))  # the default budget: 500/5/10/1
GATED = PLAIN.evolve(breaker=rp.CircuitBreaker())
PAID = StormVerdict("", BudgetResult(True, 495.0, 500.0), 5.0)
REFUSED = StormVerdict("", BudgetResult(False, 2.0, 500.0, "exhausted"), 5.0)

E503 = Outcome(status=503)
E400 = Outcome(status=400)
TIMEOUT = Outcome(failure=rp.Failure.TIMEOUT)


def machine(policy: rp.Policy, **kw: Any) -> AttemptMachine:
    return AttemptMachine(policy, started=0.0, rng=random.Random(1), **kw)


def test_an_attempt_without_storm_protection_is_sent_at_once() -> None:
    """begin() answers SEND when nothing must be asked first."""
    assert machine(PLAIN).begin() is SEND


def test_a_gated_attempt_asks_the_breaker_and_limiter_first() -> None:
    """With a breaker, begin() asks a Gate step; no wait: SEND; a wait: Wait, then SEND."""
    m = machine(GATED)
    ask = m.begin()
    assert isinstance(ask, Ask)
    assert isinstance(ask.step, Gate)
    assert (ask.step.host, ask.step.attempt) == ("", 1)
    assert m.answered(0.0) is SEND
    m.begin()
    paced = m.answered(1.5)
    assert isinstance(paced, Wait)
    assert paced.seconds == 1.5
    assert paced.decision is None  # pacing, not a retry
    assert m.waited() is SEND  # the attempt was counted already: send it


def test_an_attempt_already_sent_is_counted_not_gated() -> None:
    """begin(sent=True) (urllib3's first attempt) counts without asking."""
    m = machine(GATED)
    assert m.begin(sent=True) is SEND
    assert m.attempts == 1


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (E503, Wait),  # 502/503/504: retry with backoff
        (E400, Fail),  # 400: never retried
        (Outcome(status=401), Fail),
        (Outcome(status=429, retry_after=2.0), Wait),
        (TIMEOUT, Wait),
    ],
)
def test_a_failure_is_answered_by_the_policys_decision(
    outcome: Outcome, expected: type[Wait | Fail]
) -> None:
    """Without storm protection, failed() answers Wait (retry) or Fail (give up) at once."""
    m = machine(PLAIN)
    m.begin()
    answer = m.failed(outcome, now=0.0)
    assert isinstance(answer, expected)
    assert m.decision is not None


def test_a_retry_waits_at_least_the_servers_hint() -> None:
    """The Wait of a 429 with Retry-After is never shorter than the hint."""
    m = machine(PLAIN)
    m.begin()
    answer = m.failed(Outcome(status=429, retry_after=2.0), now=0.0)
    assert isinstance(answer, Wait)
    assert answer.seconds >= 2.0


def test_after_a_backoff_the_next_attempt_begins() -> None:
    """waited() after a retry's Wait begins attempt 2."""
    m = machine(PLAIN)
    m.begin()
    assert isinstance(m.failed(E503, now=0.0), Wait)
    assert m.waited() is SEND
    assert m.attempts == 2
    assert m.state.attempt == 2


def test_a_request_not_the_policys_to_retry_fails_without_a_decision() -> None:
    """retrying=False: the first failure is Fail(None), nothing decided, nothing asked."""
    m = machine(BUDGETED, retrying=False)
    assert m.begin() is SEND
    answer = m.failed(E503, now=0.0)
    assert isinstance(answer, Fail)
    assert answer.decision is None


def test_a_retry_asks_the_budget_to_pay_its_cost() -> None:
    """With a budget alone, a failure the policy retries answers a Wait costing retry_cost."""
    m = machine(BUDGETED)
    m.begin()
    wait = m.failed(E503, now=0.0)
    assert isinstance(wait, Wait)
    assert (wait.seconds, wait.cost) == (0.5, 5.0)


def test_a_timeout_costs_the_timeout_cost() -> None:
    """A retry after a timeout costs timeout_cost (10), as in AWS standard mode."""
    m = machine(BUDGETED)
    m.begin()
    wait = m.failed(TIMEOUT, now=0.0)
    assert isinstance(wait, Wait)
    assert wait.cost == 10.0


def test_a_retry_without_a_budget_costs_nothing() -> None:
    """Without a budget a retry's Wait has nothing to pay."""
    m = machine(PLAIN)
    m.begin()
    wait = m.failed(E503, now=0.0)
    assert isinstance(wait, Wait)
    assert wait.cost == 0.0


def test_with_a_limiter_or_breaker_the_budget_is_paid_through_the_report() -> None:
    """A gated policy reports every failure; the Report carries the budget's cost."""
    m = machine(BUDGETED.evolve(breaker=rp.CircuitBreaker()))
    m.begin()
    m.answered(0.0)
    ask = m.failed(TIMEOUT, now=0.0)
    assert isinstance(ask, Ask)
    assert isinstance(ask.step, Report)
    assert (ask.step.kind, ask.step.retrying, ask.step.cost) == ("timeout", True, 10.0)
    wait = m.answered(PAID)
    assert isinstance(wait, Wait)
    assert wait.cost == 0.0  # paid through the report


def test_a_paid_retry_waits_and_a_refused_one_gives_up_saying_why() -> None:
    """The budget decides: paid → the Wait stands; refused → Fail, the kind kept, the
    reason given, the call where it stood before the failure."""
    m = machine(BUDGETED)
    m.begin()
    assert isinstance(m.failed(E503, now=0.0), Wait)
    m.waited()
    before = m.state
    assert isinstance(m.failed(E503, now=0.0), Wait)
    refused = m.refused(REFUSED.budget)  # type: ignore[arg-type]
    assert isinstance(refused, Fail)
    assert refused.outcome is E503
    assert refused.decision is m.decision
    assert refused.decision is not None
    assert refused.decision.action == "give_up"
    assert refused.decision.classification.kind == "unavailable"
    assert "retry budget exhausted (2 of 500 tokens left; a retry costs 5)" in (
        refused.decision.reason
    )
    assert m.state == before  # the refused retry did not count as one
    assert refused.decision.state == before


def test_refused_without_a_retry_to_pay_for_is_an_error() -> None:
    """refused() answers only a retry's Wait that has a cost."""
    m = machine(BUDGETED)
    m.begin()
    with pytest.raises(RuntimeError, match="no retry waits to be paid for"):
        m.refused(REFUSED.budget)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failures", "refund"),
    [
        ([], 1.0),  # a first-try success refunds success_refund
        ([E503], 5.0),  # a success after retrying refunds its last retry's cost...
        ([TIMEOUT], 10.0),  # ...10 after a timeout
        ([TIMEOUT, E503], 5.0),  # the last retry's, not the sum
    ],
)
def test_a_success_refunds_by_aws_standard_mode(failures: list[Outcome], refund: float) -> None:
    """succeeded() asks a Settle step whose refund is AWS standard mode's."""
    m = machine(BUDGETED)
    m.begin()
    for outcome in failures:
        assert isinstance(m.failed(outcome, now=0.0), Wait)
        m.waited()
    ask = m.succeeded()
    assert isinstance(ask, Ask)
    assert isinstance(ask.step, Settle)
    assert ask.step.refund == refund
    assert ask.step.retried is bool(failures)
    assert m.answered(None) is DONE


def test_a_success_without_storm_protection_is_done() -> None:
    """succeeded() answers DONE when there is nothing to tell a store."""
    m = machine(PLAIN)
    m.begin()
    assert m.succeeded() is DONE


def test_an_exhausted_failure_asks_no_store() -> None:
    """A failure an inner layer retried to the end gives up without a Report."""
    m = machine(BUDGETED)
    m.begin()
    answer = m.failed(Outcome(status=503, exhausted=True), now=0.0)
    assert isinstance(answer, Fail)


def test_a_gated_give_up_still_tells_the_breaker() -> None:
    """With a breaker, a failure given up on still reports (retrying=False) for the count."""
    m = machine(GATED)
    m.begin()
    m.answered(0.0)
    ask = m.failed(Outcome(status=500), now=0.0)  # 500: 2 retries; still a retry here
    assert isinstance(ask, Ask)
    m2 = machine(GATED.evolve(max_attempts=1))
    m2.begin()
    m2.answered(0.0)
    ask2 = m2.failed(E503, now=0.0)
    assert isinstance(ask2, Ask)
    assert isinstance(ask2.step, Report)
    assert ask2.step.retrying is False
    assert isinstance(m2.answered(NO_OBJECTION), Fail)


def test_answered_without_a_question_is_an_error() -> None:
    """A store result nobody asked for is refused loudly, not silently taken."""
    with pytest.raises(RuntimeError, match="no store step was asked"):
        machine(PLAIN).answered(PAID)


# -- the storm verdict, composed into the decision: one row per rule ---------------------

STATE = AttemptState(started=0.0)


def _retry() -> rp.Decision:
    return PLAIN.decide(E503, STATE, now=0.0, rng=random.Random(1))


@pytest.mark.parametrize(
    ("verdict", "action", "reason"),
    [
        (NO_OBJECTION, "retry", "unavailable: retry 1 of 5"),
        (PAID, "retry", "unavailable: retry 1 of 5"),
        (StormVerdict("circuit open for api: the next probe is in 9s"), "give_up", "circuit open"),
        (
            StormVerdict("rate limit persistent: 5 429s in a row"),
            "give_up",
            "rate limit persistent",
        ),
        (REFUSED, "give_up", "unavailable: retry budget exhausted"),
    ],
)
def test_storm_decision_lets_a_retry_stand_only_when_nothing_refuses_it(
    verdict: StormVerdict, action: str, reason: str
) -> None:
    """storm_decision: breaker or limiter refusal, or an unpaid budget, turns a retry into a
    give-up with the reason; otherwise the decision stands unchanged."""
    decided = storm_decision(_retry(), verdict, STATE)
    assert decided.action == action
    assert reason in decided.reason
    assert decided.classification.kind == "unavailable"


def test_storm_decision_never_turns_a_give_up_into_a_retry() -> None:
    """A decision that is not a retry passes through whatever the verdict."""
    give_up = PLAIN.decide(E400, STATE, now=0.0)
    assert storm_decision(give_up, PAID, STATE) is give_up
    assert storm_decision(give_up, REFUSED, STATE) is give_up


# -- the machine decides what Policy.decide decides ------------------------------------------

_JITTERED = rp.EUGPT.evolve(budget=None, max_attempts=6, deadline=30.0)
_SEQUENCES = {
    "503s until the kind's limit": [E503] * 7,
    "kinds mixed": [E503, TIMEOUT, E503, Outcome(status=429, retry_after=2.0), TIMEOUT, E503],
    "a hint past max_retry_after": [Outcome(status=429, retry_after=3600.0)],
    "not retried": [E400],
    "an exhausted failure": [Outcome(status=503, exhausted=True)],
    "an unknown exception": [Outcome(exception=KeyError("x"))],
    "a success handed to failed()": [Outcome(status=200)],
}


@pytest.mark.parametrize("outcomes", _SEQUENCES.values(), ids=list(_SEQUENCES))
def test_the_machine_decides_exactly_what_policy_decide_decides(outcomes: list[Outcome]) -> None:
    """One decision: each answer's decision equals ``Policy.decide`` on the same state, time
    and random draws (the machine builds it lazily from the same plain values)."""
    m = AttemptMachine(_JITTERED, started=0.0, rng=random.Random(7))
    rng = random.Random(7)
    state = AttemptState(started=0.0)
    for i, outcome in enumerate(outcomes):
        now = 4.0 * i
        expected = _JITTERED.decide(outcome, state, now=now, rng=rng)
        answer = m.failed(outcome, now)
        assert answer.decision == expected  # type: ignore[union-attr]
        assert m.decision == expected
        if not isinstance(answer, Wait):
            assert isinstance(answer, Fail)
            break
        assert answer.seconds == expected.delay
        assert m.state == expected.state
        state = expected.state
        m.waited()


def test_a_machine_forgets_its_failures_when_the_call_is_over() -> None:
    """forget(): the last failure and decision are let go (their tracebacks hold frames)."""
    m = machine(PLAIN)
    m.begin()
    assert isinstance(m.failed(E503, 0.0), Wait)
    assert (m.last, m.decision) != (None, None)
    m.forget()
    assert (m.last, m.decision) == (None, None)


def test_a_retry_never_sent_hands_back_what_it_paid_once() -> None:
    """``unsent()``: the retry let go will not be sent; its cost is handed back to the shell
    once (0.0 for a first attempt, and after the first hand-back)."""
    policy = rp.EUGPT.evolve(budget=rp.RetryBudget(capacity=20, retry_cost=5))
    m = AttemptMachine(policy, started=0.0, rng=random.Random(1))
    assert m.unsent() == 0.0  # nothing retried yet
    m.begin()
    wait = m.failed(Outcome(status=503), 0.0)
    assert isinstance(wait, Wait)
    assert wait.cost == 5.0
    assert (m.unsent(), m.unsent()) == (5.0, 0.0)
