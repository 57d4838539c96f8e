"""A retried request leaves the garbage collector no more than the transport itself does.

A failed attempt's exception holds its traceback, whose frames hold their callers (each
frame's ``f_back``): a retry loop that keeps the exception (its attempt machine does, as
the last failure) in a frame on that chain makes a cycle only the collector frees — a
fifth of a retried call's cost, paid on every call of a busy service. Each case counts
what ``gc.collect()`` finds after calls whose attempts fail twice then succeed, and after
the same number of attempts made by hand with the bare transport (its own cycles, which
are not ours to remove).

requests is not in the table: urllib3 makes each failed attempt's exception a cycle of its
own (``urlopen`` and ``Retry.increment`` keep it in their frames), so everything on its
traceback — a bare hand loop's frame, or ours — is the collector's either way.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any, Final

import httpx
import pytest

import retrypolicy as rp
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport

POLICY: Final = rp.EUGPT.evolve(budget=None)
CALLS: Final = 20
URL: Final = "http://eugpt.test/v1/responses"


def garbage(run: Callable[[], None]) -> int:
    """Objects only the cycle collector frees, left by *run*."""
    gc.collect()
    gc.disable()
    try:
        run()
        return gc.collect()
    finally:
        gc.enable()


def failing_twice() -> Callable[[httpx.Request], httpx.Response]:
    """A mock server: every third request is answered, the others fail to connect."""
    seen = iter(range(1_000_000))

    def answer(request: httpx.Request) -> httpx.Response:
        if next(seen) % 3 < 2:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"ok": True})

    return answer


def by_hand(send: Callable[[], object], errors: type[BaseException]) -> None:
    """Three attempts with the bare transport, as a careful person writes them."""
    for _ in range(3):
        try:
            send()
        except errors:
            continue
        return


HOOKED: Final = {"before_attempt": lambda event: None}  # forces the loop from the start


@pytest.mark.parametrize("keywords", [{}, HOOKED], ids=["first attempt direct", "loop"])
def test_httpx_sync(instant: rp.testing.Instant, keywords: dict[str, Any]) -> None:
    """RetryTransport: no garbage beyond the bare transport's for the same attempts."""
    ours = httpx.Client(
        transport=RetryTransport(POLICY, transport=httpx.MockTransport(failing_twice()), **keywords)
    )
    bare = httpx.Client(transport=httpx.MockTransport(failing_twice()))

    def retried() -> None:
        for _ in range(CALLS):
            assert ours.post(URL, json={}).status_code == 200

    def manual() -> None:
        for _ in range(CALLS):
            by_hand(lambda: bare.post(URL, json={}), httpx.ConnectError)

    retried()  # first-time objects: caches, pools
    manual()
    assert garbage(retried) <= garbage(manual)


@pytest.mark.parametrize("keywords", [{}, HOOKED], ids=["first attempt direct", "loop"])
def test_httpx_async(instant: rp.testing.Instant, keywords: dict[str, Any]) -> None:
    """AsyncRetryTransport: as the sync one."""

    async def counts() -> tuple[int, int]:
        ours = httpx.AsyncClient(
            transport=AsyncRetryTransport(
                POLICY, transport=httpx.MockTransport(failing_twice()), **keywords
            )
        )
        bare = httpx.AsyncClient(transport=httpx.MockTransport(failing_twice()))
        loop = asyncio.get_running_loop()

        async def retried() -> None:
            for _ in range(CALLS):
                assert (await ours.post(URL, json={})).status_code == 200

        async def manual() -> None:
            for _ in range(CALLS):
                for _ in range(3):
                    try:
                        await bare.post(URL, json={})
                    except httpx.ConnectError:
                        continue
                    break

        await retried()  # first-run objects of the loop and the clients
        await manual()
        gc.collect()
        gc.disable()
        try:
            await retried()
            ours_left = gc.collect()
            await manual()
            theirs_left = gc.collect()
        finally:
            gc.enable()
        assert loop.is_running()
        return ours_left, theirs_left

    ours_left, theirs_left = asyncio.run(counts())
    assert ours_left <= theirs_left
