"""An error body that cannot be read never changes what the status decides, on every adapter.

The spec: always check the HTTP status first, then look for ``detail`` / ``error``; a
body that is truncated or hostile never raises. requests' and aiohttp's adapters read an
error body's prefix and, when that read failed (the connection cut mid-body, a corrupt
gzip), judged the *read error* instead of the response: a 400 — never retried, "fix the
request" — was sent again as a ``timeout``, and requests' adapter raised urllib3's bare
``DecodeError`` out of ``send`` without retrying a 503. Now the status decides, and the
caller who reads the body meets the read error, as the bare transport gives it.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable

import pytest
import requests
from requests.adapters import HTTPAdapter

import retrypolicy as rp
from retrypolicy_requests import RetryAdapter

from .adapters.test_wire_contract import CLIENTS, Call, Result, run
from .adapters.wire import Wire, WireServer, envelope

JSON = (("Content-Type", "application/json"),)
GZIP = (*JSON, ("Content-Encoding", "gzip"))
OK = Wire(200, JSON, (b'{"ok": true}',))


def _cut(status: int) -> Wire:
    """An envelope whose chunked body stops half-way, the connection closed."""
    return Wire(status, JSON, (envelope(status, "x")[:20],), end="close")


def _corrupt_gzip(status: int) -> Wire:
    """A body labelled gzip that is no gzip at all."""
    return Wire(status, GZIP, (b"this is not gzip",))


def _truncated_gzip(status: int) -> Wire:
    """A gzip body whose stream stops early (the last bytes never came)."""
    return Wire(status, GZIP, (gzip.compress(envelope(status, "x"))[:20],))


BROKEN = [
    pytest.param(_cut, id="cut-mid-body"),
    pytest.param(_corrupt_gzip, id="corrupt-gzip"),
    pytest.param(_truncated_gzip, id="truncated-gzip"),
]


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Callable[[str, Call], Result]:
    return CLIENTS[request.param]


@pytest.mark.parametrize("broken", BROKEN)
def test_never_retried_status_with_a_broken_body_is_sent_once(
    client: Callable[[str, Call], Result], broken: Callable[[int], Wire]
) -> None:
    """A 400 whose body breaks is still a 400: sent once, its response handed over."""
    result, server = run(client, broken(400), OK)
    assert server.hits == 1, result
    assert result.status == 400, result


@pytest.mark.parametrize("broken", BROKEN)
def test_retried_status_with_a_broken_body_is_retried(
    client: Callable[[str, Call], Result], broken: Callable[[int], Wire]
) -> None:
    """A 503 whose body breaks is still a 503: retried, and the retry's success comes back."""
    result, server = run(client, broken(503), OK)
    assert result.error is None, result.error
    assert (result.status, server.hits) == (200, 2)


@pytest.mark.parametrize("broken", BROKEN)
def test_raise_on_give_up_names_the_status(
    client: Callable[[str, Call], Result], broken: Callable[[int], Wire]
) -> None:
    """With raise_on_give_up, a 400 with a broken body raises rp.BadRequestError, after
    one request (not the transport's read error, after three)."""
    result, server = run(client, broken(400), OK, call=Call(raise_on_give_up=True))
    assert isinstance(result.error, rp.BadRequestError), result
    assert (result.error.status, result.error.attempts) == (400, 1)
    assert server.hits == 1


@pytest.mark.parametrize("broken", BROKEN)
def test_requests_caller_meets_the_error_bare_requests_raises(
    broken: Callable[[int], Wire],
) -> None:
    """Through RetryAdapter, reading a 400's broken body raises what requests raises
    without it (ContentDecodingError, ChunkedEncodingError; nothing for a gzip cut short,
    which urllib3 tolerates), never urllib3's own DecodeError."""
    seen: list[object] = []
    for adapter in (HTTPAdapter(), RetryAdapter()):
        with WireServer([broken(400)]) as server, requests.Session() as session:
            session.mount("http://", adapter)
            try:
                seen.append(session.post(server.url, data=b"{}", timeout=5).status_code)
            except requests.RequestException as e:  # what reading the body raised
                seen.append(type(e))
    assert seen[0] == seen[1]
