"""Shared fixtures: instant waits and captured retry events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent, get_hooks, set_hooks

from .redis_server import RedisServer, running_redis


@pytest.fixture(autouse=True)
def fresh_store() -> Iterator[rp.stores.InProcessStore]:
    """Each test gets a fresh default store: budgets, limiters and breakers never leak."""
    store = rp.stores.InProcessStore()
    previous = rp.stores.get_default_store()
    rp.stores.reset(store)
    try:
        yield store
    finally:
        rp.stores.reset(previous)


@pytest.fixture
def instant() -> Iterator[rp.testing.Instant]:
    """Every retry wait in the test is zero, and recorded."""
    with rp.testing.instant() as recorder:
        yield recorder


@pytest.fixture
def events() -> Iterator[list[RetryEvent]]:
    """The retry events of the test, in order (the process-wide hooks are restored after)."""
    seen: list[RetryEvent] = []
    previous = get_hooks()
    set_hooks([*previous, seen.append])
    try:
        yield seen
    finally:
        set_hooks(previous)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real ``redis-server`` for the session (tests/redis_server.py); fails loudly if absent."""
    try:
        with running_redis() as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(f"cannot start redis-server: {exc}", pytrace=False)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's server, on an empty database."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()
