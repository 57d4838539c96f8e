"""retrypolicy for httpx: transports that retry by a policy inside the client.

::

    client = httpx.Client(transport=RetryTransport(rp.EUGPT))
    client = httpx.AsyncClient(transport=AsyncRetryTransport(rp.EUGPT))

Importing this package without httpx installed fails with an ``ImportError``
that names the extra to install: ``pip install 'retrypolicy[httpx]'``.
"""

from __future__ import annotations

from ._transport import AsyncRetryTransport, RetryTransport

__all__ = ["AsyncRetryTransport", "RetryTransport"]
