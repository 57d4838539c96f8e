"""@rp.retry: what it retries, what it hands back, and what it keeps of the function."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import requests

import retrypolicy as rp
from retrypolicy import Kind
from retrypolicy.instrumentation import RetryEvent

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))


class Resp:
    """A minimal response-like object: what the decorator duck-types on."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}
        self.closed = False

    def close(self) -> None:
        self.closed = True


def flaky(failures: list[BaseException | Resp], final: object = "ok") -> tuple[list[int], object]:
    """A function failing with each item in turn, then returning *final*; and its call log."""
    calls: list[int] = []
    items = list(failures)

    def fn() -> object:
        calls.append(1)
        if items:
            item = items.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        return final

    return calls, fn


def test_bare_decorator_retries_connection_errors(instant: rp.testing.Instant) -> None:
    """Bare @rp.retry uses EU GPT and retries a connection failure until it succeeds."""
    calls, fn = flaky([ConnectionRefusedError(), ConnectionRefusedError()])
    assert rp.retry(fn)() == "ok"
    assert len(calls) == 3
    assert len(instant.waits) == 2


def test_gives_up_reraising_the_same_exception(instant: rp.testing.Instant) -> None:
    """On give-up the last exception is re-raised unchanged: same object, no wrapper."""
    errors = [TimeoutError(f"t{i}") for i in range(5)]
    calls, fn = flaky(list(errors))
    with pytest.raises(TimeoutError) as info:
        rp.retry(FAST)(fn)()
    assert info.value is errors[2]  # timeout: 2 retries, so the third error surfaces
    assert len(calls) == 3
    assert instant.waits == [0.5, 1.0]
    assert info.value.__context__ is None  # the retry loop adds nothing to the chain


def test_non_retryable_exception_is_raised_at_once(instant: rp.testing.Instant) -> None:
    """An exception the policy does not know is raised after one call."""
    calls, fn = flaky([ValueError("bug")])
    with pytest.raises(ValueError, match="bug"):
        rp.retry(fn)()
    assert len(calls) == 1
    assert instant.waits == []


def test_returned_response_is_retried_and_discarded(instant: rp.testing.Instant) -> None:
    """A returned 503 is retried; the responses retried past are closed; a 200 ends it."""
    bad = [Resp(503), Resp(503)]
    _calls, fn = flaky(list(bad), final=Resp(200))
    result = rp.retry(FAST)(fn)()
    assert isinstance(result, Resp)
    assert result.status_code == 200
    assert [r.closed for r in bad] == [True, True]
    assert not result.closed
    assert instant.waits == [0.5, 1.0]


def test_give_up_returns_last_response(instant: rp.testing.Instant) -> None:
    """When the policy gives up on returned responses, the last one is returned, open."""
    responses = [Resp(500) for _ in range(5)]
    calls, fn = flaky(list(responses))
    result = rp.retry(FAST)(fn)()
    assert result is responses[2]  # 500: two retries
    assert not responses[2].closed
    assert len(calls) == 3


def test_non_retryable_response_is_returned_at_once(instant: rp.testing.Instant) -> None:
    """A returned 401 is handed back after one call: fix credentials, do not retry."""
    calls, fn = flaky([Resp(401)])
    assert rp.retry(fn)().status_code == 401  # type: ignore[attr-defined]
    assert len(calls) == 1


def test_retry_after_on_returned_response(instant: rp.testing.Instant) -> None:
    """A Retry-After header on a returned 429 sets the wait."""
    _calls, fn = flaky([Resp(429, {"Retry-After": "7"})], final=Resp(200))
    rp.retry(FAST)(fn)()
    assert instant.waits == [7.0]


def test_retry_after_above_cap_gives_up_now(instant: rp.testing.Instant) -> None:
    """A Retry-After above max_retry_after gives up at once instead of sleeping for hours."""
    _calls, fn = flaky([Resp(429, {"Retry-After": "86400"})], final=Resp(200))
    assert rp.retry(FAST)(fn)().status_code == 429  # type: ignore[attr-defined]
    assert instant.waits == []


def test_requests_http_error_is_classified_by_status(instant: rp.testing.Instant) -> None:
    """A requests HTTPError from raise_for_status is classified by its response's status."""
    response = requests.Response()
    response.status_code = 503
    response._content = b'{"detail": "overloaded"}'
    calls, fn = flaky([requests.HTTPError(response=response)] * 10)
    with pytest.raises(requests.HTTPError):
        rp.retry(FAST)(fn)()
    assert len(calls) == 6  # 503: five retries


def test_requests_http_error_404_not_retried(instant: rp.testing.Instant) -> None:
    """requests' HTTPError subclasses OSError, yet a 404 is not a connection failure."""
    response = requests.Response()
    response.status_code = 404
    calls, fn = flaky([requests.HTTPError(response=response)])
    with pytest.raises(requests.HTTPError):
        rp.retry(fn)()
    assert len(calls) == 1


def test_httpx_status_error_reads_the_code(
    instant: rp.testing.Instant, events: list[RetryEvent]
) -> None:
    """An httpx HTTPStatusError is classified by status; its in-memory body gives the code."""
    request = httpx.Request("POST", "http://127.0.0.1/v1/responses")
    response = httpx.Response(
        403,
        json={"detail": "Project membership required", "error": "project_forbidden"},
        request=request,
    )
    calls, fn = flaky([httpx.HTTPStatusError("forbidden", request=request, response=response)])
    with pytest.raises(httpx.HTTPStatusError):
        rp.retry(fn)()
    assert len(calls) == 1
    assert events[-1].code == "project_forbidden"
    assert events[-1].kind == Kind.PERMISSION


@pytest.mark.parametrize(
    ("exc", "calls_made"),
    [
        (requests.ConnectionError("refused"), 6),
        (requests.ConnectTimeout("connect timed out"), 6),
        (requests.ReadTimeout("read timed out"), 3),
        (requests.exceptions.InvalidURL("bad url"), 1),
        (httpx.ConnectError("refused"), 6),
        (httpx.ReadTimeout("slow"), 3),
        (httpx.RemoteProtocolError("peer closed"), 3),
        (httpx.UnsupportedProtocol("ftp://"), 1),
    ],
)
def test_transport_exceptions_without_an_adapter(
    instant: rp.testing.Instant, exc: BaseException, calls_made: int
) -> None:
    """requests and httpx exceptions are classified without importing an adapter."""
    calls, fn = flaky([exc] * 10)
    with pytest.raises(type(exc)):
        rp.retry(FAST)(fn)()
    assert len(calls) == calls_made


@pytest.mark.parametrize(
    ("error", "calls_made"),
    [
        (rp.StreamError("cut", status=200, kind=Kind.INCOMPLETE_STREAM), 3),
        (rp.StreamError("late", status=200, code="upstream_error", kind=Kind.UPSTREAM_ERROR), 4),
        (rp.StreamError("gone", status=200, code="cancelled", kind=Kind.CANCELLED), 1),
        (rp.APIConnectionError("refused", kind=Kind.CONNECTION), 6),
        (rp.APITimeoutError("slow", kind=Kind.TIMEOUT), 3),
    ],
)
def test_api_errors_by_kind(
    instant: rp.testing.Instant, error: rp.APIError, calls_made: int
) -> None:
    """Our own errors are retried by their kind: a cut stream (status 200, no code) included."""
    calls, fn = flaky([error] * 10)
    with pytest.raises(type(error)):
        rp.retry(FAST)(fn)()
    assert len(calls) == calls_made


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_never_retried(exc: BaseException) -> None:
    """KeyboardInterrupt, SystemExit and GeneratorExit pass straight through."""
    calls, fn = flaky([exc])
    with pytest.raises(type(exc)):
        rp.retry(fn)()
    assert len(calls) == 1


def test_async_cancelled_never_retried() -> None:
    """asyncio.CancelledError is never retried."""
    calls: list[int] = []

    @rp.retry
    async def fn() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(fn())
    assert len(calls) == 1


def test_async_function(instant: rp.testing.Instant) -> None:
    """Coroutines are retried the same way, and stay coroutine functions."""
    calls: list[int] = []

    @rp.retry(FAST)
    async def fetch(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionRefusedError
        return x + 1

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(1)) == 2
    assert instant.waits == [0.5, 1.0]


def test_async_sleep_injected() -> None:
    """Outside instant mode the async driver awaits the injected sleeper, never a zero wait."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none", initial=0.0))
    _calls, fn = flaky([ConnectionRefusedError()] * 2 + [TimeoutError()])

    async def afn() -> object:
        return fn()

    wrapped = rp.retry(policy, async_sleep=fake_sleep)(afn)
    assert asyncio.run(wrapped()) == "ok"
    assert slept == []  # zero waits never call sleep

    policy = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))
    _calls, fn = flaky([ConnectionRefusedError()] * 2)
    wrapped = rp.retry(policy, async_sleep=fake_sleep)(afn)
    assert asyncio.run(wrapped()) == "ok"
    assert slept == [0.5, 1.0]


def test_sync_sleep_and_clock_injected() -> None:
    """The sync driver sleeps with the injected sleeper and measures with the injected clock."""
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    policy = FAST.evolve(deadline=2.0)
    _calls, fn = flaky([ConnectionRefusedError()] * 10)
    wrapped = rp.retry(policy, clock=lambda: now[0], sleep=sleep)(fn)
    with pytest.raises(ConnectionRefusedError):
        wrapped()
    assert slept == [0.5, 1.0]  # the 2 s wait would pass the 2 s deadline


def test_keeps_name_doc_and_signature() -> None:
    """The decorated function keeps its name, docstring and signature."""

    @rp.retry
    def create(model: str, *, stream: bool = True) -> str:
        """Create a response."""
        return model

    assert create.__name__ == "create"
    assert create.__doc__ == "Create a response."
    assert str(inspect.signature(create)) == "(model: 'str', *, stream: 'bool' = True) -> 'str'"


def test_methods(instant: rp.testing.Instant) -> None:
    """Instance methods, classmethods and staticmethods are retried with their binding intact."""

    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @rp.retry
        def method(self, x: int) -> tuple[object, int]:
            self.calls += 1
            if self.calls < 2:
                raise ConnectionRefusedError
            return self, x

        @rp.retry
        @classmethod
        def cm(cls, x: int) -> tuple[object, int]:
            return cls, x

        @rp.retry
        @staticmethod
        def sm(x: int) -> int:
            return x

    c = Client()
    assert c.method(1) == (c, 1)
    assert c.calls == 2
    assert Client.cm(2) == (Client, 2)
    assert c.cm(3) == (Client, 3)
    assert Client.sm(4) == 4
    assert c.sm(5) == 5


def test_any_callable_decorated_directly_is_called_as_itself(instant: rp.testing.Instant) -> None:
    """The wrapper's direct call goes straight to the retry loop (no bound-method probe):
    a bound method, a callable object, a partial and a class, each wrapped as it is, are
    called with their own binding, retried, and keep their introspection."""

    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def fetch(self, x: int) -> tuple[object, int]:
            self.calls += 1
            if self.calls % 2:
                raise ConnectionRefusedError
            return self, x

        def __call__(self, x: int) -> int:
            return self.fetch(x)[1]

    flaky = Flaky()
    bound = rp.retry(flaky.fetch)
    assert bound(1) == (flaky, 1)
    assert bound.__name__ == "fetch"
    assert bound.__self__ is flaky  # the proxy shows the bound method's own binding
    assert rp.retry(flaky)(2) == 2
    assert rp.retry(functools.partial(flaky.fetch, 3))() == (flaky, 3)
    assert flaky.calls == 6  # each of the three failed once, then succeeded

    made = [0]

    class Made:
        def __init__(self, x: int) -> None:
            made[0] += 1
            if made[0] == 1:
                raise ConnectionRefusedError
            self.x = x

    assert rp.retry(Made)(4).x == 4
    assert made[0] == 2


def test_policy_retry_method(instant: rp.testing.Instant) -> None:
    """policy.retry(fn) and policy.retry(on_retry=...)(fn) decorate like rp.retry(policy)."""
    seen: list[RetryEvent] = []
    _calls, fn = flaky([ConnectionRefusedError()])
    assert FAST.retry(fn)() == "ok"
    _calls, fn = flaky([ConnectionRefusedError()])
    assert FAST.retry(on_retry=seen.append)(fn)() == "ok"
    assert [e.name for e in seen] == ["retry.scheduled"]


def test_bad_policy_argument() -> None:
    """Passing something that is not a policy fails at decoration, naming what was expected."""
    with pytest.raises(TypeError, match=r"expected a retrypolicy\.Policy"):
        rp.retry("eugpt")  # type: ignore[call-overload]


def test_shared_across_32_threads(instant: rp.testing.Instant) -> None:
    """One decorated function called from 32 threads at once: each call keeps its own state."""
    local = threading.local()
    results: list[tuple[int, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(32)

    @rp.retry(FAST)
    def work(i: int) -> tuple[int, int]:
        n = getattr(local, "n", 0) + 1
        local.n = n
        if n <= i % 4:  # thread i fails i % 4 times, within the timeout/connection limits
            raise ConnectionRefusedError
        return i, n

    def run(i: int) -> None:
        barrier.wait()
        r = work(i)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [(i, i % 4 + 1) for i in range(32)]
    assert len(instant.waits) == sum(i % 4 for i in range(32))


def test_returned_urllib3_response_by_status(instant: rp.testing.Instant) -> None:
    """A returned object with an int `status` (urllib3's HTTPResponse) is judged by it."""
    import urllib3  # noqa: PLC0415 - only this test needs it

    replies = [
        urllib3.HTTPResponse(body=b'{"detail": "overloaded"}', status=503, preload_content=True),
        urllib3.HTTPResponse(body=b"{}", status=200, preload_content=True),
    ]
    calls, fn = flaky(list(replies))
    assert rp.retry(FAST)(fn)() is replies[1]
    assert len(calls) == 2
    assert instant.waits == [0.5]


def test_set_instant_without_a_block() -> None:
    """set_instant(True) turns instant mode on until set_instant(False), recording waits."""
    recorder = rp.testing.set_instant(True)
    try:
        _calls, fn = flaky([ConnectionRefusedError()])
        assert rp.retry(FAST)(fn)() == "ok"
    finally:
        assert rp.testing.set_instant(False) is None
    assert recorder is not None
    assert recorder.waits == [0.5]


def test_unknown_option_is_refused() -> None:
    """A misspelt option fails at decoration, naming it and the options there are."""
    with pytest.raises(TypeError, match=r"on_retyr.*expected some of on_retry"):
        rp.retry(FAST, on_retyr=print)  # type: ignore[call-overload]


class _Feed:
    """A class with generator methods of every flavour."""

    def items(self) -> Iterator[int]:
        yield 1

    async def aitems(self) -> AsyncIterator[int]:
        yield 1

    @staticmethod
    def static_items() -> Iterator[int]:
        yield 1

    @classmethod
    def class_items(cls) -> Iterator[int]:
        yield 1


def _gen() -> Iterator[int]:
    yield 1


async def _agen() -> AsyncIterator[int]:
    yield 1


GENERATORS = [
    pytest.param(_gen, "a generator", id="sync generator"),
    pytest.param(_agen, "an async generator", id="async generator"),
    pytest.param(_Feed.items, "a generator", id="generator method"),
    pytest.param(_Feed.aitems, "an async generator", id="async generator method"),
    pytest.param(_Feed.__dict__["static_items"], "a generator", id="staticmethod generator"),
    pytest.param(_Feed.__dict__["class_items"], "a generator", id="classmethod generator"),
]

HOW = [
    pytest.param(rp.retry, id="@rp.retry"),
    pytest.param(rp.retry(FAST), id="@rp.retry(policy)"),
    pytest.param(FAST.retry, id="@policy.retry"),
    pytest.param(FAST.retry(on_retry=print), id="@policy.retry(hooks)"),
]


@pytest.mark.parametrize("decorate", HOW)
@pytest.mark.parametrize(("fn", "kind"), GENERATORS)
def test_generator_functions_are_refused(
    fn: Callable[..., object], kind: str, decorate: Callable[[Callable[..., object]], object]
) -> None:
    """Decorating a generator or async-generator function (or method) fails at decoration
    with a TypeError pointing to rp.attempts(): a retry would repeat what it yielded."""
    with pytest.raises(TypeError, match=r"rp\.attempts\(\)") as info:
        decorate(fn)
    assert f"{kind} function" in str(info.value)
    assert "repeat" in str(info.value)


def test_generator_method_refused_in_class_body() -> None:
    """The refusal happens when the class body runs, not at the first call."""
    with pytest.raises(TypeError, match="generator"):

        class _Bad:
            @rp.retry
            def rows(self) -> Iterator[int]:
                yield 1


def test_functions_returning_iterators_are_fine(instant: rp.testing.Instant) -> None:
    """A plain function that returns a list or an iterator is decorated as usual."""
    assert rp.retry(lambda: iter([1, 2]))() is not None
    assert rp.retry(lambda: [1, 2])() == [1, 2]


class AsyncResp(Resp):
    """An async response: released with ``await aclose()``, as httpx's async responses are."""

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.aclosed = False

    async def aclose(self) -> None:
        self.aclosed = True


def test_async_returned_responses_are_released_with_aclose(instant: rp.testing.Instant) -> None:
    """An async function's retried-past responses are released by awaiting aclose(), before
    the wait; the final one is handed back open."""
    bad = [AsyncResp(503), AsyncResp(503)]
    final = AsyncResp(200)
    items: list[AsyncResp] = [*bad, final]

    @rp.retry(FAST)
    async def fetch() -> AsyncResp:
        return items.pop(0)

    assert asyncio.run(fetch()) is final
    assert [r.aclosed for r in bad] == [True, True]
    assert not final.aclosed
    assert len(instant.waits) == 2


def _garbage_after(calls: Callable[[], None]) -> int:
    """Objects only the cycle collector could free, left by *calls*."""
    gc.collect()
    gc.disable()
    try:
        calls()
        return gc.collect()
    finally:
        gc.enable()


@pytest.mark.parametrize("budget", [None, rp.RetryBudget(capacity=1e15)], ids=["plain", "budget"])
def test_a_retried_call_leaves_nothing_for_the_garbage_collector(
    instant: rp.testing.Instant, budget: rp.RetryBudget | None
) -> None:
    """Retried failures are freed as the call returns — their tracebacks hold the
    interpreter's frame, which lets go of them — so a busy retrying service does not feed
    the cycle collector (which cost a fifth of a retried call). A call that gives up leaves
    only its own error's cycle."""
    policy = rp.EUGPT.evolve(budget=budget)

    def flaky_twice() -> Callable[[], str]:
        failures = iter(range(2))

        def fn() -> str:
            if next(failures, None) is not None:
                raise ConnectionRefusedError  # a fresh error: no cycle of the test's own
            return "ok"

        return fn

    def sync() -> None:
        for _ in range(50):
            assert rp.retry(policy)(flaky_twice())() == "ok"

    async def many() -> None:
        for _ in range(50):
            f = flaky_twice()

            async def afn(f: Callable[[], str] = f) -> str:
                return f()

            assert await rp.retry(policy)(afn)() == "ok"

    def loops() -> None:
        for _ in range(50):
            fn = flaky_twice()
            for attempt in rp.attempts(policy):
                with attempt:
                    fn()

    async def aloops() -> None:
        for _ in range(50):
            fn = flaky_twice()
            async for attempt in rp.attempts(policy):
                with attempt:
                    fn()

    assert _garbage_after(sync) == 0
    assert _garbage_after(loops) == 0
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(many())  # the loop's own first-run objects
        loop.run_until_complete(aloops())
        assert _garbage_after(lambda: loop.run_until_complete(many())) == 0
        assert _garbage_after(lambda: loop.run_until_complete(aloops())) == 0
    finally:
        loop.close()
