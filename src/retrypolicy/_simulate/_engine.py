"""The fleet on a virtual clock: a heap of events, no threads, no sleeps.

Each call is an :class:`~retrypolicy.transport.AttemptMachine` — the one every call
path of retrypolicy drives — and this loop is one more shell interpreting its answers:
``Gate`` (the breaker and the limiter, before an attempt), ``Report`` and ``Settle``
(storm protection after a failure and a success: :mod:`._fleet` performs them on the
pure steps), ``Wait`` (a virtual wait: an event later on the heap), ``SEND``, ``DONE``,
``Fail``. The machine calls :meth:`Policy.decide <retrypolicy.Policy.decide>` — the real
one, jitter from a seeded ``random.Random`` — and composes the storm verdict with the
real :func:`~retrypolicy._verdict.storm_decision`. The ``Retry-After`` of an answer is
read by the real header parser. Nothing is copied from the core: it is called.

Deterministic: one ``random.Random`` for the clients (jitter) and one for the service,
both from the seed, and events that tie in time run in the order they were scheduled.
Memory stays flat with the number of calls: only calls in flight are held; latencies
go to a fixed histogram, counts to per-second bins.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from .. import _backoff
from .._outcome import Outcome
from .._verdict import NO_OBJECTION, StormVerdict, paid
from ..transport._machine import DONE, SEND, AttemptMachine, Fail, Gate, Report, Settle, Wait
from ._fleet import Counters, Protection
from ._report import Histogram, Simulation
from ._service import Service

if TYPE_CHECKING:
    from .._policy import Policy
    from ..transport._machine import Answer as MachineAnswer
    from ._effects import Answer
    from ._scenario import Scenario

__all__ = ["run"]

_ARRIVE: Final = 0
_GATE: Final = 1
_SEND: Final = 2
_ANSWER: Final = 3
_RESUME: Final = 4  # a wait is over: the machine begins the next attempt, or confirms a slot
_ASKED: Final = 5  # the machine asked the breaker and the limiter (a Gate)

CIRCUIT_OPEN: Final = "circuit_open"
"""The kind a call given up by an open breaker is counted under (it sent nothing more)."""
TAIL: Final = 86_400
"""The per-second series end at most this many seconds after calls stop starting; a request
or success later still (a very slow answer, a very long wait) is counted in their last
second, so that memory stays bounded whatever the latencies and waits."""


class _Call:
    """One call in flight."""

    __slots__ = ("answer", "client", "m", "paid", "prot", "sent", "start")

    def __init__(self, start: float, client: int, prot: Protection | None) -> None:
        self.start = start
        self.client = client
        self.prot = prot
        self.m: AttemptMachine | None = None
        """The call's attempt machine: built on its first failure, or before a gated
        first attempt (a call that succeeds at once needs none)."""
        self.sent = 0
        self.paid = 0
        self.answer: Answer | None = None


def run(  # noqa: PLR0915 - one event loop, kept in one frame for speed
    policy: Policy,
    scenario: Scenario,
    *,
    clients: int,
    rate: float | None,
    think: float | None,
    duration: float,
    seed: int,
    shared: bool,
) -> Simulation:
    """Run the fleet (see :func:`retrypolicy.simulate` for the arguments)."""
    rng = random.Random(f"retrypolicy-simulate:{seed}:clients")
    service = Service(scenario, random.Random(f"retrypolicy-simulate:{seed}:service"))
    answer_of = service.answer
    latency_of = service.latency
    parse_hint = _backoff.retry_after_from_headers
    budget, gated, storm = policy._protected  # what the attempt machine reads too
    capacity = budget.capacity if budget is not None else 0.0
    refund_first = budget.success_refund if budget is not None else 0.0
    counters = Counters(capacity)
    prots: list[Protection | None]
    if not storm:
        prots = [None] * clients
    elif shared:
        prots = [Protection(policy, counters, 1.0)] * clients
    else:
        prots = [Protection(policy, counters, 1.0 / clients) for _ in range(clients)]

    bad = scenario.bad_period
    bad_start, bad_end = bad if bad is not None else (math.inf, math.inf)
    span = math.ceil(duration) + 1
    last = span + TAIL  # the series' last second
    requests_per_s = [0] * span
    ok_per_s = [0] * span
    failed_per_s = [0] * span
    hist = Histogram()
    record = hist.add
    gave_up: Counter[str] = Counter()
    outcomes: dict[int, Outcome] = {}
    calls = requests = succeeded = paid = paid_extra = 0
    bad_calls = bad_requests = 0
    recovered_at = 0.0  # the latest moment, past the bad period's end, it still showed
    still_failing = False
    closed = think is not None
    think_s = think or 0.0

    heap: list[tuple[float, int, int, object]] = []
    push = heapq.heappush
    pop = heapq.heappop
    seq = 0
    if closed:
        for i in range(clients):
            push(heap, (i * think_s / clients, seq, _ARRIVE, i))
            seq += 1
    else:
        assert rate is not None  # noqa: S101 - simulate() checks
        step = 1.0 / rate
        push(heap, (0.0, seq, _ARRIVE, 0))
        seq += 1

    def grow(size: int) -> None:
        extra = min(size + 60, last + 1) - len(requests_per_s)
        requests_per_s.extend([0] * extra)
        ok_per_s.extend([0] * extra)
        failed_per_s.extend([0] * extra)

    while heap:
        now, _, op, item = pop(heap)
        if op == _ARRIVE:
            k: int = item  # type: ignore[assignment] # the arrival's number (open) or client
            if closed:
                call = _Call(now, k, prots[k])
            else:
                call = _Call(now, k % clients, prots[k % clients])
                nxt = (k + 1) * step
                if nxt < duration:
                    push(heap, (nxt, seq, _ARRIVE, k + 1))
                    seq += 1
            calls += 1
            op = _GATE if gated else _SEND
        else:
            call = item  # type: ignore[assignment] # every other event carries its call
        gate: object = None
        if op == _RESUME:  # a wait is over: a retry's backoff, or the limiter's slot
            m = call.m
            assert m is not None  # noqa: S101 - only a machine's Wait resumes
            gate = m.waited()
            op = _SEND if gate is SEND else _ASKED
        elif op == _GATE:  # a gated first attempt: the machine asks before it
            m = call.m = AttemptMachine(policy, started=call.start, rng=rng)
            gate = m.begin()
            op = _ASKED
        if op == _ASKED:  # the breaker and the limiter answer the machine's Gate
            prot = call.prot
            m = call.m
            assert prot is not None  # noqa: S101 - gated implies storm protection
            assert m is not None  # noqa: S101
            assert type(gate) is Gate  # noqa: S101 - a gated machine asks first
            held = prot.gate(now, gate.epoch)
            if type(held) is float and held < 0:  # the breaker is open: nothing is sent
                m.answered(0.0)
                gave_up[CIRCUIT_OPEN] += 1
                op = -1
            else:
                paced = m.answered(held)
                if type(paced) is Wait:  # the limiter's slot, confirmed when it comes
                    push(heap, (now + paced.seconds, seq, _RESUME, call))
                    seq += 1
                    continue
                op = _SEND
        if op == _SEND:
            requests += 1
            second = int(now) if now < last else last
            if second >= len(requests_per_s):
                grow(second + 1)
            requests_per_s[second] += 1
            call.sent += 1
            answer = answer_of(now)
            if answer is not None:
                failed_per_s[second] += 1
                if answer.paid:
                    call.paid += 1
            else:
                call.paid += 1
            call.answer = answer
            push(heap, (now + latency_of(answer), seq, _ANSWER, call))
            seq += 1
            continue
        ok = False
        refused = op == -1
        if op == _ANSWER:
            answer = call.answer
            if answer is None:
                ok = True
            else:
                if answer.headers:
                    outcome = Outcome(
                        status=answer.status,
                        code=answer.code,
                        failure=answer.failure,
                        retry_after=parse_hint(answer.headers),
                    )
                else:
                    outcome = outcomes.get(id(answer))  # type: ignore[assignment]
                    if outcome is None:
                        outcome = outcomes[id(answer)] = Outcome(
                            status=answer.status, code=answer.code, failure=answer.failure
                        )
                m = call.m
                if m is None:
                    m = call.m = AttemptMachine(policy, started=call.start, rng=rng, attempts=1)
                reply: MachineAnswer = m.failed(outcome, now)
                verdict = None
                if type(reply) is Report:
                    verdict = _verdict(call.prot, reply, now)
                    reply = m.answered(verdict)
                elif type(reply) is Wait and reply.cost:  # a budget alone: pay, or give up
                    prot = call.prot
                    refusal = None if prot is None else prot.pay(reply.cost, now)
                    if refusal is not None:
                        verdict = StormVerdict("", refusal, reply.cost)
                        reply = m.refused(refusal)
                if type(reply) is Wait:
                    push(heap, (now + reply.seconds, seq, _RESUME, call))
                    seq += 1
                    continue
                assert type(reply) is Fail  # noqa: S101 - a failure is retried or given up
                d = reply.decision
                if d is None or d.action == "succeed":  # a failure the policy does not count
                    ok = True
                else:
                    gave_up[d.classification.kind] += 1
                    refused = verdict is not None and (
                        bool(verdict.refused)
                        or (verdict.budget is not None and not verdict.budget.ok)
                    )
        if ok:
            prot = call.prot
            if prot is not None:
                m = call.m
                if m is None:  # a first try: AWS's success refund, the breaker's good news
                    if gated:
                        prot.succeeded(now)
                    if not prot.full:
                        prot.refund(now, refund_first)
                else:
                    settle = m.succeeded()
                    if type(settle) is Settle:
                        if gated:
                            prot.succeeded(now)
                        if not prot.full or settle.retried:
                            prot.refund(now, settle.refund)
                        done = m.answered(None)
                        assert done is DONE  # noqa: S101 - a Settle ends the call
        # the call is over
        start = call.start
        record(now - start)
        if ok:
            succeeded += 1
            second = int(now) if now < last else last
            if second >= len(ok_per_s):
                grow(second + 1)
            ok_per_s[second] += 1
        if call.paid:
            paid += call.paid
            paid_extra += call.paid - 1
        if bad_start <= start < bad_end:
            bad_calls += 1
            bad_requests += call.sent
        if start < bad_end <= now:
            recovered_at = max(recovered_at, now)
        elif refused and start >= bad_end:
            recovered_at = max(recovered_at, now)
            if start >= duration - 1.0:
                still_failing = True
        if closed and now + think_s < duration:
            push(heap, (now + think_s, seq, _ARRIVE, call.client))
            seq += 1

    if bad is not None and bad_end >= duration:  # the incident outlasted the run
        still_failing = True
    end = len(requests_per_s)
    while end > span and not requests_per_s[end - 1] and not ok_per_s[end - 1]:
        end -= 1
    levels: list[float] = []
    if budget is not None:
        level = capacity
        refill = budget.refill_rate
        for second in range(end):
            # a second without a step: the bucket refilled with time alone
            level = counters.levels.get(second, min(capacity, level + refill))
            levels.append(level)
    return Simulation(
        policy=policy.name,
        scenario=scenario.describe(),
        clients=clients,
        rate=rate,
        think=think,
        duration=duration,
        seed=seed,
        shared=shared,
        calls=calls,
        requests=requests,
        succeeded=succeeded,
        gave_up=MappingProxyType({str(k): v for k, v in sorted(gave_up.items())}),
        latency=hist.freeze(),
        bad_period=bad,
        bad_calls=bad_calls,
        bad_requests=bad_requests,
        recovery=None if bad is None else max(0.0, recovered_at - bad_end),
        still_failing=still_failing,
        budget_paid=counters.budget_paid,
        budget_refused=counters.budget_refused,
        budget_min=None if budget is None else counters.budget_min,
        breaker_openings=counters.breaker_openings,
        limiter_cuts=counters.limiter_cuts,
        paid=paid,
        paid_extra=paid_extra,
        requests_per_s=tuple(requests_per_s[:end]),
        successes_per_s=tuple(ok_per_s[:end]),
        failures_per_s=tuple(failed_per_s[:end]),
        budget_per_s=tuple(levels),
    )


def _verdict(prot: Protection | None, step: Report, now: float) -> StormVerdict:
    """Perform a machine's :class:`Report` on the pure steps: the storm verdict."""
    if prot is None:
        return NO_OBJECTION
    why = (
        prot.failed(step.kind, now, retrying=step.retrying, delay=step.delay) if prot.gated else ""
    )
    if not step.retrying:
        return NO_OBJECTION
    cost = step.cost
    if why or prot.budget is None:
        return StormVerdict(why, None, cost)
    refused = prot.pay(cost, now)
    return paid(cost) if refused is None else StormVerdict("", refused, cost)
