"""The fleet on a virtual clock: a heap of events, no threads, no sleeps.

Each call is driven exactly as a shell drives the attempt loop: the breaker and the
limiter are asked before each attempt, the service (the scenario) answers after its
latency, :meth:`Policy.decide <retrypolicy.Policy.decide>` — the real one, jitter from a
seeded ``random.Random`` — says succeed, retry after a delay, or give up, and storm
protection has its say on a retry (:mod:`._fleet`). The ``Retry-After`` of an answer is
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
from .._outcome import AttemptState, Outcome
from ._fleet import Counters, Protection, Steps
from ._report import Histogram, Simulation
from ._service import Service

if TYPE_CHECKING:
    from .._policy import Policy
    from ._scenario import Answer, Scenario

__all__ = ["run"]

_ARRIVE: Final = 0
_GATE: Final = 1
_SEND: Final = 2
_ANSWER: Final = 3

CIRCUIT_OPEN: Final = "circuit_open"
"""The kind a call given up by an open breaker is counted under (it sent nothing more)."""


class _Call:
    """One call in flight."""

    __slots__ = ("answer", "client", "cost", "paid", "prot", "sent", "start", "state")

    def __init__(self, start: float, client: int, prot: Protection | None) -> None:
        self.start = start
        self.client = client
        self.prot = prot
        self.state: AttemptState | None = None
        self.sent = 0
        self.paid = 0
        self.cost = 0.0
        """What the last retry cost the budget (the refund of a success after retries)."""
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
    decide = policy.decide  # looked up now: the real decision (a spy on the class sees it)
    parse_hint = _backoff.retry_after_from_headers
    storm = policy.budget is not None or policy.limiter is not None or policy.breaker is not None
    stores = 1 if shared else clients
    capacity = policy.budget.capacity if policy.budget is not None else 0.0
    counters = Counters(capacity)
    steps = Steps()
    prots: list[Protection | None]
    if not storm:
        prots = [None] * clients
    elif shared:
        prots = [Protection(policy, steps, counters, 1.0)] * clients
    else:
        prots = [Protection(policy, steps, counters, 1.0 / stores) for _ in range(clients)]
    gated = storm and (policy.limiter is not None or policy.breaker is not None)
    budgeted = policy.budget is not None
    refund_first = policy.budget.success_refund if policy.budget is not None else 0.0

    bad = scenario.bad_period
    bad_start, bad_end = bad if bad is not None else (math.inf, math.inf)
    span = math.ceil(duration) + 1
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
        extra = size - len(requests_per_s) + 60
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
        if op == _GATE:
            prot = call.prot
            assert prot is not None  # noqa: S101 - gated implies storm protection
            wait = prot.gate(now)
            if wait < 0:  # the breaker is open: the call fails fast, nothing is sent
                gave_up[CIRCUIT_OPEN] += 1
                op = -1
            elif wait > 0:
                push(heap, (now + wait, seq, _SEND, call))
                seq += 1
                continue
            else:
                op = _SEND
        if op == _SEND:
            requests += 1
            second = int(now)
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
                state = call.state
                decision = decide(
                    outcome,
                    state if state is not None else AttemptState(call.start),
                    now=now,
                    rng=rng,
                )
                action = decision.action
                if action == "succeed":  # a failure the policy does not count as one
                    ok = True
                else:
                    kind = decision.classification.kind
                    retrying = action == "retry"
                    prot = call.prot
                    why = ""
                    if prot is not None:
                        if gated:
                            why = prot.failed(kind, now, retrying=retrying, delay=decision.delay)
                        if retrying and not why and budgeted:
                            cost = prot.pay(kind, now)
                            if cost:
                                call.cost = cost
                            else:
                                why = "budget"
                    if retrying and not why:
                        call.state = decision.state
                        push(
                            heap,
                            (now + decision.delay, seq, _GATE if gated else _SEND, call),
                        )
                        seq += 1
                        continue
                    gave_up[kind] += 1
                    refused = bool(why)
            if ok:
                prot = call.prot
                if prot is not None:
                    if gated:
                        prot.succeeded(now)
                    if not prot.full:
                        prot.refund(now, call.cost if call.state is not None else refund_first)
        # the call is over
        start = call.start
        record(now - start)
        if ok:
            succeeded += 1
            second = int(now)
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

    end = len(requests_per_s)
    while end > span and not requests_per_s[end - 1] and not ok_per_s[end - 1]:
        end -= 1
    levels: list[float] = []
    if budgeted:
        level = capacity
        refill = policy.budget.refill_rate if policy.budget is not None else 0.0
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
        budget_min=counters.budget_min if budgeted else None,
        breaker_openings=counters.breaker_openings,
        limiter_cuts=counters.limiter_cuts,
        paid=paid,
        paid_extra=paid_extra,
        requests_per_s=tuple(requests_per_s[:end]),
        successes_per_s=tuple(ok_per_s[:end]),
        failures_per_s=tuple(failed_per_s[:end]),
        budget_per_s=tuple(levels),
    )
