"""A server's wait hint in any HTTP-date form is honoured, on every path that reads one.

The spec: a ``Retry-After`` is honoured, never undercut. RFC 9110 (5.6.7) has three
HTTP-date forms a recipient MUST accept: IMF-fixdate, RFC 850, and C's ``asctime()``,
which carries no zone (it is GMT). The asctime form, and a date whose zone is ``-0000``,
used to be read as no hint at all: the policy's own, shorter backoff retried inside the
server's window. And ``retrypolicy_openai.api_error`` read the headers without the time
now, so a date hint never reached the error it built.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime

import httpx
import httpx2
import openai
import pytest

import retrypolicy as rp
import retrypolicy_openai
from retrypolicy.transport import parse_retry_after
from retrypolicy_httpx import RetryTransport

NOW = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()
IN_30 = datetime(2027, 1, 15, 8, 0, 30, tzinfo=UTC)

FORMS = [
    pytest.param(email.utils.format_datetime(IN_30, usegmt=True), id="IMF-fixdate"),
    pytest.param(IN_30.strftime("%A, %d-%b-%y %H:%M:%S GMT"), id="RFC-850"),
    pytest.param("Fri Jan 15 08:00:30 2027", id="asctime"),
    pytest.param("Fri, 15 Jan 2027 08:00:30 -0000", id="zone--0000"),
    pytest.param("Fri, 15 Jan 2027 08:00:30", id="no-zone"),
]


@pytest.mark.parametrize("value", FORMS)
def test_every_http_date_form_is_a_hint(value: str) -> None:
    """Each HTTP-date form 30 s ahead is a 30 s wait (GMT when the form names no zone)."""
    assert parse_retry_after(value, now=NOW) == pytest.approx(30.0)


def test_asctime_with_a_space_padded_day_is_a_hint() -> None:
    """asctime pads a one-digit day with a space (``Jan  5``): read all the same."""
    now = datetime(2027, 1, 5, 8, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Tue Jan  5 08:00:30 2027", now=now) == pytest.approx(30.0)


def test_asctime_in_the_past_is_no_hint() -> None:
    """An asctime date already past is no hint (the caller's backoff applies), as for the
    other forms."""
    assert parse_retry_after("Fri Jan 15 07:59:00 2027", now=NOW) is None


def test_asctime_hint_is_waited_by_an_adapter() -> None:
    """Through an adapter, a 429 whose Retry-After is an asctime date 30 s ahead waits
    30 s (it used to wait the policy's own sub-second backoff)."""
    replies = iter(
        [
            httpx.Response(429, headers={"Retry-After": "Fri Jan 15 08:00:30 2027"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    inner = httpx.MockTransport(lambda request: next(replies))
    transport = RetryTransport(rp.EUGPT, inner, wall_clock=lambda: NOW)
    with rp.testing.instant() as clock, httpx.Client(transport=transport) as client:
        assert client.post("http://api.test/v1/responses").status_code == 200
    assert clock.waits == [pytest.approx(30.0)]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: email.utils.formatdate(time.time() + 120, usegmt=True), id="date"),
        pytest.param(lambda: "120", id="seconds"),
    ],
)
def test_openai_api_error_carries_a_date_hint(value: object) -> None:
    """retrypolicy_openai.api_error reads a Retry-After HTTP-date against the time now:
    the rp.RateLimitError carries the hint (it was None for a date)."""
    request = httpx2.Request("POST", "http://api.test/v1/responses")
    hint = value()  # type: ignore[operator]
    response = httpx2.Response(429, headers={"Retry-After": hint}, json={}, request=request)
    error = retrypolicy_openai.api_error(openai.RateLimitError("x", response=response, body=None))
    assert isinstance(error, rp.RateLimitError)
    assert error.retry_after is not None
    assert 100 < error.retry_after <= 120
