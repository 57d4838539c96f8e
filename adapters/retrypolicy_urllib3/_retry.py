"""``PolicyRetry``: urllib3's ``Retry`` driving the seam's attempt loop.

urllib3 runs its retries inside ``urlopen`` and only asks the ``Retry`` object
questions; it calls :meth:`~PolicyRetry.increment` on the latest object of a
request and goes on with the one returned. So the object a pool holds (shared
by every request) carries only :class:`~retrypolicy.transport.AdapterOptions`;
the first ``increment`` of a request starts an
:class:`~retrypolicy.transport.AttemptLoop`, and the copies it returns carry
that loop (one request's chain of copies is linear). Everything decided —
limits per kind, waits, ``Retry-After``, events, exhaustion marks — is the
loop's; this module maps urllib3's questions onto it:

* ``is_retry(method, status)``: does the policy retry this status for *method*?
* ``increment(...)``: judge the response or error, ``loop.failed(outcome)``; a
  copy one step on, or ``MaxRetryError`` on give-up (marked exhausted, with its
  reason, so an outer ``@rp.retry`` adds attempts instead of multiplying them).
* ``sleep()``: the seconds ``failed`` returned (0 under ``rp.testing.instant()``).

Redirects are not failures: they step urllib3's ``redirect`` counter only.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, Unpack

from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import RequestHistory, Retry

from retrypolicy import Kind, Policy
from retrypolicy.transport import (
    EXHAUSTED,
    MAX_ERROR_BODY,
    AdapterKeywords,
    AdapterOptions,
    AttemptLoop,
    AttemptState,
    Outcome,
    is_event_stream,
    mark_exhausted,
    parse_retry_after,
    redact,
    retry_after_from_headers,
)

if TYPE_CHECKING:
    from urllib3.connectionpool import ConnectionPool

__all__ = ["DEFAULT_REDIRECTS", "PolicyRetry", "guard_stream"]

DEFAULT_REDIRECTS: Final = 10
"""Redirects followed per request (PoolManager follows them; the policy does not count them)."""
_READ_CHUNK: Final = 64 * 1024
_OPTIONS: Final = frozenset({"policy", "methods", "allowed_methods", "raise_on_give_up"})


class PolicyRetry(Retry):
    """A ``urllib3.util.Retry`` that retries by *policy* (default: ``rp.EUGPT``).

    Use it wherever urllib3 takes ``retries``: ``PoolManager(retries=...)``,
    ``pool.urlopen(..., retries=...)``, or requests'
    ``HTTPAdapter(max_retries=...)``. Every method is retried unless *methods*
    restricts them (``"POST"`` is one method); a connection failure is retried
    for any method, since the request never left. On give-up the final response
    is returned (marked, with ``retry_attempts``), ``MaxRetryError`` raised with
    ``raise_on_status=True``, or its ``rp.APIError`` with ``raise_on_give_up=True``;
    a transport error ends in ``MaxRetryError`` as in urllib3 (a read error of a
    method outside *methods* is re-raised as is). The other keywords are those
    of :class:`retrypolicy.transport.AdapterOptions`.

    urllib3 tells a ``Retry`` nothing before the first failure: ``before_attempt``
    for attempt 1 and the clock of ``elapsed`` / ``deadline`` start there, and
    ``retry.succeeded`` is never emitted.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        raise_on_status: bool = False,
        redirect: int | None = DEFAULT_REDIRECTS,
        raise_on_redirect: bool = True,
        remove_headers_on_redirect: Collection[str] = Retry.DEFAULT_REMOVE_HEADERS_ON_REDIRECT,
        name: str = "urllib3.urlopen",
        **options: Unpack[AdapterKeywords],
    ) -> None:
        super().__init__(
            total=None,  # urllib3's counters stay unset: every limit is the policy's
            redirect=redirect,
            raise_on_redirect=raise_on_redirect,
            raise_on_status=raise_on_status,
            remove_headers_on_redirect=remove_headers_on_redirect,
        )
        self._use(AdapterOptions(policy=policy, name=name, **options))
        self.loop: AttemptLoop | None = None
        """The request's attempt loop; None until its first failure (and on a pool's object)."""
        self.state: AttemptState | None = None
        """Where the request stood when this copy was made; None before the first failure."""
        self.delay: float | None = None
        """The wait :meth:`sleep` makes: what the loop decided (None: no wait decided)."""
        self.paced = False
        """Part of :attr:`delay` is a wait for the limiter's slot: :meth:`sleep` confirms it."""

    def _use(self, options: AdapterOptions) -> None:
        self.options = options
        self.policy: Policy = options.policy  # the policy that decides
        self.allowed_methods = options.methods
        self._retryable: dict[int, bool] = {}  # is_retry's answers per status, for this policy

    # -- stepping forward ----------------------------------------------------------

    def new(self, **kw: Any) -> Self:
        """A copy with *kw* changed; options, loop and state carry over.

        urllib3's names that mean something here are accepted (``history``,
        ``redirect``, ``raise_on_redirect``, ``raise_on_status``,
        ``allowed_methods``, ``remove_headers_on_redirect``), as are ``policy``,
        ``methods`` and ``raise_on_give_up`` (a copy with other options starts a
        fresh attempt loop). urllib3's counters and backoff settings (``total``,
        ``status_forcelist``, ...) are refused: the policy sets those limits, and
        silently ignoring them would mislead.
        """
        clone = copy.copy(self)  # options and state are frozen, the loop is the request's
        changed = {k: kw.pop(k) for k in kw.keys() & _OPTIONS}
        if "allowed_methods" in changed:
            changed["methods"] = changed.pop("allowed_methods")
        if changed:
            clone._use(self.options.evolve(**changed))
            clone.loop, clone.state, clone.delay, clone.paced = None, None, None, False
        for key, value in kw.items():
            clone._set(key, value)
        return clone

    def _set(self, key: str, value: Any) -> None:
        if key == "history":
            self.history = tuple(value or ())
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

        A response is judged by its status, and by its error body's code only when
        urllib3 already holds the body in memory (``preload_content=True``): a
        streamed body is never read here.
        """
        if error is None and response is not None:
            location = response.get_redirect_location()
            if location:
                return self._redirected(method, url, response.status, location, _pool)
        loop = self.loop
        if loop is None:  # the request's first failure: its attempt 1 is behind it
            loop = self.options.loop(method, host=getattr(_pool, "host", None) or "")
            loop.begin(sent=True)  # urllib3 sent it already: counted, neither paced nor refused
        status = None if response is None else response.status
        if error is not None:
            outcome = loop.judge_exception(error)
        elif response is not None:
            body = getattr(response, "_body", None)  # in memory only when preloaded
            body = body[:MAX_ERROR_BODY] if isinstance(body, bytes) else None
            outcome = loop.judge(response.status, response.headers, body) or Outcome(status=status)
        else:  # urllib3 calls with neither: nothing to judge, so nothing to retry
            outcome = Outcome()
        # the seam's rule: a method outside methods is retried only when it never left
        if not loop.decides(outcome):
            if error is not None:
                raise error  # as urllib3 does for a read error of a method it may not retry
            reason = ResponseError(f"{method} is not among the methods retried")
            raise MaxRetryError(_pool, url, reason) from reason  # type: ignore[arg-type] # as urllib3
        wait = loop.failed(outcome)
        if wait is None:
            self._give_up(loop, outcome, url=url, response=response, error=error, pool=_pool)
        hold = loop.begin()  # the limiter's slot: urllib3 sleeps the longer of the two
        clone = self.new(history=(*self.history, RequestHistory(method, url, error, status, None)))
        clone.loop, clone.state, clone.delay = loop, loop.state, max(wait or 0.0, hold)
        clone.paced = hold > 0
        return clone

    def _give_up(
        self,
        loop: AttemptLoop,
        outcome: Outcome,
        *,
        url: str | None,
        response: BaseHTTPResponse | None,
        error: Exception | None,
        pool: ConnectionPool | None,
    ) -> None:
        """Raise what urllib3 expects on give-up, marked as the loop marked the failure."""
        failed: object = error
        if response is not None and error is None:
            if self.options.raise_on_give_up:
                response.drain_conn()
            loop.finish(response, outcome)  # marks it; raises its APIError on raise_on_give_up
            failed = response
        decision = loop.decision
        reason = error
        if reason is None:
            what = "an attempt" if response is None else f"HTTP {response.status}"
            why = "" if decision is None else f" at attempt {loop.attempts}: {decision.reason}"
            reason = ResponseError(f"gave up on {what}{why}")
        exc = MaxRetryError(pool, url, reason)  # type: ignore[arg-type] # urllib3 passes None too
        if getattr(failed, EXHAUSTED, False) is True:
            mark_exhausted(reason)
            mark_exhausted(exc)
        raise exc from reason

    def _redirected(
        self,
        method: str | None,
        url: str | None,
        status: int,
        location: str,
        pool: ConnectionPool | None,
    ) -> Self:
        redirect = None if self.redirect is None else self.redirect - 1
        if redirect is not None and redirect < 0:
            reason = ResponseError("too many redirects")
            raise MaxRetryError(pool, url, reason) from reason  # type: ignore[arg-type] # as urllib3
        history = (*self.history, RequestHistory(method, url, None, status, location))
        clone = self.new(redirect=redirect, history=history)
        clone.delay = None
        return clone

    # -- questions urllib3 asks ----------------------------------------------------

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        """True when *status_code* is a failure the policy retries and *method* may be retried.

        Whether retries of that kind are left is for :meth:`increment` to say: that
        is what lets the final response come back, as with urllib3's
        ``status_forcelist``. *has_retry_after* changes nothing (the policy reads it).
        """
        allowed = self.allowed_methods  # inlined: urllib3 asks this about every response
        if allowed is not None and method.upper() not in allowed:
            return False
        known = self._retryable.get(status_code)
        if known is None:
            known = self._retryable[status_code] = self.policy.classify(status_code).retryable
        return known

    def is_exhausted(self) -> bool:
        """True once the redirects are used up; :meth:`increment` raises on the policy's give-up."""
        return self.redirect is not None and self.redirect < 0

    # -- waiting -------------------------------------------------------------------

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """Wait the decided :attr:`delay` through the options' sleeper; then, when part of
        it was the limiter's pacing, have the slot confirmed (a rate cut meanwhile means
        a wait for a slot at the new rate)."""
        loop = self.loop
        if loop is None:  # no decision to carry out: as urllib3's own
            if self.delay:
                self.options.sleep(self.delay)
            return
        # interrupted, the retry is never sent: loop.sleep gives its cost back
        if self.delay:
            loop.sleep(self.delay)
        if self.paced:
            self.paced = False
            while hold := loop.begin():
                loop.sleep(hold)

    def sleep_for_retry(self, response: BaseHTTPResponse) -> bool:
        """As :meth:`sleep`; True when a wait was decided (never after a redirect)."""
        self.sleep(response)
        return self.delay is not None

    def get_backoff_time(self) -> float:
        """The decided :attr:`delay` in seconds (0 when none was decided)."""
        return 0.0 if self.delay is None else self.delay

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        """The server's wait hint in seconds (``retry-after-ms``, else ``Retry-After``)."""
        return retry_after_from_headers(response.headers, now=self.options.wall_clock())

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds from a ``Retry-After`` value; ``InvalidHeader`` when it is no usable hint."""
        seconds = parse_retry_after(retry_after, now=self.options.wall_clock())
        if seconds is None:
            msg = f"Invalid Retry-After header: {redact(repr(retry_after[:64]))}"
            raise InvalidHeader(msg)
        return seconds

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

    The bytes pass through as urllib3 gives them. For ``text/event-stream``, an
    ``error`` event, a gap in ``sequence_number`` or an end without
    ``response.completed`` raises :class:`retrypolicy.StreamError` (classified by
    the policy) after the bytes before it; a completed stream is a success
    whatever the connection does next. Any other successful body passes
    unchecked. A failed response (the policy gave up on it) raises its
    :class:`retrypolicy.APIError` at once, with its code and ``Retry-After``. The
    connection is released when the body ends; closed when the caller stops
    early or the stream breaks. Events and bodies are judged decoded, also when
    the response was made with ``decode_content=False``.

    *policy* defaults to the ``PolicyRetry``'s that made the request, else the
    default policy. Wrap the function that consumes the stream in ``@rp.retry``
    to retry the whole exchange after a stream error.
    """
    mine = response.retries if isinstance(response.retries, PolicyRetry) else None
    if policy is None and mine is not None:
        options, loop = mine.options, mine.loop
    else:
        options, loop = AdapterOptions(policy=policy, name="urllib3.stream"), None
    encoding = None if getattr(response, "decode_content", True) else _encoding(response)
    status = response.status
    if options.policy.classify(status).kind != Kind.SUCCESS:
        if loop is None:  # not retried: a loop that only judges and counts this one attempt
            loop = AttemptLoop(options, retrying=False)
            loop.begin()
        body = _error_body(response)
        outcome = loop.judge(status, response.headers, body, content_encoding=encoding)
        raise loop.error(outcome or Outcome(status=status))
    chunks = _chunks(response, amt)
    # a HEAD's response has no body: http.client's response knows the method it answers
    method = getattr(getattr(response, "_original_response", None), "_method", None)
    if is_event_stream(
        response.headers, method=method if isinstance(method, str) else None, status=status
    ):
        check = options.stream_check(content_encoding=encoding)
        check.attempts = 1 if loop is None else loop.attempts
        chunks = check.guard(chunks)
    return _released(response, chunks)


def _encoding(response: BaseHTTPResponse) -> str | None:
    value = response.headers.get("content-encoding")
    return value if isinstance(value, str) else None


def _chunks(response: BaseHTTPResponse, amt: int) -> Iterator[bytes]:
    if response.closed:  # preloaded (or already read): what urllib3 kept is all there is
        data = response.data
        return iter((data,) if data else ())
    # urllib3's stream() leaves a chunked body encoded when decode_content is None (its
    # read() does not): say what the response was asked for, so both paths agree
    return response.stream(amt, decode_content=getattr(response, "decode_content", True))


def _released(response: BaseHTTPResponse, chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        if not response.closed:  # stopped early or broke: this connection cannot be reused
            response.close()
        response.release_conn()


def _error_body(response: BaseHTTPResponse) -> bytes:
    try:
        return response.data if response.closed else response.read(MAX_ERROR_BODY)
    except Exception:  # noqa: BLE001 - a broken error body still makes a classified error
        return b""
    finally:
        if not response.closed:
            response.close()
        response.release_conn()
