"""The errors retrypolicy raises for API failures, and their configuration error.

::

    Exception
     +-- APIError                      .status .code .kind .retryable .attempts
     |    +-- BadRequestError          400 invalid_request
     |    +-- AuthenticationError      401
     |    +-- PermissionDeniedError    403
     |    +-- NotFoundError            404
     |    +-- ClientError              other 4xx
     |    +-- RateLimitError           429
     |    +-- InternalServerError      500 and other 5xx
     |    +-- ServiceUnavailableError  502 / 503 / 504
     |    +-- APIConnectionError       (also a ConnectionError) the request never left
     |    +-- APITimeoutError          (also a TimeoutError) sent, no complete response
     |    +-- StreamError              an event stream ended in an error or incompletely
     |    +-- CircuitOpenError         the breaker for the host is open: nothing was sent
    ValueError
     +-- ConfigError                   a policy file or value is wrong

The retry machinery never wraps *your* exceptions in these: they are raised
by adapters built with ``raise_on_give_up=True``, by stream guards, and by
code that asks for them (:func:`api_error`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ._envelope import ErrorInfo
from ._redact import redact
from ._rules import Classification, Kind

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ClientError",
    "ConfigError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "StreamError",
    "api_error",
]


class APIError(Exception):
    """An API call failed in a way the policy classified.

    ``message`` is built from the server's own words (redacted) and the
    policy's advice for this class of failure. Redacted at the source: the
    message (so ``str``, ``args`` and ``repr``), ``code`` and ``info`` never
    carry an API key or a bearer token, whoever builds the error.
    """

    status: int | None
    code: str | None
    kind: str
    retryable: bool
    attempts: int
    advice: str
    retry_after: float | None
    info: ErrorInfo | None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        kind: str = Kind.UNKNOWN,
        retryable: bool = False,
        attempts: int = 1,
        advice: str = "",
        retry_after: float | None = None,
        info: ErrorInfo | None = None,
    ) -> None:
        message = redact(str(message))
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = redact(code) if isinstance(code, str) else code
        self.kind = kind
        self.retryable = retryable
        self.attempts = attempts
        self.advice = advice
        self.retry_after = retry_after
        self.info = info

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"kind={str(self.kind)!r}, retryable={self.retryable!r}, attempts={self.attempts!r})"
        )


class BadRequestError(APIError):
    """400: the request is structurally invalid; fix it before retrying."""


class AuthenticationError(APIError):
    """401: missing, malformed or revoked credentials."""


class PermissionDeniedError(APIError):
    """403: the key is valid but the operation is not permitted."""


class NotFoundError(APIError):
    """404: gone, or not yours."""


class ClientError(APIError):
    """Any other 4xx."""


class RateLimitError(APIError):
    """429: a usage limit was exceeded; slow down."""


class InternalServerError(APIError):
    """500 and other 5xx: an unexpected failure on the server's side."""


class ServiceUnavailableError(APIError):
    """502/503/504: the backend is overloaded or restarting."""


class APIConnectionError(APIError, ConnectionError):
    """The request never reached the server."""


class APITimeoutError(APIError, TimeoutError):
    """The request was sent but no complete response came back."""


class StreamError(APIError):
    """An event stream ended with an ``error`` event or without its completion event."""


class CircuitOpenError(APIError):
    """The circuit breaker of the policy for this host is open: the request was not sent.

    ``retry_in`` (and ``retry_after``, the same) is the number of seconds until
    the breaker lets the next probe through, so an outer retry layer waits for
    it; ``retryable`` is True, and a policy classifies it as it would a 503
    (the service is unavailable, as judged here). ``host`` names the breaker.
    """

    retry_in: float
    host: str

    def __init__(
        self,
        message: str,
        *,
        retry_in: float,
        host: str = "",
        attempts: int = 0,
        advice: str = "",
    ) -> None:
        super().__init__(
            message,
            kind=Kind.UNAVAILABLE,
            retryable=True,
            attempts=attempts,
            advice=advice,
            retry_after=retry_in,
        )
        self.retry_in = retry_in
        self.host = host

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = functools.partial(
            CircuitOpenError,
            retry_in=self.retry_in,
            host=self.host,
            attempts=self.attempts,
            advice=self.advice,
        )
        return (rebuild, (self.message,))


class ConfigError(ValueError):
    """A policy file or policy value is wrong; the message names where and what was expected.

    ``.path`` is the file (None when no file is involved) and ``.problems`` lists
    every problem found, each naming its key path.
    """

    path: Path | None
    problems: list[str]

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        problems: Sequence[str] | None = None,
        origin: str = "",
    ) -> None:
        super().__init__(message)
        self.path = path
        self.problems = list(problems) if problems is not None else [message]
        self.origin = origin
        """Who named the file (``named by RETRYPOLICY_CONFIG``), when it was not the caller."""

    @classmethod
    def for_file(cls, path: Path, problems: Sequence[str], *, origin: str = "") -> ConfigError:
        """The error for a policy (or script) file with *problems*: one line for one
        problem, else a count and a list; *origin* says who named the file."""
        where = f"{path} ({origin})" if origin else str(path)
        if len(problems) == 1:
            message = f"{where}: {problems[0]}"
        else:
            listed = "\n".join(f"  - {p}" for p in problems)
            message = f"{where}: {len(problems)} problems:\n{listed}"
        return cls(message, path=path, problems=problems, origin=origin)

    def __reduce__(self) -> tuple[Any, ...]:
        # the default would call cls(message) and lose the rest (multiprocessing pickles it)
        rebuild = functools.partial(
            ConfigError, path=self.path, problems=self.problems, origin=self.origin
        )
        return (rebuild, (str(self),))


_BY_KIND: Final[dict[str, type[APIError]]] = {
    Kind.INVALID_REQUEST: BadRequestError,
    Kind.AUTHENTICATION: AuthenticationError,
    Kind.PERMISSION: PermissionDeniedError,
    Kind.NOT_FOUND: NotFoundError,
    Kind.CLIENT_ERROR: ClientError,
    Kind.RATE_LIMITED: RateLimitError,
    Kind.SERVER_ERROR: InternalServerError,
    Kind.UNAVAILABLE: ServiceUnavailableError,
    Kind.CONNECTION: APIConnectionError,
    Kind.TIMEOUT: APITimeoutError,
    Kind.UPSTREAM_TIMEOUT: StreamError,
    Kind.UPSTREAM_ERROR: StreamError,
    Kind.INTERNAL_ERROR: StreamError,
    Kind.CANCELLED: StreamError,
    Kind.STREAM_ERROR: StreamError,
    Kind.INCOMPLETE_STREAM: StreamError,
}


def _class_for(c: Classification, status: int | None) -> type[APIError]:
    cls = _BY_KIND.get(c.kind)
    if cls is not None:
        return cls
    # a label from a user's policy: fall back on the status class
    if status is not None:
        if status == 429:
            return RateLimitError
        if 400 <= status < 500:
            return ClientError
        if status >= 500:
            return InternalServerError
    return APIError


def _seconds(seconds: float) -> str:
    """A wait for a message: ``7s``, ``1e+30s``; an infinite hint reads as such."""
    return f"{seconds:g}s" if math.isfinite(seconds) else "indefinitely"


def api_error(
    classification: Classification,
    info: ErrorInfo | None = None,
    *,
    attempts: int = 1,
    retry_after: float | None = None,
    cause: str | None = None,
    stream: bool = False,
) -> APIError:
    """Build the :class:`APIError` subclass that fits *classification*.

    *cause* replaces the server's message when there was no response (a
    connection failure); *stream* forces :class:`StreamError`.
    """
    status = info.status if info is not None else None
    code = info.code if info is not None else None
    cls = StreamError if stream else _class_for(classification, status)
    head = f"HTTP {status}" if status is not None else str(classification.kind)
    if code:
        head += f" {code}"
    said = cause if cause is not None else (info.message if info is not None else None)
    parts = [head + (f": {said}" if said else "")]
    parts.append(f"[{classification.kind}; {attempts} attempt{'s' if attempts != 1 else ''}]")
    if retry_after is not None:
        parts.append(f"(server asked to wait {_seconds(retry_after)})")
    if classification.advice:
        parts.append("— " + classification.advice)
    return cls(
        " ".join(parts),
        status=status,
        code=code,
        kind=classification.kind,
        retryable=classification.retryable,
        attempts=attempts,
        advice=classification.advice,
        retry_after=retry_after,
        info=info,
    )
