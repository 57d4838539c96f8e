"""An API key given in the wrong place never reaches the error that refuses it.

``retrypolicy_openai.client(os.environ["EUGPT_API_KEY"])`` passes the key as the policy;
the ``TypeError`` that refused it quoted it whole (``policy 'eugpt_live_…': expected a
retrypolicy.Policy``), and from there it went to a log or a CI page. Every adapter's
argument check quotes what it was given with keys and tokens masked, still naming the
argument and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import retrypolicy_openai
from retrypolicy.transport import AdapterOptions
from retrypolicy_aiohttp import RetryMiddleware
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport
from retrypolicy_requests import RetryAdapter
from retrypolicy_urllib3 import PolicyRetry

KEY = "eugpt_live_0123456789abcdefghijklmnop"
BEARER = f"Bearer {KEY}"

MISPLACED: list[tuple[str, Callable[[], object], str]] = [
    # (what, the call, the argument the message names)
    ("openai.client(key)", lambda: retrypolicy_openai.client(KEY), "policy"),  # type: ignore[arg-type]
    ("openai.async_client(key)", lambda: retrypolicy_openai.async_client(KEY), "policy"),  # type: ignore[arg-type]
    ("openai.wrap(key)", lambda: retrypolicy_openai.wrap(KEY), "client"),  # type: ignore[call-overload]
    (
        "openai.client(max_retries=key)",
        lambda: retrypolicy_openai.client(None, api_key="x", max_retries=KEY),  # type: ignore[call-arg]
        "max_retries",
    ),
    (
        "openai.api_error(exc, key)",
        lambda: retrypolicy_openai.api_error(ValueError(), KEY),  # type: ignore[arg-type]
        "policy",
    ),
    ("RetryAdapter(key)", lambda: RetryAdapter(KEY), "policy"),  # type: ignore[arg-type]
    ("RetryTransport(key)", lambda: RetryTransport(KEY), "policy"),  # type: ignore[arg-type]
    ("AsyncRetryTransport(key)", lambda: AsyncRetryTransport(KEY), "policy"),  # type: ignore[arg-type]
    ("RetryTransport(None, key)", lambda: RetryTransport(None, KEY), "transport"),  # type: ignore[arg-type]
    ("RetryMiddleware(key)", lambda: RetryMiddleware(KEY), "policy"),  # type: ignore[arg-type]
    ("PolicyRetry(key)", lambda: PolicyRetry(KEY), "policy"),  # type: ignore[arg-type]
    ("methods=[bearer]", lambda: AdapterOptions(methods=[BEARER, 1]), "methods"),  # type: ignore[list-item]
    ("methods=key-ish", lambda: AdapterOptions(methods=[KEY, 1]), "methods"),  # type: ignore[list-item]
    ("preamble=key", lambda: AdapterOptions(preamble=KEY), "preamble"),
    ("store=key", lambda: AdapterOptions(store=KEY), "store"),  # type: ignore[arg-type]
    ("sleep=key", lambda: AdapterOptions(sleep=KEY), "sleep"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("call", "argument"), [pytest.param(c, a, id=w) for w, c, a in MISPLACED])
def test_refused_argument_is_quoted_without_the_key(
    call: Callable[[], object], argument: str
) -> None:
    """The TypeError names the argument, and shows what was given with the key masked."""
    with pytest.raises(TypeError) as caught:
        call()
    message = str(caught.value)
    assert KEY not in message
    assert "0123456789abcdef" not in message
    assert argument in message
    assert "[redacted]" in message  # what was given is still recognisable, masked


def test_retry_after_header_error_masks_a_key() -> None:
    """PolicyRetry.parse_retry_after's InvalidHeader quotes the header without a key in it."""
    with pytest.raises(Exception, match="Invalid Retry-After") as caught:
        PolicyRetry().parse_retry_after(KEY)
    assert KEY not in str(caught.value)


def test_transport_check_still_names_the_given_type() -> None:
    """Masking keeps the message useful: a wrong inner transport is still named."""
    with pytest.raises(TypeError, match=r"transport <httpx\.Client .*expected a httpx\.Async"):
        AsyncRetryTransport(None, httpx.Client())  # type: ignore[arg-type]
