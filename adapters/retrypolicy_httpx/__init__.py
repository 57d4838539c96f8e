"""retrypolicy for httpx and httpx2: transports that retry by a policy inside the client.

::

    client = httpx.Client(transport=RetryTransport(rp.EUGPT))
    client = httpx.AsyncClient(transport=AsyncRetryTransport(rp.EUGPT))

For httpx2 (the openai SDK's HTTP library) the same classes live in
:mod:`retrypolicy_httpx.httpx2`. Importing them without httpx installed fails
with an ``ImportError`` that names the extra to install:
``pip install 'retrypolicy[httpx]'``; ``retrypolicy_httpx.httpx2`` needs httpx2 only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._transport import AsyncRetryTransport, RetryTransport

__all__ = ["AsyncRetryTransport", "RetryTransport"]


def __getattr__(name: str) -> Any:
    # httpx is imported on first use, so that retrypolicy_httpx.httpx2 works without it
    if name in __all__:
        from . import _transport  # noqa: PLC0415

        return getattr(_transport, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
