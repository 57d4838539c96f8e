"""Turning what a call returned or raised into an :class:`Outcome`, duck-typed.

Anything with an int ``status_code`` (requests, httpx) or ``status``
(urllib3, aiohttp) is a response. That is decided **per value, never per type**:
instances of one class may differ (a status set on some of them only). The
success path stays cheap: builtins that can never be responses (``None``,
numbers, strings, containers) and types declared with :func:`never_a_response`
are recognised by one set look-up on their exact type; anything else has its
``status_code`` / ``status`` read on the value itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from ._backoff import retry_after_from_headers
from ._envelope import MAX_PARSE_BYTES, parse_error
from ._errors import APIError
from ._outcome import EXHAUSTED, Outcome, failure_outcome
from ._policy import Policy
from ._rules import Failure, Kind, _failure_cache, failure_of, failure_of_kind, plain_failures

__all__ = [
    "never_a_response",
    "outcome_of_exception",
    "outcome_of_response",
    "outcome_of_value",
    "response_of",
    "status_of",
]

T = TypeVar("T", bound=type)


_CACHE_LIMIT: Final = 4096
_new: Final = object.__new__
_MAX_CHAIN: Final = 8
"""How many exceptions of a ``__cause__`` / ``__context__`` chain are searched for the
exhausted marker."""

_NOT_RESPONSES: set[type] = {
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    bytearray,
    dict,
    list,
    tuple,
    set,
    frozenset,
}
"""Exact types whose values are never responses (subclasses are not included: a subclass
may add a status). Grown only by :func:`never_a_response`."""


def never_a_response(tp: T) -> T:
    """Declare that values of exactly *tp* are never responses, whatever attributes they
    have (e.g. an object that is judged by its own outcome); usable as a class decorator.

    This also makes returning such a value as cheap as returning ``None``.
    """
    _NOT_RESPONSES.add(tp)
    return tp


def status_of(value: object) -> int | None:
    """The HTTP status of *value* if it is a response (an int ``status_code``, or an int
    ``status`` on something that is not an exception), else None. Read on the value
    itself, every time."""
    s = getattr(value, "status_code", None)
    if type(s) is int:
        return s
    if isinstance(s, int) and not isinstance(s, bool):  # an IntEnum such as HTTPStatus
        return int(s)
    if isinstance(value, BaseException):
        return None  # an exception's ``status`` is not a response status
    s = getattr(value, "status", None)
    if type(s) is int:
        return s
    if isinstance(s, int) and not isinstance(s, bool):
        return int(s)
    return None


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
    """True for a failed response a retry layer hands back after its policy gave up on it:
    marked with ``mark_exhausted`` by the transport seam — the response itself, or the
    transport response it wraps (requests' ``Response.raw``, from urllib3's ``PolicyRetry``).
    A response an adapter did not retry (its method was not among ``methods``) is not marked,
    so an outer layer may still retry it."""
    if getattr(response, EXHAUSTED, None) is True:
        return True
    return getattr(getattr(response, "raw", None), EXHAUSTED, None) is True


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

    The success path costs a set look-up for a plain value; for anything else, reading
    its status and a cached classification.
    """
    if type(value) in _NOT_RESPONSES:
        return None
    status = status_of(value)
    if status is None or policy.classify(status).kind == Kind.SUCCESS:
        return None
    return outcome_of_response(value, status, wall=wall)


_CLASS_HAS_RESPONSE: dict[type, bool] = {}


def response_of(exc: BaseException, own: dict[str, Any]) -> Any:
    """``exc.response`` (requests, httpx HTTP errors) without a raising getattr per failure;
    *own* is ``exc.__dict__``."""
    tp = type(exc)
    on_class = _CLASS_HAS_RESPONSE.get(tp)
    if on_class is None:
        on_class = hasattr(tp, "response")
        if len(_CLASS_HAS_RESPONSE) < _CACHE_LIMIT:
            _CLASS_HAS_RESPONSE[tp] = on_class
    if on_class:
        return getattr(exc, "response", None)
    return own.get("response") if own else None


def _chain_exhausted(exc: BaseException) -> bool:
    """True if an exception in the ``__cause__`` / ``__context__`` chain of *exc* (at most
    :data:`_MAX_CHAIN` of them, cycles ignored) carries the exhausted marker: a library
    may wrap an exhausted error while handling it (requests raises its ConnectionError
    inside ``except MaxRetryError``). Reads instance dicts only, so no getattr raises."""
    seen = {id(exc)}
    todo = [c for c in (exc.__cause__, exc.__context__) if c is not None]
    while todo and len(seen) < _MAX_CHAIN:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        d = e.__dict__
        if d and d.get(EXHAUSTED) is True:
            return True
        todo.extend(c for c in (e.__cause__, e.__context__) if c is not None)
    return False


def outcome_of_exception(exc: BaseException, *, wall: Callable[[], float]) -> Outcome:
    """The outcome of a raised exception: an API error, an HTTP error, or a transport failure.

    An exception counts as exhausted when it, or one of its cause/context chain, carries
    the marker. Runs on every failed attempt: attributes are read from the instance dict,
    so no ``getattr`` raises (and is caught) for the common exception without them, and
    the chain is walked only when there is one.
    """
    own = exc.__dict__
    if not own and exc.__cause__ is None and exc.__context__ is None:
        plain = plain_failures.get(type(exc))
        if plain is not None:  # the common case: a plain transport failure, seen before
            outcome: Outcome = _new(Outcome)  # failure_outcome(plain, exc, False), inlined
            d = outcome.__dict__
            d["failure"] = plain
            d["exception"] = exc
            return outcome
    exhausted = own.get(EXHAUSTED) is True if own else False
    if not exhausted and (exc.__cause__ is not None or exc.__context__ is not None):
        exhausted = _chain_exhausted(exc)
    if isinstance(exc, APIError):
        return Outcome(
            status=exc.status,
            code=exc.code,
            failure=failure_of_kind(exc.kind),
            exception=exc,
            retry_after=exc.retry_after,
            exhausted=exhausted,
        )
    if _CLASS_HAS_RESPONSE.get(type(exc)) is False:  # known type: no response on the class
        response = own.get("response") if own else None
        if response is None:  # a transport failure: the common case
            resolver = _failure_cache.get(type(exc))  # failure_of's cache, when it is per type
            if isinstance(resolver, Failure):
                failure: Failure | None = resolver
                if len(plain_failures) < _CACHE_LIMIT:  # one failure for the whole type
                    plain_failures[type(exc)] = resolver
            else:
                failure = failure_of(exc)
            return failure_outcome(failure, exc, exhausted)
    else:
        response = response_of(exc, own)
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
