"""``@retry`` and ``attempts()``: the policy applied to ordinary Python code.

The wrapper is chosen once, when decorating (sync or coroutine), so a call
does no introspection; a successful first attempt costs one type look-up.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, Unpack, overload

import attrs
import wrapt

from ._defaults import default_policy
from ._drivers import NEVER_RETRIED, Loop, Retrier, discard
from ._outcome import Outcome
from ._policy import Policy
from ._storm import UNFULL
from .typing import RetryOptions

__all__ = ["Attempt", "Attempts", "attempts", "retry"]

P = ParamSpec("P")
R = TypeVar("R")


def _retrier(policy: Policy | None, name: str, **options: Unpack[RetryOptions]) -> Retrier:
    """The Retrier for *policy* (default: :func:`default_policy`) with *options*."""
    if policy is not None and not isinstance(policy, Policy):
        msg = f"policy {policy!r}: expected a retrypolicy.Policy (e.g. rp.EUGPT) or None"
        raise TypeError(msg)
    unknown = set(options) - set(RetryOptions.__annotations__)
    if unknown:
        msg = f"unknown option(s) {', '.join(sorted(unknown))}: expected some of " + ", ".join(
            RetryOptions.__annotations__
        )
        raise TypeError(msg)
    # an option given as None keeps the Retrier's default (time.monotonic, time.sleep...)
    given: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    return Retrier(policy=policy if policy is not None else default_policy(), name=name, **given)


def _decorate(fn: Callable[P, R], retrier_for: Callable[[str], Retrier]) -> Callable[P, R]:
    target: Any = fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn
    name = getattr(target, "__qualname__", None) or repr(target)
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        # a retry would run the generator again and repeat what it already yielded
        kind = "an async generator" if inspect.isasyncgenfunction(target) else "a generator"
        msg = (
            f"@retry cannot decorate {name}: it is {kind} function, and a retry would repeat "
            "the items it already yielded. Retry the work inside it with rp.attempts() "
            "(for attempt in rp.attempts(policy): with attempt: ...), or decorate a function "
            "that returns a complete result."
        )
        raise TypeError(msg)
    retrier = retrier_for(name)
    wrapper: Any
    if inspect.iscoroutinefunction(target):
        wrapper = retrier.agated_call if retrier.gated else retrier.acall
    else:
        wrapper = retrier.gated_call if retrier.gated else retrier.call
    return wrapt.FunctionWrapper(fn, wrapper)


@overload
def retry(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def retry(
    policy: Policy | None = None, /, **options: Unpack[RetryOptions]
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def retry(
    policy: Policy | Callable[..., Any] | None = None, /, **options: Any
) -> Callable[..., Any]:
    """Retry a function (sync or ``async``) by a policy — ``rp.EUGPT`` unless given.

    Use bare (``@rp.retry``) or configured (``@rp.retry(policy, on_retry=hook)``).
    A call is retried when it raises something the policy classifies as
    retryable, or returns a response (an int ``status_code`` or ``status``) with
    a retryable status. When the policy gives up, the last exception is
    re-raised unchanged, or the last returned value is returned. Hooks receive a
    :class:`~retrypolicy.instrumentation.RetryEvent`; ``clock``/``sleep``/
    ``async_sleep`` replace :func:`time.monotonic`, :func:`time.sleep` and
    :func:`asyncio.sleep`.
    """
    if isinstance(policy, classmethod | staticmethod) or (
        policy is not None and not isinstance(policy, Policy) and callable(policy)
    ):
        return _decorate(policy, lambda name: _retrier(None, name))
    base = _retrier(policy, "", **options)  # bad options fail here, not at the first call

    def decorator(fn: Callable[P, R]) -> Callable[P, R]:
        return _decorate(fn, lambda name: attrs.evolve(base, name=name))

    return decorator


class Attempt:
    """One attempt inside :func:`attempts`: use it as ``with attempt:``.

    An exception in the block is classified: if the policy retries, it is
    swallowed and the loop runs again; if not, it propagates unchanged. Call
    :meth:`check` with a response to let its status decide too.
    """

    __slots__ = ("_failed", "_session", "number")

    def __init__(self, session: _Session, number: int) -> None:
        self._session = session
        self._failed: Outcome | None = None
        self.number = number

    def check(self, response: R) -> R:
        """Let *response*'s status decide whether this attempt failed; returns it."""
        self._failed = self._session.retrier.outcome_of_value(response)
        return response

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        session = self._session
        if exc is not None:
            if isinstance(exc, NEVER_RETRIED):
                session.done = True
                return False
            return session.failed(session.retrier.outcome_of_exception(exc))
        if self._failed is not None:
            session.failed(self._failed)
            return False
        session.succeeded()
        return False

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"


class _Session:
    """Shared by the sync and async iterators: the loop state between attempts."""

    __slots__ = ("delay", "done", "loop", "retrier", "started")

    def __init__(self, retrier: Retrier) -> None:
        self.retrier = retrier
        self.started = retrier.now()
        self.loop: Loop | None = None
        self.delay: float | None = None
        self.done = False

    def gate(self) -> float:
        """The limiter's wait before the next attempt (``CircuitOpenError`` while open)."""
        if not self.retrier.gated:
            return 0.0
        return self.retrier.gate("", 1 if self.loop is None else self.loop.attempt)

    def next_attempt(self) -> Attempt:
        number = 1 if self.loop is None else self.loop.attempt
        self.retrier.announce(number, self.started)
        self.delay = None
        self.done = True  # until the attempt reports a retry
        return Attempt(self, number)

    def failed(self, outcome: Outcome) -> bool:
        """Record a failure; True (swallow it) when another attempt follows."""
        if self.loop is None:
            self.loop = Loop(self.retrier, self.started)
        self.delay = self.loop.failed(outcome)
        self.done = self.delay is None
        if not self.done:
            discard(outcome)
        return not self.done

    def succeeded(self) -> None:
        if self.loop is not None:
            self.loop.succeeded()
        elif UNFULL or self.retrier.gated:
            self.retrier.storm_success()
        self.done = True


class Attempts:
    """The attempt loop as an iterator, for code that is not a function of its own.

    ::

        for attempt in rp.attempts(policy):
            with attempt:
                ...

    ``async for`` works the same way and awaits its waits.
    """

    __slots__ = ("_retrier",)

    def __init__(self, retrier: Retrier) -> None:
        self._retrier = retrier

    def __iter__(self) -> Iterator[Attempt]:
        session = _Session(self._retrier)
        while True:
            if hold := session.gate():
                self._retrier.wait(hold)
            yield session.next_attempt()
            if session.done or session.delay is None:
                return
            self._retrier.wait(session.delay)

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        session = _Session(self._retrier)
        while True:
            if hold := session.gate():
                await self._retrier.await_wait(hold)
            yield session.next_attempt()
            if session.done or session.delay is None:
                return
            await self._retrier.await_wait(session.delay)


def attempts(
    policy: Policy | None = None, *, name: str = "attempts", **options: Unpack[RetryOptions]
) -> Attempts:
    """The attempt loop for a block of code: same decisions and events as :func:`retry`."""
    return Attempts(_retrier(policy, name, **options))
