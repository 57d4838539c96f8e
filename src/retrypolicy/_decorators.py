"""``@retry`` and ``attempts()``: the policy applied to ordinary Python code.

The wrapper is chosen once, when decorating (sync or coroutine), so a call
does no introspection; a successful first attempt costs one type look-up.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar, Unpack, overload

import attrs
import wrapt

from ._defaults import default_policy
from ._outcome import Outcome
from ._policy import APPLIED, Policy
from ._redact import redact
from ._shell import NEVER_RETRIED, Retrier, adiscard, discard
from .transport._machine import SEND, STEPS, Answer, Fail, Settle, Wait
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


def _called(target: Any) -> Any:
    """What runs when *target* is called: itself (a function, a method, a ``partial``, a
    class), or a callable object's ``__call__`` — whose ``async def`` makes the object a
    coroutine function for us (``inspect`` says it is not one)."""
    if inspect.isroutine(target) or inspect.isclass(target) or isinstance(target, partial):
        return target
    return getattr(type(target), "__call__", target)  # noqa: B004 - the method, not a test


def _name_of(target: Any) -> str:
    """The call's name in events: the function's qualified name (a ``partial``'s function's,
    a callable object's class's) — never a ``repr``, which shows a ``partial``'s arguments
    and an object's fields (an API key among them, in every log line)."""
    while isinstance(target, partial):
        target = target.func
    name = getattr(target, "__qualname__", None)
    if not isinstance(name, str):
        name = type(target).__qualname__
    return redact(name)


def _decorate(fn: Callable[P, R], retrier_for: Callable[[str], Retrier]) -> Callable[P, R]:
    target: Any = fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn
    name = _name_of(target)
    called = (target, _called(target))  # an AsyncMock is a coroutine function, its class not
    if any(inspect.isgeneratorfunction(c) or inspect.isasyncgenfunction(c) for c in called):
        # a retry would run the generator again and repeat what it already yielded
        is_async = any(inspect.isasyncgenfunction(c) for c in called)
        kind = "an async generator" if is_async else "a generator"
        msg = (
            f"@retry cannot decorate {name}: it is {kind} function, and a retry would repeat "
            "the items it already yielded. Retry the work inside it with rp.attempts() "
            "(for attempt in rp.attempts(policy): with attempt: ...), or decorate a function "
            "that returns a complete result."
        )
        raise TypeError(msg)
    retrier = retrier_for(name)
    is_coroutine = any(inspect.iscoroutinefunction(c) for c in called)
    run: Any = retrier.acall if is_coroutine else retrier.call
    wrapped: Callable[P, R] = _Retrying(fn, run)
    return wrapped


class _Retrying(wrapt.FunctionWrapper[..., Any]):
    """wrapt's ``FunctionWrapper`` around *fn*, calling *run* (a :class:`Retrier`
    interpreter), its unbound call made direct.

    Why: a plain ``FunctionWrapper`` called directly first asks *fn* for a bound
    method's ``__self__``; for a plain function that is an ``AttributeError``
    raised and cleared on every call, 0.45 µs: more than the rest of a first-try
    success. The interpreter calls the callable it is given and ignores the
    instance, so the answer could change nothing. The call is a closure over *fn*
    and *run* kept in a slot and read through the slot's descriptor: an attribute
    read through the proxy would cost 0.09 µs. Binding to an instance, a class or
    a ``classmethod`` stays wrapt's own.
    """

    __slots__ = ("_rp_call",)

    def __init__(self, fn: Any, run: Callable[..., Any]) -> None:
        super().__init__(fn, run)
        _set_call(self, lambda args, kwargs: run(fn, None, args, kwargs))

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return _get_call(self)(args, kwargs)


_get_call: Final = _Retrying.__dict__["_rp_call"].__get__
_set_call: Final = _Retrying.__dict__["_rp_call"].__set__


@overload
def retry(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def retry(
    policy: Policy | None = None, /, **options: Unpack[RetryOptions]
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
@overload
def retry(
    *, policy: Policy | None, **options: Unpack[RetryOptions]
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
    :func:`asyncio.sleep`. The policy may be given as ``policy=`` too, as on every
    other entry point.
    """
    if "policy" in options:
        if policy is not None:
            msg = "retry(): the policy was given twice (positionally and as policy=)"
            raise TypeError(msg)
        policy = options.pop("policy")
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
    :meth:`check` with a response to let its status decide too. Attempts come from
    iterating :func:`attempts`, never from calling this class.
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
        s = self._session
        r, m = s.retrier, s.machine
        if exc is not None:
            if isinstance(exc, NEVER_RETRIED):
                s.answer = None
                return False
            s.exc = exc
            answer = s.take(m.failed(r.outcome_of_exception(exc), r.now()))
            # swallowed while another attempt may follow (an async loop's store step
            # decides after the block: a refused retry re-raises it from ``async for``)
            return type(answer) is not Fail
        s.exc = None
        if self._failed is not None:
            s.take(m.failed(self._failed, r.now()))
        else:
            s.take(m.succeeded())
        return False

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"


class _Session:
    """One run of :class:`Attempts`: the machine, and its last answer between attempts."""

    __slots__ = ("answer", "exc", "is_async", "machine", "resolved", "retrier")

    def __init__(self, retrier: Retrier, *, is_async: bool) -> None:
        self.retrier = retrier
        self.machine = retrier.machine(retrier.now())
        self.is_async = is_async
        self.answer: Answer | None = None
        self.resolved = False
        self.exc: BaseException | None = None

    def take(self, answer: Answer) -> Answer:
        """Keep the machine's *answer* to an attempt, carried out at once unless it asks an
        async loop for a shared store's step (the loop awaits it after the block; an
        in-process store's step is memory, done now: a ``return`` from the block may end
        the loop before it resumes)."""
        if (
            self.is_async
            and (type(answer) in STEPS or (type(answer) is Wait and answer.cost))
            and self.retrier.guard().shared
        ):
            self.resolved = False
        else:
            answer = self.retrier.resolve(self.machine, answer)
            self.resolved = True
        self.answer = answer
        return answer


class Attempts:
    """The attempt loop as an iterator, for code that is not a function of its own.

    ::

        for attempt in rp.attempts(policy):
            with attempt:
                ...

    ``async for`` works the same way and awaits its waits and store steps.
    """

    __slots__ = ("_retrier",)

    def __init__(self, retrier: Retrier) -> None:
        self._retrier = retrier

    def __iter__(self) -> Iterator[Attempt]:
        r = self._retrier
        s = _Session(r, is_async=False)
        m = s.machine
        answer: Answer | None = r.resolve(m, m.begin())
        while True:
            if type(answer) is Wait:
                discard(answer.outcome)  # a response retried past: released before the wait
                r.wait_attempt(m, answer.seconds)
                answer = r.resolve(m, m.waited())
                continue
            if answer is not SEND:
                m.forget()  # the caller's frame holds the last Attempt: no cycle through it
                return  # done, given up, or stopped
            r.announce(m.attempts, m.started)
            s.answer = None
            yield Attempt(s, m.attempts)
            answer = s.answer

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        r = self._retrier
        s = _Session(r, is_async=True)
        m = s.machine
        answer: Answer | None = await r.aresolve(m, m.begin())
        while True:
            if type(answer) is Wait:
                await adiscard(answer.outcome)
                await r.await_attempt(m, answer.seconds)
                answer = await r.aresolve(m, m.waited())
                continue
            if answer is not SEND:
                m.forget()
                return
            r.announce(m.attempts, m.started)
            s.answer = None
            try:
                yield Attempt(s, m.attempts)
            except GeneratorExit:  # left with the answer (``return`` in the block): a shared
                if isinstance(s.answer, Settle) and not s.resolved:  # store hears of the success
                    s.resolved = True
                    await r.aresolve(m, s.answer)
                raise
            answer = s.answer
            if answer is not None and not s.resolved:
                try:
                    answer = await r.aresolve(m, answer)
                except BaseException:  # cancelled in a failure's store step: its response
                    if type(answer) is not Settle:  # is nobody's (a success's is the caller's)
                        await adiscard(m.last)
                    raise
                if type(answer) is Fail and s.exc is not None:
                    raise s.exc  # swallowed by the block while the store step was pending


def attempts(
    policy: Policy | None = None, *, name: str = "attempts", **options: Unpack[RetryOptions]
) -> Attempts:
    """The attempt loop for a block of code: same decisions and events as :func:`retry`."""
    return Attempts(_retrier(policy, name, **options))


APPLIED["retry"] = retry  # policy.retry(fn) is rp.retry(policy)(fn)
