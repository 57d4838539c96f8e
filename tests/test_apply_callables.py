"""``@rp.retry`` on callables that are not plain functions: objects, partials, mocks.

The wrapper is chosen once, when decorating: the coroutine interpreter for whatever
returns a coroutine when called. A callable object whose ``__call__`` is ``async def``
is such a thing, though ``inspect.iscoroutinefunction`` says it is not. And the call's
name in events is a name, never a ``repr`` that shows bound arguments or fields.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any
from unittest.mock import AsyncMock

import pytest

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent


class AsyncClient:
    """A callable object whose ``__call__`` is a coroutine function."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, prompt: str) -> str:
        self.calls += 1
        if self.calls < 3:
            raise ConnectionRefusedError("down")
        return prompt


class SyncClient:
    """A callable object whose ``__call__`` is a plain function."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompt: str) -> str:
        self.calls += 1
        if self.calls < 3:
            raise ConnectionRefusedError("down")
        return prompt


def test_an_async_callable_object_is_awaited_and_retried() -> None:
    """An object with ``async def __call__`` is retried like an ``async def`` function
    (before: called by the sync interpreter, its coroutine returned unexamined — no retry
    at all, the failure surfacing at the caller's ``await``)."""
    client = AsyncClient()
    with rp.testing.instant() as clock:
        assert asyncio.run(rp.retry(client)("hi")) == "hi"
    assert (client.calls, len(clock.waits)) == (3, 2)


def test_a_sync_callable_object_is_retried() -> None:
    """An object with a plain ``__call__`` keeps the sync interpreter."""
    client = SyncClient()
    with rp.testing.instant() as clock:
        assert rp.retry(client)("hi") == "hi"
    assert (client.calls, len(clock.waits)) == (3, 2)


def test_an_async_mock_stays_a_coroutine_function() -> None:
    """``AsyncMock`` (a coroutine function to ``inspect``, its class not) is awaited."""
    mock = AsyncMock(side_effect=[ConnectionRefusedError("down"), "ok"])
    with rp.testing.instant() as clock:
        assert asyncio.run(rp.retry(mock)()) == "ok"
    assert (mock.await_count, len(clock.waits)) == (2, 1)


class Streaming:
    """A callable object whose ``__call__`` is a generator function."""

    def __call__(self) -> Any:
        yield 1


class AsyncStreaming:
    """A callable object whose ``__call__`` is an async generator function."""

    async def __call__(self) -> Any:
        yield 1


@pytest.mark.parametrize(
    ("target", "kind"),
    [(Streaming(), "a generator"), (AsyncStreaming(), "an async generator")],
    ids=["generator", "async generator"],
)
def test_a_generator_callable_object_is_refused(target: object, kind: str) -> None:
    """An object whose ``__call__`` yields is refused at decoration, as a generator function
    is: a retry would repeat what it already yielded."""
    with pytest.raises(TypeError, match=f"it is {kind} function"):
        rp.retry(target)  # type: ignore[call-overload]


def send(prompt: str, *, api_key: str) -> str:
    """A call that takes its key as an argument."""
    raise ConnectionRefusedError("down")


ROWS = [
    # (what is decorated, the call's name in its events)
    (functools.partial(send, api_key="eugpt_partialsecret"), "send"),
    (AsyncClient(), "AsyncClient"),
    (SyncClient(), "SyncClient"),
]


@pytest.mark.parametrize(("target", "name"), ROWS, ids=["partial", "async object", "object"])
def test_the_calls_name_is_a_name_never_a_repr(
    target: Any, name: str, events: list[RetryEvent]
) -> None:
    """The ``call`` key of every event is the function's (or class's) name: a ``partial``'s
    repr would log its arguments — an API key in every retry line (before: it did)."""
    retried = rp.retry(rp.EUGPT.evolve(max_attempts=2))(target)
    with rp.testing.instant(), pytest.raises(ConnectionRefusedError):
        result = retried("hi")
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    assert events
    assert {e.call for e in events} == {name}
    assert "eugpt_partialsecret" not in repr([e.to_log() for e in events])
