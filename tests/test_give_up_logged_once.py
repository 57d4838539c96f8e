"""One failure, one ``retry.gave_up`` line: an outer retry layer does not log again what an
adapter gave up on and logged, whether the failure was retryable or not.

The adapter marks the final response it hands back as reported; the caller's
``raise_for_status()`` turns it into an HTTP error carrying that response, and the
``@rp.retry`` / ``rp.attempts`` around the call must see the mark on the response the
error carries, as it already does for a retryable status through the exhausted mark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import requests

import retrypolicy as rp
from retrypolicy.instrumentation import RetryEvent
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_httpx import RetryTransport
from retrypolicy_requests import RetryAdapter

BODY = {"input": "hi", "stream": False}


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    with FakeEUGPT() as fake:
        yield fake


def _requests_in_decorator(url: str) -> None:
    session = requests.Session()
    session.mount("http://", RetryAdapter())

    @rp.retry
    def ask() -> None:
        session.post(url, json=BODY, timeout=10).raise_for_status()

    ask()


def _httpx_in_attempts(url: str) -> None:
    with httpx.Client(transport=RetryTransport(), timeout=10) as client:
        for attempt in rp.attempts():
            with attempt:
                client.post(url, json=BODY).raise_for_status()


CALLS: dict[str, Callable[[str], None]] = {
    "requests-in-retry": _requests_in_decorator,
    "httpx-in-attempts": _httpx_in_attempts,
}


@pytest.mark.parametrize("status", [404, 403, 400, 503])
@pytest.mark.parametrize("call", list(CALLS))
def test_a_failure_an_adapter_gave_up_on_is_logged_once(
    server: FakeEUGPT, events: list[RetryEvent], instant: rp.testing.Instant, call: str, status: int
) -> None:
    """A 404 (never retried) or a 503 (retried to the end) that the adapter gave up on and
    the caller turned into an exception inside ``@rp.retry`` / ``rp.attempts``: one
    ``retry.gave_up`` event reaches the process's hooks, the adapter's, and the outer
    layer sends nothing more."""
    server.script(*[Reply.error(status)] * 10)
    sent = 6 if status == 503 else 1
    with pytest.raises((requests.HTTPError, httpx.HTTPStatusError)):
        CALLS[call](server.responses_url)
    assert server.request_count == sent
    gave_up = [e for e in events if e.name == "retry.gave_up"]
    assert len(gave_up) == 1, [(e.call, e.kind) for e in gave_up]
