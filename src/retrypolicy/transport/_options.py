"""What a user configures on any adapter: one options class, one keyword type.

Validated once, here, for every adapter; :meth:`AdapterOptions.loop` builds the
shell that carries the options out (:class:`~retrypolicy.transport.AttemptLoop`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._clock import ASYNC_SLEEP, MONOTONIC, SLEEP, WALL
from .._defaults import default_policy as _default_policy
from .._policy import Policy
from ..typing import AsyncSleeper, Clock, LoopOptions, RetryHook, Sleeper

if TYPE_CHECKING:
    from ..stores import Store as _Store
    from ._loop import AttemptLoop
    from ._stream import StreamCheck

__all__ = [
    "ATTEMPTS_ATTRIBUTE",
    "MAX_ERROR_BODY",
    "MAX_PRIME_BYTES",
    "PREAMBLE_TYPES",
    "AdapterKeywords",
    "AdapterOptions",
    "normalize_methods",
]

MAX_ERROR_BODY: Final = 64 * 1024
"""Adapters read at most this much of an error body (decoded) to classify it."""
MAX_PRIME_BYTES: Final = 64 * 1024
"""How far into a stream an adapter reads, looking for content, before handing it over."""
PREAMBLE_TYPES: Final = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    }
)
"""Event types that carry no content: a stream is not committed to the caller by them.
OpenAI's Responses API sends the last two before the first text, so an error after them
is still retried transparently."""
ATTEMPTS_ATTRIBUTE: Final = "retry_attempts"
"""The attribute on a final response (where its type allows one) that says how many attempts
it took; httpx responses carry it in ``extensions["retrypolicy.attempts"]`` instead."""

_DECODE_STEP: Final = 256 * 1024
"""Decoded bytes produced per step: a small compressed chunk never becomes one huge string."""


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
        msg = f"methods {methods!r}: expected a method name, an iterable of names, or None"
        raise TypeError(msg) from None
    for name in chosen:
        if not isinstance(name, str) or not name.strip():
            msg = f"methods {methods!r}: {name!r} is not a method name (expected e.g. 'POST')"
            raise TypeError(msg)
    if not chosen:
        msg = "methods: expected at least one method name, or None for every method"
        raise ValueError(msg)
    return frozenset(n.strip().upper() for n in chosen)


def _policy(value: Policy | None) -> Policy:
    if value is None:
        return _default_policy()
    if not isinstance(value, Policy):
        msg = f"policy {value!r}: expected a retrypolicy.Policy (e.g. rp.EUGPT) or None"
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
        msg = f"preamble {value!r}: expected a collection of event types, not one string"
        raise TypeError(msg)
    return frozenset(value)


@attrs.frozen(kw_only=True)
class AdapterOptions:
    """What a user sets on any adapter; every adapter takes these keywords.

    ``policy`` defaults to the default policy (``RETRYPOLICY_CONFIG``, else
    ``rp.EUGPT``); ``methods`` limits which requests are retried (None: all —
    the API's calls are POSTs); ``raise_on_give_up`` turns a failed final
    response into the matching ``rp.APIError``; ``preamble`` names the event
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
    store: _Store | None = None
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
                msg = f"{name} {value!r}: expected a callable (or None for the real one)"
                raise TypeError(msg)
        store = self.store
        if store is not None and not all(
            callable(getattr(store, m, None)) for m in ("budget", "limiter", "breaker")
        ):
            msg = (
                f"store {store!r}: expected a retrypolicy.stores.Store "
                "(InProcessStore, RedisStore) or None"
            )
            raise TypeError(msg)

    def evolve(self, **changes: Any) -> AdapterOptions:
        """A copy with *changes* applied."""
        return attrs.evolve(self, **changes)

    def retries(self, method: str | None) -> bool:
        """Whether a request with *method* is one the policy may retry."""
        methods = self.methods
        return methods is None or (method is not None and method.upper() in methods)

    def loop(
        self, method: str | None = None, *, resendable: bool = True, host: str = ""
    ) -> AttemptLoop:
        """A new attempt loop for one request to *host* (its breaker's key: ``api.example.com``).

        A request whose method is outside ``methods``, or whose body cannot be
        sent twice (a generator), gets a loop that never retries: it is sent
        once, and its response (its event stream too) is still judged; the
        policy's limiter and breaker are not asked for it.
        """
        from ._loop import AttemptLoop  # noqa: PLC0415 - the shell above this data

        return AttemptLoop(self, retrying=resendable and self.retries(method), host=host)

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
