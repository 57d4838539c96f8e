"""The attempt machine: one call's attempts as a question answered with a small value.

Every call path — ``@rp.retry``, ``rp.attempts``, each adapter, the batch
runner — drives this one machine, the way h11's ``next_event()`` or tenacity's
``iter()`` drive theirs. It is told what happened (an attempt is about to go,
it failed with an :class:`~retrypolicy.engine.Outcome`, it succeeded, a store
step answered) and answers what to do next:

:data:`SEND`
    send the attempt now;
:class:`Wait`
    wait ``seconds`` first (a retry's backoff, or the limiter's pacing), then
    ask :meth:`AttemptMachine.waited`;
:class:`Ask`
    storm protection needs state from a store: perform ``step`` (a
    :class:`Gate`, :class:`Report` or :class:`Settle`) and hand its result to
    :meth:`AttemptMachine.answered`;
:data:`DONE`
    the attempt succeeded: hand its result to the caller;
:class:`Fail`
    give up: hand the failure back, as ``decision`` says why.

It never sleeps, never reads a clock (``now`` is given) and never touches a
store: shells do, synchronously or awaiting, and only they differ.
"""

from __future__ import annotations

import random
from typing import Final

from .._budget import _TIMEOUT_KINDS
from .._outcome import AttemptState, Decision, Outcome
from .._policy import Policy
from .._verdict import StormVerdict, storm_decision

__all__ = [
    "DONE",
    "SEND",
    "STEPS",
    "Answer",
    "Ask",
    "AttemptMachine",
    "Done",
    "Fail",
    "Gate",
    "Report",
    "Send",
    "Settle",
    "Step",
    "Wait",
]


class Send:
    """Send the attempt now."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SEND"


class Done:
    """The attempt succeeded: the call is over."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DONE"


SEND: Final = Send()
DONE: Final = Done()


class Wait:
    """Wait *seconds* before going on. ``decision`` is the retry decided (None for the
    limiter's pacing before an attempt); ``outcome`` the failure retried past."""

    __slots__ = ("decision", "outcome", "seconds")

    def __init__(
        self, seconds: float, decision: Decision | None = None, outcome: Outcome | None = None
    ) -> None:
        self.seconds = seconds
        self.decision = decision
        self.outcome = outcome

    def __repr__(self) -> str:
        return f"Wait({self.seconds!r})"


class Fail:
    """Give up: ``outcome`` is the last failure; ``decision`` why (None when the request
    was not the policy's to retry: a method outside ``methods``, a one-shot body)."""

    __slots__ = ("decision", "outcome")

    def __init__(self, decision: Decision | None, outcome: Outcome) -> None:
        self.decision = decision
        self.outcome = outcome

    def __repr__(self) -> str:
        reason = "not retried" if self.decision is None else self.decision.reason
        return f"Fail({reason!r})"


class Ask:
    """Storm protection needs a store: perform this step, then call
    :meth:`AttemptMachine.answered` with its result. Every step is an ``Ask``
    (:class:`Gate`, :class:`Report`, :class:`Settle`)."""

    __slots__ = ()

    @property
    def step(self) -> Step:
        """The step to perform: this answer itself."""
        return self  # type: ignore[return-value] # every Ask is one of the three steps

    def __repr__(self) -> str:
        return f"Ask({type(self).__name__})"


class Gate(Ask):
    """Before attempt ``attempt`` to ``host``: may it go (the breaker), after how long a
    wait (the limiter)? Answered with the seconds to wait; a shell raises
    ``rp.CircuitOpenError`` while the breaker is open."""

    __slots__ = ("attempt", "host")

    def __init__(self, host: str, attempt: int) -> None:
        self.host = host
        self.attempt = attempt


class Report(Ask):
    """A failure of ``kind`` from ``host``: tell the breaker and the limiter, and — when
    the policy would retry (``retrying``) after ``delay`` — ask the budget to pay
    ``cost``. Answered with a :class:`~retrypolicy._verdict.StormVerdict`."""

    __slots__ = ("attempt", "cost", "delay", "host", "kind", "retrying")

    def __init__(  # noqa: PLR0917 - a private value, built in one place
        self, host: str, kind: str, retrying: bool, delay: float, cost: float, attempt: int
    ) -> None:
        self.host = host
        self.kind = kind
        self.retrying = retrying
        self.delay = delay
        self.cost = cost
        self.attempt = attempt


class Settle(Ask):
    """The call succeeded: give the budget back ``refund`` tokens (AWS standard mode: the
    last retry's cost after retries, ``success_refund`` on a first try), and tell the
    breaker and limiter. ``retried``: the call's retries were paid for. Answered with None."""

    __slots__ = ("host", "refund", "retried")

    def __init__(self, host: str, refund: float, retried: bool) -> None:
        self.host = host
        self.refund = refund
        self.retried = retried


Step = Gate | Report | Settle
STEPS: Final = frozenset({Gate, Report, Settle})
"""The types of the :class:`Ask` answers: ``type(answer) in STEPS`` is the shells' test."""

Answer = Send | Wait | Ask | Done | Fail

_GATE: Final = object()
_SETTLE: Final = object()


class AttemptMachine:
    """One call's attempts. Built when a call needs one (after a first failure, or before
    a first attempt the limiter or breaker must allow); cheap to build.

    ``retrying=False``: the request is not the policy's to retry (sent once, judged,
    never refused or paced, and nothing is reported).
    """

    __slots__ = (
        "_cost",
        "_pending",
        "_waited_hold",
        "attempts",
        "budget",
        "decision",
        "gated",
        "host",
        "last",
        "policy",
        "retrying",
        "rng",
        "state",
        "storm",
    )

    def __init__(
        self,
        policy: Policy,
        *,
        started: float,
        retrying: bool = True,
        host: str = "",
        rng: random.Random | None = None,
        attempts: int = 0,
    ) -> None:
        self.policy = policy
        self.retrying = retrying
        self.host = host
        """The host whose breaker is asked ("" for one breaker per policy)."""
        self.rng = rng
        self.state = AttemptState(started=started)
        self.attempts = attempts
        """Attempts begun so far."""
        self.decision: Decision | None = None
        """The last decision taken; None before the first failure."""
        self.last: Outcome | None = None
        """The last failure; None after a success."""
        self.budget = policy.budget
        self.gated = retrying and (policy.limiter is not None or policy.breaker is not None)
        self.storm = retrying and (self.gated or self.budget is not None)
        self._cost = 0.0
        """What the last paid retry cost: the refund when the call then succeeds."""
        self._pending: object = None
        self._waited_hold = False

    @property
    def retried(self) -> bool:
        """True once a retry was decided."""
        return self.state.attempt > 1

    # -- what happened -------------------------------------------------------------

    def begin(self, *, sent: bool = False) -> Send | Ask | Wait:
        """An attempt is about to go (*sent*: it went already, as urllib3 reports it):
        :data:`SEND`, or an :class:`Ask` for the limiter and breaker first."""
        self.attempts += 1
        if self.gated and not sent:
            self._pending = _GATE
            return Gate(self.host, self.attempts)
        return SEND

    def failed(self, outcome: Outcome, now: float) -> Wait | Fail | Ask:
        """The attempt failed with *outcome* at *now* (the shell's monotonic clock)."""
        if not self.retrying:
            self.last = outcome
            return Fail(None, outcome)
        d = self.policy.decide(outcome, self.state, now=now, rng=self.rng)
        action = d.action
        if self.storm and action != "succeed" and not outcome.exhausted:
            retry = action == "retry"
            if retry or self.gated:
                kind = d.classification.kind
                budget = self.budget
                cost = 0.0
                if retry and budget is not None:
                    cost = budget.timeout_cost if kind in _TIMEOUT_KINDS else budget.retry_cost
                self._pending = (d, outcome)
                return Report(self.host, kind, retry, d.delay, cost, self.attempts)
        self.decision = d
        self.last = outcome
        if action == "retry":
            self.state = d.state
            return Wait(d.delay, d, outcome)
        return Fail(d, outcome)

    def succeeded(self) -> Done | Ask:
        """The attempt succeeded: :data:`DONE`, or the success's news for storm protection."""
        self.last = None
        if not self.storm:
            return DONE
        budget = self.budget
        # AWS standard mode: retries that fixed things are free (their last cost comes back)
        refund = self._cost or (budget.success_refund if budget is not None else 0.0)
        self._pending = _SETTLE
        return Settle(self.host, refund, self._cost > 0)

    def answered(self, result: object) -> Answer:
        """The store step of the last :class:`Ask` answered *result*."""
        pending, self._pending = self._pending, None
        if type(pending) is tuple and type(result) is StormVerdict:  # a Report's verdict
            d, outcome = pending
            budget = result.budget
            if result.refused or (budget is not None and not budget.ok):
                d = storm_decision(d, result, self.state)
            elif budget is not None:  # paid: the refund if the call then succeeds
                self._cost = result.cost
            return self._settle(d, outcome)
        if pending is _SETTLE:
            return DONE
        if pending is _GATE:
            hold = result if isinstance(result, float | int) else 0.0
            if hold > 0:
                self._waited_hold = True
                return Wait(float(hold))
            return SEND
        msg = f"answered({result!r}): no store step was asked for"
        raise RuntimeError(msg)

    def waited(self) -> Send | Ask | Wait:
        """A :class:`Wait` is over: send (after the limiter's pacing), or begin the next
        attempt (after a retry's backoff)."""
        if self._waited_hold:
            self._waited_hold = False
            return SEND
        self.attempts += 1  # begin(), inlined: this runs before every retry
        if self.gated:
            self._pending = _GATE
            return Gate(self.host, self.attempts)
        return SEND

    # -- internals -------------------------------------------------------------------

    def _settle(self, d: Decision, outcome: Outcome) -> Wait | Fail:
        self.decision = d
        self.last = outcome
        if d.action == "retry":
            self.state = d.state
            return Wait(d.delay, d, outcome)
        return Fail(d, outcome)
