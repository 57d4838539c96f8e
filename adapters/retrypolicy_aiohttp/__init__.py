"""retrypolicy for aiohttp (3.12+): ``ClientSession(middlewares=(RetryMiddleware(),))``.

Without aiohttp, importing this fails naming the extra: ``pip install 'retrypolicy[aiohttp]'``.
"""

from __future__ import annotations

try:
    from aiohttp import ClientMiddlewareType as _ClientMiddlewareType  # noqa: F401 - since 3.12
except ImportError as exc:
    msg = "retrypolicy_aiohttp needs aiohttp 3.12 or later: pip install 'retrypolicy[aiohttp]'"
    raise ImportError(msg) from exc

from ._middleware import CheckedContent, RetryMiddleware

__all__ = ["CheckedContent", "RetryMiddleware"]
