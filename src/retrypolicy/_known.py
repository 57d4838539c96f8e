"""Well-known transport exceptions, registered by name so nothing is imported.

With these, ``@rp.retry`` around code that uses requests, httpx, httpx2,
urllib3 or the openai SDK directly classifies their errors correctly even when
no adapter is imported. Names are ``top_package.QualName``: re-exports from
private modules match.

The openai SDK wraps what its HTTP library (httpx2) raised: a timeout in
``openai.APITimeoutError``, anything else in ``openai.APIConnectionError``, the
original as ``__cause__``. Those two are judged by their cause (a read error
after sending is a timeout, as for httpx2 itself; a connect timeout never left);
a status error (``openai.APIStatusError``) is judged by its ``.response``, like
``httpx.HTTPStatusError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

from ._failure import Failure

__all__ = ["KNOWN_EXCEPTIONS", "known_exceptions"]

Lookup: TypeAlias = Callable[[BaseException], Failure | None]
"""What an exception means: the registry's own lookup, or a resolver of one type."""

C, T = Failure.CONNECTION, Failure.TIMEOUT

KNOWN_EXCEPTIONS: Final[dict[str, Failure | None]] = {
    # requests: most of its exceptions subclass OSError; only these are transport failures.
    "requests.RequestException": None,
    "requests.HTTPError": None,  # raise_for_status(): classified by its response's status
    "requests.ProxyError": C,
    "requests.SSLError": None,
    "requests.ConnectTimeout": C,  # never reached the server
    "requests.ReadTimeout": T,
    "requests.Timeout": T,
    "requests.ChunkedEncodingError": T,
    # httpx, and httpx2 (the fork of httpx the openai SDK is built on): the same meanings
    **{
        f"{package}.{name}": failure
        for package in ("httpx", "httpx2")
        for name, failure in (
            ("HTTPError", None),
            ("ConnectError", C),
            ("ConnectTimeout", C),
            ("PoolTimeout", C),  # no connection was ever used
            ("ProxyError", C),
            ("ReadTimeout", T),
            ("WriteTimeout", T),
            ("ReadError", T),
            ("WriteError", T),
            ("RemoteProtocolError", T),
        )
    },
    # openai: its own errors are no transport failures, but for the two below
    "openai.OpenAIError": None,  # e.g. APIResponseValidationError: a 200 the SDK refused
    "openai.APIStatusError": None,  # classified by its response's status (and body's code)
    # urllib3
    "urllib3.HTTPError": None,
    "urllib3.NewConnectionError": C,
    "urllib3.NameResolutionError": C,
    "urllib3.ConnectTimeoutError": C,
    "urllib3.ReadTimeoutError": T,
    "urllib3.ProtocolError": T,
    "urllib3.ProxyError": C,
    "urllib3.SSLError": None,
}


def known_exceptions(failure_of: Lookup) -> dict[str, Failure | Lookup | None]:
    """Every well-known name and what it means, for the registry in ``_rules`` to load.

    *failure_of* is that registry's lookup: the exceptions that wrap another
    (``requests.ConnectionError``, openai's connection and timeout errors) are judged by
    what they wrap. Passed in, so this table does not import the registry that loads it.
    """
    table: dict[str, Failure | Lookup | None] = dict(KNOWN_EXCEPTIONS)
    table["requests.ConnectionError"] = _requests_connection_error(failure_of)
    table["openai.APIConnectionError"] = _openai_wrapped(failure_of, Failure.CONNECTION)
    table["openai.APITimeoutError"] = _openai_wrapped(failure_of, Failure.TIMEOUT)
    return table


def _requests_connection_error(failure_of: Lookup) -> Lookup:
    """requests wraps both "never connected" and "connection dropped after sending" in
    ``requests.ConnectionError``; the wrapped urllib3 error tells them apart."""

    def resolve(exc: BaseException) -> Failure | None:
        inner = exc.args[0] if exc.args else None
        reason = getattr(inner, "reason", None)  # urllib3's MaxRetryError carries the cause
        for candidate in (reason, inner):
            if isinstance(candidate, BaseException):
                found = failure_of(candidate)
                if found is not None:
                    return found
        return Failure.CONNECTION

    return resolve


def _openai_wrapped(failure_of: Lookup, default: Failure) -> Lookup:
    """openai's ``APIConnectionError`` / ``APITimeoutError``: the failure of the httpx2
    error they wrap (``__cause__``), else *default*."""

    def resolve(exc: BaseException) -> Failure | None:
        cause = exc.__cause__
        found = failure_of(cause) if cause is not None else None
        return default if found is None else found

    return resolve
