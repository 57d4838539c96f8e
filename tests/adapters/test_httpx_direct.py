"""The transports' fast path: a first attempt sent before any attempt loop exists.

Without a limiter, a breaker or a ``before_attempt`` hook, a transport sends the
first attempt itself and settles a plain success on the spot; everything else
is handed to the loop afterwards. These tests hold that the shortcut changes
nothing a caller or storm protection can see: it is taken (no loop for a plain
success), storm news still arrives, event streams are still checked, and a
retry after it counts the first attempt from its real start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Literal

import httpx
import pytest

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.transport import AdapterOptions, AttemptLoop, is_event_stream
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
from retrypolicy_httpx._core import _listed_type, _lists, _raw_type

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
URL = "http://api.invalid/v1/responses"
JSON = {"Content-Type": "application/json"}
SSE = {"Content-Type": "text/event-stream"}


def _frame(event: str) -> str:
    return f"event: message\ndata: {event}\n\n"


GOOD_STREAM = _frame(
    '{"type":"response.output_text.delta","sequence_number":0,"delta":"Hi"}'
) + _frame('{"type":"response.completed","sequence_number":1,"response":{"id":"r"}}')
ERROR_FIRST = _frame('{"type":"error","code":"upstream_error","message":"boom"}')


@pytest.fixture(autouse=True)
def _no_waits(instant: rp.testing.Instant) -> rp.testing.Instant:
    """No test in this module ever sleeps: every retry wait is recorded instead."""
    return instant


def scripted(*replies: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler answering *replies* in turn (the last one from then on)."""
    queue = list(replies)

    def answer(request: httpx.Request) -> httpx.Response:
        request.read()
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return answer


def post(
    mode: Mode, handler: Callable[[httpx.Request], httpx.Response], **options: Any
) -> httpx.Response:
    """POST once through a Retry(Async)Transport over MockTransport(*handler*), body read."""
    if mode == "sync":
        with httpx.Client(
            transport=RetryTransport(transport=httpx.MockTransport(handler), **options)
        ) as c:
            return c.post(URL, json={"input": "hi"})

    async def main() -> httpx.Response:
        inner = httpx.MockTransport(handler)
        async with httpx.AsyncClient(
            transport=AsyncRetryTransport(transport=inner, **options)
        ) as c:
            return await c.post(URL, json={"input": "hi"})

    return asyncio.run(main())


@pytest.fixture
def loops(monkeypatch: pytest.MonkeyPatch) -> list[AttemptLoop]:
    """Every attempt loop the options build during the test."""
    built: list[AttemptLoop] = []
    original = AdapterOptions.loop

    def spy(self: AdapterOptions, *args: Any, **kwargs: Any) -> AttemptLoop:
        loop = original(self, *args, **kwargs)
        built.append(loop)
        return loop

    monkeypatch.setattr(AdapterOptions, "loop", spy)
    return built


# --------------------------------------------------------------------------- taken or not


@pytest.mark.parametrize("mode", MODES)
def test_a_first_try_success_builds_no_loop(mode: Mode, loops: list[AttemptLoop]) -> None:
    """A plain success is settled without a loop, and marked as the loop marks it."""
    response = post(mode, scripted(httpx.Response(200, json={"ok": True}, headers=JSON)))
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert response.extensions["retrypolicy.attempts"] == 1
    assert getattr(response, "retry_attempts", None) == 1
    assert loops == []


@pytest.mark.parametrize("mode", MODES)
def test_before_attempt_keeps_the_loop_from_the_start(mode: Mode, loops: list[AttemptLoop]) -> None:
    """With a before_attempt hook the first attempt is announced: the loop does that."""
    seen: list[RetryEvent] = []
    response = post(mode, scripted(httpx.Response(200, headers=JSON)), before_attempt=seen.append)
    assert response.status_code == 200
    assert [e.attempt for e in seen] == [1]
    assert len(loops) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_goes_on_in_a_loop_that_counted_the_first_attempt(
    mode: Mode, loops: list[AttemptLoop]
) -> None:
    """503 then 200: one loop, built after the first attempt, which it counts."""
    retries: list[RetryEvent] = []
    handler = scripted(httpx.Response(503), httpx.Response(200, headers=JSON))
    response = post(mode, handler, on_retry=retries.append)
    assert response.status_code == 200
    assert response.extensions["retrypolicy.attempts"] == 2
    assert [(e.attempt, e.status) for e in retries] == [(1, 503)]
    assert len(loops) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_retry_counts_the_first_attempt_from_its_start(mode: Mode) -> None:
    """The loop built after the first attempt starts when that attempt did: the time it
    took counts towards the request's elapsed time (and the policy's deadline)."""
    now = [100.0]
    replies = [httpx.Response(503), httpx.Response(200, headers=JSON)]

    def slow(request: httpx.Request) -> httpx.Response:
        now[0] += 5.0  # each attempt takes five seconds of the transport's clock
        return replies.pop(0)

    retries: list[RetryEvent] = []
    response = post(mode, slow, clock=lambda: now[0], on_retry=retries.append)
    assert response.status_code == 200
    assert [e.elapsed for e in retries] == [pytest.approx(5.0)]


# --------------------------------------------------------------------------- storm news


DRAINED = rp.EUGPT.evolve(name="direct-drained", budget=rp.RetryBudget(capacity=20, refill_rate=0))


def _drain(mode: Mode) -> float:
    """Spend DRAINED's budget on a request that keeps failing; its level afterwards."""
    post(mode, scripted(httpx.Response(503)), policy=DRAINED)
    level = DRAINED.stats().budget_level
    assert level is not None
    assert level < 20
    return level


@pytest.mark.parametrize("mode", MODES)
def test_a_first_try_success_refunds_a_drained_budget(mode: Mode, loops: list[AttemptLoop]) -> None:
    """Storm news still arrives on the fast path: the budget's refund of a success."""
    level = _drain(mode)
    loops.clear()
    assert post(mode, scripted(httpx.Response(200, headers=JSON)), policy=DRAINED).is_success
    assert loops == []  # the fast path, not the loop, gave the news
    refund = DRAINED.budget.success_refund if DRAINED.budget is not None else 0.0
    assert DRAINED.stats().budget_level == pytest.approx(level + refund)


@pytest.mark.parametrize("mode", MODES)
def test_a_request_outside_methods_refunds_nothing(mode: Mode) -> None:
    """A request the policy may not retry tells storm protection nothing, as in the loop."""
    level = _drain(mode)
    ok = post(mode, scripted(httpx.Response(200, headers=JSON)), policy=DRAINED, methods="GET")
    assert ok.is_success
    assert DRAINED.stats().budget_level == pytest.approx(level)


# --------------------------------------------------------------------------- event streams


@pytest.mark.parametrize("content_type", ["text/event-stream", "Text/Event-Stream; charset=utf-8"])
@pytest.mark.parametrize("mode", MODES)
def test_an_event_stream_is_still_checked(mode: Mode, content_type: str) -> None:
    """A 200 event stream whose first event is an error is retried, as the loop does,
    however its Content-Type is spelled."""
    headers = {"Content-Type": content_type}
    handler = scripted(
        httpx.Response(200, text=ERROR_FIRST, headers=headers),
        httpx.Response(200, text=GOOD_STREAM, headers=headers),
    )
    response = post(mode, handler)
    assert response.extensions["retrypolicy.attempts"] == 2
    assert response.text == GOOD_STREAM


@pytest.mark.parametrize(
    ("headers", "maybe"),
    [
        ({}, False),
        (JSON, False),
        (SSE, True),
        ({"content-type": "TEXT/EVENT-STREAM"}, True),
        ({"X-Note": "text/event-stream", "Content-Type": "text/plain"}, False),
        ([("Content-Type", "application/json"), ("Content-Type", "text/event-stream")], True),
        ([("Content-Type", "text/event-stream"), ("content-type", "application/json")], True),
        ([("Content-Type", "text/plain"), ("content-type", "application/json")], False),
    ],
)
def test_both_content_type_scans_agree(headers: Any, maybe: bool) -> None:
    """The scan of httpx's header list and the one through ``headers.raw`` give the same
    answer: a maybe whenever any Content-Type line names an event stream, so that the fast
    path never says no where the seam (which reads every line) may say yes."""
    response = httpx.Response(200, headers=headers)
    assert _listed_type(response) is maybe
    assert _raw_type(response) is maybe
    if is_event_stream(response.headers):
        assert maybe


def test_a_header_layout_other_than_httpxs_is_read_publicly() -> None:
    """The header list is read directly only where it has httpx's layout."""
    assert _lists(httpx)
    assert not _lists(SimpleNamespace(Headers=dict))  # type: ignore[arg-type]
