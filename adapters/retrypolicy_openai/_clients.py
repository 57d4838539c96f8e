"""SDK clients whose HTTP goes through a policy, with the SDK's own retries off.

Why a client factory rather than a recipe: the recipe has three parts that
must all be right — ``max_retries=0`` (else the SDK's retries multiply ours,
with real sleeps), our transport inside the SDK's *default* HTTP client (whose
timeouts, connection limits and redirects the SDK relies on), and the policy's
keywords on the transport rather than on the client. Forgetting one is silent.

The SDK's ``DefaultHttpxClient`` ignores its connection limits once it is given
a transport (httpx2 builds its default transport from them): the inner
transport is built here with the SDK's limits instead, so a client from
:func:`client` pools connections exactly as ``openai.OpenAI()`` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Final, TypeVar, Unpack, overload

import httpx2
import openai

from retrypolicy import Policy
from retrypolicy.transport import AdapterKeywords, redact
from retrypolicy_httpx.httpx2 import AsyncRetryTransport, RetryTransport

__all__ = ["ClientKeywords", "SDKRetriesWarning", "async_client", "client", "wrap"]

Sync = TypeVar("Sync", bound=openai.OpenAI)
Async = TypeVar("Async", bound=openai.AsyncOpenAI)

_ADAPTER_KEYS: Final = AdapterKeywords.__required_keys__ | AdapterKeywords.__optional_keys__


class SDKRetriesWarning(UserWarning):
    """:func:`wrap` was given a client that retries by itself (``max_retries > 0``).

    The wrapped copy has the SDK's retries off, so the two layers do not
    multiply; the client passed in keeps them. Shown as Python shows warnings
    (by default once per line that calls :func:`wrap`): build clients with
    :func:`client` / :func:`async_client`, or with ``max_retries=0``, and it
    never shows.
    """


class ClientKeywords(AdapterKeywords, total=False):
    """The keywords of :func:`client` and :func:`async_client` after ``policy``.

    Those of :class:`retrypolicy.transport.AdapterKeywords` configure the
    transport (``raise_on_give_up``, ``methods``, hooks, clocks, sleepers, ``rng``,
    ``preamble``); the others are the SDK client's own and are passed through.
    ``max_retries`` and ``http_client`` are not among them: the first is always
    0 and the second is the point of the function (pass ``transport=`` to
    choose the inner transport).
    """

    organization: str | None
    project: str | None
    timeout: float | httpx2.Timeout | None
    default_headers: Mapping[str, str] | None
    default_query: Mapping[str, object] | None
    websocket_base_url: str | None
    webhook_secret: str | None
    _strict_response_validation: bool


def _split(options: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the transport's keywords, the SDK's), refusing what would undo the point."""
    adapter = {key: value for key, value in options.items() if key in _ADAPTER_KEYS}
    sdk = {key: value for key, value in options.items() if key not in _ADAPTER_KEYS}
    retries = sdk.pop("max_retries", 0)
    if retries != 0:
        msg = (
            f"{where}(max_retries={redact(repr(retries))}): expected no max_retries (it is "
            "always 0, so that the SDK's retries do not multiply the policy's); set retries "
            "on the policy"
        )
        raise TypeError(msg)
    if "http_client" in sdk:
        msg = (
            f"{where}(http_client=...): expected no http_client (the function builds it "
            "around the policy's transport); pass transport= to choose the inner transport"
        )
        raise TypeError(msg)
    return adapter, sdk


def _inner(transport: Any, default: Any) -> Any:
    """*transport*, or the SDK's own default: *default* with the SDK's connection limits.

    A retrying transport is refused as the inner one: two retry layers multiply.
    """
    if isinstance(transport, RetryTransport | AsyncRetryTransport):
        msg = (
            f"transport {redact(repr(transport))}: expected the inner httpx2 transport, not a "
            "retrying one (the client adds the policy's own; two would multiply their attempts)"
        )
        raise TypeError(msg)
    return default(limits=openai.DEFAULT_CONNECTION_LIMITS) if transport is None else transport


def client(
    policy: Policy | None = None,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    transport: httpx2.BaseTransport | None = None,
    **options: Unpack[ClientKeywords],
) -> openai.OpenAI:
    """An ``openai.OpenAI`` client that retries by *policy* (default: the default policy).

    ``max_retries=0``; its HTTP client is the SDK's ``DefaultHttpxClient`` (SDK
    timeouts, limits and redirects) around ``retrypolicy_httpx.httpx2.RetryTransport``,
    itself around *transport* (default ``httpx2.HTTPTransport`` with the SDK's
    connection limits). *api_key* and *base_url* are passed through: left out,
    the SDK reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` as it always does.
    """
    adapter, sdk = _split(options, "client")
    retrying = RetryTransport(policy, _inner(transport, httpx2.HTTPTransport), **adapter)
    http = openai.DefaultHttpxClient(transport=retrying)
    try:
        return openai.OpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, http_client=http, **sdk
        )
    except BaseException:
        http.close()  # a missing key, a bad keyword: the pool goes with the failed client
        raise


def async_client(
    policy: Policy | None = None,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    **options: Unpack[ClientKeywords],
) -> openai.AsyncOpenAI:
    """:func:`client` for ``openai.AsyncOpenAI`` (``async_sleep``, not ``sleep``)."""
    adapter, sdk = _split(options, "async_client")
    inner = _inner(transport, httpx2.AsyncHTTPTransport)
    http = openai.DefaultAsyncHttpxClient(transport=AsyncRetryTransport(policy, inner, **adapter))
    # should this fail, the pool goes with it: it holds no connection yet (closing is async)
    return openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url, max_retries=0, http_client=http, **sdk
    )


def _warn_sdk_retries(given: openai.OpenAI | openai.AsyncOpenAI, policy: Policy) -> None:
    """:class:`SDKRetriesWarning`, when *given* retries by itself. Shown as Python shows a
    warning (by default once per line of the caller's code), with no flag of our own that
    a user's test run would carry from one test to the next."""
    if given.max_retries <= 0:
        return
    name = type(given).__name__
    msg = (
        f"retrypolicy_openai.wrap() was given an {name} that retries by itself "
        f"(max_retries={given.max_retries}): the wrapped client has max_retries=0 and "
        f"retries by policy {policy.name!r} alone, so that the two do not multiply. The "
        f"{name} you passed still retries by itself: use the wrapped one, or build clients "
        "with retrypolicy_openai.client() or max_retries=0."
    )
    warnings.warn(msg, SDKRetriesWarning, stacklevel=3)


@overload
def wrap(
    client: Sync,
    policy: Policy | None = None,
    *,
    transport: httpx2.BaseTransport | None = None,
    **options: Unpack[AdapterKeywords],
) -> Sync: ...
@overload
def wrap(
    client: Async,
    policy: Policy | None = None,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    **options: Unpack[AdapterKeywords],
) -> Async: ...
def wrap(
    client: openai.OpenAI | openai.AsyncOpenAI,
    policy: Policy | None = None,
    *,
    transport: Any = None,
    **options: Unpack[AdapterKeywords],
) -> openai.OpenAI | openai.AsyncOpenAI:
    """A copy of an existing SDK *client* that retries by *policy*, the SDK's retries off.

    ``client.with_options(max_retries=0, http_client=...)``: every other setting
    of *client* (key, base URL, timeout, headers) is kept. The copy gets a new
    ``DefaultHttpxClient`` (or ``DefaultAsyncHttpxClient``) around the policy's
    transport, so a custom ``http_client`` of *client* is not reused: pass its
    transport as *transport*. Warns (:class:`SDKRetriesWarning`) when *client*
    had ``max_retries > 0``. *client* itself is left unchanged.
    """
    adapter, other = _split(options, "wrap")
    if other:
        msg = (
            f"wrap() got {', '.join(sorted(other))}: expected only the keywords of "
            "retrypolicy.transport.AdapterKeywords (set the SDK's own options with "
            "client.with_options() before wrapping)"
        )
        raise TypeError(msg)
    if isinstance(client, openai.AsyncOpenAI):
        inner = _inner(transport, httpx2.AsyncHTTPTransport)
        atransport = AsyncRetryTransport(policy, inner, **adapter)
        _warn_sdk_retries(client, atransport.policy)
        http = openai.DefaultAsyncHttpxClient(transport=atransport)
        return client.with_options(max_retries=0, http_client=http)
    if isinstance(client, openai.OpenAI):
        stransport = RetryTransport(policy, _inner(transport, httpx2.HTTPTransport), **adapter)
        _warn_sdk_retries(client, stransport.policy)
        return client.with_options(
            max_retries=0, http_client=openai.DefaultHttpxClient(transport=stransport)
        )
    msg = f"client {redact(repr(client))}: expected an openai.OpenAI or openai.AsyncOpenAI"
    raise TypeError(msg)
