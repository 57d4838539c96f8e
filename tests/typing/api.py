"""The public API as users type it: checked by mypy --strict in CI, never run."""

from __future__ import annotations

import random
from typing import assert_type

import httpx
import requests
import urllib3

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
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
    del client, aclient


rp.retry(rp.EUGPT, on_retyr=hook)  # type: ignore[call-overload]
rp.attempts(rp.EUGPT, slep=print)  # type: ignore[call-arg]
rp.attempts(rp.EUGPT, sleep=1)  # type: ignore[arg-type]
