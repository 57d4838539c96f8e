"""A connection failure is retried whatever the method: ``methods=`` limits what was sent.

A connection that was never made means the request never left, so sending it again is
safe for any method (urllib3's own rule). The seam owns the rule
(``AdapterOptions.loop``: a method outside ``methods`` gets a ``connect_only`` loop),
so every adapter keeps it alike: the policy's rule for connection failures decides
(its limit, backoff, budget), and a retried connection failure is a retry like any
other — events, the budget's payment and refund, the limiter and breaker before the
retry, the exhaustion mark on give-up. Whatever was sent — a read error, a read
timeout, a response — is still never retried for a method outside ``methods``, and a
one-shot body is still sent once.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy.transport import EXHAUSTED, AdapterOptions, AttemptLoop, Outcome

from .adapters.test_wire_contract import CLIENTS, FAST, Call, Result

READ_TIMEOUT = 0.2
"""The clients' read timeout in the read-timeout rows; the server answers after 1 s."""


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/responses"


@dataclass(frozen=True)
class Case:
    """One row: what fails, whether POST is among ``methods``, the body, the attempts."""

    failure: str
    reply: Reply | None  # None: the connection is refused (nothing listens)
    in_methods: bool
    attempts: int
    one_shot: bool = False

    @property
    def id(self) -> str:
        scope = "in-methods" if self.in_methods else "outside-methods"
        return f"{self.failure}-{scope}" + ("-one-shot" if self.one_shot else "")


CASES = [
    # never sent: the policy's rule for connection failures decides (rp.EUGPT: 5 retries)
    Case("refused", None, True, 6),
    Case("refused", None, False, 6),
    # sent: retried only for a method in methods
    Case("reset", Reply.reset(), True, 3),
    Case("reset", Reply.reset(), False, 1),
    Case("read-timeout", Reply.ok(delay=1.0), True, 3),
    Case("read-timeout", Reply.ok(delay=1.0), False, 1),
    Case("503", Reply.error(503), True, 6),
    Case("503", Reply.error(503), False, 1),
    # a one-shot body is sent once, even when it never left
    Case("refused", None, True, 1, one_shot=True),
    Case("refused", None, False, 1, one_shot=True),
]
TABLE = [
    pytest.param(name, case, id=f"{name}-{case.id}")
    for name in sorted(CLIENTS)
    for case in CASES
    # urllib3's Retry never sees the body: a one-shot body there needs retries=False
    if not (case.one_shot and name == "urllib3")
]


def attempts_made(name: str, case: Case) -> int:
    """Send a POST as *case* says through client *name*; the attempts made.

    A refused connection reaches no server to count requests: there every attempt but
    the first follows one recorded wait (the policy has no limiter that would add any).
    """
    call = Call(
        methods="POST" if case.in_methods else "GET",
        one_shot=case.one_shot,
        read_timeout=READ_TIMEOUT,
    )
    with rp.testing.instant() as clock:
        if case.reply is None:
            result = CLIENTS[name](closed_port_url(), call)
            assert result.error is not None, result
            return len(clock.waits) + 1
        with FakeEUGPT() as server:
            server.script(*[case.reply] * 8)
            CLIENTS[name](server.responses_url, call)
            return server.request_count


@pytest.mark.parametrize(("name", "case"), TABLE)
def test_attempts_by_method_scope_and_failure(name: str, case: Case) -> None:
    """Every adapter makes the same attempts: a refused connection is retried by the
    connection rule whether or not POST is among ``methods``; a reset, a read timeout or
    a 503 only when it is; a one-shot body never."""
    assert attempts_made(name, case) == case.attempts


def chain(exc: BaseException | None) -> list[BaseException]:
    """*exc* and what it wraps (cause, context, a MaxRetryError's reason, a first arg)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        first = e.args[0] if e.args else None
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), first]
    return seen


@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_connection_retries_outside_methods_are_retries_like_any(
    name: str, events: list[RetryEvent]
) -> None:
    """A POST outside ``methods`` to a closed port: five retry.scheduled events and one
    retry.gave_up of kind connection, five retries paid from the budget, and the error
    marked exhausted, so an outer ``@rp.retry`` adds attempts instead of multiplying."""
    with rp.testing.instant():  # on its own storm state: read it inside
        result: Result = CLIENTS[name](closed_port_url(), Call(methods="GET"))
        paid = FAST.stats().counters["retries_allowed"]
    names = [e.name for e in events]
    assert names == ["retry.scheduled"] * 5 + ["retry.gave_up"], names
    assert {e.kind for e in events} == {rp.Kind.CONNECTION}
    assert paid == 5
    assert any(getattr(e, EXHAUSTED, False) is True for e in chain(result.error)), result


# -- the seam's loop: one rule for every adapter ------------------------------------------

GUARDED = FAST.evolve(
    breaker=rp.CircuitBreaker(min_calls=3, failure_rate=0.5, open_for=60.0),
    limiter=rp.AdaptiveLimiter(),
)


def steps(loop: AttemptLoop, failures: list[Callable[[AttemptLoop], Outcome]]) -> list[object]:
    """Begin and fail *loop* with each failure in turn while it retries: what each step
    answered (the seconds to wait, None on give-up, or the error the breaker raised)."""
    answers: list[object] = []
    for make in failures:
        try:
            while hold := loop.begin():
                answers.append(("hold", hold))
        except rp.CircuitOpenError as exc:
            answers.append(type(exc).__name__)
            break
        wait = loop.failed(make(loop))
        answers.append(wait)
        if wait is None:
            break
    return answers


def refused(loop: AttemptLoop) -> Outcome:
    """A refused connection, judged (a new exception each time: a give-up marks it)."""
    return loop.judge_exception(ConnectionRefusedError(111, "Connection refused"))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(FAST, [0.0] * 5 + [None]), (GUARDED, [0.0, 0.0, None])],
    ids=["budget", "budget-limiter-breaker"],
)
def test_connect_only_loop_answers_as_a_retrying_loop(
    policy: rp.Policy, expected: list[object]
) -> None:
    """On connection failures the loop of a method outside ``methods`` answers step by step
    as the loop of a method in it — the same waits, storm steps (a breaker that opens stops
    both: 5 retries, or 2 once it opens) and give-up — with the same events, announced
    attempts and budget counts."""
    seen: dict[str, list[tuple[str, int]]] = {}
    answers = {}
    stats = {}
    for method in ("GET", "POST"):
        store = rp.stores.InProcessStore()
        heard = seen[method] = []
        options = AdapterOptions(
            policy=policy,
            methods="GET",
            store=store,
            on_retry=lambda e, heard=heard: heard.append((e.name, e.attempt)),
            on_give_up=lambda e, heard=heard: heard.append((e.name, e.attempt)),
            before_attempt=lambda e, heard=heard: heard.append((e.name, e.attempt)),
        )
        with rp.testing.instant():
            answers[method] = steps(options.loop(method), [refused] * 8)
            stats[method] = policy.stats(store=store).counters
    assert answers["POST"] == answers["GET"] == expected
    assert seen["POST"] == seen["GET"]
    assert stats["POST"] == stats["GET"]
    assert ("retry.scheduled", 1) in seen["POST"]
    assert ("retry.attempt", 1) in seen["POST"]


def test_first_attempt_outside_methods_is_not_refused_by_an_open_breaker() -> None:
    """Only a retry of a request outside ``methods`` is the storm guards' to pace or refuse:
    its first attempt goes as before, while the host's breaker refuses one in ``methods``."""
    options = AdapterOptions(policy=GUARDED, methods="GET")
    with rp.testing.instant():
        steps(options.loop("GET"), [refused] * 8)  # opens the breaker
        assert GUARDED.stats().breakers == {"": "open"}
        with pytest.raises(rp.CircuitOpenError):
            options.loop("GET").begin()
        outside = options.loop("POST")
        assert outside.begin() == 0.0
        assert outside.failed(refused(outside)) is None  # its retry is refused
    assert outside.decision is not None
    assert "circuit open" in outside.decision.reason
    assert outside.attempts == 1


def test_connect_only_loop_succeeds_like_a_retrying_loop() -> None:
    """A refused connection, then a success: retry.scheduled then retry.succeeded, and the
    retry's cost comes back to the budget (a retry that fixed things is free)."""
    events: list[str] = []
    options = AdapterOptions(
        policy=FAST,
        methods="GET",
        on_retry=lambda e: events.append(e.name),
        on_success=lambda e: events.append(e.name),
    )
    loop = options.loop("POST")
    with rp.testing.instant():  # on its own storm state: read it inside
        loop.begin()
        assert loop.failed(refused(loop)) == 0
        loop.begin()
        loop.succeeded()
        stats = FAST.stats()
    assert events == ["retry.scheduled", "retry.succeeded"]
    assert loop.attempts == 2
    assert (stats.counters["retries_allowed"], stats.counters["refunds"]) == (1, 1)
    assert stats.budget_level == pytest.approx(500.0, abs=0.5)


def test_what_was_sent_ends_a_connect_only_loop_unjudged() -> None:
    """A refused connection is retried; the 503 that follows is not (POST is outside
    ``methods``): no retry.gave_up, nothing marked, and its error is the 503's own — not
    the connection failure's retry verdict."""
    events: list[str] = []
    options = AdapterOptions(
        policy=FAST,
        methods="GET",
        raise_on_give_up=True,
        on_retry=lambda e: events.append(e.name),
        on_give_up=lambda e: events.append(e.name),
    )
    loop = options.loop("POST")
    with rp.testing.instant():
        loop.begin()
        assert loop.failed(refused(loop)) == 0
        loop.begin()
        unavailable = loop.judge(503, {})
        assert unavailable is not None
        assert not loop.decides(unavailable)
        assert loop.failed(unavailable) is None
    assert loop.decision is None
    assert events == ["retry.scheduled"]
    response = type("Response", (), {})()
    with pytest.raises(rp.ServiceUnavailableError) as info:
        loop.finish(response, unavailable)
    assert info.value.attempts == 2
    assert not hasattr(info.value, EXHAUSTED)
    assert not hasattr(response, EXHAUSTED)


@pytest.mark.parametrize(
    ("answer", "breaker_after"),
    [(Outcome(status=404), "closed"), (Outcome(status=503), "open")],
    ids=["probe-answered", "probe-failed"],
)
def test_a_connection_retry_that_was_the_breakers_probe_reports_how_it_ended(
    answer: Outcome, breaker_after: str
) -> None:
    """A method outside ``methods``, its connection failure retried while the host's
    breaker is half-open: that retry is the breaker's probe, so the breaker hears how it
    ended even though nothing but a connection failure is retried for it — a 404 (the
    host answered) closes it, a 503 opens it again. Before, the probe slot stayed taken and
    every request to the host was refused for another ``open_for``."""
    now = [1000.0]

    def clock() -> float:
        return now[0]

    store = rp.stores.InProcessStore()
    policy = rp.EUGPT.evolve(
        name="probe", breaker=rp.CircuitBreaker(min_calls=1, open_for=30.0), budget=None
    )
    options = AdapterOptions(
        policy=policy, methods="POST", clock=clock, wall_clock=clock, store=store
    )
    opening = options.loop("POST", host="h")
    opening.begin()
    while (wait := opening.failed(Outcome(status=503))) is not None:
        now[0] += wait
        opening.begin()
    assert rp.stores.stats(policy, store=store, now=now[0]).breakers == {"h": "open"}
    now[0] += 31  # open_for is over: the next attempt the breaker lets go is its probe
    loop = options.loop("GET", host="h")
    loop.begin()
    wait = loop.failed(Outcome(failure=rp.Failure.CONNECTION))
    assert wait is not None
    now[0] += wait
    assert loop.begin() == 0.0  # the retry, let go as the probe
    assert loop.failed(answer) is None  # not retried: it was sent
    assert rp.stores.stats(policy, store=store, now=now[0]).breakers == {"h": breaker_after}
