"""The policy's verdict on what the openai SDK raised: its kind, whether to retry, attempts.

A client built by :func:`~retrypolicy_openai.client` lets the SDK raise its
own exceptions by default — ``openai.RateLimitError``, ``openai.APIConnectionError``
— so existing ``except openai.APIError`` code keeps working. Those carry no
``.kind``, ``.retryable`` or ``.attempts``: :func:`classify` and
:func:`api_error` read them from the exception (its response's status and
envelope, the wrapped httpx2 error, the transport's attempts extension).

With ``raise_on_give_up=True`` the transport raises our errors itself for a
failed response or stream; the SDK lets them through unchanged (it wraps only
httpx2's own errors), and :func:`api_error` returns them as they are. So
``api_error(exc)`` gives one shape, whichever mode and whichever layer raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from retrypolicy import APIError, Classification, ErrorInfo, Policy, parse_error
from retrypolicy.transport import (
    ATTEMPTS_ATTRIBUTE,
    EXHAUSTED,
    MAX_ERROR_BODY,
    AdapterOptions,
    mark_exhausted,
    retry_after_from_headers,
)
from retrypolicy.transport import api_error as _api_error

__all__ = ["ATTEMPTS_EXTENSION", "api_error", "classify"]

ATTEMPTS_EXTENSION: Final = "retrypolicy.attempts"
"""The ``response.extensions`` key in which the transport records a response's attempts."""
_MAX_CHAIN: Final = 8
"""How far down ``__cause__`` / ``__context__`` the attempts and the exhausted mark are sought."""


def _options(policy: Policy | None) -> AdapterOptions:
    """*policy*, checked as adapters check it (None: the default policy, as adapters do),
    with the wall clock an HTTP-date ``Retry-After`` is read against."""
    return AdapterOptions(policy=policy)


def _policy(policy: Policy | None) -> Policy:
    """*policy*, checked as adapters check it (None: the default policy, as adapters do)."""
    return _options(policy).policy


def _response(exc: BaseException) -> Any:
    """The HTTP response an SDK exception carries (status errors, validation errors)."""
    response = exc.__dict__.get("response")
    status = getattr(response, "status_code", None)
    return response if isinstance(status, int) and not isinstance(status, bool) else None


def _envelope(response: Any) -> ErrorInfo | None:
    """The error of a failed *response* (from the start of its body, if it was read: the
    SDK reads an error's body); None when there is no response or it did not fail."""
    if response is None or response.status_code < 400:
        return None
    try:
        content = response.content
    except Exception:  # noqa: BLE001 - never read (a stream): the status alone decides
        content = None
    body = content[:MAX_ERROR_BODY] if isinstance(content, bytes) else None
    return parse_error(response.status_code, body, response.headers)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """*exc*, then what it was raised from (or while handling), a bounded way down."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _attempts(exc: BaseException, response: Any) -> int:
    """The attempts behind *exc*: its response's extension, or the count the transport
    set on the exception it re-raised (the SDK wraps that one); 1 when neither says."""
    extensions = getattr(response, "extensions", None)  # None without a response
    count = extensions.get(ATTEMPTS_EXTENSION) if isinstance(extensions, dict) else None
    if type(count) is int:
        return count
    for e in _chain(exc):
        count = e.__dict__.get(ATTEMPTS_ATTRIBUTE)
        if type(count) is int:
            return count
    return 1


def _exhausted(exc: BaseException, response: Any) -> bool:
    """Whether the transport already retried this failure to the end."""
    if getattr(response, "__dict__", {}).get(EXHAUSTED) is True:  # {} without a response
        return True
    return any(e.__dict__.get(EXHAUSTED) is True for e in _chain(exc))


def _describe(exc: BaseException) -> str:
    """``APIConnectionError: Connection error. (ConnectError: ...)``: what the caller saw."""
    cause = exc.__cause__
    because = "" if cause is None else f" ({type(cause).__name__}: {cause})"
    return f"{type(exc).__name__}: {exc}{because}"


def classify(exc: BaseException, policy: Policy | None = None) -> Classification:
    """What *policy* (default: the default policy) makes of *exc*, raised by the SDK.

    An ``openai.APIStatusError`` is classified by its response's status and the
    envelope's ``error.code`` (the bare-string form too); ``APIConnectionError`` and
    ``APITimeoutError`` by the httpx2 error they wrap (a connect failure is
    ``connection``, a read error after sending ``timeout``); our own errors by
    their status and code; anything else as ``policy.classify(exception=exc)``.
    """
    policy = _policy(policy)
    info = None if isinstance(exc, APIError) else _envelope(_response(exc))
    if info is None:
        return policy.classify(exception=exc)
    return policy.classify(info.status, info.code)


def api_error(exc: BaseException, policy: Policy | None = None) -> APIError:
    """Our :class:`retrypolicy.APIError` for *exc*, raised by the SDK (or by us).

    The subclass fits the failure (``rp.RateLimitError`` for a 429,
    ``rp.APIConnectionError`` for a connect failure, ...); ``.kind`` and
    ``.retryable`` are *policy*'s verdict, ``.attempts`` the transport's count
    (``response.extensions["retrypolicy.attempts"]``), ``.status``, ``.code``,
    ``.retry_after`` come from the response, and the message is redacted.
    ``__cause__`` is *exc*. An ``rp.APIError`` (``raise_on_give_up=True``, a
    stream's ``rp.StreamError``) is returned unchanged. Raising the result inside
    ``@rp.retry`` is safe: a failure the transport already retried to the end is
    marked so, and is not retried again.
    """
    if isinstance(exc, APIError):
        return exc
    options = _options(policy)
    policy = options.policy
    response = _response(exc)
    attempts = _attempts(exc, response)
    if (info := _envelope(response)) is not None:
        verdict = policy.classify(info.status, info.code)
        # an HTTP-date hint needs the time now, as the transport reads it
        hint = retry_after_from_headers(response.headers, now=options.wall_clock())
        error = _api_error(verdict, info, attempts=attempts, retry_after=hint)
    else:
        verdict = policy.classify(exception=exc)
        error = _api_error(verdict, attempts=attempts, cause=_describe(exc))
    error.__cause__ = exc
    if verdict.retryable and _exhausted(exc, response):
        mark_exhausted(error)
    return error
