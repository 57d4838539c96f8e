"""Turning what a call returned or raised into an :class:`Outcome`, duck-typed.

Anything with an int ``status_code`` (requests, httpx) or ``status``
(urllib3, aiohttp) is a response; whether a type is response-like is decided
once per type and cached, so the success path costs one dict look-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ._backoff import retry_after_from_headers
from ._envelope import MAX_PARSE_BYTES, parse_error
from ._errors import APIError
from ._outcome import EXHAUSTED, Outcome
from ._policy import Policy
from ._rules import Kind, failure_of, failure_of_kind

__all__ = ["outcome_of_exception", "outcome_of_value", "status_getter"]

StatusGetter = Callable[[Any], int | None]

ATTEMPTS_EXTENSION: Final = "retrypolicy.attempts"
"""The ``response.extensions`` key where the httpx transports record their attempts."""


def _status_code(value: Any) -> int | None:
    s = value.status_code
    return s if type(s) is int else None


def _status(value: Any) -> int | None:
    s = value.status
    return s if type(s) is int else None


_GETTERS: dict[type, StatusGetter | None] = dict.fromkeys(
    (type(None), bool, int, float, str, bytes, dict, list, tuple, set, frozenset)
)
_CACHE_LIMIT: Final = 4096


def status_getter(tp: type, value: object) -> StatusGetter | None:
    """The status reader for values of *tp* (None: not a response), decided on first sight."""
    getter: StatusGetter | None = None
    if isinstance(getattr(value, "status_code", None), int):
        getter = _status_code
    elif isinstance(getattr(value, "status", None), int) and not isinstance(value, BaseException):
        getter = _status
    if len(_GETTERS) < _CACHE_LIMIT:
        _GETTERS[tp] = getter
    return getter


def _body_in_memory(value: Any) -> bytes | None:
    """The body of a response, but only if it was already read: we never read a stream."""
    content = getattr(value, "_content", None)  # requests, httpx after .read()
    if isinstance(content, bytes):
        return content[:MAX_PARSE_BYTES]
    data = getattr(value, "_body", None)  # urllib3 preloaded
    if isinstance(data, bytes):
        return data[:MAX_PARSE_BYTES]
    return None


def _retried_by_adapter(response: Any) -> bool:
    """True for a failed response an adapter hands back after its policy gave up on it."""
    if isinstance(getattr(response, "retry_attempts", None), int):  # requests' RetryAdapter
        return True
    extensions = getattr(response, "extensions", None)  # httpx's RetryTransport
    return isinstance(extensions, dict) and ATTEMPTS_EXTENSION in extensions


def outcome_of_response(value: Any, status: int, *, wall: Callable[[], float]) -> Outcome:
    """The outcome of a response object with *status*; parses its body if in memory."""
    headers = getattr(value, "headers", None)
    body = _body_in_memory(value) if status >= 400 else None
    info = parse_error(status, body, headers) if body is not None else None
    return Outcome(
        status=status,
        code=info.code if info is not None else None,
        retry_after=retry_after_from_headers(headers, now=wall()) if headers is not None else None,
        error=info,
        value=value,
        exhausted=_retried_by_adapter(value),
    )


def outcome_of_value(value: object, policy: Policy, *, wall: Callable[[], float]) -> Outcome | None:
    """The outcome of a returned value; None for a plain value or a successful response.

    The success path costs a dict look-up (per type) and a cached classification.
    """
    tp = type(value)
    getter = _GETTERS[tp] if tp in _GETTERS else status_getter(tp, value)
    if getter is None:
        return None
    status = getter(value)
    if status is None or policy.classify(status).kind == Kind.SUCCESS:
        return None
    return outcome_of_response(value, status, wall=wall)


_CLASS_HAS_RESPONSE: dict[type, bool] = {}


def _response_of(exc: BaseException) -> Any:
    """``exc.response`` (requests, httpx HTTP errors) without a raising getattr per failure."""
    tp = type(exc)
    on_class = _CLASS_HAS_RESPONSE.get(tp)
    if on_class is None:
        on_class = hasattr(tp, "response")
        if len(_CLASS_HAS_RESPONSE) < _CACHE_LIMIT:
            _CLASS_HAS_RESPONSE[tp] = on_class
    if on_class:
        return getattr(exc, "response", None)
    return exc.__dict__.get("response") if exc.__dict__ else None


def outcome_of_exception(exc: BaseException, *, wall: Callable[[], float]) -> Outcome:
    """The outcome of a raised exception: an API error, an HTTP error, or a transport failure.

    Runs on every failed attempt: attributes are read from the instance dict, so no
    ``getattr`` raises (and is caught) for the common exception without them.
    """
    own = exc.__dict__
    exhausted = own.get(EXHAUSTED) is True if own else False
    if isinstance(exc, APIError):
        return Outcome(
            status=exc.status,
            code=exc.code,
            failure=failure_of_kind(exc.kind),
            exception=exc,
            retry_after=exc.retry_after,
            exhausted=exhausted,
        )
    response = _response_of(exc)
    if response is not None:
        status = getattr(response, "status_code", None)
        if not isinstance(status, int):
            status = getattr(response, "status", None)
        if isinstance(status, int) and not isinstance(status, bool):
            out = outcome_of_response(response, status, wall=wall)
            return Outcome(
                status=out.status,
                code=out.code,
                retry_after=out.retry_after,
                error=out.error,
                exception=exc,
                exhausted=out.exhausted or exhausted,
            )
    return Outcome(failure=failure_of(exc), exception=exc, exhausted=exhausted)
