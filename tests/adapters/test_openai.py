"""retrypolicy_openai: the official openai SDK, retried by a policy, against the fake EU GPT.

Every exchange goes through the real SDK with its strict response validation on (every
body and stream event is validated against its pydantic models), over real HTTP/1.1 to
:class:`~retrypolicy.testing.FakeEUGPT` on 127.0.0.1, sync and async, streamed and not.
Retry waits are zeroed and recorded by instant mode, and a guard fails any test during
which anything sleeps for real.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai
import pytest

import retrypolicy as rp
import retrypolicy_openai as rpo
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_httpx.httpx2 import AsyncRetryTransport, RetryTransport

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none"))
TIMEOUT = 0.25  # the read timeout of the timeout rows: the fake answers after 2 s
KEY = "eugpt_test_key"
ATTEMPTS = "retrypolicy.attempts"
REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/responses")


@pytest.fixture(autouse=True)
def never_sleeps(instant: rp.testing.Instant, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Retry waits are recorded, not slept; any real sleep during a test fails it."""
    slept: list[float] = []
    real_asleep = asyncio.sleep

    def sleep(seconds: float) -> None:
        if seconds > 0:
            slept.append(seconds)

    async def asleep(seconds: float, result: Any = None) -> Any:
        if seconds > 0:
            slept.append(seconds)
        return await real_asleep(0, result)

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(asyncio, "sleep", asleep)
    yield
    assert slept == [], f"slept for real: {slept}"


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeEUGPT]:
    """One fake server for the module (each test gets it cleared)."""
    with FakeEUGPT() as srv:
        yield srv


@pytest.fixture
def server(shared_server: FakeEUGPT) -> Iterator[FakeEUGPT]:
    """The module's fake server, with an empty script and no recorded requests."""
    shared_server.clear()
    yield shared_server
    shared_server.clear()


def closed_port_url() -> str:
    """A base URL on which nothing listens: every connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def base(server: FakeEUGPT) -> str:
    return server.url + "/v1"


SDK_OPTIONS: dict[str, Any] = {
    "_strict_response_validation": True,
    "timeout": httpx2.Timeout(5.0, read=TIMEOUT),
}


# --------------------------------------------------------------------------- one exchange


@dataclass
class Caught:
    """What the caller ended with: the event types iterated, the text, or the exception."""

    events: list[str] = field(default_factory=list)
    text: str | None = None
    error: BaseException | None = None


def consume_sync(client: openai.OpenAI, *, stream: bool) -> Caught:
    caught = Caught()
    try:
        if stream:
            for event in client.responses.create(model="auto", input="hi", stream=True):
                caught.events.append(event.type)
        else:
            caught.text = client.responses.create(
                model="auto", input="hi", stream=False
            ).output_text
    except Exception as exc:  # noqa: BLE001 - the test looks at what the caller got
        caught.error = exc
    return caught


async def consume_async(client: openai.AsyncOpenAI, *, stream: bool) -> Caught:
    caught = Caught()
    try:
        if stream:
            events = await client.responses.create(model="auto", input="hi", stream=True)
            async for event in events:
                caught.events.append(event.type)
        else:
            response = await client.responses.create(model="auto", input="hi", stream=False)
            caught.text = response.output_text
    except Exception as exc:  # noqa: BLE001
        caught.error = exc
    return caught


def exchange(
    mode: Mode, url: str, *, stream: bool, policy: rp.Policy = FAST, **options: Any
) -> Caught:
    """One ``responses.create`` through a client from rpo.client / rpo.async_client."""
    options = {**SDK_OPTIONS, **options}
    if mode == "sync":
        with rpo.client(policy, base_url=url, api_key=KEY, **options) as client:
            return consume_sync(client, stream=stream)

    async def main() -> Caught:
        async with rpo.async_client(policy, base_url=url, api_key=KEY, **options) as client:
            return await consume_async(client, stream=stream)

    return asyncio.run(main())


# --------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class Row:
    """One line of DESIGN.md's table: the server's reply, the attempts, what the caller gets."""

    name: str
    reply: Reply | None  # None: nothing listens (connection refused)
    attempts: int
    kind: rp.Kind
    raised: type[BaseException]  # what the SDK user catches, by default
    status: int | None = None  # the status of our error (200 for a stream)
    code: str | None = None
    retry_after: float | None = None
    stream_only: bool = False  # a 200 event stream: only a streamed call reads it


def stream_row(name: str, reply: Reply, attempts: int, kind: rp.Kind) -> Row:
    code = kind.value if kind not in (rp.Kind.STREAM_ERROR, rp.Kind.INCOMPLETE_STREAM) else None
    return Row(name, reply, attempts, kind, rp.StreamError, 200, code, stream_only=True)


ROWS = [
    Row("400", Reply.error(400), 1, rp.Kind.INVALID_REQUEST, openai.BadRequestError, 400),
    Row("401", Reply.error(401), 1, rp.Kind.AUTHENTICATION, openai.AuthenticationError, 401),
    Row(
        "403 bare code",
        Reply.error(403, code="project_forbidden", bare=True),
        1,
        rp.Kind.PERMISSION,
        openai.PermissionDeniedError,
        403,
        "project_forbidden",
    ),
    Row("404", Reply.error(404), 1, rp.Kind.NOT_FOUND, openai.NotFoundError, 404, "not_found"),
    Row(
        "429 Retry-After",
        Reply.error(429, retry_after=1),
        7,
        rp.Kind.RATE_LIMITED,
        openai.RateLimitError,
        429,
        "rate_limit_exceeded",
        retry_after=1.0,
    ),
    Row("500", Reply.error(500), 3, rp.Kind.SERVER_ERROR, openai.InternalServerError, 500),
    Row(
        "500 plain text",
        Reply.text(500, "upstream connect error"),
        3,
        rp.Kind.SERVER_ERROR,
        openai.InternalServerError,
        500,
    ),
    Row("502", Reply.error(502), 6, rp.Kind.UNAVAILABLE, openai.InternalServerError, 502),
    Row("503", Reply.error(503), 6, rp.Kind.UNAVAILABLE, openai.InternalServerError, 503),
    Row("504", Reply.error(504), 6, rp.Kind.UNAVAILABLE, openai.InternalServerError, 504),
    Row("other 4xx", Reply.error(409), 1, rp.Kind.CLIENT_ERROR, openai.ConflictError, 409),
    Row("other 5xx", Reply.error(507), 3, rp.Kind.SERVER_ERROR, openai.InternalServerError, 507),
    Row("connect failure", None, 6, rp.Kind.CONNECTION, openai.APIConnectionError),
    Row("read timeout", Reply.ok(delay=2.0), 3, rp.Kind.TIMEOUT, openai.APITimeoutError),
    Row("reset after sending", Reply.reset(), 3, rp.Kind.TIMEOUT, openai.APIConnectionError),
    stream_row(
        "stream upstream_timeout",
        Reply.stream(0, end="error", code="upstream_timeout"),
        4,
        rp.Kind.UPSTREAM_TIMEOUT,
    ),
    stream_row(
        "stream upstream_error",
        Reply.stream(0, end="error", code="upstream_error"),
        4,
        rp.Kind.UPSTREAM_ERROR,
    ),
    stream_row(
        "stream internal_error",
        Reply.stream(0, end="error", code="internal_error"),
        2,
        rp.Kind.INTERNAL_ERROR,
    ),
    stream_row(
        "stream cancelled", Reply.stream(0, end="error", code="cancelled"), 1, rp.Kind.CANCELLED
    ),
    stream_row(
        "stream undocumented code",
        Reply.stream(0, end="error", code="model_on_fire"),
        1,
        rp.Kind.STREAM_ERROR,
    ),
    stream_row("stream incomplete", Reply.stream(0, end="cut"), 3, rp.Kind.INCOMPLETE_STREAM),
]

CASES = [
    pytest.param(mode, stream, row, id=f"{row.name}-{mode}-{'stream' if stream else 'json'}")
    for row in ROWS
    for mode in MODES
    for stream in (False, True)
    if stream or not row.stream_only
]


@pytest.mark.parametrize(("mode", "stream", "row"), CASES)
def test_contract_row(mode: Mode, stream: bool, row: Row, server: FakeEUGPT) -> None:
    """Each DESIGN.md row through the SDK: attempted as often as the policy says, the SDK's
    own exception (or our StreamError) reaches the caller, and api_error/classify give the
    row's kind, retryability, attempts, status and code; no error event is ever yielded."""
    starts: list[int] = []
    if row.reply is None:
        url = closed_port_url()
    else:
        server.script(*[row.reply] * 8)
        url = base(server)
    caught = exchange(mode, url, stream=stream, before_attempt=lambda e: starts.append(e.attempt))
    assert len(starts) == row.attempts
    if row.reply is not None:
        assert server.request_count == row.attempts
    exc = caught.error
    assert type(exc) is row.raised, repr(exc)
    assert "error" not in caught.events  # the guard raises in place of the error event
    error = rpo.api_error(exc, FAST)
    retryable = row.attempts > 1
    assert (error.kind, error.retryable, error.attempts) == (row.kind, retryable, row.attempts)
    assert (error.status, rpo.classify(exc, FAST).kind) == (row.status, row.kind)
    if row.code is not None:
        assert error.code == row.code
    if row.retry_after is not None:
        assert error.retry_after == row.retry_after
    if isinstance(exc, openai.APIStatusError):
        assert exc.status_code == row.status
        assert exc.response.extensions[ATTEMPTS] == row.attempts
        assert error.__cause__ is exc


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_retried_to_success(mode: Mode, stream: bool, server: FakeEUGPT) -> None:
    """503, then 429 with Retry-After, then a success: the caller gets the success, validated
    strictly, and the waits were the policy's (recorded, not slept)."""
    ok = Reply.stream(2) if stream else Reply.ok("third time lucky")
    server.script(Reply.error(503), Reply.error(429, retry_after=2), ok)
    with rp.testing.instant() as waits:
        caught = exchange(mode, base(server), stream=stream)
    assert caught.error is None
    if stream:
        assert caught.events[0] == "response.created"
        assert caught.events[-1] == "response.completed"
    else:
        assert caught.text == "third time lucky"
    assert server.request_count == 3
    assert len(waits.waits) == 2
    assert waits.waits[1] >= 2.0  # Retry-After honoured


def test_attempts_extension_on_success(server: FakeEUGPT) -> None:
    """The raw HTTP response of a success says how many attempts it took."""
    server.script(Reply.error(502), Reply.ok())
    with rpo.client(FAST, base_url=base(server), api_key=KEY, **SDK_OPTIONS) as client:
        raw = client.responses.with_raw_response.create(model="auto", input="hi", stream=False)
        assert raw.http_response.extensions[ATTEMPTS] == 2
        assert raw.parse().output_text == "Hello from FakeEUGPT."


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize("mode", MODES)
def test_error_after_content_raises_stream_error(mode: Mode, server: FakeEUGPT) -> None:
    """An error event after content surfaces as rp.StreamError while iterating, in place of
    the error event (the SDK never yields it), classified, with the attempts behind it."""
    server.script(Reply.error(503), Reply.stream(2, end="error", code="upstream_error"))
    caught = exchange(mode, base(server), stream=True)
    assert caught.events == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
    ]
    error = caught.error
    assert isinstance(error, rp.StreamError), repr(error)
    assert (error.code, error.kind, error.retryable) == ("upstream_error", "upstream_error", True)
    assert error.attempts == 2
    assert server.request_count == 2  # committed: the transport does not retry it


@pytest.mark.parametrize("mode", MODES)
def test_cut_after_content_raises_stream_error(mode: Mode, server: FakeEUGPT) -> None:
    """A connection lost after content is an incomplete stream (StreamError), not the SDK's
    APIConnectionError: the guard judges it before the SDK sees the httpx2 error."""
    server.script(Reply.stream(2, end="reset"))
    caught = exchange(mode, base(server), stream=True)
    assert caught.events[-1] == "response.output_text.delta"
    assert isinstance(caught.error, rp.StreamError), repr(caught.error)
    assert caught.error.kind == rp.Kind.INCOMPLETE_STREAM


def test_stream_helper_needs_output_item_events(server: FakeEUGPT) -> None:
    """The SDK's responses.stream() helper needs response.output_item.added, which EU GPT
    does not send: it fails on the first delta (docs/openai.md says so; use create)."""
    server.script(Reply.stream(2))
    with rpo.client(FAST, base_url=base(server), api_key=KEY, **SDK_OPTIONS) as client:
        stream = client.responses.stream(model="auto", input="hi")
        with stream as events, pytest.raises(RuntimeError, match="output item"):
            for _ in events:
                pass


def test_stream_false_must_be_explicit(server: FakeEUGPT) -> None:
    """EU GPT streams unless told otherwise and the SDK omits an unset stream: without
    stream=False the answer is an event stream, which strict validation refuses."""
    with rpo.client(FAST, base_url=base(server), api_key=KEY, **SDK_OPTIONS) as client:
        with pytest.raises(openai.APIResponseValidationError, match="text/event-stream"):
            client.responses.create(model="auto", input="hi")
        assert "stream" not in server.requests[0].json
        assert client.responses.create(model="auto", input="hi", stream=False).output_text
        assert server.requests[1].json["stream"] is False


# --------------------------------------------------------------------------- raise_on_give_up


@pytest.mark.parametrize("mode", MODES)
def test_raise_on_give_up_lets_our_errors_through_the_sdk(mode: Mode, server: FakeEUGPT) -> None:
    """With raise_on_give_up=True our error reaches the caller unchanged: the SDK wraps only
    httpx2's errors, not an rp.APIError (nor turns it into an APIConnectionError)."""
    server.script(*[Reply.error(429, retry_after=1)] * 7)
    caught = exchange(mode, base(server), stream=False, raise_on_give_up=True)
    error = caught.error
    assert type(error) is rp.RateLimitError, repr(error)
    assert (error.attempts, error.retry_after, error.code) == (7, 1.0, "rate_limit_exceeded")
    assert rpo.api_error(error) is error


@pytest.mark.parametrize("mode", MODES)
def test_raise_on_give_up_stream_failing_before_content(mode: Mode, server: FakeEUGPT) -> None:
    """A stream that failed before content on every attempt raises our StreamError at once."""
    server.script(*[Reply.stream(0, end="error", code="upstream_timeout")] * 4)
    caught = exchange(mode, base(server), stream=True, raise_on_give_up=True)
    assert caught.events == []
    assert isinstance(caught.error, rp.StreamError)
    assert (caught.error.kind, caught.error.attempts) == (rp.Kind.UPSTREAM_TIMEOUT, 4)


@pytest.mark.parametrize("mode", MODES)
def test_raise_on_give_up_transport_failures_stay_sdk_errors(mode: Mode) -> None:
    """A connection failure is httpx2's error, re-raised unchanged by the transport, so the
    SDK wraps it as ever (APIConnectionError); api_error gives ours with the attempts."""
    caught = exchange(mode, closed_port_url(), stream=False, raise_on_give_up=True)
    assert type(caught.error) is openai.APIConnectionError
    error = rpo.api_error(caught.error, FAST)
    assert type(error) is rp.APIConnectionError
    assert (error.kind, error.attempts) == (rp.Kind.CONNECTION, 6)


# --------------------------------------------------------------------------- layering


@pytest.mark.parametrize("mode", MODES)
def test_layered_status_errors_add_up(mode: Mode, server: FakeEUGPT) -> None:
    """@rp.retry around an SDK call whose transport gave up on 503s: 6 requests, not 36."""
    server.script(*[Reply.error(503)] * 50)
    outer: list[int] = []

    if mode == "sync":

        @rp.retry(FAST, before_attempt=lambda e: outer.append(e.attempt))
        def ask() -> str:
            with rpo.client(FAST, base_url=base(server), api_key=KEY, **SDK_OPTIONS) as c:
                return c.responses.create(model="auto", input="hi", stream=False).output_text

        with pytest.raises(openai.InternalServerError):
            ask()
    else:

        @rp.retry(FAST, before_attempt=lambda e: outer.append(e.attempt))
        async def aask() -> str:
            async with rpo.async_client(
                FAST, base_url=base(server), api_key=KEY, **SDK_OPTIONS
            ) as c:
                return (
                    await c.responses.create(model="auto", input="hi", stream=False)
                ).output_text

        with pytest.raises(openai.InternalServerError):
            asyncio.run(aask())
    assert (server.request_count, outer) == (6, [1])


@pytest.mark.parametrize(
    ("reply", "attempts", "raised"),
    [
        (None, 6, openai.APIConnectionError),
        (Reply.ok(delay=2.0), 3, openai.APITimeoutError),
        (Reply.error(429), 7, openai.RateLimitError),
    ],
    ids=["connect", "timeout", "429"],
)
def test_layered_transport_failures_add_up(
    reply: Reply | None, attempts: int, raised: type[Exception], server: FakeEUGPT
) -> None:
    """A connection, timeout or 429 the transport retried to the end, wrapped by the SDK,
    is not retried again by @rp.retry around the call."""
    url = closed_port_url() if reply is None else base(server)
    if reply is not None:
        server.script(*[reply] * 50)
    starts: list[int] = []
    client = rpo.client(
        FAST,
        base_url=url,
        api_key=KEY,
        before_attempt=lambda e: starts.append(e.attempt),
        **SDK_OPTIONS,
    )

    @rp.retry(FAST)
    def ask() -> str:
        return client.responses.create(model="auto", input="hi", stream=False).output_text

    with client, pytest.raises(raised):
        ask()
    assert len(starts) == attempts


@pytest.mark.parametrize("mode", MODES)
def test_late_stream_error_restarts_the_exchange_once(mode: Mode, server: FakeEUGPT) -> None:
    """3 transport attempts (503, 503, a stream that fails after content), then the outer
    @rp.retry restarts the exchange once: 4 requests in all, the sum, never a product."""
    server.script(
        Reply.error(503),
        Reply.error(503),
        Reply.stream(2, end="error", code="upstream_error"),
        Reply.stream(3),
    )
    seen: list[BaseException | None] = []

    def keep(event: RetryEvent) -> None:
        seen.append(event.outcome.exception if event.outcome is not None else None)

    if mode == "sync":
        client = rpo.client(FAST, base_url=base(server), api_key=KEY, **SDK_OPTIONS)

        @rp.retry(FAST, on_retry=keep)
        def answer() -> str:
            text = []
            for event in client.responses.create(model="auto", input="hi", stream=True):
                if event.type == "response.output_text.delta":
                    text.append(event.delta)
            return "".join(text)

        with client:
            result = answer()
    else:

        @rp.retry(FAST, on_retry=keep)
        async def aanswer() -> str:
            text = []
            async with rpo.async_client(
                FAST, base_url=base(server), api_key=KEY, **SDK_OPTIONS
            ) as c:
                async for event in await c.responses.create(model="auto", input="hi", stream=True):
                    if event.type == "response.output_text.delta":
                        text.append(event.delta)
            return "".join(text)

        result = asyncio.run(aanswer())
    assert result == "chunk 0. chunk 1. chunk 2. "
    assert server.request_count == 4
    [late] = seen
    assert isinstance(late, rp.StreamError)
    assert late.attempts == 3


@pytest.mark.parametrize(
    ("reply", "calls"),
    [
        (None, 6),
        (Reply.ok(delay=2.0), 3),
        (Reply.error(503), 6),
        (Reply.error(403, code="project_forbidden", bare=True), 1),
    ],
    ids=["connect", "timeout", "503", "403"],
)
def test_retry_around_the_bare_sdk(reply: Reply | None, calls: int, server: FakeEUGPT) -> None:
    """Without our transport, @rp.retry alone around an SDK call (max_retries=0) retries its
    APIConnectionError and APITimeoutError (they are registered), and its status errors."""
    url = closed_port_url() if reply is None else base(server)
    if reply is not None:
        server.script(*[reply] * 10)
    made: list[int] = []
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, **SDK_OPTIONS)

    @rp.retry(FAST, before_attempt=lambda e: made.append(e.attempt))
    def ask() -> str:
        return client.responses.create(model="auto", input="hi", stream=False).output_text

    with client, pytest.raises(openai.APIError):
        ask()
    assert len(made) == calls


@pytest.mark.parametrize("mode", MODES)
def test_raise_on_give_up_inside_retry_adds_up(mode: Mode, server: FakeEUGPT) -> None:
    """Our error raised through the SDK on give-up is marked: the outer layer stops."""
    server.script(*[Reply.error(502)] * 50)

    @rp.retry(FAST)
    def ask() -> Caught:
        caught = exchange(mode, base(server), stream=False, raise_on_give_up=True)
        assert caught.error is not None
        raise caught.error

    with pytest.raises(rp.ServiceUnavailableError):
        ask()
    assert server.request_count == 6


def test_api_error_raised_inside_retry_adds_up(server: FakeEUGPT) -> None:
    """Raising api_error(exc) inside @rp.retry keeps the give-up mark: 3 requests, not 9."""
    server.script(*[Reply.error(500)] * 20)
    client = rpo.client(FAST, base_url=base(server), api_key=KEY, **SDK_OPTIONS)

    @rp.retry(FAST)
    def ask() -> str:
        try:
            return client.responses.create(model="auto", input="hi", stream=False).output_text
        except openai.APIError as exc:
            raise rpo.api_error(exc, FAST) from exc

    with client, pytest.raises(rp.InternalServerError) as info:
        ask()
    assert (server.request_count, info.value.attempts) == (3, 3)


# --------------------------------------------------------------------------- wrap()


def test_wrap_keeps_the_clients_settings(server: FakeEUGPT) -> None:
    """wrap() returns a copy with the same key, base URL, timeout and headers, retrying by
    the policy with the SDK's retries off; the original client is left as it was."""
    original = openai.OpenAI(
        base_url=base(server),
        api_key=KEY,
        max_retries=0,
        timeout=7.0,
        default_headers={"x-team": "search"},
        _strict_response_validation=True,
    )
    wrapped = rpo.wrap(original, FAST)
    assert type(wrapped) is openai.OpenAI
    assert (wrapped.max_retries, wrapped.timeout, wrapped.api_key) == (0, 7.0, KEY)
    server.script(Reply.error(503), Reply.ok("wrapped"))
    with original, wrapped:
        assert (
            wrapped.responses.create(model="auto", input="hi", stream=False).output_text
            == "wrapped"
        )
        server.script(Reply.error(503))
        with pytest.raises(openai.InternalServerError):
            original.responses.create(model="auto", input="hi", stream=False)
    assert server.request_count == 3
    assert server.requests[0].headers["x-team"] == "search"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_wrap_warns_about_sdk_retries(server: FakeEUGPT) -> None:
    """A client with max_retries > 0 is wrapped with a warning that points at the caller's
    line; the wrapped copy makes the policy's 6 attempts on 503s, not 6 x 3."""
    retrying = openai.OpenAI(base_url=base(server), api_key=KEY, max_retries=2)
    with pytest.warns(rpo.SDKRetriesWarning, match=r"max_retries=2.*policy 'eugpt'") as record:
        wrapped = rpo.wrap(retrying, FAST)
    assert record[0].filename == __file__  # points at the caller's line
    server.script(*[Reply.error(503)] * 50)
    with retrying, wrapped, pytest.raises(openai.InternalServerError):
        wrapped.responses.create(model="auto", input="hi", stream=False)
    assert server.request_count == 6
    assert retrying.max_retries == 2  # the original is unchanged


def test_the_sdk_retries_warning_is_seen_by_every_test_that_expects_it() -> None:
    """No flag of the library's own carries "already warned" from one test to the next: each
    block that expects the warning gets it (as two tests of a user's suite would), and
    under Python's default filter one line that wraps again and again warns once."""
    retrying = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key=KEY, max_retries=2)
    for _ in range(2):  # two tests in a row, each with its own pytest.warns
        with pytest.warns(rpo.SDKRetriesWarning):
            rpo.wrap(retrying, FAST).close()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(3):
            rpo.wrap(retrying, FAST).close()  # one line of the caller's code
    assert [w.category for w in seen] == [rpo.SDKRetriesWarning]
    retrying.close()


def test_wrap_without_sdk_retries_is_silent(server: FakeEUGPT) -> None:
    """A client built with max_retries=0 is wrapped without a warning."""
    quiet = openai.OpenAI(base_url=base(server), api_key=KEY, max_retries=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped = rpo.wrap(quiet)
    with quiet, wrapped:
        assert wrapped.max_retries == 0


def test_wrap_async_client(server: FakeEUGPT) -> None:
    """An AsyncOpenAI is wrapped into an AsyncOpenAI with the async transport."""
    server.script(Reply.error(500), Reply.ok("async wrapped"))

    async def main() -> str:
        original = openai.AsyncOpenAI(base_url=base(server), api_key=KEY, max_retries=0)
        async with original, rpo.wrap(original, FAST) as wrapped:
            assert type(wrapped) is openai.AsyncOpenAI
            return (
                await wrapped.responses.create(model="auto", input="hi", stream=False)
            ).output_text

    assert asyncio.run(main()) == "async wrapped"
    assert server.request_count == 2


def test_wrap_refuses_what_it_cannot_wrap(server: FakeEUGPT) -> None:
    """Not an SDK client, an SDK keyword, or a transport of the wrong kind: clear errors."""
    quiet = openai.AsyncOpenAI(base_url=base(server), api_key=KEY, max_retries=0)
    with pytest.raises(TypeError, match=r"client 'x': expected an openai.OpenAI"):
        rpo.wrap("x")
    with pytest.raises(TypeError, match=r"wrap\(\) got timeout: expected only the keywords"):
        rpo.wrap(quiet, timeout=3)
    with pytest.raises(TypeError, match=r"expected a httpx2\.AsyncBaseTransport"):
        rpo.wrap(quiet, transport=httpx2.HTTPTransport())


# --------------------------------------------------------------------------- client()


def test_client_passes_sdk_keywords_through(server: FakeEUGPT) -> None:
    """SDK keywords reach the SDK client; the transport's keywords reach the transport."""
    server.script(Reply.error(503), Reply.ok())
    events: list[RetryEvent] = []
    with rpo.client(
        FAST,
        base_url=base(server),
        api_key=KEY,
        organization="org_1",
        default_headers={"x-team": "search"},
        on_retry=events.append,
        **SDK_OPTIONS,
    ) as client:
        client.responses.create(model="auto", input="hi", stream=False)
        assert client.max_retries == 0
    headers = server.requests[0].headers
    assert (headers["openai-organization"], headers["x-team"]) == ("org_1", "search")
    assert [e.kind for e in events] == [rp.Kind.UNAVAILABLE]


def test_client_keeps_the_sdk_defaults() -> None:
    """The SDK's default timeout, and its key variable when no key is given."""
    with rpo.client(base_url="http://127.0.0.1:9/v1", api_key=KEY) as client:
        assert client.timeout == openai.DEFAULT_TIMEOUT
    async_client = rpo.async_client(base_url="http://127.0.0.1:9/v1", api_key=KEY)
    assert async_client.timeout == openai.DEFAULT_TIMEOUT
    asyncio.run(async_client.close())


def test_client_reads_the_sdk_key_variable(
    server: FakeEUGPT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api_key left out: the SDK's OPENAI_API_KEY, as with openai.OpenAI() (no other variable
    is read, so a key is never sent to a host it was not configured for)."""
    monkeypatch.setenv("OPENAI_API_KEY", "eugpt_from_env")
    monkeypatch.setenv("EUGPT_API_KEY", "eugpt_not_read")
    with rpo.client(FAST, base_url=base(server)) as client:
        client.responses.create(model="auto", input="hi", stream=False)
    assert server.requests[0].headers["authorization"] == "Bearer eugpt_from_env"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(openai.OpenAIError, match="OPENAI_API_KEY"):
        rpo.client(FAST, base_url=base(server))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": 2}, r"client\(max_retries=2\): expected no max_retries"),
        ({"http_client": object()}, r"client\(http_client=...\): expected no http_client"),
        ({"retries": 2}, "retries"),  # the SDK's own TypeError for a keyword it does not know
    ],
)
def test_client_refuses_keywords_that_undo_it(options: dict[str, Any], message: str) -> None:
    """max_retries other than 0 and http_client are refused, naming what to do instead."""
    with pytest.raises(TypeError, match=message):
        rpo.client(base_url="http://127.0.0.1:9/v1", api_key=KEY, **options)


def test_client_accepts_max_retries_zero() -> None:
    """max_retries=0, what the client has anyway, is accepted."""
    with rpo.client(base_url="http://127.0.0.1:9/v1", api_key=KEY, max_retries=0) as client:
        assert client.max_retries == 0


def test_client_uses_the_given_inner_transport(server: FakeEUGPT) -> None:
    """transport= replaces the inner httpx2 transport (here one with its own limits)."""
    inner = httpx2.HTTPTransport(limits=httpx2.Limits(max_connections=1))
    server.script(Reply.error(502), Reply.ok("one connection"))
    with rpo.client(FAST, base_url=base(server), api_key=KEY, transport=inner) as client:
        assert (
            client.responses.create(model="auto", input="hi", stream=False).output_text
            == "one connection"
        )


def test_client_refuses_a_retrying_inner_transport() -> None:
    """A RetryTransport as the inner transport would multiply the attempts: refused."""
    with pytest.raises(TypeError, match="not a retrying one"):
        rpo.client(base_url="http://127.0.0.1:9/v1", api_key=KEY, transport=RetryTransport())
    with pytest.raises(TypeError, match="not a retrying one"):
        rpo.async_client(api_key=KEY, transport=AsyncRetryTransport())


# --------------------------------------------------------------------------- classify, api_error


ENVELOPE = (
    b'{"detail":"Rate limit exceeded","error":{"type":"rate_limit_error","code":"slow_down"}}'
)


def sdk_status_error(
    cls: type[openai.APIStatusError], status: int, content: bytes, **headers: str
) -> openai.APIStatusError:
    """An SDK status error as the SDK builds one: its response read, its body parsed."""
    response = httpx2.Response(status, headers=headers, content=content, request=REQUEST)
    return cls(f"Error code: {status}", response=response, body=None)


def wrapped(cls: type[openai.APIConnectionError], cause: BaseException | None) -> BaseException:
    """An SDK connection error as the SDK raises one: ``raise ... from`` the httpx2 error."""
    exc: openai.APIConnectionError = (
        openai.APITimeoutError(REQUEST) if cls is openai.APITimeoutError else cls(request=REQUEST)
    )
    exc.__cause__ = cause
    return exc


REGISTERED: list[tuple[str, Callable[[], BaseException], str]] = [
    ("httpx2.ConnectError", lambda: httpx2.ConnectError("refused"), "connection"),
    ("httpx2.ConnectTimeout", lambda: httpx2.ConnectTimeout("slow"), "connection"),
    ("httpx2.PoolTimeout", lambda: httpx2.PoolTimeout("busy"), "connection"),
    ("httpx2.ProxyError", lambda: httpx2.ProxyError("proxy"), "connection"),
    ("httpx2.ReadTimeout", lambda: httpx2.ReadTimeout("slow"), "timeout"),
    ("httpx2.WriteTimeout", lambda: httpx2.WriteTimeout("slow"), "timeout"),
    ("httpx2.ReadError", lambda: httpx2.ReadError("reset"), "timeout"),
    ("httpx2.WriteError", lambda: httpx2.WriteError("pipe"), "timeout"),
    ("httpx2.RemoteProtocolError", lambda: httpx2.RemoteProtocolError("closed"), "timeout"),
    ("httpx2.DecodingError", lambda: httpx2.DecodingError("gzip"), "unknown"),
    ("httpx2.UnsupportedProtocol", lambda: httpx2.UnsupportedProtocol("ftp"), "unknown"),
    (
        "APIConnectionError from ConnectError",
        lambda: wrapped(openai.APIConnectionError, httpx2.ConnectError("refused")),
        "connection",
    ),
    (
        "APIConnectionError from ReadError",
        lambda: wrapped(openai.APIConnectionError, httpx2.ReadError("reset")),
        "timeout",
    ),
    (
        "APIConnectionError from RemoteProtocolError",
        lambda: wrapped(openai.APIConnectionError, httpx2.RemoteProtocolError("closed")),
        "timeout",
    ),
    (
        "APIConnectionError alone",
        lambda: wrapped(openai.APIConnectionError, None),
        "connection",
    ),
    (
        "APITimeoutError from ReadTimeout",
        lambda: wrapped(openai.APITimeoutError, httpx2.ReadTimeout("slow")),
        "timeout",
    ),
    (
        "APITimeoutError from ConnectTimeout (never left)",
        lambda: wrapped(openai.APITimeoutError, httpx2.ConnectTimeout("slow")),
        "connection",
    ),
    ("APITimeoutError alone", lambda: wrapped(openai.APITimeoutError, None), "timeout"),
    (
        "APIStatusError: by its response only",
        lambda: sdk_status_error(openai.RateLimitError, 429, ENVELOPE),
        "unknown",
    ),
    (
        "APIResponseValidationError",
        lambda: openai.APIResponseValidationError(httpx2.Response(200, request=REQUEST), None),
        "unknown",
    ),
    ("OpenAIError", lambda: openai.OpenAIError("no key"), "unknown"),
]


@pytest.mark.parametrize(("name", "build", "kind"), REGISTERED, ids=[r[0] for r in REGISTERED])
def test_registered_exception(name: str, build: Callable[[], BaseException], kind: str) -> None:
    """httpx2's and the SDK's exceptions are registered by name with the kind DESIGN.md's
    table gives them (a status error is judged by its response, not by its type)."""
    assert rp.EUGPT.classify(exception=build()).kind == kind


@pytest.mark.parametrize(
    ("status", "content", "kind", "code"),
    [
        (429, ENVELOPE, rp.Kind.RATE_LIMITED, "slow_down"),
        (
            403,
            b'{"detail":"Project membership required","error":"project_forbidden"}',
            rp.Kind.PERMISSION,
            "project_forbidden",
        ),
        (502, b"<html>bad gateway</html>", rp.Kind.UNAVAILABLE, None),
        (500, b"", rp.Kind.SERVER_ERROR, None),
        (418, b"\xff\xfe binary", rp.Kind.CLIENT_ERROR, None),
    ],
)
def test_status_errors_by_their_response(
    status: int, content: bytes, kind: rp.Kind, code: str | None
) -> None:
    """classify / api_error read an SDK status error's response: status first, then the
    envelope's code (the bare-string form too); any body, never an exception."""
    exc = sdk_status_error(openai.APIStatusError, status, content)
    assert rpo.classify(exc).kind == kind
    error = rpo.api_error(exc)
    assert (error.status, error.code, error.kind, error.attempts) == (status, code, kind, 1)
    assert error.__cause__ is exc


def test_retry_decorator_reads_an_sdk_status_error() -> None:
    """@rp.retry judges an SDK status error by its httpx2 response: a 500 is retried twice,
    a 400 never."""
    calls: list[int] = []

    @rp.retry(FAST)
    def fail(status: int) -> None:
        calls.append(status)
        raise sdk_status_error(openai.InternalServerError, status, b'{"detail":"boom"}')

    for status, count in ((500, 3), (400, 1)):
        calls.clear()
        with pytest.raises(openai.InternalServerError):
            fail(status)
        assert calls == [status] * count


def test_api_error_reads_the_wait_hint_and_redacts() -> None:
    """The hint comes from the response's headers; a key in the server's words never shows."""
    body = b'{"detail":"key eugpt_0123456789abcdef0123 over quota","error":"over_quota"}'
    exc = sdk_status_error(openai.RateLimitError, 429, body, **{"retry-after-ms": "1500"})
    error = rpo.api_error(exc)
    assert type(error) is rp.RateLimitError
    assert (error.retry_after, error.code) == (1.5, "over_quota")
    assert "0123456789abcdef" not in str(error) + repr(error)


def test_api_error_of_a_connection_error() -> None:
    """A connection error becomes rp.APIConnectionError, its message naming what happened."""
    error = rpo.api_error(wrapped(openai.APIConnectionError, httpx2.ConnectError("refused")))
    assert type(error) is rp.APIConnectionError
    assert isinstance(error, ConnectionError)
    assert (error.kind, error.retryable, error.status) == (rp.Kind.CONNECTION, True, None)
    assert "APIConnectionError: Connection error. (ConnectError: refused)" in str(error)
    timeout = rpo.api_error(wrapped(openai.APITimeoutError, httpx2.ReadTimeout("slow")))
    assert type(timeout) is rp.APITimeoutError


def test_api_error_of_a_validation_error() -> None:
    """A 200 the SDK could not validate is no API failure the policy knows: never retried."""
    exc = openai.APIResponseValidationError(httpx2.Response(200, request=REQUEST), None)
    error = rpo.api_error(exc)
    assert (type(error), error.kind, error.retryable) == (rp.APIError, rp.Kind.UNKNOWN, False)


def test_our_errors_pass_through() -> None:
    """api_error returns our own errors unchanged; classify uses their status and code."""
    ours = rp.StreamError("cut", status=200, kind=rp.Kind.INCOMPLETE_STREAM, retryable=True)
    assert rpo.api_error(ours) is ours
    assert rpo.classify(ours).kind == rp.Kind.INCOMPLETE_STREAM


def test_bad_policy_is_named() -> None:
    """A policy that is not a Policy is refused, naming it."""
    exc = openai.OpenAIError("x")
    with pytest.raises(TypeError, match=r"policy 'eugpt': expected a retrypolicy\.Policy"):
        rpo.classify(exc, "eugpt")
    with pytest.raises(TypeError, match="policy 'eugpt'"):
        rpo.api_error(exc, "eugpt")


def test_import_without_the_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the openai SDK, importing the adapter fails with the command that installs it."""
    monkeypatch.setitem(sys.modules, "openai", None)
    for name in [n for n in sys.modules if n.startswith("retrypolicy_openai")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=re.escape("pip install 'retrypolicy[openai]'")):
        importlib.import_module("retrypolicy_openai")


def test_this_file_never_sleeps() -> None:
    """No test here calls a sleep: waits are instant, and the guard above fails a real one."""
    source = Path(__file__).read_text(encoding="utf-8")
    assert re.findall(r"\b(?:time|asyncio)\.sleep\(", source) == []
