"""What a call or a run leaves behind when it is cancelled, interrupted or left early: a
retry never sent costs the budget nothing, a job being claimed is given back, a success is
settled, a result line that is whole is kept — on every call path."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import retrypolicy as rp
from retrypolicy.batch import JobRecord, JobState, SQLiteLedger, arun_batch
from retrypolicy.stores import InProcessStore, stats
from retrypolicy.testing import FakeEUGPT, Reply

from .batch_crash import write_input
from .test_batch_cli import Batch, batch, results, server  # noqa: F401 - the fixtures


class _SlowClaimLedger(SQLiteLedger):
    """A real SQLite ledger whose claim (in its worker thread) waits to be let go: the
    caller is cancelled while the claim is still under way."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.claiming = threading.Event()
        self.go = threading.Event()

    def claim(self, job_id: str, *, steal_from: str | None = None) -> tuple[bool, JobRecord]:
        self.claiming.set()
        self.go.wait(10)  # bounded: the test lets it go at once
        return super().claim(job_id, steal_from=steal_from)


def test_cancelling_arun_batch_during_a_claim_leaves_no_job_running(tmp_path: Path) -> None:
    """arun_batch cancelled while a job's claim is in its worker thread: the claim still
    lands in the ledger, and the job is given back (pending), not left ``running`` under a
    lease this live process keeps renewing — a rerun in the same process could never take
    it, and the job would never be sent."""
    ledger = _SlowClaimLedger(tmp_path / "jobs.db")
    calls: list[int] = []

    async def job(n: int) -> dict[str, int]:
        calls.append(n)
        return {"n": n}

    async def main() -> None:
        task = asyncio.ensure_future(
            arun_batch({"a": 1}, job, ledger=ledger, concurrency=1, progress=False)
        )
        await asyncio.to_thread(ledger.claiming.wait, 10)
        task.cancel()
        ledger.go.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
        record = ledger.get("a")
        assert record is not None
        assert record.state is JobState.PENDING
        assert calls == []
    finally:
        ledger.close()


# -- a retry cancelled during its wait ---------------------------------------------------


_BUDGETED = rp.EUGPT.evolve(
    name="audit2-s8-budget", budget=rp.RetryBudget(capacity=20, refill_rate=0)
)


def _unavailable() -> rp.APIError:
    return rp.EUGPT.error_for(rp.parse_error(503, b'{"detail": "busy"}'))


async def _cancel_during_the_wait(call: Any) -> None:
    """Run *call* (a coroutine function given the sleeper), cancel it in its retry wait."""
    waiting = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.Event().wait()  # the backoff: cancelled before it ends

    task = asyncio.ensure_future(call(sleep))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("gated", [False, True], ids=["budget", "budget+breaker"])
def test_a_retry_cancelled_in_its_wait_gives_its_cost_back(gated: bool) -> None:
    """An async ``@rp.retry`` call cancelled while it waits to retry (an
    ``asyncio.timeout`` around it, a task cancelled at shutdown) never sends that retry:
    the budget gets the retry's cost back. Only retries that fail drain the bucket; one
    that was never sent must not (a timeout around a call waiting out a 429 would empty
    the budget without a single retry going out)."""
    policy = _BUDGETED.evolve(name=f"audit2-s8-budget-{gated}")
    if gated:
        policy = policy.evolve(breaker=rp.CircuitBreaker())
    store = InProcessStore()
    calls = 0

    async def call(sleep: Any) -> None:
        @rp.retry(policy, store=store, async_sleep=sleep)
        async def flaky() -> None:
            nonlocal calls
            calls += 1
            raise _unavailable()

        await flaky()

    asyncio.run(_cancel_during_the_wait(call))
    assert calls == 1
    level = stats(policy, store=store).budget_level
    assert level == 20


def test_an_async_attempts_loop_cancelled_in_its_wait_gives_its_cost_back() -> None:
    """``async for attempt in rp.attempts(...)`` cancelled during a retry's wait: the
    budget is as if that retry had never been decided."""
    store = InProcessStore()
    calls = 0

    async def call(sleep: Any) -> None:
        nonlocal calls
        async for attempt in rp.attempts(_BUDGETED, store=store, async_sleep=sleep):
            with attempt:
                calls += 1
                raise _unavailable()

    asyncio.run(_cancel_during_the_wait(call))
    assert calls == 1
    assert stats(_BUDGETED, store=store).budget_level == 20


# -- the results file --------------------------------------------------------------------


def test_a_done_line_without_its_newline_is_kept_and_never_sent_again(
    batch: Batch,  # noqa: F811
    tmp_path: Path,
    server: FakeEUGPT,  # noqa: F811
) -> None:
    """A results file whose last line is a whole ``done`` line without the final newline
    (copied, merged or trimmed by an editor; or a crash cut exactly before the newline)
    is not a line cut short: it is kept, and with a lost or mistyped ledger its id is
    still never sent again (a done line in --out is never paid twice)."""
    write_input(tmp_path / "in.jsonl", 3)
    code, _, _ = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl")
    assert code == 0
    out = tmp_path / "out.jsonl"
    out.write_bytes(out.read_bytes().rstrip(b"\n"))  # the last done line loses its newline
    code, _, err = batch("run", "in.jsonl", "--ledger", "other.db", "--out", "out.jsonl")
    assert code == 0
    assert "cut off" not in err
    assert server.request_count == 3
    assert len(results(out)) == 3


# -- process-wide state between tests ------------------------------------------------------

_OWN_STORE = InProcessStore()
_SEEN = rp.EUGPT.evolve(name="audit2-s8-own-store", breaker=rp.CircuitBreaker())
_attempts = [0]


@rp.retry(_SEEN, store=_OWN_STORE, sleep=lambda seconds: None)
def _fails_then_works() -> int:
    """Decorated once, at import, with its own store: a 503, then a success."""
    _attempts[0] += 1
    if _attempts[0] % 2:
        raise _unavailable()
    return 1


def test_after_a_reset_a_function_with_its_own_store_is_seen_afresh() -> None:
    """``rp.testing.reset()`` (and the pytest plugin's isolation) starts storm state afresh
    for every call path, also one decorated once with its own ``store=``: its retries
    after the reset are the ones ``stats()`` counts — not lost to a guard from before the
    reset, nor added to the previous test's counters."""
    rp.testing.reset()
    _fails_then_works()
    assert stats(_SEEN, store=_OWN_STORE).counters["retries_allowed"] == 1
    rp.testing.reset()
    assert stats(_SEEN, store=_OWN_STORE).counters["retries_allowed"] == 0
    _fails_then_works()
    assert stats(_SEEN, store=_OWN_STORE).counters["retries_allowed"] == 1


def _httpx_async(sleep: Any, store: InProcessStore, url: str) -> Any:
    import httpx  # noqa: PLC0415 - an adapter's test

    from retrypolicy_httpx import AsyncRetryTransport  # noqa: PLC0415

    async def call() -> None:
        transport = AsyncRetryTransport(_BUDGETED, store=store, async_sleep=sleep)
        async with httpx.AsyncClient(transport=transport) as client:
            await client.post(url, json={"input": "hi"})

    return call()


def _aiohttp(sleep: Any, store: InProcessStore, url: str) -> Any:
    import aiohttp  # noqa: PLC0415 - an adapter's test

    from retrypolicy_aiohttp import RetryMiddleware  # noqa: PLC0415

    async def call() -> None:
        middleware = RetryMiddleware(_BUDGETED, store=store, async_sleep=sleep)
        async with (
            aiohttp.ClientSession(middlewares=(middleware,)) as session,
            session.post(url, json={"input": "hi"}) as response,
        ):
            await response.read()

    return call()


@pytest.mark.parametrize("adapter", [_httpx_async, _aiohttp], ids=["httpx-async", "aiohttp"])
def test_an_async_adapter_cancelled_in_its_wait_gives_its_cost_back(adapter: Any) -> None:
    """``AsyncRetryTransport`` and ``RetryMiddleware`` cancelled while they wait to retry a
    503: the retry is never sent, so the budget gets its cost back (as ``@rp.retry`` does)."""
    store = InProcessStore()
    with FakeEUGPT() as fake:
        fake.script(Reply.error(503), Reply.ok())

        async def call(sleep: Any) -> None:
            await adapter(sleep, store, fake.responses_url)

        asyncio.run(_cancel_during_the_wait(call))
        assert fake.request_count == 1
    assert stats(_BUDGETED, store=store).budget_level == 20


def _interrupting(seconds: float) -> None:
    raise KeyboardInterrupt  # Ctrl-C during the wait before the retry


def _via_requests(store: InProcessStore, url: str) -> None:
    import requests  # noqa: PLC0415 - an adapter's test

    from retrypolicy_requests import RetryAdapter  # noqa: PLC0415

    with requests.Session() as s:
        s.mount("http://", RetryAdapter(_BUDGETED, store=store, sleep=_interrupting))
        s.post(url, json={"input": "hi"})


def _via_httpx(store: InProcessStore, url: str) -> None:
    import httpx  # noqa: PLC0415 - an adapter's test

    from retrypolicy_httpx import RetryTransport  # noqa: PLC0415

    transport = RetryTransport(_BUDGETED, store=store, sleep=_interrupting)
    with httpx.Client(transport=transport) as client:
        client.post(url, json={"input": "hi"})


def _via_urllib3(store: InProcessStore, url: str) -> None:
    import urllib3  # noqa: PLC0415 - an adapter's test

    from retrypolicy_urllib3 import PolicyRetry  # noqa: PLC0415

    retry = PolicyRetry(_BUDGETED, store=store, sleep=_interrupting)
    with urllib3.PoolManager(retries=retry) as pool:
        pool.request("POST", url, json={"input": "hi"})


def _via_decorator(store: InProcessStore, url: str) -> None:
    import requests  # noqa: PLC0415

    @rp.retry(_BUDGETED, store=store, sleep=_interrupting)
    def post() -> requests.Response:
        return requests.post(url, json={"input": "hi"}, timeout=10)

    post()


def _via_attempts(store: InProcessStore, url: str) -> None:
    import requests  # noqa: PLC0415

    for attempt in rp.attempts(_BUDGETED, store=store, sleep=_interrupting):
        with attempt:
            attempt.check(requests.post(url, json={"input": "hi"}, timeout=10))


@pytest.mark.parametrize(
    "path",
    [_via_requests, _via_httpx, _via_urllib3, _via_decorator, _via_attempts],
    ids=["requests", "httpx", "urllib3", "decorator", "attempts"],
)
def test_a_call_interrupted_in_its_wait_gives_its_cost_back(path: Any) -> None:
    """Ctrl-C (or any exception from the sleeper) while a sync call path waits to retry a
    503: the retry is never sent, the interruption reaches the caller, and the budget gets
    back what the retry paid."""
    store = InProcessStore()
    with FakeEUGPT() as fake:
        fake.script(Reply.error(503), Reply.ok())
        with pytest.raises(KeyboardInterrupt):
            path(store, fake.responses_url)
        assert fake.request_count == 1
    assert stats(_BUDGETED, store=store).budget_level == 20


# -- a retry the breaker refuses after it was paid for ---------------------------------------

_TRIPPY = rp.EUGPT.evolve(
    name="audit2-s8-trippy",
    budget=rp.RetryBudget(capacity=20, refill_rate=0),
    breaker=rp.CircuitBreaker(min_calls=2, failure_rate=0.5),
)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_paid_retry_the_breaker_then_refuses_gives_its_cost_back(is_async: bool) -> None:
    """A retry is paid for, and while it waits the host's breaker opens (other calls to the
    host failed meanwhile): the retry is refused with CircuitOpenError and never sent, so
    the budget gets its cost back — an open breaker must not also drain the budget with
    retries that never went out."""
    store = InProcessStore()

    @rp.retry(_TRIPPY.evolve(budget=None), store=store, sleep=lambda seconds: None)
    def others() -> None:  # the same host's breaker, no budget: it opens the breaker
        raise _unavailable()

    def trip(seconds: float) -> None:
        with pytest.raises(rp.APIError):
            others()

    async def atrip(seconds: float) -> None:
        trip(seconds)

    calls = 0

    @rp.retry(_TRIPPY, store=store, sleep=trip)
    def one() -> None:
        nonlocal calls
        calls += 1
        raise _unavailable()

    @rp.retry(_TRIPPY, store=store, async_sleep=atrip)
    async def aone() -> None:
        nonlocal calls
        calls += 1
        raise _unavailable()

    with pytest.raises(rp.CircuitOpenError):
        if is_async:
            asyncio.run(aone())
        else:
            one()
    assert calls == 1
    assert stats(_TRIPPY, store=store).budget_level == 20


# -- leaving ``async for`` with the answer ---------------------------------------------------


def test_returning_from_an_async_attempts_loop_settles_the_success() -> None:
    """``async for attempt in rp.attempts(...)`` left with ``return`` inside the block once
    a retry worked (the natural way to write it): the success still reaches storm
    protection — the budget gets the retry's cost back (a retry that fixed the call is
    free) and ``retry.succeeded`` is reported — as with the sync loop."""
    store = InProcessStore()
    events: list[str] = []

    async def ask() -> str:
        async for attempt in rp.attempts(
            _BUDGETED,
            store=store,
            async_sleep=lambda seconds: asyncio.sleep(0),
            on_success=lambda event: events.append(event.name),
        ):
            with attempt:
                if attempt.number == 1:
                    raise _unavailable()
                return "answer"
        raise AssertionError("unreachable")  # pragma: no cover

    assert asyncio.run(ask()) == "answer"
    assert stats(_BUDGETED, store=store).budget_level == 20
    assert events == ["retry.succeeded"]


# -- cancelled while a failure's store step is awaited ----------------------------------------


class _StalledStore(InProcessStore):
    """A shared store whose budget step, awaited, never ends: the caller is cancelled in it
    (a Redis round trip under an ``asyncio.timeout``)."""

    shared = True

    def __init__(self) -> None:
        super().__init__()
        self.stalled = asyncio.Event()

    def local_budgets(self) -> None:  # type: ignore[override] # shared: no in-place buckets
        return None

    async def abudget(self, *args: Any) -> Any:
        self.stalled.set()
        await asyncio.Event().wait()  # never answers: cancelled


def _spying_httpx(seen: list[Any]) -> Any:
    """An httpx transport that keeps every response it hands out."""
    import httpx  # noqa: PLC0415 - an adapter's test

    class Spy(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await super().handle_async_request(request)
            seen.append(response)
            return response

    return Spy()


async def _stalled_httpx_async(store: Any, url: str, seen: list[Any]) -> None:
    import httpx  # noqa: PLC0415

    from retrypolicy_httpx import AsyncRetryTransport  # noqa: PLC0415

    transport = AsyncRetryTransport(_BUDGETED, store=store, transport=_spying_httpx(seen))
    async with httpx.AsyncClient(transport=transport) as client:
        with _seen_as_it_leaves(seen):
            await client.post(url, json={"input": "hi"})


async def _stalled_aiohttp(store: Any, url: str, seen: list[Any]) -> None:
    import aiohttp  # noqa: PLC0415

    from retrypolicy_aiohttp import RetryMiddleware  # noqa: PLC0415

    async def spy(request: Any, handler: Any) -> Any:
        response = await handler(request)
        seen.append(response)
        return response

    middlewares = (RetryMiddleware(_BUDGETED, store=store), spy)
    async with aiohttp.ClientSession(middlewares=middlewares) as session:
        with _seen_as_it_leaves(seen):
            await session.post(url, json={"input": "hi"})


async def _stalled_decorator(store: Any, url: str, seen: list[Any]) -> None:
    import httpx  # noqa: PLC0415

    async with httpx.AsyncClient() as client:

        @rp.retry(_BUDGETED, store=store)
        async def post() -> httpx.Response:
            request = client.build_request("POST", url, json={"input": "hi"})
            response = await client.send(request, stream=True)  # its body is still to read
            seen.append(response)
            return response

        with _seen_as_it_leaves(seen):
            await post()


async def _stalled_attempts(store: Any, url: str, seen: list[Any]) -> None:
    import httpx  # noqa: PLC0415

    async with httpx.AsyncClient() as client:
        with _seen_as_it_leaves(seen):
            async for attempt in rp.attempts(_BUDGETED, store=store):
                with attempt:
                    request = client.build_request("POST", url, json={"input": "hi"})
                    seen.append(attempt.check(await client.send(request, stream=True)))


@contextlib.contextmanager
def _seen_as_it_leaves(seen: list[Any]) -> Iterator[None]:
    """Replace each response in *seen* by whether it was closed as the call ended, before
    the client closes its pool (which would close every response, released or not)."""
    try:
        yield
    finally:
        seen[:] = [r.is_closed if hasattr(r, "is_closed") else r.closed for r in seen]


@pytest.mark.parametrize(
    "path",
    [_stalled_httpx_async, _stalled_aiohttp, _stalled_decorator, _stalled_attempts],
    ids=["httpx-async", "aiohttp", "decorator", "attempts"],
)
def test_a_call_cancelled_in_a_failures_store_step_releases_the_response(path: Any) -> None:
    """An async call path cancelled while it awaits the store step that decides on a 503
    (the budget paying for the retry, in Redis): the 503 response goes nowhere, so it is
    released there and then — its connection back to the pool — not left to the garbage
    collector. The 503 is a load balancer's page, larger than the prefix a transport reads
    of an error body: its connection is not free until the response is released."""
    store = _StalledStore()
    seen: list[Any] = []
    with FakeEUGPT() as fake:
        fake.script(Reply.text(503, "<p>busy</p>" * 20_000), Reply.ok())

        async def main() -> None:
            task = asyncio.ensure_future(path(store, fake.responses_url, seen))
            await store.stalled.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert fake.request_count == 1
    assert seen == [True]


class _InterruptedStore(InProcessStore):
    """A shared store whose budget step is interrupted (Ctrl-C during a Redis round trip)."""

    shared = True

    def local_budgets(self) -> None:  # type: ignore[override] # shared: no in-place buckets
        return None

    def budget(self, *args: Any) -> Any:
        raise KeyboardInterrupt


@pytest.mark.parametrize("is_async", [False, True], ids=["run", "arun"])
def test_the_seams_loop_interrupted_in_a_failures_store_step_releases_the_response(
    is_async: bool,
) -> None:
    """``AttemptLoop.run``/``arun`` (the loop of an adapter whose attempt is one function)
    stopped in the store step that decides on a failed response: the response is released,
    as one retried past is."""
    from retrypolicy.transport import AdapterOptions, Exchange, Outcome  # noqa: PLC0415

    released: list[str] = []
    store = _InterruptedStore()
    loop = AdapterOptions(policy=_BUDGETED, store=store).loop("POST")

    def attempt() -> Exchange:
        return Exchange("503", Outcome(status=503), close=lambda: released.append("closed"))

    async def aattempt() -> Exchange:
        return attempt()

    with pytest.raises(KeyboardInterrupt):
        if is_async:
            store.abudget = store.budget  # type: ignore[assignment,method-assign] # sync twin
            asyncio.run(loop.arun(aattempt))
        else:
            loop.run(attempt)
    assert released == ["closed"]
