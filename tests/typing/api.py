"""The public API as users type it: checked by mypy --strict in CI, never run."""

from __future__ import annotations

import random
from typing import assert_type

import httpx
import httpx2
import openai
import requests
import urllib3

import retrypolicy as rp
from retrypolicy.batch import (
    BatchReport,
    JobRecord,
    Ledger,
    RedisLedger,
    SQLiteLedger,
    arun_batch,
    run_batch,
)
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.transport import SEND, AttemptMachine, Outcome, Wait
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
from retrypolicy_httpx import httpx2 as on_httpx2
from retrypolicy_openai import api_error, async_client, classify, client, wrap
from retrypolicy_requests import RetryAdapter
from retrypolicy_urllib3 import PolicyRetry, guard_stream


@rp.retry
def plain(model: str, *, stream: bool = True) -> dict[str, str]:
    return {"model": model}


@rp.retry(rp.EUGPT, on_retry=lambda e: None)
async def configured(n: int) -> int:
    return n


@rp.EUGPT.retry
def via_policy(x: float) -> float:
    return x


def hook(event: RetryEvent) -> None:
    assert_type(event.attempt, int)


@rp.EUGPT.retry(on_give_up=hook)
def via_policy_with_hooks(x: float) -> float:
    return x


assert_type(plain("m", stream=False), dict[str, str])
assert_type(via_policy(1.0), float)
assert_type(via_policy_with_hooks(1.0), float)
plain(1)  # type: ignore[arg-type]
plain("m", strem=True)  # type: ignore[call-arg]


async def use() -> None:
    assert_type(await configured(1), int)
    async for attempt in rp.attempts(rp.EUGPT):
        with attempt:
            pass


c: rp.Classification = rp.EUGPT.classify(429)
assert_type(c.retryable, bool)
info: rp.ErrorInfo = rp.parse_error(500, b"")
d: float = rp.Backoff(jitter="equal").delay(1, retry_after=None, rng=random.Random(1))
p: rp.Policy = rp.EUGPT.evolve(max_attempts=3)
for attempt in rp.attempts(p):
    with attempt:
        pass
with rp.testing.instant() as recorder:
    assert_type(recorder.waits, list[float])


# the adapters, as users mount them
def mount() -> None:
    session = requests.Session()
    session.mount("https://", RetryAdapter(rp.EUGPT, raise_on_give_up=True, pool_maxsize=4))
    client = httpx.Client(transport=RetryTransport(rp.EUGPT, httpx.HTTPTransport(retries=0)))
    aclient = httpx.AsyncClient(transport=AsyncRetryTransport(methods=["POST"]))
    pool = urllib3.PoolManager(retries=PolicyRetry(rp.EUGPT))
    response = pool.request("POST", "http://127.0.0.1/v1/responses", preload_content=False)
    for chunk in guard_stream(response):
        assert_type(chunk, bytes)
    # httpx2, the openai SDK's library: the same classes, typed for its clients
    client2 = openai.DefaultHttpxClient(transport=on_httpx2.RetryTransport(rp.EUGPT))
    aclient2 = httpx2.AsyncClient(transport=on_httpx2.AsyncRetryTransport(methods="POST"))
    del client, aclient, client2, aclient2


def sdk() -> None:
    # the openai SDK: clients that keep their types, errors read back as ours
    sync = client(rp.EUGPT, base_url="http://127.0.0.1/v1", api_key="eugpt_x", timeout=5.0)
    assert_type(sync, openai.OpenAI)
    aio = async_client(raise_on_give_up=True, _strict_response_validation=True)
    assert_type(aio, openai.AsyncOpenAI)
    assert_type(wrap(sync, rp.EUGPT, methods="POST"), openai.OpenAI)
    assert_type(wrap(aio), openai.AsyncOpenAI)
    wrap(sync, timeout=3)  # type: ignore[call-overload]
    client(max_retries=2)  # type: ignore[call-arg]
    try:
        sync.responses.create(model="auto", input="hi")
    except openai.APIError as exc:
        assert_type(api_error(exc).attempts, int)
        assert_type(classify(exc, rp.EUGPT), rp.Classification)


def batch_jobs(redis_client: object) -> None:
    # retrypolicy.batch: ledgers are Ledgers, run_once keeps fn's result type
    sqlite = SQLiteLedger("jobs.db", policy=rp.EUGPT, lease=10.0)
    shared: Ledger = RedisLedger(redis_client, prefix="jobs")

    def work(n: int) -> dict[str, int]:
        return {"n": n}

    async def awork(n: int) -> int:
        return n

    assert_type(sqlite.run_once("job-1", work, 1), dict[str, int])
    seen: list[JobRecord] = []
    report = run_batch({"a": 1}, work, ledger=shared, concurrency=4, on_finish=seen.append)
    assert_type(report, BatchReport)
    assert_type(report.ok, bool)
    coro = arun_batch([("a", 1)], awork, ledger=sqlite, progress=False)
    del coro
    run_batch({"a": 1}, work, ledger=sqlite, concurency=2)  # type: ignore[call-arg]


def storm_protection(redis_client: object) -> None:
    # docs/storm.md: config classes on a policy, a store per call path or per process
    policy = rp.EUGPT.evolve(
        budget=rp.RetryBudget(capacity=100),
        limiter=rp.AdaptiveLimiter(initial_rate=5.0),
        breaker=rp.CircuitBreaker(open_for=30.0),
    )
    shared: rp.stores.Store = rp.stores.RedisStore(redis_client, prefix="app")
    previous: rp.stores.Store = rp.stores.set_default_store(rp.stores.InProcessStore())
    del previous

    @rp.retry(policy, store=shared)
    def fetch(n: int) -> int:
        return n

    assert_type(fetch(1), int)
    RetryAdapter(policy, store=shared)
    stats = policy.stats()
    assert stats.budget_level is None or isinstance(stats.budget_level, float)
    try:
        fetch(2)
    except rp.CircuitOpenError as exc:
        assert_type(exc.retry_in, float)
    rp.RetryBudget(capacity="lots")  # type: ignore[arg-type]


rp.retry(rp.EUGPT, on_retyr=hook)  # type: ignore[call-overload]
rp.attempts(rp.EUGPT, slep=print)  # type: ignore[call-arg]
rp.attempts(rp.EUGPT, sleep=1)  # type: ignore[arg-type]


def session_four() -> None:
    # the attempt machine, the keyword type every adapter takes, storms, tests, simulate
    m = AttemptMachine(rp.EUGPT, started=0.0)
    assert m.begin() is SEND
    answer = m.failed(Outcome(status=503), 0.0)
    if isinstance(answer, Wait):
        assert_type(answer.seconds, float)

    @rp.retry(policy=rp.EUGPT)
    def keyword_policy(n: int) -> int:
        return n

    assert_type(keyword_policy(1), int)
    store = rp.stores.RedisStore.from_url("redis://127.0.0.1:6379/0", prefix="app")
    RetryAdapter(rp.EUGPT, store=store, pool_maxsize=4)
    rp.testing.reset()
    with rp.testing.isolated(), rp.testing.instant() as clock:
        assert_type(clock.waits, list[float])
    result = rp.simulate(rp.EUGPT, rp.Scenario.outage(30.0), clients=10, duration=60.0)
    assert_type(result, rp.Simulation)
    RetryAdapter(rp.EUGPT, sotre=store)  # type: ignore[call-arg]
