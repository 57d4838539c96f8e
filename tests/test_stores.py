"""The stores: one suite, run on the in-process store and on a real Redis (tests start it).

Every step a store applies must give what the pure transition gives: the Lua scripts
of ``RedisStore`` are a second writing of ``_budget``/``_limiter``/``_breaker``, held
to the same results here, step by step, with an injected clock — through the sync
methods, and through the coroutine twins (``abudget``...) awaited by the async
dispatchers, which async call paths use.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from typing import Any, Final

import pytest
import redis
import redis.asyncio

import retrypolicy as rp
from retrypolicy._breaker import BreakerOp, BreakerResult, BreakerState, breaker_step
from retrypolicy._budget import BudgetResult, BudgetState, budget_step
from retrypolicy._limiter import LimiterOp, LimiterResult, LimiterState, limiter_step
from retrypolicy.stores import InProcessStore, RedisStore, Store
from retrypolicy.stores._base import abreaker, abudget, alimiter

from .hung_listener import closing_redis
from .redis_server import RedisServer

BUDGET = rp.RetryBudget(capacity=20, retry_cost=5, timeout_cost=10, success_refund=1, refill_rate=2)
LIMITER = rp.AdaptiveLimiter(persist_after=3, persist_window=10.0, idle_reset=30.0)
BREAKER = rp.CircuitBreaker(min_calls=4, failure_rate=0.5, window=10.0, open_for=5.0)


class Awaited:
    """A store driven through the async dispatchers on one event loop: its sync-looking
    steps await ``abudget``/``alimiter``/``abreaker``, so the step tables below run the
    coroutine twins step for step."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.shared = inner.shared
        self.loop = asyncio.new_event_loop()

    def _run(self, step: Any) -> Any:
        result = self.loop.run_until_complete(step)
        assert result.notice is None, result.notice  # Redis answered: no silent fallback
        return result

    def budget(self, key: str, config: rp.RetryBudget, now: float, delta: float) -> BudgetResult:
        return self._run(abudget(self.inner, key, config, now, delta))  # type: ignore[no-any-return]

    def limiter(
        self,
        key: str,
        config: rp.AdaptiveLimiter,
        now: float,
        op: LimiterOp,
        measured: float = 0.0,
    ) -> LimiterResult:
        return self._run(alimiter(self.inner, key, config, now, op, measured))  # type: ignore[no-any-return]

    def breaker(
        self,
        key: str,
        config: rp.CircuitBreaker,
        now: float,
        op: BreakerOp,
        *,
        failures: int = 0,
        successes: int = 0,
    ) -> BreakerResult:
        step = abreaker(self.inner, key, config, now, op, failures=failures, successes=successes)
        return self._run(step)  # type: ignore[no-any-return]

    def close(self) -> None:
        """What asyncio.run does at the end: async generators closed (the Redis client with
        them), then the loop."""
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def _store(request: pytest.FixtureRequest, kind: str) -> Store:
    if kind == "in-process":
        return InProcessStore()
    client: redis.Redis = request.getfixturevalue("redis_client")  # an empty database
    if kind == "redis":
        return RedisStore(client, prefix="test")
    server: RedisServer = request.getfixturevalue("redis_server")
    built = RedisStore.from_url(server.url, prefix="test")
    request.addfinalizer(built.close)
    return built


@pytest.fixture(params=["in-process", "redis"])
def sync_store(request: pytest.FixtureRequest) -> Store:
    """Each store kind: the in-process one, and a RedisStore on the session's real server."""
    return _store(request, request.param)


@pytest.fixture(
    params=[
        "in-process",
        "redis",
        "redis-url",
        "in-process/async",
        "redis/async",
        "redis-url/async",
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Each store kind (a RedisStore from a client or from_url), stepped through its sync
    methods or awaited through its coroutine twins (the async dispatchers)."""
    kind, _, mode = request.param.partition("/")
    inner = _store(request, kind)
    if not mode:
        yield inner
        return
    awaited = Awaited(inner)
    try:
        yield awaited
    finally:
        awaited.close()


def test_stores_are_stores(sync_store: Store) -> None:
    """Both implement the Store protocol; only Redis is shared between processes; both have
    the coroutine twins of every step."""
    assert isinstance(sync_store, Store)
    assert sync_store.shared is isinstance(sync_store, RedisStore)
    for name in ("abudget", "alimiter", "abreaker", "abreaker_keys"):
        assert asyncio.iscoroutinefunction(getattr(sync_store, name))


def test_budget_steps_match_the_pure_transition(store: Store) -> None:
    """Spends, refusals, refunds and the time refill give what budget_step gives."""
    ops = [
        (0.0, -5.0),
        (0.0, -10.0),
        (0.5, -5.0),
        (0.5, -5.0),  # refused: 1 token left
        (0.6, -5.0),  # refused again: no second "exhausted"
        (1.0, 1.0),
        (3.0, 0.0),
        (6.0, 1.0),  # back to half the capacity: recovered
        (100.0, 0.0),  # full again
    ]
    state: BudgetState | None = None
    for now, delta in ops:
        state, expected = budget_step(BUDGET, state, now, delta)
        got = store.budget("p:budget", BUDGET, now, delta)
        assert (got.ok, got.level, got.event) == pytest.approx(
            (expected.ok, expected.level, expected.event)
        ), (now, delta)
    events = [budget_step(BUDGET, None, 0.0, -25.0)[1].event]
    assert events == ["exhausted"]


def test_budget_by_hand(store: Store) -> None:
    """A fresh bucket is full; a spend the level cannot pay is refused and reported once."""
    assert store.budget("b", BUDGET, 0.0, 0.0).level == 20.0
    assert store.budget("b", BUDGET, 0.0, -15.0).ok
    refused = store.budget("b", BUDGET, 0.0, -10.0)
    assert (refused.ok, refused.level, refused.event) == (False, 5.0, "exhausted")
    assert store.budget("b", BUDGET, 0.0, -10.0).event == ""
    back = store.budget("b", BUDGET, 2.5, 0.0)  # 5 tokens refilled in 2.5 s: half of 20
    assert (back.level, back.event) == (10.0, "recovered")


EPOCH: Final = -1.0
"""In LIMITER_OPS: the epoch of the last slot reserved (a confirm's *measured*)."""

LIMITER_OPS: list[tuple[float, str, float]] = [
    (0.0, "acquire", 0.0),
    (0.0, "throttled", 8.0),  # pacing starts at 8 x 0.7 = 5.6/s
    (0.1, "acquire", 0.0),
    (0.1, "acquire", 0.0),
    (0.1, "acquire", 0.0),
    (0.1, "throttled", 0.0),  # before the first slot: an answer to an earlier request
    (0.5, "throttled", 0.0),  # within the cooldown: counted, not cut; 3 in a row: reported
    (1.5, "throttled", 0.0),  # the first cut: at most decrease² deep
    (1.6, "throttled", 0.0),
    (2.0, "answered", 0.0),
    (2.1, "acquire", 0.0),
    (2.2, "acquire", 0.0),
    (2.3, "acquire", 0.0),
    (2.4, "acquire", 0.0),
    (3.0, "throttled", 0.0),  # a cut to what was let through since the last: 3 in 1.5 s
    (3.1, "confirm", EPOCH),  # the slot from 2.4, reserved again after the cut
    (3.2, "acquire", 0.0),
    (3.5, "confirm", EPOCH),  # no cut since: it goes
    (3.9, "throttled", 0.0),
    (4.5, "acquire", 0.0),
    (4.6, "answered", 0.0),
    (5.0, "read", 0.0),
    (9.0, "throttled", 0.0),  # nothing let through since the last cut: to min_rate
    (9.1, "throttled", 0.0),
    (9.2, "throttled", 0.0),  # persistent again, within the window: not reported again
    (40.0, "acquire", 0.0),  # 30 s quiet: unpaced
    (41.0, "acquire", 0.0),
]


def test_limiter_steps_match_the_pure_transition(store: Store) -> None:
    """Every limiter step (acquire, confirm, throttled, answered, read) gives what
    limiter_step gives."""
    state: LimiterState | None = None
    epoch = 0.0
    for now, op, given in LIMITER_OPS:
        measured = epoch if given == EPOCH else given
        state, expected = limiter_step(LIMITER, state, now, op, measured)  # type: ignore[arg-type]
        got = store.limiter("p:limiter", LIMITER, now, op, measured)  # type: ignore[arg-type]
        if op == "acquire" and expected.wait > 0:
            epoch = expected.epoch
        fields = (
            "wait", "rate", "previous", "active", "changed", "consecutive", "persistent", "epoch"
        )  # fmt: skip
        assert [getattr(got, f) for f in fields] == pytest.approx(
            [getattr(expected, f) for f in fields]
        ), (now, op)
        assert got.report == expected.report, (now, op)


BREAKER_OPS: list[tuple[float, str, int, int]] = [
    (0.0, "allow", 0, 0),
    (0.0, "record", 0, 2),
    (1.0, "record", 1, 0),
    (2.0, "record", 1, 0),  # 2 of 4 failed: opens
    (3.0, "allow", 0, 0),  # refused, 4 s to the probe
    (7.0, "allow", 0, 0),  # half-open: the probe goes
    (7.1, "allow", 0, 0),  # refused: one probe at a time
    (7.5, "record", 1, 0),  # the probe failed: open again
    (12.5, "allow", 0, 0),  # half-open
    (12.6, "record", 0, 1),  # the probe succeeded: closed
    (13.0, "record", 1, 0),
    (30.0, "record", 1, 0),  # the window rolled over: counts start again
    (30.0, "read", 0, 0),
]


def test_breaker_steps_match_the_pure_transition(store: Store) -> None:
    """Every breaker step gives what breaker_step gives: closed, open, half-open, closed."""
    state: BreakerState | None = None
    seen = []
    for now, op, failures, successes in BREAKER_OPS:
        new, expected = breaker_step(
            BREAKER,
            state,
            now,
            op,  # type: ignore[arg-type]
            failures=failures,
            successes=successes,
        )
        state = new if new is not None else state
        got = store.breaker(
            "p:breaker:h",
            BREAKER,
            now,
            op,  # type: ignore[arg-type]
            failures=failures,
            successes=successes,
        )
        assert (got.state, got.allowed, got.event, got.failures, got.total) == (
            expected.state,
            expected.allowed,
            expected.event,
            expected.failures,
            expected.total,
        ), (now, op)
        assert got.retry_in == pytest.approx(expected.retry_in)
        seen.append(got.event)
    assert [e for e in seen if e] == ["opened", "half_open", "opened", "half_open", "closed"]


def test_keys_are_independent(store: Store) -> None:
    """Two policies (keys) never share a bucket or a breaker."""
    store.budget("a:budget", BUDGET, 0.0, -20.0)
    assert store.budget("b:budget", BUDGET, 0.0, 0.0).level == 20.0
    for _ in range(4):
        store.breaker("a:breaker:h", BREAKER, 0.0, "record", failures=1)
    assert store.breaker("a:breaker:h", BREAKER, 0.0, "read").state == "open"
    assert store.breaker("a:breaker:other", BREAKER, 0.0, "read").state == "closed"


def test_32_threads_keep_exact_counts(sync_store: Store) -> None:
    """32 threads spending and refunding at once: every step is atomic, no count is lost."""
    big = rp.RetryBudget(capacity=100_000, retry_cost=3, success_refund=1, refill_rate=0)
    store = sync_store
    per_thread = 25 if isinstance(store, RedisStore) else 200
    start = threading.Barrier(32)
    allowed: list[int] = []

    def work() -> None:
        start.wait()
        ok = 0
        for _ in range(per_thread):
            ok += store.budget("t:budget", big, 0.0, -3.0).ok
            store.budget("t:budget", big, 0.0, 1.0)
            store.breaker(
                "t:breaker:h", BREAKER.evolve(min_calls=10**9), 0.0, "record", successes=1
            )
        allowed.append(ok)

    threads = [threading.Thread(target=work) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(allowed) == 32 * per_thread
    level = store.budget("t:budget", big, 0.0, 0.0).level
    assert level == 100_000 - 2 * 32 * per_thread
    total = store.breaker("t:breaker:h", BREAKER.evolve(min_calls=10**9), 0.0, "read").total
    assert total == 32 * per_thread


def test_redis_keys_have_ttls(redis_client: redis.Redis) -> None:
    """Every key a RedisStore writes carries a TTL, so stale state vanishes by itself."""
    store = RedisStore(redis_client, prefix="ttl")
    store.budget("p:budget", BUDGET, 0.0, -5.0)
    store.limiter("p:limiter", LIMITER, 0.0, "throttled", 4.0)
    store.breaker("p:breaker:h", BREAKER, 0.0, "record", failures=1)
    keys = sorted(k.decode() for k in redis_client.keys("ttl:*"))
    assert keys == ["ttl:p:breaker:h", "ttl:p:budget", "ttl:p:limiter"]
    for key in keys:
        assert 0 < redis_client.pttl(key) <= 24 * 3600 * 1000
    assert store.breaker_keys("p:breaker:") == ["p:breaker:h"]


def test_redis_store_checks_its_arguments(redis_client: redis.Redis) -> None:
    """A bad prefix, retry_every or something that is no Redis client is refused with a clear
    message."""
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(redis_client, prefix="")
    with pytest.raises(TypeError, match=r"redis\.Redis"):
        RedisStore(object())
    with pytest.raises(ValueError, match=r"retry_every -1: expected seconds, a number >= 0"):
        RedisStore(redis_client, retry_every=-1)
    store = RedisStore(redis_client)
    store.retry_every = 2
    assert store.retry_every == 2.0
    with pytest.raises(ValueError, match="retry_every 'soon'"):
        store.retry_every = "soon"  # type: ignore[assignment]


def test_default_store_is_switchable() -> None:
    """set_default_store returns the previous store; use_store restores it; junk is refused."""
    mine = InProcessStore()
    before = rp.stores.get_default_store()
    with rp.stores.use_store(mine):
        assert rp.stores.get_default_store() is mine
    assert rp.stores.get_default_store() is before
    bad: Any = object()
    with pytest.raises(TypeError, match="Store"):
        rp.stores.set_default_store(bad)


def test_a_shared_budget_between_two_stores_on_one_redis(redis_client: redis.Redis) -> None:
    """Two RedisStores (two workers) with one prefix share one bucket; another prefix does not."""
    one = RedisStore(redis_client, prefix="fleet")
    two = RedisStore(redis.Redis(connection_pool=redis_client.connection_pool), prefix="fleet")
    other = RedisStore(redis_client, prefix="elsewhere")
    one.budget("p:budget", BUDGET, 0.0, -15.0)
    assert two.budget("p:budget", BUDGET, 0.0, 0.0).level == 5.0
    assert other.budget("p:budget", BUDGET, 0.0, 0.0).level == 20.0


def _script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


def test_successes_cost_almost_no_round_trips(redis_client: redis.Redis) -> None:
    """With a shared store, 200 successful calls (budget and breaker on) make a handful of
    round trips, not one per call: closed breakers and full buckets are cached, counts
    batched."""
    now = [1_000.0]
    store = RedisStore(redis_client, prefix="cheap")
    policy = rp.EUGPT.evolve(name="cheap", breaker=rp.CircuitBreaker())

    @rp.retry(policy, store=store, wall_clock=lambda: now[0])
    def ok() -> int:
        now[0] += 0.001
        return 1

    before = _script_calls(redis_client)
    for _ in range(200):
        ok()
    assert _script_calls(redis_client) - before <= 20


def test_a_breaker_opened_elsewhere_is_seen_within_a_second(redis_client: redis.Redis) -> None:
    """Another worker opens the shared breaker: this worker fails fast within a second."""
    now = [1_000.0]
    mine = RedisStore(redis_client, prefix="seen")
    theirs = RedisStore(redis_client, prefix="seen")
    policy = rp.EUGPT.evolve(name="seen", breaker=rp.CircuitBreaker(min_calls=1))

    @rp.retry(policy, store=mine, wall_clock=lambda: now[0])
    def ok() -> int:
        return 1

    assert ok() == 1
    theirs.breaker("seen:breaker:", policy.breaker, now[0], "record", failures=1)  # type: ignore[arg-type]
    now[0] += 1.5
    with pytest.raises(rp.CircuitOpenError):
        ok()


def test_from_url_shares_state_with_a_plain_client(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """A store from from_url reaches the same Redis as a hand-built client: one bucket,
    from the sync and the asyncio path alike."""
    built = RedisStore.from_url(redis_server.url, prefix="url")
    plain = RedisStore(redis_client, prefix="url")
    try:
        built.budget("p:budget", BUDGET, 0.0, -5.0)
        asyncio.run(built.abudget("p:budget", BUDGET, 0.0, -5.0))
        assert plain.budget("p:budget", BUDGET, 0.0, 0.0).level == 10.0
        assert asyncio.run(built.abreaker_keys("p:")) == ["p:budget"]
        assert built.available
    finally:
        built.close()


def _retries(client: Any) -> int:
    retries: int = client.connection_pool.connection_kwargs["retry"].get_retries()
    return retries


def test_from_url_bounds_every_wait_and_turns_redis_py_retries_off() -> None:
    """from_url's sync and asyncio clients wait at most `timeout` to connect and to read,
    and never retry by themselves (redis.Redis(host=...) retries 10 times with backoff)."""
    store = RedisStore.from_url("redis://127.0.0.1:1/0", timeout=0.3)
    kwargs = store.client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.3, 0.3)
    assert _retries(store.client) == 0
    assert _retries(redis.Redis(host="127.0.0.1", port=1)) == 10  # what from_url turns off

    async def asyncio_client() -> Any:
        client, _ = await store._async.get()
        await store.aclose()
        return client

    aclient = asyncio.run(asyncio_client())
    akwargs = aclient.connection_pool.connection_kwargs
    assert (akwargs["socket_timeout"], akwargs["socket_connect_timeout"]) == (0.3, 0.3)
    assert _retries(aclient) == 0
    assert (
        RedisStore.from_url("redis://127.0.0.1:1/0").client.connection_pool.connection_kwargs[
            "socket_timeout"
        ]
        == 0.25
    )  # the default: a fraction of a second


def test_a_failed_step_is_one_round_trip() -> None:
    """A Redis that drops the connection at each script sees exactly one attempt per step,
    sync and async: no retry inside redis-py, the fallback answers at once."""
    with closing_redis() as server:
        store = RedisStore.from_url(server.url, retry_every=0.0)
        try:
            first = store.budget("p:budget", BUDGET, 0.0, -5.0)
            assert (first.ok, first.level) == (True, 15.0)  # the fallback's bucket
            assert first.notice is not None
            assert first.notice[0] == "store.unavailable"
            assert server.scripts == 1
            second = asyncio.run(store.abudget("p:budget", BUDGET, 1.0, -5.0))  # a probe
            assert second.notice is None  # the same outage: reported once
            assert server.scripts == 2
        finally:
            store.close()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: RedisStore.from_url("http://127.0.0.1:6379/0"),
            ValueError,
            "expected a Redis URL",
        ),
        (lambda: RedisStore.from_url("127.0.0.1:6379"), ValueError, r"url '127\.0\.0\.1:6379'"),
        (lambda: RedisStore.from_url(6379), TypeError, "url 6379: expected a Redis URL"),
        (lambda: RedisStore.from_url("redis://h:port/0"), ValueError, "url 'redis://h:port/0'"),
        (lambda: RedisStore.from_url("redis://h/0", timeout=0), ValueError, "timeout 0: expected"),
        (lambda: RedisStore.from_url("redis://h/0", timeout=-1), ValueError, "timeout -1"),
        (lambda: RedisStore.from_url("redis://h/0", timeout=math.nan), ValueError, "timeout nan"),
        (lambda: RedisStore.from_url("redis://h/0", timeout="1"), ValueError, "timeout '1'"),
        (lambda: RedisStore.from_url("redis://h/0", timeout=True), ValueError, "timeout True"),
        (lambda: RedisStore.from_url("redis://h/0", retry_every=-1), ValueError, "retry_every -1"),
        (lambda: RedisStore.from_url("redis://h/0", prefix=""), ValueError, "prefix ''"),
        (
            lambda: RedisStore.from_url("redis://h/0", socket_timeout=5),
            TypeError,
            "socket_timeout: set by RedisStore.from_url",
        ),
        (lambda: RedisStore.from_url("redis://h/0", retry=None), TypeError, "retry: set by"),
        (
            lambda: RedisStore.from_url("redis://h/0", max_conections=3),
            TypeError,
            r"options \['max_conections'\]: not all are redis.Redis connection options",
        ),
        (lambda: RedisStore.from_url("redis://h/0?db=x"), ValueError, r"url 'redis://h/0\?db=x'"),
    ],
)
def test_from_url_refuses_bad_input(call: Any, error: type[Exception], match: str) -> None:
    """A bad URL, timeout, prefix or an option that would undo the bounds is refused at once,
    naming the input and what was expected."""
    with pytest.raises(error, match=match):
        call()


def test_a_bad_url_never_shows_its_password() -> None:
    """The message about a bad URL masks the password, in the netloc or the query."""
    for url in (
        "redis://user:s3cret@h:port/0",
        "ftp://:s3cret@h/0",
        "redis://h:x/0?password=s3cret",
    ):
        with pytest.raises(ValueError, match=r"\*\*\*") as info:
            RedisStore.from_url(url)
        assert "s3cret" not in str(info.value)


def test_clients_are_checked(redis_server: RedisServer) -> None:
    """An asyncio client in the sync slot, or a sync one in async_client=, is refused with
    what to do instead; a caller's asyncio client is used as given (and left open)."""
    sync = redis.Redis.from_url(redis_server.url)

    async def main() -> float:
        aclient = redis.asyncio.Redis.from_url(redis_server.url)
        with pytest.raises(TypeError, match="async_client="):
            RedisStore(aclient)
        with pytest.raises(TypeError, match=r"async_client .*redis\.asyncio"):
            RedisStore(sync, async_client=sync)
        store = RedisStore(sync, prefix="mine", async_client=aclient)
        assert (await store.abudget("p:budget", BUDGET, 0.0, -5.0)).notice is None
        await store.aclose()  # not ours: still open
        assert await aclient.ping()
        await aclient.aclose()
        return store.budget("p:budget", BUDGET, 0.0, 0.0).level

    assert asyncio.run(main()) == 15.0
    sync.close()


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/l", "redis://127.0.0.1:6379/prod", "rediss://h:6380/1x"],
)
def test_from_url_refuses_a_database_that_is_not_a_number(url: str) -> None:
    """A URL whose database (the path after the host) is not a number is refused, naming the
    URL and what was expected: redis-py alone would use database 0 without a word, and the
    store would share another fleet's budgets and breakers."""
    with pytest.raises(ValueError, match="expected a database number") as info:
        RedisStore.from_url(url)
    assert repr(url) in str(info.value)


def test_a_bad_database_never_shows_the_password() -> None:
    """The message about a database that is not a number masks the URL's password."""
    with pytest.raises(ValueError, match=r"\*\*\*") as info:
        RedisStore.from_url("redis://user:s3cret@h:6379/prod")
    assert "s3cret" not in str(info.value)
