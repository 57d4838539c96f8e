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
    ask :meth:`AttemptMachine.waited`. A retry's ``Wait`` with a ``cost`` must
    first be paid for from the retry budget (a policy whose only storm
    protection is a budget): when the budget refuses, hand its
    :class:`~retrypolicy._budget.BudgetResult` to :meth:`AttemptMachine.refused`
    instead of waiting;
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

from .._budget import _TIMEOUT_KINDS, BudgetResult
from .._failure import Failure
from .._limiter import LimiterResult
from .._outcome import AttemptState, Decision, Outcome, retries_after
from .._policy import Policy, retry_reason
from .._rules import Classification, Kind
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
    limiter's pacing before an attempt); ``outcome`` the failure retried past.

    ``cost``: the tokens the retry budget must pay before this wait (0.0: nothing to pay,
    or paid already). Why a field and not a store step of its own: a budget alone is the
    default storm protection, so this is the common retry, and one answer is half the
    price of an :class:`Ask` and its round trip. A shell that paid sets it to 0.0.
    """

    __slots__ = ("_decision", "_source", "cost", "outcome", "seconds")

    def __init__(
        self,
        seconds: float,
        decision: Decision | None = None,
        outcome: Outcome | None = None,
        cost: float = 0.0,
    ) -> None:
        self.seconds = seconds
        self._decision = decision
        self.outcome = outcome
        self.cost = cost
        self._source: _Retry | None = None

    @property
    def decision(self) -> Decision | None:
        """The retry decided: built when first read (most retries are never looked at)."""
        try:
            return self._decision
        except AttributeError:  # a retry the machine decided (and left unbuilt): build it
            c, n, hint, started, attempt, retries, _, _ = self._source  # type: ignore[misc]
            state = AttemptState(started, attempt, retries, self.seconds)
            reason = retry_reason(c.kind, n, c.max_retries)
            d = self._decision = Decision("retry", c, reason, state, self.seconds, hint)
            return d

    def __repr__(self) -> str:
        return f"Wait({self.seconds!r})"


class Fail:
    """Give up: ``outcome`` is the last failure; ``decision`` why (None when the failure
    was not the policy's to retry: a one-shot body's, or — but for a connection failure —
    a method's outside ``methods``)."""

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
    wait (the limiter)? Answered with the seconds to wait (0.0), or the limiter's result
    whose ``wait`` it is; a shell raises ``rp.CircuitOpenError`` while the breaker is open.

    ``epoch`` (not None): the attempt waited for the slot the limiter reserved when its
    last cut was then; it goes if the rate was not cut meanwhile, or waits again for a
    slot at the new rate — a slot reserved at a rate found too high is not spent on a 429.
    """

    __slots__ = ("attempt", "epoch", "host")

    def __init__(self, host: str, attempt: int, epoch: float | None = None) -> None:
        self.host = host
        self.attempt = attempt
        self.epoch = epoch


class Report(Ask):
    """A failure of ``kind`` from ``host``: tell the breaker and the limiter, and — when
    the policy would retry (``retrying``) after ``delay`` — ask the budget to pay
    ``cost``. Answered with a :class:`~retrypolicy._verdict.StormVerdict`. (Only a policy
    with a limiter or breaker reports a failure; a budget alone is paid through
    :attr:`Wait.cost`.)"""

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
    breaker and limiter. ``retried``: the call's retries were paid for. Answered with None,
    to which the machine always answers :data:`DONE`."""

    __slots__ = ("host", "refund", "retried")

    def __init__(self, host: str, refund: float, retried: bool) -> None:
        self.host = host
        self.refund = refund
        self.retried = retried


Step = Gate | Report | Settle
STEPS: Final = frozenset({Gate, Report, Settle})
"""The types of the :class:`Ask` answers: ``type(answer) in STEPS`` is the shells' test."""

Answer = Send | Wait | Ask | Done | Fail

_SUCCESS_KIND: Final = Kind.SUCCESS
_CONNECTION: Final = Failure.CONNECTION
_new: Final = object.__new__

_Retries = tuple[tuple[str, int], ...]
_Retry = tuple[Classification, int, float | None, float, int, _Retries, _Retries, float | None]
"""A retry decided, as plain values: classification, which retry of its kind, the server's
hint, the state after it (started, attempt, retries per kind), and the retries and last
delay before it (where a retry the budget refuses leaves the call)."""

_UNPROTECTED: Final = (None, False, False)
_GATE: Final = object()
_SETTLE: Final = object()


class AttemptMachine:
    """One call's attempts. Built when a call needs one (after a first failure, or before
    a first attempt the limiter or breaker must allow); cheap to build.

    ``retrying=False``: the request is not the policy's to retry (sent once, judged,
    never refused or paced, and nothing is reported). ``connect_only=True``: only its
    connection failures are (a method outside an adapter's ``methods``: a connection
    never made means the request was never sent, so it may go again whatever the
    method); those are decided, paid for, reported and marked as any other, while any
    other failure is :class:`Fail` with no decision, as with ``retrying=False``.

    Where the call stands is kept as plain values (``attempt``, ``retries``,
    ``last_delay``): :attr:`state` and :attr:`decision` are built from them when read.
    """

    __slots__ = (
        "_cost",
        "_decided",
        "_epoch",
        "_pending",
        "_waited_hold",
        "attempt",
        "attempts",
        "budget",
        "connect_only",
        "gated",
        "host",
        "last",
        "last_delay",
        "policy",
        "retries",
        "retrying",
        "rng",
        "started",
        "storm",
    )
    _epoch: float | None
    """The limiter's epoch of the slot a hold waits for (set with the hold, not before)."""

    def __init__(  # noqa: PLR0917 - positional too: a class called with keywords is slower
        self,
        policy: Policy,
        started: float,
        retrying: bool = True,
        host: str = "",
        rng: random.Random | None = None,
        attempts: int = 0,
        connect_only: bool = False,
    ) -> None:
        self.policy = policy
        self.retrying = retrying
        self.connect_only = connect_only
        """Only connection failures are the policy's to retry (see the class docstring)."""
        self.host = host
        """The host whose breaker is asked ("" for one breaker per policy)."""
        self.rng = rng
        self.started = started
        self.attempt = 1
        """The attempt whose outcome is next decided (1 = the first try)."""
        self.retries: tuple[tuple[str, int], ...] = ()
        """Retries decided so far, per kind."""
        self.last_delay: float | None = None
        self.attempts = attempts
        """Attempts begun so far."""
        self._decided: Decision | Wait | None = None
        self.last: Outcome | None = None
        """The last failure; None after a success."""
        self.budget, self.gated, self.storm = policy._protected if retrying else _UNPROTECTED
        self._cost = 0.0
        """What the last paid retry cost: the refund when the call then succeeds."""
        self._pending: object = None
        self._waited_hold = False

    @property
    def state(self) -> AttemptState:
        """Where the call stands, as the policy's :class:`~retrypolicy.engine.AttemptState`."""
        return AttemptState(self.started, self.attempt, self.retries, self.last_delay)

    @property
    def decision(self) -> Decision | None:
        """The last decision taken; None before the first failure."""
        d = self._decided
        return d.decision if isinstance(d, Wait) else d

    @property
    def retried(self) -> bool:
        """True once a retry was decided."""
        return self.attempt > 1

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
        if not self.retrying or (self.connect_only and outcome.failure is not _CONNECTION):
            return self._unjudged(outcome)
        policy = self.policy
        status, failure = outcome.status, outcome.failure
        # Policy._classification_of, its cache read inline: this runs on every failure
        c = policy._cache.get((status, outcome.code, failure)) if failure or status else None
        if c is None:
            c = policy._classification_of(outcome)
        kind = c.kind
        retries = self.retries
        # AttemptState.retries_of(kind) and retries_after(), inlined for the two common
        # cases (a first retry; another of the only kind so far): this runs on every failure
        after: tuple[tuple[str, int], ...]
        if not retries:
            used = 0
            after = ((kind, 1),)
        elif len(retries) == 1 and retries[0][0] == kind:
            used = retries[0][1]
            after = ((kind, used + 1),)
        else:
            used = 0
            for k, n in retries:
                if k == kind:
                    used = n
                    break
            after = retries_after(retries, kind)
        if c.retryable and kind != _SUCCESS_KIND:  # the policy's one decision (Policy.decide's)
            delay = policy._judge(c, outcome, used, self, now, self.rng)
        else:  # success, unknown, or a kind the contract never retries
            delay = c.reason if kind != _SUCCESS_KIND else "success"
        if type(delay) is str:
            return self._give_up(c, delay, outcome)
        attempt = self.attempt + 1
        wait = _new(Wait)  # Wait(delay, None, outcome), its decision left to build when read
        wait.seconds = delay  # type: ignore[assignment] # not a str: a delay
        wait.outcome = outcome
        wait._source = (
            c, used + 1, outcome.retry_after, self.started, attempt, after, retries, self.last_delay
        )  # fmt: skip
        if self.storm:
            budget = self.budget
            cost = 0.0
            if budget is not None:  # RetryBudget.cost_of, inlined: this runs on every retry
                cost = budget.timeout_cost if kind in _TIMEOUT_KINDS else budget.retry_cost
            if self.gated:
                wait.cost = 0.0  # paid through the report
                self._pending = wait
                return Report(self.host, kind, True, delay, cost, self.attempts)  # type: ignore[arg-type]
            # a budget alone: the retry goes ahead once the shell has paid (or refused())
            self._cost = wait.cost = cost
        else:
            wait.cost = 0.0
        self.attempt = attempt  # the retry goes ahead: the call moves past the failure
        self.retries = after
        self.last_delay = delay  # type: ignore[assignment]
        self._decided = wait
        self.last = outcome
        return wait

    def succeeded(self) -> Done | Ask:
        """The attempt succeeded: :data:`DONE`, or the success's news for storm protection."""
        self.last = None
        if not self.storm:
            return DONE
        budget = self.budget
        # AWS standard mode: retries that fixed things are free (their last cost comes back)
        settle = _new(Settle)  # Settle(host, refund, retried), built without a call
        settle.host = self.host
        settle.refund = self._cost or (budget.success_refund if budget is not None else 0.0)
        settle.retried = self._cost > 0
        self._pending = _SETTLE
        return settle

    def answered(self, result: object) -> Answer:
        """The store step of the last :class:`Ask` answered *result*."""
        pending, self._pending = self._pending, None
        if type(pending) is Wait and type(result) is StormVerdict:  # a retry's verdict
            budget = result.budget
            if result.refused or (budget is not None and not budget.ok):
                return self._refuse(pending, result)
            if budget is not None:  # paid: the refund if the call then succeeds
                self._cost = result.cost
            # the retry goes ahead: the call moves past the failure
            _, _, _, _, self.attempt, self.retries, _, _ = pending._source  # type: ignore[misc]
            self.last_delay = pending.seconds
            self._decided = pending
            self.last = pending.outcome
            return pending
        if type(pending) is tuple:  # a give-up reported to the limiter and the breaker
            d, outcome = pending
            self._decided = d
            self.last = outcome
            return Fail(d, outcome)
        if pending is _SETTLE:
            return DONE
        if pending is _GATE:
            if type(result) is LimiterResult:  # paced: a slot reserved, confirmed after
                hold: float = result.wait
                self._epoch = result.epoch
            else:
                hold = result if isinstance(result, float | int) else 0.0
                self._epoch = None
            if hold > 0:
                self._waited_hold = True
                return Wait(float(hold))
            return SEND
        msg = f"answered({result!r}): no store step was asked for"
        raise RuntimeError(msg)

    def refused(self, result: BudgetResult) -> Fail:
        """The retry budget could not pay for the last :class:`Wait`'s ``cost`` (*result*
        is its answer): give up now, where the call stood before that failure."""
        wait = self._decided
        if not isinstance(wait, Wait) or wait._source is None or self.gated:
            msg = f"refused({result!r}): no retry waits to be paid for"
            raise RuntimeError(msg)
        _, _, _, _, attempt, _, self.retries, self.last_delay = wait._source
        self.attempt = attempt - 1  # the retry's attempt was to be the next one
        return self._refuse(wait, StormVerdict("", result, self._cost))

    def waited(self) -> Send | Ask | Wait:
        """A :class:`Wait` is over: send (after the limiter's pacing), or begin the next
        attempt (after a retry's backoff)."""
        if self._waited_hold:
            self._waited_hold = False
            epoch = self._epoch
            if epoch is None:
                return SEND
            self._pending = _GATE  # the limiter confirms the slot waited for
            return Gate(self.host, self.attempts, epoch)
        self.attempts += 1  # begin(), inlined: this runs before every retry
        if self.gated:
            self._pending = _GATE
            return Gate(self.host, self.attempts)
        return SEND

    def unsent(self) -> float:
        """The retry the machine last let go will not be sent (its wait was cancelled, the
        breaker refused it): what it paid the budget, to give back (0.0: a first attempt,
        nothing paid, or given back already). Only retries that fail drain the budget."""
        cost = self._cost if self.attempt > 1 else 0.0
        self._cost = 0.0  # given back once; a success cannot follow
        return cost

    def forget(self) -> None:
        """The call is over: let go of its failures. Their tracebacks hold the frames that
        ran the attempts, and a frame still holding this machine makes a cycle that only
        the garbage collector frees; :attr:`decision` and :attr:`last` are None after."""
        self._decided = self.last = self._pending = None

    # -- internals -------------------------------------------------------------------

    def _refuse(self, wait: Wait, verdict: StormVerdict) -> Fail:
        """Storm protection refused *wait*'s retry: give up on its failure, the call where
        it stood before that failure."""
        d = self._decided = storm_decision(wait.decision, verdict, self.state)  # type: ignore[arg-type]
        self.last = wait.outcome
        return Fail(d, wait.outcome)  # type: ignore[arg-type] # a retry's Wait has its failure

    def _unjudged(self, outcome: Outcome) -> Fail | Ask:
        """A failure not the policy's to decide: given up on with no decision (no earlier
        retry's verdict stands for it)."""
        self._decided = None
        self.last = outcome
        if self.connect_only and self.gated and self.attempt > 1 and not outcome.exhausted:
            # a retry the limiter and breaker let go (the breaker's probe, perhaps): they
            # hear how it ended, as of any attempt they let go
            kind = self.policy._classification_of(outcome).kind
            self._pending = (None, outcome)
            return Report(self.host, kind, False, 0.0, 0.0, self.attempts)
        return Fail(None, outcome)

    def _give_up(self, c: Classification, why: str, outcome: Outcome) -> Fail | Ask:
        state = self.state
        if c.kind == _SUCCESS_KIND:
            d = Decision("succeed", c, why, state)
        else:
            d = Decision("give_up", c, why, state, retry_after=outcome.retry_after)
            if self.gated and not outcome.exhausted:  # the limiter and breaker still hear of it
                self._pending = (d, outcome)
                return Report(self.host, c.kind, False, 0.0, 0.0, self.attempts)
        self._decided = d
        self.last = outcome
        return Fail(d, outcome)
