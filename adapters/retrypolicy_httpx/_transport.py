"""``RetryTransport`` and ``AsyncRetryTransport`` for httpx (the logic is in ``_core``)."""

from __future__ import annotations

try:
    import httpx
except ImportError as exc:
    _MISSING = (
        "retrypolicy_httpx needs httpx, which is not installed: pip install 'retrypolicy[httpx]'"
        " (for httpx2, the library of the openai SDK: retrypolicy_httpx.httpx2)"
    )
    raise ModuleNotFoundError(_MISSING, name="httpx") from exc

from ._core import ATTEMPTS_EXTENSION, AsyncTransport, Library, SyncTransport

__all__ = ["ATTEMPTS_EXTENSION", "HTTPX", "AsyncRetryTransport", "RetryTransport"]

HTTPX = Library.of(httpx, other="httpx2")


class RetryTransport(SyncTransport[httpx.BaseTransport], httpx.BaseTransport):
    """An httpx transport that retries by *policy* (default ``rp.EUGPT``) around *transport*.

    ``httpx.Client(transport=RetryTransport())`` retries every request the
    client sends (``methods=None``: POST included, as the API's calls are
    POSTs; ``methods="POST"`` or ``["GET", "POST"]`` limits it — other requests
    are sent again only after a connection failure (they never left), one-shot
    bodies (generators) never; their streams are still checked). On give-up the
    final response is returned, so ``raise_for_status()`` keeps working, unless
    ``raise_on_give_up=True``: then the matching ``rp.APIError`` is raised (an
    exception from the inner transport is always re-raised unchanged). ``response.extensions
    ["retrypolicy.attempts"]`` says how many attempts were made. The keywords
    are those of :class:`retrypolicy.transport.AdapterOptions` (``sleep``, not
    ``async_sleep``). For an ``httpx2.Client`` (the openai SDK's), use
    :class:`retrypolicy_httpx.httpx2.RetryTransport`: mounted there, this one
    raises a ``TypeError`` that says so.
    """

    _library = HTTPX


class AsyncRetryTransport(AsyncTransport[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport):
    """:class:`RetryTransport` for ``httpx.AsyncClient`` (``async_sleep``, not ``sleep``)."""

    _library = HTTPX
