"""retrypolicy for the official openai SDK: its clients, retried by a policy.

EU GPT has the shape of OpenAI's Responses API, so the SDK works against it
with ``base_url=``. These build SDK clients whose HTTP goes through
:mod:`retrypolicy_httpx.httpx2`'s transport, with the SDK's own retries off (two
retry layers multiply), and read the policy's verdict off what the SDK raises::

    import retrypolicy_openai as rpo

    client = rpo.client(rp.EUGPT, base_url=URL, api_key=KEY)   # max_retries=0
    aclient = rpo.async_client(rp.EUGPT, base_url=URL, api_key=KEY)
    client = rpo.wrap(existing_client, rp.EUGPT)               # a copy, SDK retries off

    try:
        client.responses.create(model="auto", input="Hello", stream=False)
    except openai.APIError as exc:
        error = rpo.api_error(exc)          # .kind .retryable .attempts .status .code
        verdict = rpo.classify(exc)         # an rp.Classification

Pass ``stream=False`` for a plain response: EU GPT streams unless told otherwise,
and the SDK leaves out a ``stream`` it was not given.

Importing this package without the SDK installed fails with an ``ImportError``
that names the extra to install: ``pip install 'retrypolicy[openai]'``.
"""

from __future__ import annotations

try:
    import openai as _openai  # noqa: F401 - imported first, for the message below
except ImportError as exc:
    _MISSING = (
        "retrypolicy_openai needs the openai SDK, which is not installed: "
        "pip install 'retrypolicy[openai]'"
    )
    raise ModuleNotFoundError(_MISSING, name="openai") from exc

from ._clients import ClientKeywords, SDKRetriesWarning, async_client, client, wrap
from ._verdict import api_error, classify

__all__ = [
    "ClientKeywords",
    "SDKRetriesWarning",
    "api_error",
    "async_client",
    "classify",
    "client",
    "wrap",
]
