"""retrypolicy for urllib3: a ``Retry`` whose decisions come from a policy.

::

    http = urllib3.PoolManager(retries=PolicyRetry(rp.EUGPT))

A ``Retry`` object never sees the body of a streamed 200, so event streams are
checked with :func:`guard_stream` as they are read.
"""

from __future__ import annotations

try:
    import urllib3 as _urllib3  # noqa: F401 - fail early, naming the install
except ImportError as exc:
    msg = "retrypolicy_urllib3 needs urllib3: pip install retrypolicy (urllib3 comes with requests)"
    raise ImportError(msg) from exc

from ._retry import PolicyRetry, guard_stream

__all__ = ["PolicyRetry", "guard_stream"]
