"""The values the decision engine works on: what happened, where we are, what to do."""

from __future__ import annotations

import contextlib
from typing import Any, Final, Literal

import attrs

from ._envelope import ErrorInfo
from ._rules import Classification, Failure

__all__ = ["EXHAUSTED", "AttemptState", "Decision", "Outcome", "mark_exhausted"]

_new: Final = object.__new__

EXHAUSTED: Final = "retrypolicy_exhausted"
"""Set (True) on an exception, or a failed response, that a policy retried until it gave up,
so that an outer retry layer (an ``@rp.retry`` around an adapter's session) does not multiply
the attempts. An exception counts as marked when any exception of its cause/context chain is."""


def mark_exhausted(obj: object) -> None:
    """Mark *obj* — an exception, or a failed response handed back — as already retried to
    the end, so an outer retry layer gives up on it at once (best effort: some types refuse
    attributes)."""
    with contextlib.suppress(AttributeError, TypeError):
        setattr(obj, EXHAUSTED, True)


# Built on every failed attempt, so built fast: dict classes (slots=False; a frozen slotted
# class sets each field through object.__setattr__) with a hand-written __init__ that
# stores into the instance dict (attrs' generated one also builds an unused bound
# setattr). attrs still provides eq, hash, repr and evolve; none of these fields has a
# validator or converter, so the hand-written __init__ skips nothing. Keep each __init__'s
# parameters (names, order, defaults) exactly the attrs fields: evolve calls it.
@attrs.frozen(kw_only=True, slots=False, init=False)
class Outcome:
    """What one attempt produced, in transport-neutral terms.

    Adapters and the apply layer build these; the core never sees a
    transport's own response or exception types except as opaque values.
    """

    status: int | None = None
    code: str | None = None
    failure: Failure | None = None
    exception: BaseException | None = attrs.field(default=None, repr=False)
    retry_after: float | None = None
    """The server's wait hint, already parsed to seconds."""
    error: ErrorInfo | None = attrs.field(default=None, repr=False)
    value: Any = attrs.field(default=None, repr=False)
    """What the call returned, when it returned."""
    exhausted: bool = False
    """An inner retry layer (an adapter, an inner ``@rp.retry``) already retried this failure
    until its policy gave up: retrying it again would multiply the attempts."""

    def __init__(
        self,
        *,
        status: int | None = None,
        code: str | None = None,
        failure: Failure | None = None,
        exception: BaseException | None = None,
        retry_after: float | None = None,
        error: ErrorInfo | None = None,
        value: Any = None,
        exhausted: bool = False,
    ) -> None:
        d = self.__dict__
        d["status"] = status
        d["code"] = code
        d["failure"] = failure
        d["exception"] = exception
        d["retry_after"] = retry_after
        d["error"] = error
        d["value"] = value
        d["exhausted"] = exhausted


# Every field's default, on the class too (attrs removed them): an instance that does not
# hold a field in its dict reads the default, so the hot path below stores only what differs.
for _field in attrs.fields(Outcome):
    setattr(Outcome, _field.name, _field.default)


def failure_outcome(failure: Failure | None, exception: BaseException, exhausted: bool) -> Outcome:
    """``Outcome(failure=..., exception=..., exhausted=...)`` at a third of the cost: a
    transport failure is the outcome every retried exception makes, on every attempt, and
    the other six fields keep their class defaults."""
    outcome: Outcome = _new(Outcome)
    d = outcome.__dict__
    d["failure"] = failure
    d["exception"] = exception
    if exhausted:
        d["exhausted"] = True
    return outcome


@attrs.frozen(slots=False, init=False)
class AttemptState:
    """Where a call stands: attempts made, retries used per kind, when it started.

    Immutable; the engine returns the next state in its :class:`Decision`.
    """

    started: float = 0.0
    attempt: int = 1
    """The number of the attempt whose outcome is being decided (1 = first try)."""
    retries: tuple[tuple[str, int], ...] = ()
    """Retries used so far, per kind."""
    last_delay: float | None = None

    def __init__(
        self,
        started: float = 0.0,
        attempt: int = 1,
        retries: tuple[tuple[str, int], ...] = (),
        last_delay: float | None = None,
    ) -> None:
        d = self.__dict__
        d["started"] = started
        d["attempt"] = attempt
        d["retries"] = retries
        d["last_delay"] = last_delay

    def retries_of(self, kind: str) -> int:
        """Retries already spent on *kind*."""
        for k, n in self.retries:
            if k is kind or k == kind:
                return n
        return 0

    @property
    def total_retries(self) -> int:
        """Retries spent on all kinds together."""
        return self.attempt - 1

    def after_retry(self, kind: str, delay: float) -> AttemptState:
        """The state for the next attempt, one retry of *kind* later."""
        return AttemptState(
            self.started, self.attempt + 1, retries_after(self.retries, kind), delay
        )


def retries_after(retries: tuple[tuple[str, int], ...], kind: str) -> tuple[tuple[str, int], ...]:
    """*retries* (per kind, as :attr:`AttemptState.retries`) one retry of *kind* later."""
    if not retries:  # the first retry of a call: the common case
        return ((kind, 1),)
    if len(retries) == 1:  # one kind so far: the next most common
        k, n = retries[0]
        return ((k, n + 1),) if k == kind else (*retries, (kind, 1))
    for i, (k, n) in enumerate(retries):
        if k == kind:
            return (*retries[:i], (kind, n + 1), *retries[i + 1 :])
    return (*retries, (kind, 1))


@attrs.frozen(slots=False, init=False)
class Decision:
    """What to do after an outcome: ``"succeed"``, ``"retry"`` after ``delay``, or ``"give_up"``."""

    action: Literal["succeed", "retry", "give_up"]
    classification: Classification
    reason: str
    state: AttemptState
    delay: float = 0.0
    retry_after: float | None = None

    def __init__(  # noqa: PLR0917 - the attrs fields, positional as attrs made them
        self,
        action: Literal["succeed", "retry", "give_up"],
        classification: Classification,
        reason: str,
        state: AttemptState,
        delay: float = 0.0,
        retry_after: float | None = None,
    ) -> None:
        d = self.__dict__
        d["action"] = action
        d["classification"] = classification
        d["reason"] = reason
        d["state"] = state
        d["delay"] = delay
        d["retry_after"] = retry_after

    @property
    def retry(self) -> bool:
        """True when the call should be tried again after :attr:`delay`."""
        return self.action == "retry"
