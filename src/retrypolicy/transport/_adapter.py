"""What an adapter holds and drives: its options, and the attempt machine's interpreter.

:class:`AdapterOptions` is what a user configures on any adapter (one options class, one
keyword type, validated once, here, for every adapter). :meth:`AdapterOptions.loop`
builds, per request, an :class:`AttemptLoop`: it feeds the
:class:`~retrypolicy.transport.AttemptMachine` and carries out its answers — the store
steps (performed when sync, awaited by the ``a``-methods), the events, the waits under
``rp.testing.instant()``. Sync and async adapters call the same steps; the async ones
await the variants that may reach a shared store.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from .._backoff import retry_after_from_headers
from .._clock import ASYNC_SLEEP, MONOTONIC, SLEEP, WALL, _instant
from .._defaults import default_policy as _default_policy
from .._emit import mark_reported
from .._envelope import ErrorInfo, parse_error
from .._errors import APIError, api_error
from .._outcome import AttemptState, Decision, Outcome, mark_exhausted
from .._policy import Policy
from .._redact import redact
from .._rules import Classification, Failure, Kind
from .._shell import Retrier
from ..typing import AsyncSleeper, Clock, LoopOptions, RetryHook, Sleeper
from ._decoding import ContentDecoder
from ._limits import ATTEMPTS_ATTRIBUTE, MAX_ERROR_BODY, MAX_PRIME_BYTES, PREAMBLE_TYPES
from ._machine import Answer, AttemptMachine, Wait

if TYPE_CHECKING:
    from ..stores import Store
    from ._stream import StreamCheck

__all__ = [
    "ATTEMPTS_ATTRIBUTE",
    "MAX_ERROR_BODY",
    "MAX_PRIME_BYTES",
    "PREAMBLE_TYPES",
    "AdapterKeywords",
    "AdapterOptions",
    "AttemptLoop",
    "Exchange",
    "normalize_methods",
]


def _shown(value: object) -> str:
    """*value* as an error message shows it: its repr, API keys and tokens masked (a key
    passed where a policy goes must not reach a log through the TypeError)."""
    return redact(repr(value))


def normalize_methods(methods: str | Iterable[str] | None) -> frozenset[str] | None:
    """The one reading of ``methods=`` for every adapter: None means every method.

    A single string is one method (``"POST"``, not ``{"P", "O", "S", "T"}``);
    an iterable gives several; names are upper-cased. An empty collection or a
    non-string name is refused, naming what was given.
    """
    if methods is None:
        return None
    names = [methods] if isinstance(methods, str) else methods
    try:
        chosen = list(names)
    except TypeError:
        msg = f"methods {_shown(methods)}: expected a method name, an iterable of names, or None"
        raise TypeError(msg) from None
    for name in chosen:
        if not isinstance(name, str) or not name.strip():
            msg = (
                f"methods {_shown(methods)}: {_shown(name)} is not a method name "
                "(expected e.g. 'POST')"
            )
            raise TypeError(msg)
    if not chosen:
        msg = "methods: expected at least one method name, or None for every method"
        raise ValueError(msg)
    return frozenset(n.strip().upper() for n in chosen)


def _policy(value: Policy | None) -> Policy:
    if value is None:
        return _default_policy()
    if not isinstance(value, Policy):
        msg = f"policy {_shown(value)}: expected a retrypolicy.Policy (e.g. rp.EUGPT) or None"
        raise TypeError(msg)
    return value


# None (left out, or passed on as None by an adapter) means the real one
def _clock(value: Clock | None) -> Clock:
    return MONOTONIC if value is None else value


def _wall_clock(value: Clock | None) -> Clock:
    return WALL if value is None else value


def _sleep(value: Sleeper | None) -> Sleeper:
    return SLEEP if value is None else value


def _async_sleep(value: AsyncSleeper | None) -> AsyncSleeper:
    return ASYNC_SLEEP if value is None else value


def _preamble(value: Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return PREAMBLE_TYPES
    if isinstance(value, str):
        msg = f"preamble {_shown(value)}: expected a collection of event types, not one string"
        raise TypeError(msg)
    return frozenset(value)


@attrs.frozen(kw_only=True)
class AdapterOptions:
    """What a user sets on any adapter; every adapter takes these keywords.

    ``policy`` defaults to the default policy (``RETRYPOLICY_CONFIG``, else
    ``rp.EUGPT``); ``methods`` limits which requests are retried (None: all —
    the API's calls are POSTs), but for connection failures: those are retried
    whatever the method (the request was never sent); ``raise_on_give_up`` turns
    a failed final response into the matching ``rp.APIError``; ``preamble`` names the event
    types that do not commit a stream to the caller. Hooks, clocks, sleepers
    and ``rng`` are those of ``@rp.retry``; ``name`` is the call name in events.
    """

    policy: Policy = attrs.field(default=None, converter=_policy)
    methods: frozenset[str] | None = attrs.field(default=None, converter=normalize_methods)
    raise_on_give_up: bool = False
    preamble: frozenset[str] = attrs.field(default=PREAMBLE_TYPES, converter=_preamble)
    name: str = "transport"
    on_retry: RetryHook | None = None
    on_give_up: RetryHook | None = None
    on_success: RetryHook | None = None
    before_attempt: RetryHook | None = None
    # None (left out, or passed on as None by an adapter) means the real one
    clock: Clock = attrs.field(default=None, converter=_clock)
    wall_clock: Clock = attrs.field(default=None, converter=_wall_clock)
    sleep: Sleeper = attrs.field(default=None, converter=_sleep)
    async_sleep: AsyncSleeper = attrs.field(default=None, converter=_async_sleep)
    rng: random.Random | None = None
    store: Store | None = None
    """Where the policy's budget, limiter and breaker live; None: the default store."""
    _succeeds: dict[int, bool] = attrs.field(init=False, eq=False, repr=False, factory=dict)
    """Whether a status alone is a success for the policy (the hot question, asked of
    every response): filled on first sight, bounded by the statuses there are."""
    _shell: list[Any] = attrs.field(init=False, eq=False, repr=False, factory=list)
    """The shell that carries out these options (built on first use)."""

    def __attrs_post_init__(self) -> None:
        for name in ("clock", "wall_clock", "sleep", "async_sleep"):
            value = getattr(self, name)
            if not callable(value):
                msg = f"{name} {_shown(value)}: expected a callable (or None for the real one)"
                raise TypeError(msg)
        store = self.store
        if store is not None and not all(
            callable(getattr(store, m, None)) for m in ("budget", "limiter", "breaker")
        ):
            msg = (
                f"store {_shown(store)}: expected a retrypolicy.stores.Store "
                "(InProcessStore, RedisStore) or None"
            )
            raise TypeError(msg)

    def evolve(self, **changes: Any) -> AdapterOptions:
        """A copy with *changes* applied."""
        return attrs.evolve(self, **changes)

    def retries(self, method: str | None) -> bool:
        """Whether a request with *method* is one the policy may retry whatever failed
        (False: only its connection failures, see :meth:`loop`)."""
        methods = self.methods
        return methods is None or (method is not None and method.upper() in methods)

    def succeeds(self, status: int) -> bool:
        """Whether *status* alone is a success for the policy (asked of every response:
        remembered, for the statuses there are)."""
        ok = self.policy.classify(status).kind == Kind.SUCCESS
        if 100 <= status <= 999:  # only real statuses are remembered: the dict stays small
            self._succeeds[status] = ok
        return ok

    def loop(
        self,
        method: str | None = None,
        *,
        resendable: bool = True,
        host: str = "",
        started: float | None = None,
    ) -> AttemptLoop:
        """A new attempt loop for one request to *host* (its breaker's key: ``api.example.com``).

        A request whose body cannot be sent twice (a generator) gets a loop that
        never retries: it is sent once, and its response (its event stream too) is
        still judged; the policy's limiter and breaker are not asked for it. A
        request whose method is outside ``methods`` gets a loop that retries only
        its connection failures (``connect_only``): a connection never made means
        the request was never sent, so it may go again whatever the method. Its
        first attempt goes as a request not retried does; a connection failure is
        then decided by the policy's rule for it and retried like any retry (events,
        the budget, the limiter and breaker asked before the retry); any other
        failure ends it as a request not retried. *started* is
        :meth:`FirstAttempt.started`'s reading when the first attempt went out
        before the loop existed (None: now).
        """
        if resendable and not self.retries(method):
            # a class of its own, not a flag set per request: every request would pay for it
            return _ConnectOnlyLoop(self, retrying=False, host=host, started=started)
        return AttemptLoop(self, retrying=resendable, host=host, started=started)

    def first_attempt(self) -> FirstAttempt | None:
        """What settles a first-try success without a loop; None when these options need
        one from the start (a limiter or breaker to ask, ``before_attempt`` to tell)."""
        policy = self.policy
        gated = policy.limiter is not None or policy.breaker is not None
        return None if gated or self.before_attempt is not None else FirstAttempt(self)

    def stream_check(self, *, content_encoding: str | None = None) -> StreamCheck:
        """A :class:`StreamCheck` for one event stream, with these options' policy and preamble."""
        from ._stream import StreamCheck  # noqa: PLC0415 - the stream check imports these options

        return StreamCheck(self.policy, preamble=self.preamble, content_encoding=content_encoding)


class AdapterKeywords(LoopOptions, total=False):
    """The keywords of :class:`AdapterOptions` a user passes to an adapter, all optional.

    An adapter takes them in one typed line and hands them on unchanged, so its
    signature cannot drift from the options::

        def __init__(self, policy=None, **options: Unpack[AdapterKeywords]) -> None:
            self.options = AdapterOptions(policy=policy, name="mine", **options)
    """

    raise_on_give_up: bool
    methods: str | Iterable[str] | None
    preamble: Iterable[str] | None


@attrs.define(eq=False)
class Exchange:
    """One attempt's response as the loop sees it: the response, and how it was judged.

    ``outcome`` is None for a success. ``close``/``aclose`` release a response
    the loop retries past (best effort: it is discarded anyway).
    """

    response: Any
    outcome: Outcome | None = None
    close: Callable[[], object] | None = None
    aclose: Callable[[], Awaitable[object]] | None = None
    check: StreamCheck | None = None
    """The check of the response's event stream, when it is one."""

    def release(self) -> None:
        """Release the response (sync)."""
        if self.close is not None:
            with contextlib.suppress(Exception):
                self.close()

    async def arelease(self) -> None:
        """Release the response, awaiting ``aclose`` when there is one."""
        if self.aclose is None:
            self.release()
            return
        with contextlib.suppress(Exception):
            await self.aclose()


def _shell_of(options: AdapterOptions) -> Retrier:
    """The shell that carries out *options* (built once per options object)."""
    cache = options._shell
    if cache:
        shell: Retrier = cache[0]
        return shell
    shell = Retrier(
        policy=options.policy,
        name=options.name,
        on_retry=options.on_retry,
        on_give_up=options.on_give_up,
        on_success=options.on_success,
        before_attempt=options.before_attempt,
        clock=options.clock,
        wall_clock=options.wall_clock,
        sleep=options.sleep,
        async_sleep=options.async_sleep,
        rng=options.rng,
        store=options.store,
    )
    cache.append(shell)
    return shell


class FirstAttempt:
    """A request's first attempt, for an adapter that settles its success without a loop.

    Most requests succeed at once, and then an :class:`AttemptLoop` — built, begun,
    judged, finished — is the bulk of what a transport adds to a request. With no
    limiter or breaker to ask and no ``before_attempt`` to tell
    (:meth:`AdapterOptions.first_attempt`), nothing has to happen before the first
    attempt but a clock reading, and after a success only the storm news
    (:meth:`news`). Anything else — a failure, a response to read — goes to
    :meth:`loop`, which carries on as if it had been there all along.
    """

    __slots__ = ("_clock", "_shell", "known", "needs_news", "options")

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options
        self.known = options._succeeds
        """Status -> whether the status alone is a success, for the statuses seen so far
        (one look-up on the fast path; :meth:`AdapterOptions.succeeds` for the others)."""
        self._shell = shell = options._shell[0] if options._shell else _shell_of(options)
        self._clock = shell.clock
        self.needs_news: Callable[[], bool] = shell.needs_news
        """Whether a first-try success has storm news to give (:meth:`news`): on the
        common path, False and nothing else to do."""

    def started(self) -> float:
        """The request's start, read before its first attempt goes out (for :meth:`loop`)."""
        inst = _instant[0]  # Retrier.now(), one call less: this runs on every request
        return self._clock() + (inst.local.skipped.offset if inst is not None else 0.0)

    def news(self, retrying: bool) -> None:
        """Give storm protection a first-try success (when :attr:`needs_news`): the
        budget's refund. *retrying*: the request was the policy's to retry."""
        if retrying:
            self._shell.storm_success()

    async def anews(self, retrying: bool) -> None:
        """:meth:`news` for async adapters (a shared store is awaited)."""
        if retrying:
            await self._shell.astorm_success()

    def loop(
        self,
        started: float,
        method: str | None,
        *,
        resendable: bool = True,
        host: str = "",
    ) -> AttemptLoop:
        """The loop of a request whose first attempt went out at *started*, counted."""
        loop = self.options.loop(method, resendable=resendable, host=host, started=started)
        loop.begin(sent=True)
        return loop


class AttemptLoop:
    """One request's attempts, as steps an adapter calls; it never waits itself.

    :meth:`begin` before an attempt (the seconds to wait first: the limiter's
    pacing), :meth:`judge` / :meth:`judge_exception` to turn what happened into an
    :class:`~retrypolicy.engine.Outcome`, :meth:`failed` for the seconds to wait
    before the next attempt (0 under ``rp.testing.instant()``, which records the
    wait) or None to give up, :meth:`succeeded`, :meth:`finish` for the response
    handed to the caller. ``abegin``/``afailed``/``asucceeded`` are the same steps
    for async adapters: a shared store is then never called on the event loop.

    A loop built with ``retrying=False`` gives up on the first failure, emits
    nothing and marks nothing: the request was not the policy's to retry. The loop
    :meth:`AdapterOptions.loop` builds for a method outside ``methods`` has
    :attr:`connect_only` set: only its connection failures are the policy's
    (:meth:`decides`), retried, reported and marked as by a retrying loop; any other
    failure ends the request as above.
    """

    __slots__ = ("_attempts", "_held", "_m", "_shell", "_started", "host", "options", "retrying")

    connect_only: ClassVar[bool] = False
    """Only connection failures are the policy's to decide (a method outside ``methods``:
    the request never left); :attr:`retrying` is False then."""

    def __init__(
        self,
        options: AdapterOptions,
        *,
        retrying: bool = True,
        host: str = "",
        started: float | None = None,
    ) -> None:
        self.options = options
        self.retrying = retrying
        """Every failure is the policy's to decide (a request it may retry)."""
        self.host = host
        """The host whose breaker is asked ("" for one breaker per policy)."""
        cache = options._shell  # the shell is built once per options: this runs per request
        self._shell = shell = cache[0] if cache else _shell_of(options)
        self._started = shell.now() if started is None else started
        self._attempts = 0
        self._held = False
        """:meth:`begin` answered a wait for the limiter's slot: called again, it confirms it."""
        self._m: AttemptMachine | None = None
        """The request's machine: built on the first failure, or the first gated attempt."""

    @property
    def attempts(self) -> int:
        """Attempts begun so far."""
        m = self._m
        return self._attempts if m is None else m.attempts

    @property
    def policy(self) -> Policy:
        """The policy that decides."""
        return self.options.policy

    @property
    def state(self) -> AttemptState:
        """Where the request stands (attempts made, retries per kind)."""
        m = self._m
        return AttemptState(started=self._started) if m is None else m.state

    @property
    def decision(self) -> Decision | None:
        """The last decision taken; None before the first failure."""
        return None if self._m is None else self._m.decision

    @property
    def machine(self) -> AttemptMachine:
        """The request's attempt machine (built on first use)."""
        m = self._m
        if m is None:
            connect_only = self.connect_only
            m = self._m = self._shell.machine(
                self._started,
                host=self.host,
                retrying=self.retrying or connect_only,
                attempts=self._attempts,
                connect_only=connect_only,
            )
        return m

    def decides(self, outcome: Outcome) -> bool:
        """Whether the policy decides about the failure *outcome* for this request: any
        failure when the request is the policy's to retry, only a connection failure for a
        method outside ``methods`` (the request never left), none for a one-shot body.
        :meth:`failed` gives up at once, unreported and unmarked, on the others."""
        return self.retrying or (self.connect_only and outcome.failure is Failure.CONNECTION)

    # -- before an attempt -------------------------------------------------------------

    def _count(self, sent: bool) -> bool:
        """Count an attempt that needs no store step; False when it needs one.

        A ``connect_only`` loop's first attempt is neither paced nor refused (it goes as
        a request not retried does); its retries are, as any retry. ``before_attempt``
        hears of every attempt of a loop that may retry.
        """
        shell = self._shell
        if self._m is None and (sent or not self.retrying or not shell.gated):
            self._attempts += 1
            if shell.before_attempt is not None and (self.retrying or self.connect_only):
                shell.announce(self._attempts, self._started)
            return True
        if shell.before_attempt is not None and (self.retrying or self.connect_only):
            shell.announce(self.attempts + 1, self._started)
        return False

    def begin(self, *, sent: bool = False) -> float:
        """An attempt is about to be sent: the seconds to wait before sending it (0.0 but
        for the policy's limiter; 0 under ``rp.testing.instant()``).

        With a breaker, raises :class:`~retrypolicy.CircuitOpenError` while the host's
        breaker is open: nothing must be sent. *sent*: the attempt went out already (a
        transport that reports only after the fact, like urllib3's ``Retry`` on the
        first attempt): it is counted and announced, and neither paced nor refused.

        Called again after waiting what it answered, it asks the limiter to confirm the
        slot waited for: 0.0, or — the rate was cut meanwhile — the wait for a slot at
        the new rate. An adapter that loops ``while hold := loop.begin(): sleep(hold)``
        never spends on a 429 a slot the limiter already knows to be too early.
        """
        shell = self._shell
        m = self._m
        if self._held and m is not None:  # the wait is over: confirm the slot
            self._held = False
            return self._hold(shell.resolve(m, m.waited()))
        if self._count(sent):
            return 0.0
        m = self.machine
        return self._hold(shell.resolve(m, m.begin(sent=sent)))

    async def abegin(self) -> float:
        """:meth:`begin` for async adapters (a shared store is awaited, never blocked on)."""
        shell = self._shell
        m = self._m
        if self._held and m is not None:
            self._held = False
            answer = await shell.aresolve(m, m.waited())
        elif self._count(False):
            return 0.0
        else:
            m = self.machine
            answer = await shell.aresolve(m, m.begin())
        while type(answer) is Wait:  # _hold(), its confirmation awaited
            if seconds := shell.pause(answer.seconds):
                self._held = True
                return seconds
            answer = await shell.aresolve(m, m.waited())
        return 0.0

    def _hold(self, answer: Answer) -> float:
        """The seconds to wait for the limiter's slot; under ``rp.testing.instant()`` the
        wait is recorded and the slot confirmed here (0.0)."""
        shell = self._shell
        m = self._m
        while type(answer) is Wait and m is not None:
            if seconds := shell.pause(answer.seconds):
                self._held = True
                return seconds
            answer = shell.resolve(m, m.waited())
        return 0.0

    def give_back(self) -> None:
        """The attempt this loop waits to make will not be sent (its wait was cancelled or
        interrupted): the retry budget gets back what that retry paid. Never raises."""
        if self._m is not None:
            self._shell.give_back(self._m)

    async def agive_back(self) -> None:
        """:meth:`give_back` for async adapters (a shared store is awaited, shielded)."""
        if self._m is not None:
            await self._shell.agive_back(self._m)

    # -- judging -----------------------------------------------------------------------

    def judge(
        self,
        status: int,
        headers: object,
        body: bytes | None = None,
        *,
        content_encoding: str | None = None,
    ) -> Outcome | None:
        """The outcome of a response: None for a success.

        *body* is a bounded prefix of an error body (the envelope's code is read
        from it). Pass *content_encoding* when *body* is still encoded as it came
        off the wire: it is decoded (bounded) before it is judged.
        """
        options = self.options
        ok = options._succeeds.get(status)
        if ok is None:
            ok = options.succeeds(status)
        if ok:
            return None
        if body and content_encoding:
            body = ContentDecoder(content_encoding).decode_prefix(body, MAX_ERROR_BODY)
        info = parse_error(status, body, headers)
        return Outcome(
            status=status,
            code=info.code,
            retry_after=retry_after_from_headers(headers, now=options.wall_clock()),
            error=info,
        )

    def judge_exception(self, exc: BaseException) -> Outcome:
        """The outcome of an exception the transport raised (its failure kind, if known)."""
        return self._shell.outcome_of_exception(exc)

    # -- deciding ----------------------------------------------------------------------

    def failed(self, outcome: Outcome) -> float | None:
        """Record a failed attempt: the seconds to sleep before the next one, or None.

        On give-up, an exception behind *outcome* (re-raised unchanged by the adapter)
        learns the attempts it took, as a final response does (:meth:`finish`): what
        wraps it (the openai SDK's ``APIConnectionError``) can still tell.
        """
        self._held = False  # the attempt went (an adapter that did not confirm)
        m = self.machine
        shell = self._shell
        return self._wait(shell.resolve(m, m.failed(outcome, shell.now())), outcome)

    async def afailed(self, outcome: Outcome) -> float | None:
        """:meth:`failed` for async adapters."""
        self._held = False  # the attempt went (an adapter that did not confirm)
        m = self.machine
        shell = self._shell
        return self._wait(await shell.aresolve(m, m.failed(outcome, shell.now())), outcome)

    def _wait(self, answer: Answer, outcome: Outcome) -> float | None:
        if type(answer) is Wait:
            return self._shell.pause(answer.seconds)
        exc = outcome.exception
        if exc is not None:
            try:  # noqa: SIM105 - see finish()
                setattr(exc, ATTEMPTS_ATTRIBUTE, self.attempts)
            except (AttributeError, TypeError):
                pass
        return None

    def succeeded(self) -> None:
        """Record the successful attempt (an event, when it followed a retry; the budget's
        refund and the breaker's count, when the policy has them)."""
        self._held = False  # the attempt went (an adapter that did not confirm)
        m = self._m
        shell = self._shell
        if m is not None:
            shell.resolve(m, m.succeeded())
        elif self.retrying and shell.needs_news():
            shell.storm_success(self.host)

    async def asucceeded(self) -> None:
        """:meth:`succeeded` for async adapters."""
        self._held = False  # the attempt went (an adapter that did not confirm)
        m = self._m
        shell = self._shell
        if m is not None:
            await shell.aresolve(m, m.succeeded())
        elif self.retrying and shell.needs_news():
            await shell.astorm_success(self.host)

    def finish(
        self, response: Any, outcome: Outcome | None = None, check: StreamCheck | None = None
    ) -> Any:
        """The response for the caller, marked with its attempts.

        With a failed *outcome* the loop gave up on: the response is marked as
        retried to the end (an outer ``@rp.retry`` must not retry it again),
        and with ``raise_on_give_up`` it is released and its ``rp.APIError``
        raised instead. *check*, the response's stream check, learns the
        attempts for the ``rp.StreamError`` it may raise later.
        """
        attempts = self.attempts
        try:  # noqa: SIM105 - not contextlib.suppress: on every success, it costs 4x as much
            setattr(response, ATTEMPTS_ATTRIBUTE, attempts)
        except (AttributeError, TypeError):
            pass  # a type that refuses attributes (slots): the count is informative only
        if check is not None:
            check.attempts = attempts
            # a stream that failed before it was committed was retried already
            check.exhausted = outcome is not None and self.decides(outcome)
        if outcome is None:
            return response
        c = self._classification(outcome)
        if self.decides(outcome):
            mark_reported(response)  # its give-up was logged: an outer layer does not again
            if c.retryable:
                mark_exhausted(response)
        if self.options.raise_on_give_up:
            with contextlib.suppress(Exception):
                close = getattr(response, "close", None)
                if close is not None:
                    close()
            raise self._error(outcome, c)
        return response

    def error(self, outcome: Outcome) -> APIError:
        """The ``rp.APIError`` for a failed final *outcome*."""
        return self._error(outcome, self._classification(outcome))

    def _classification(self, outcome: Outcome) -> Classification:
        """*outcome*'s class: the machine's, when *outcome* is the failure it decided on
        last (the verdict is taken once); else the policy's, for an outcome it never saw
        (a request that was not the policy's to retry is decided without one)."""
        m = self._m
        if m is not None and m.last is outcome and (d := m.decision) is not None:
            return d.classification
        return self.policy.classify(outcome.status, outcome.code, failure=outcome.failure)

    def _error(self, outcome: Outcome, c: Classification) -> APIError:
        info = outcome.error or ErrorInfo(outcome.status, outcome.code, None, None)
        stream = outcome.failure is Failure.INCOMPLETE_STREAM or (
            outcome.status is not None and outcome.status < 300
        )
        err = api_error(
            c, info, attempts=self.attempts, retry_after=outcome.retry_after, stream=stream
        )
        if c.retryable and self.decides(outcome):
            mark_exhausted(err)
        return err

    # -- the two interpreters, for adapters whose attempt is one function --------------

    def raised(self, exc: BaseException) -> float:
        """After an attempt raised *exc*: the seconds to wait; re-raises *exc* on give-up."""
        wait = self.failed(self.judge_exception(exc))
        if wait is None:
            raise exc
        return wait

    def returned(self, ex: Exchange) -> float | None:
        """After an attempt returned *ex*: the seconds to wait, or None to hand *ex* over."""
        if ex.outcome is None:
            self.succeeded()
            return None
        return self.failed(ex.outcome)

    def run(self, attempt: Callable[[], Exchange]) -> Any:
        """Run *attempt* until success or give-up; the final response (see :meth:`finish`).

        An exception *attempt* raises is judged; on give-up it is re-raised unchanged.
        """
        wait: float | None
        while True:
            while hold := self.begin():  # the limiter's slot, confirmed after the wait
                self.sleep(hold)
            try:
                ex = attempt()
            except Exception as exc:  # noqa: BLE001 - judged; re-raised on give-up
                wait = self.raised(exc)
            else:
                try:
                    wait = self.returned(ex)
                except BaseException:  # interrupted in a store step: the response is nobody's
                    ex.release()
                    raise
                if wait is None:
                    final = self.finish(ex.response, ex.outcome, ex.check)
                    # the failures' tracebacks hold this frame: without this loop in it (and
                    # its machine, which holds them) they are freed now, not by the collector
                    del self, ex
                    return final
                ex.release()
            if wait:
                self.sleep(wait)

    def sleep(self, seconds: float) -> None:
        """Wait *seconds* before an attempt with the options' sleeper; interrupted, the
        attempt is never sent, and the retry budget gets back what it paid
        (:meth:`give_back`)."""
        try:
            self.options.sleep(seconds)
        except BaseException:
            self.give_back()
            raise

    async def asleep(self, seconds: float) -> None:
        """:meth:`sleep` awaited (``async_sleep``): cancelled, the attempt is never sent."""
        try:
            await self.options.async_sleep(seconds)
        except BaseException:
            await self.agive_back()
            raise

    async def arun(self, attempt: Callable[[], Awaitable[Exchange]]) -> Any:
        """:meth:`run` for an async attempt (store steps awaited)."""
        wait: float | None
        while True:
            while hold := await self.abegin():
                await self.asleep(hold)
            try:
                ex = await attempt()
            except Exception as exc:
                wait = await self.afailed(self.judge_exception(exc))
                if wait is None:
                    raise
            else:
                try:
                    if ex.outcome is None:
                        await self.asucceeded()
                        wait = None
                    else:
                        wait = await self.afailed(ex.outcome)
                except BaseException:  # cancelled in a store step: the response is nobody's
                    await ex.arelease()
                    raise
                if wait is None:
                    final = self.finish(ex.response, ex.outcome, ex.check)
                    del self, ex  # as in run(): no way back to the failures from this frame
                    return final
                await ex.arelease()
            if wait:
                await self.asleep(wait)


class _ConnectOnlyLoop(AttemptLoop):
    """The loop of a request whose method is outside ``methods``: only its connection
    failures are retried (see :meth:`AdapterOptions.loop`)."""

    __slots__ = ()

    connect_only: ClassVar[bool] = True
