"""retrypolicy for requests: a mountable ``HTTPAdapter`` that retries by a policy.

::

    session = requests.Session()
    session.mount("https://", RetryAdapter(rp.EUGPT))
"""

from __future__ import annotations

try:
    import requests as _requests  # noqa: F401 - fail early, naming the install
except ImportError as exc:  # pragma: no cover - requests is a core dependency
    msg = "retrypolicy_requests needs requests: pip install retrypolicy (requests is included)"
    raise ImportError(msg) from exc

from ._adapter import RetryAdapter

__all__ = ["RetryAdapter"]
