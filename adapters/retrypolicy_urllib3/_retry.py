"""``PolicyRetry``: urllib3's ``Retry`` with every decision taken by a policy.

urllib3 runs its retries inside ``urlopen`` and only asks the ``Retry`` object
questions. ``PolicyRetry`` answers each one from ``policy.decide``, so a pool
retries exactly as ``@rp.retry`` and the other adapters do:

* ``is_retry(method, status)``: should urllib3 hand this response to
  ``increment``? True when the policy classifies the status as a retryable
  failure and *method* may be retried. The per-kind limits are left to
  ``increment`` on purpose, as urllib3's own ``status_forcelist`` does: that is
  what lets a final response come back to the caller (``raise_on_status=False``)
  or raise ``MaxRetryError`` (``raise_on_status=True``), and what logs
  ``retry.gave_up``.
* ``increment(...)``: classify the response or the error, decide, and either
  return a *new* ``PolicyRetry`` one step on (next ``AttemptState``, the wait
  in ``delay``, ``history`` one longer) or raise ``MaxRetryError`` as urllib3
  does. The object it is called on never changes: pools share it.
* ``sleep()``: wait the decided ``delay`` through the apply layer's driver
  (``Retrier.wait``), so ``rp.testing.instant()`` skips and records it. Nothing
  here calls ``time`` directly.

Redirects are not failures: they step a separate ``redirect`` counter, as in
urllib3, without consulting the policy or waiting.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Collection, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import attrs
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import RequestHistory, Retry

from retrypolicy._backoff import parse_retry_after, retry_after_from_headers
from retrypolicy._decorators import _retrier
from retrypolicy._drivers import Retrier, retry_event
from retrypolicy._envelope import parse_error
from retrypolicy._errors import APIError
from retrypolicy._events import GAVE_UP, SCHEDULED
from retrypolicy._exchange import MAX_ERROR_BODY, StreamGuard, is_event_stream
from retrypolicy._extract import outcome_of_response
from retrypolicy._outcome import AttemptState, Decision, Outcome
from retrypolicy._policy import Policy
from retrypolicy._rules import Failure, Kind
from retrypolicy.typing import Clock, RetryHook, Sleeper

if TYPE_CHECKING:
    from urllib3.connectionpool import ConnectionPool

__all__ = ["DEFAULT_REDIRECTS", "PolicyRetry", "guard_stream"]

DEFAULT_REDIRECTS: Final = 10
"""Redirects followed per request (PoolManager follows them; the policy does not count them)."""
_READ_CHUNK: Final = 64 * 1024


class PolicyRetry(Retry):
    """A ``urllib3.util.Retry`` that retries by *policy* (default: ``rp.EUGPT``).

    Use it wherever urllib3 takes ``retries``: ``PoolManager(retries=...)``,
    ``pool.urlopen(..., retries=...)``, or requests'
    ``HTTPAdapter(max_retries=...)``. Every method is retried (the API's calls
    are POSTs) unless *methods* restricts them; a connection failure is retried
    for any method, since the request never left. On give-up the final response
    is returned to the caller, or ``MaxRetryError`` raised with
    ``raise_on_status=True``; a transport error ends in ``MaxRetryError``, as in
    urllib3 (a read error of a method outside *methods* is re-raised as is).

    The events ``retry.scheduled`` and ``retry.gave_up`` are emitted as by
    ``@rp.retry`` (call name *name*); ``retry.succeeded`` cannot be, since urllib3
    does not tell a ``Retry`` about a success. Elapsed time and the policy's
    ``deadline`` count from the first failure: urllib3 does not tell a ``Retry``
    when a request starts either.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        methods: Iterable[str] | None = None,
        raise_on_status: bool = False,
        redirect: int | None = DEFAULT_REDIRECTS,
        raise_on_redirect: bool = True,
        remove_headers_on_redirect: Collection[str] = Retry.DEFAULT_REMOVE_HEADERS_ON_REDIRECT,
        name: str = "urllib3.urlopen",
        on_retry: RetryHook | None = None,
        on_give_up: RetryHook | None = None,
        clock: Clock | None = None,
        wall_clock: Clock | None = None,
        sleep: Sleeper | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._retrier: Retrier = _retrier(
            policy,
            name,
            on_retry=on_retry,
            on_give_up=on_give_up,
            clock=clock,
            wall_clock=wall_clock,
            sleep=sleep,
            rng=rng,
        )
        super().__init__(
            total=None,  # urllib3's counters stay unset: every limit is the policy's
            redirect=redirect,
            allowed_methods=_methods(methods),
            raise_on_redirect=raise_on_redirect,
            raise_on_status=raise_on_status,
            remove_headers_on_redirect=remove_headers_on_redirect,
        )
        self.state: AttemptState | None = None
        """Where the request stands; None until the first failure."""
        self.delay: float | None = None
        """The wait :meth:`sleep` makes: the last decision's delay (None: no wait decided)."""

    @property
    def policy(self) -> Policy:
        """The policy that decides."""
        return self._retrier.policy

    # -- stepping forward ----------------------------------------------------------

    def new(self, **kw: Any) -> Self:
        """A copy with *kw* changed; policy, hooks, state and options carry over.

        urllib3's names that mean something here are accepted (``history``,
        ``redirect``, ``raise_on_redirect``, ``raise_on_status``,
        ``allowed_methods``, ``remove_headers_on_redirect``), as are ``policy``,
        ``methods``, ``state`` and ``delay``. urllib3's counters and backoff
        settings (``total``, ``status_forcelist``, ...) are refused: the policy
        sets those limits, and silently ignoring them would mislead.
        """
        clone = copy.copy(self)  # every attribute is immutable: a shallow copy is a copy
        for key, value in kw.items():
            clone._set(key, value)
        return clone

    def _set(self, key: str, value: Any) -> None:
        if key in ("state", "delay"):
            setattr(self, key, value)
        elif key == "history":
            self.history = tuple(value or ())
        elif key == "policy":
            if not isinstance(value, Policy):
                msg = f"policy {value!r}: expected a retrypolicy.Policy (e.g. rp.EUGPT)"
                raise TypeError(msg)
            self._retrier = attrs.evolve(self._retrier, policy=value)
        elif key in ("methods", "allowed_methods"):
            self.allowed_methods = _methods(value)
        elif key == "redirect":
            if value is False:  # urllib3: no redirects, and do not raise on one
                value, self.raise_on_redirect = 0, False
            self.redirect = value
        elif key in ("raise_on_redirect", "raise_on_status"):
            setattr(self, key, bool(value))
        elif key == "remove_headers_on_redirect":
            self.remove_headers_on_redirect = frozenset(h.lower() for h in value)
        else:
            msg = (
                f"PolicyRetry.new({key}=...): PolicyRetry takes its limits, waits and "
                "Retry-After handling from the policy; change the Policy instead"
            )
            raise TypeError(msg)

    @classmethod
    def from_int(
        cls,
        retries: Retry | bool | int | None,
        redirect: bool | int | None = True,
        default: Retry | bool | int | None = None,
    ) -> Retry:
        """urllib3's conversion: a ``Retry`` (a PolicyRetry too) as is; None: ``cls()``.

        Anything else (an int, a bool) is urllib3's own vocabulary and becomes a
        plain ``Retry``, as ``Retry.from_int`` makes it.
        """
        if retries is None and default is None:
            return cls()
        return Retry.from_int(retries, redirect=redirect, default=default)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        """The next ``PolicyRetry`` after a failed attempt, or ``MaxRetryError`` on give-up.

        A response is classified by its status, and by the error code of its
        body only when urllib3 already has the body in memory
        (``preload_content=True``): a streamed body is never read here.
        """
        if error is None and response is not None:
            location = response.get_redirect_location()
            if location:
                return self._redirected(method, url, response.status, location, _pool)
        r = self._retrier
        now = r.now()
        state = self.state if self.state is not None else AttemptState(started=now)
        status: int | None = None
        if error is not None:
            outcome = r.outcome_of_exception(error)
        elif response is not None:
            status = response.status
            outcome = outcome_of_response(response, status, wall=r.wall_clock)
        else:  # urllib3 allows neither: nothing to classify, so nothing to retry
            outcome = Outcome()
        decision = r.policy.decide(outcome, state, now=now, rng=r.rng)
        forbidden = decision.retry and not self._may_retry(method, outcome)
        if forbidden:
            decision = Decision(
                "give_up",
                decision.classification,
                f"{method} is not among the methods retried ({', '.join(sorted(self._allowed))})",
                state,
                retry_after=decision.retry_after,
            )
        if not decision.retry:
            r.emit(
                lambda: retry_event(r, GAVE_UP, outcome, decision, state=state, now=now),
                r.on_give_up,
            )
            if forbidden and error is not None:
                raise error  # as urllib3 does for a read error of a method it may not retry
            reason = error if error is not None else ResponseError(_cause(status, decision))
            raise MaxRetryError(_pool, url, reason) from reason  # type: ignore[arg-type] # urllib3 passes None too
        r.emit(
            lambda: retry_event(r, SCHEDULED, outcome, decision, state=state, now=now), r.on_retry
        )
        history = (*self.history, RequestHistory(method, url, error, status, None))
        return self.new(state=decision.state, delay=decision.delay, history=history)

    def _redirected(
        self,
        method: str | None,
        url: str | None,
        status: int,
        location: str,
        pool: ConnectionPool | None,
    ) -> Self:
        redirect = self.redirect
        if redirect is not None:
            redirect -= 1
        history = (*self.history, RequestHistory(method, url, None, status, location))
        if redirect is not None and redirect < 0:
            reason = ResponseError("too many redirects")
            raise MaxRetryError(pool, url, reason) from reason  # type: ignore[arg-type] # as urllib3
        return self.new(redirect=redirect, history=history, delay=None)

    # -- questions urllib3 asks ----------------------------------------------------

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        """True when *status_code* is a failure the policy retries and *method* may be retried.

        Whether retries of that kind are left is for :meth:`increment` to say (see
        the module docstring); *has_retry_after* changes nothing, the policy reads
        the hint itself.
        """
        allowed = self.allowed_methods  # inlined: urllib3 asks this about every response
        if allowed is not None and method.upper() not in allowed:
            return False
        return self._retrier.policy.classify(status_code).retryable

    def is_exhausted(self) -> bool:
        """True when no failure could be retried from here: every kind's retries, or
        the policy's ``max_attempts``, used up (or the redirects, as in urllib3).

        The policy's ``deadline`` is not checked: that needs the clock.
        """
        if self.redirect is not None and self.redirect < 0:
            return True
        state = self.state if self.state is not None else AttemptState()
        policy = self._retrier.policy
        if policy.max_attempts is not None and state.attempt >= policy.max_attempts:
            return True
        return all(
            state.retries_of(rule.kind) >= rule.max_retries
            for rule in policy.rules
            if rule.retry and rule.max_retries
        )

    # -- waiting -------------------------------------------------------------------

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """Wait the decided :attr:`delay` (the policy already took any ``Retry-After`` in)."""
        if self.delay is not None:
            self._retrier.wait(self.delay)

    def sleep_for_retry(self, response: BaseHTTPResponse) -> bool:
        """As :meth:`sleep`; True when a wait was decided (never after a redirect)."""
        self.sleep(response)
        return self.delay is not None

    def get_backoff_time(self) -> float:
        """The decided :attr:`delay` in seconds (0 when none was decided)."""
        return 0.0 if self.delay is None else self.delay

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        """The server's wait hint in seconds (``retry-after-ms``, else ``Retry-After``)."""
        return retry_after_from_headers(response.headers, now=self._retrier.wall_clock())

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds from a ``Retry-After`` value; ``InvalidHeader`` when it is no usable hint."""
        seconds = parse_retry_after(retry_after, now=self._retrier.wall_clock())
        if seconds is None:
            msg = f"Invalid Retry-After header: {retry_after[:64]!r}"
            raise InvalidHeader(msg)
        return seconds

    # -- helpers -------------------------------------------------------------------

    @property
    def _allowed(self) -> Collection[str]:
        return () if self.allowed_methods is None else self.allowed_methods

    def _method_allowed(self, method: str | None) -> bool:
        allowed = self.allowed_methods
        return allowed is None or (method is not None and method.upper() in allowed)

    def _may_retry(self, method: str | None, outcome: Outcome) -> bool:
        # a connection failure is safe for any method: the request never left
        return outcome.failure is Failure.CONNECTION or self._method_allowed(method)

    def __repr__(self) -> str:
        state = self.state
        attempt = 1 if state is None else state.attempt
        retries = {} if state is None else {str(k): n for k, n in state.retries}
        methods = "all" if self.allowed_methods is None else sorted(self.allowed_methods)
        return (
            f"{type(self).__name__}(policy={self.policy.name!r}, attempt={attempt}, "
            f"retries={retries}, delay={self.delay!r}, methods={methods!r}, "
            f"redirect={self.redirect!r})"
        )


def _methods(methods: Iterable[str] | None) -> frozenset[str] | None:
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = [methods]
    chosen = frozenset(m.upper() for m in methods)
    if not chosen:
        msg = "methods: expected at least one method, or None for all methods"
        raise ValueError(msg)
    return chosen


def _cause(status: int | None, decision: Decision) -> str:
    what = "an attempt" if status is None else f"HTTP {status}"
    return f"gave up on {what} at attempt {decision.state.attempt}: {decision.reason}"


# -- event streams ---------------------------------------------------------------------


def guard_stream(
    response: BaseHTTPResponse, policy: Policy | None = None, *, amt: int = _READ_CHUNK
) -> Iterator[bytes]:
    """The body of *response*, checked to its last event when it is an event stream.

    A ``Retry`` object only sees status and headers: the body of a streamed 200
    reaches the caller after urllib3 is done with retries, and urllib3 offers no
    hook on reading it. So read it through this::

        r = http.request("POST", url, body=..., preload_content=False)
        for chunk in guard_stream(r):
            ...

    The bytes pass through unchanged. For ``text/event-stream``, an ``error``
    event, a gap in ``sequence_number`` or an end without ``response.completed``
    raises :class:`retrypolicy.StreamError` (classified by the policy) after the
    bytes before it. Any other successful body passes through unchecked. A
    failed response (the policy gave up on it) raises its
    :class:`retrypolicy.APIError` at once, with its code and ``Retry-After``:
    check the status first, as the API says. The connection is released when
    the body ends; closed when the caller stops early or the stream breaks.

    *policy* defaults to the ``PolicyRetry``'s that made the request, else
    ``rp.EUGPT``. Wrap the function that consumes the stream in ``@rp.retry``
    to retry the whole exchange after a stream error.
    """
    retries = response.retries
    mine = retries if isinstance(retries, PolicyRetry) else None
    if policy is None and mine is not None:
        policy = mine.policy
    retrier = _retrier(policy, "urllib3.stream")  # the default policy, the wall clock
    chosen = retrier.policy
    attempts = 1 if mine is None or mine.state is None else mine.state.attempt
    if chosen.classify(response.status).kind != Kind.SUCCESS:
        raise _failed(response, chosen, attempts, retrier.wall_clock)
    chunks = _chunks(response, amt)
    if is_event_stream(response.headers):
        chunks = StreamGuard(chosen, attempts=attempts).iterate((), chunks)
    return _released(response, chunks)


def _chunks(response: BaseHTTPResponse, amt: int) -> Iterator[bytes]:
    if response.closed:  # preloaded (or already read): what urllib3 kept is all there is
        data = response.data
        return iter((data,) if data else ())
    return response.stream(amt)


def _released(response: BaseHTTPResponse, chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        if not response.closed:  # stopped early or broke: this connection cannot be reused
            response.close()
        response.release_conn()


def _failed(response: BaseHTTPResponse, policy: Policy, attempts: int, wall: Clock) -> APIError:
    try:
        body = response.data if response.closed else response.read(MAX_ERROR_BODY)
    except Exception:  # noqa: BLE001 - a broken error body still makes a classified error
        body = b""
    finally:
        if not response.closed:
            response.close()
        response.release_conn()
    headers = response.headers
    return policy.error_for(
        parse_error(response.status, body, headers),
        attempts=attempts,
        retry_after=retry_after_from_headers(headers, now=wall()),
    )
