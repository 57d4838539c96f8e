"""The Protocols and aliases users implement or annotate with.

Everything here is part of the public API: a hook, a clock, a sleeper, an
outcome extractor or a store you write only has to match these shapes
(``Store`` is documented with :mod:`retrypolicy.stores`, which exports it too).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol, TypedDict

from ._store import Store

if TYPE_CHECKING:
    from ._events import RetryEvent
    from ._outcome import Outcome

__all__ = [
    "AsyncSleeper",
    "Clock",
    "LoopOptions",
    "OutcomeExtractor",
    "RetryHook",
    "RetryOptions",
    "Sleeper",
    "Store",
]


class Clock(Protocol):
    """A monotonic clock in seconds, like :func:`time.monotonic`."""

    def __call__(self) -> float: ...


class Sleeper(Protocol):
    """Blocks for a number of seconds, like :func:`time.sleep`."""

    def __call__(self, seconds: float, /) -> None: ...


class AsyncSleeper(Protocol):
    """Waits for a number of seconds, like :func:`asyncio.sleep`."""

    def __call__(self, seconds: float, /) -> Awaitable[None]: ...


class RetryHook(Protocol):
    """Called with every retry event; what it raises is logged and swallowed."""

    def __call__(self, event: RetryEvent, /) -> None: ...


class OutcomeExtractor(Protocol):
    """Turns what a call returned into an :class:`~retrypolicy.Outcome`, or None to pass."""

    def __call__(self, value: object, /) -> Outcome | None: ...


class LoopOptions(TypedDict, total=False):
    """The options every attempt loop takes: the decorator's and every adapter's.

    Hooks receive every event of their kind; ``clock``/``wall_clock``/``sleep``/
    ``async_sleep`` replace :func:`time.monotonic`, :func:`time.time`,
    :func:`time.sleep` and :func:`asyncio.sleep`; ``rng`` draws the jitter;
    ``store`` keeps the policy's budget, limiter and breaker (default: the
    process's default store, :func:`retrypolicy.stores.set_default_store`).
    """

    on_retry: RetryHook | None
    on_give_up: RetryHook | None
    on_success: RetryHook | None
    before_attempt: RetryHook | None
    clock: Clock | None
    wall_clock: Clock | None
    sleep: Sleeper | None
    async_sleep: AsyncSleeper | None
    rng: random.Random | None
    store: Store | None


class RetryOptions(LoopOptions, total=False):
    """The keyword options of :func:`retrypolicy.retry` and :func:`retrypolicy.attempts`:
    those of :class:`LoopOptions`, and ``extract``, which turns returned values into
    outcomes."""

    extract: OutcomeExtractor | None
