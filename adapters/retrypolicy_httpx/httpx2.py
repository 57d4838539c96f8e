"""The same transports for httpx2, the fork of httpx the openai SDK is built on.

::

    import openai
    from retrypolicy_httpx.httpx2 import RetryTransport

    client = openai.OpenAI(
        max_retries=0, http_client=openai.DefaultHttpxClient(transport=RetryTransport())
    )

httpx2 has httpx's transport interface but its own types, and a client of one
library cannot use a transport of the other: these classes are
:class:`retrypolicy_httpx.RetryTransport` and
:class:`retrypolicy_httpx.AsyncRetryTransport` bound to httpx2's types (one
implementation, ``retrypolicy_httpx._core``). Importing this module needs httpx2
only, not httpx. (``retrypolicy_openai`` builds such clients in one call.)
"""

from __future__ import annotations

try:
    import httpx2
except ImportError as exc:
    _MISSING = (
        "retrypolicy_httpx.httpx2 needs httpx2, which is not installed: "
        "pip install httpx2 (or 'retrypolicy[openai]', whose SDK brings it)"
    )
    raise ModuleNotFoundError(_MISSING, name="httpx2") from exc

from ._core import AsyncTransport as _AsyncTransport
from ._core import Library as _Library
from ._core import SyncTransport as _SyncTransport

__all__ = ["AsyncRetryTransport", "RetryTransport"]

_HTTPX2 = _Library.of(httpx2, other="httpx")


class RetryTransport(_SyncTransport[httpx2.BaseTransport], httpx2.BaseTransport):
    """:class:`retrypolicy_httpx.RetryTransport` for an ``httpx2.Client``.

    The inner *transport* defaults to ``httpx2.HTTPTransport()``; mounted in an
    ``httpx.Client`` this one raises a ``TypeError`` that names the right class.
    """

    _library = _HTTPX2


class AsyncRetryTransport(_AsyncTransport[httpx2.AsyncBaseTransport], httpx2.AsyncBaseTransport):
    """:class:`retrypolicy_httpx.AsyncRetryTransport` for an ``httpx2.AsyncClient``."""

    _library = _HTTPX2
