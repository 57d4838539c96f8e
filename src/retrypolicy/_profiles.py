"""The built-in profiles: the EU GPT API's contract, and a generic HTTP one.

Each rule of :data:`EUGPT` is one sentence of the EU GPT error page
(``spec/eugpt-errors.txt``); the advice strings are what that page tells a
caller to do, surfaced on the errors we raise.
"""

from __future__ import annotations

from typing import Final

from ._backoff import Backoff
from ._budget import RetryBudget
from ._policy import Policy
from ._rules import ANY_CODE, Failure, Kind, Rule

__all__ = ["EUGPT", "HTTP", "PROFILES"]

ADVICE: Final[dict[str, str]] = {
    Kind.INVALID_REQUEST: (
        "The request is structurally invalid (input missing or empty, an unknown model id, "
        "a malformed UUID). Do not retry without changes: fix the request first."
    ),
    Kind.AUTHENTICATION: (
        "Missing, malformed or revoked API key. Check that the Authorization header is present "
        "and starts with 'Bearer', that the key is prefixed 'eugpt_', that it has not been "
        "revoked in the web UI, and that you call the environment that issued it (production "
        "keys do not work against staging). Do not retry until credentials are fixed."
    ),
    Kind.PERMISSION: (
        "The key is valid but the operation is not permitted: project membership is required, "
        "or the license plan disallows it (trial expired, organisation policy disabled API "
        "access). Retry only after fixing membership or upgrading the plan."
    ),
    Kind.NOT_FOUND: (
        "The resource does not exist for this user: really gone and not yours both return 404. "
        "Do not retry: it is not coming back."
    ),
    Kind.RATE_LIMITED: (
        "A usage limit was exceeded; retried with capped exponential backoff and the API kept "
        "returning 429. Slow down and try again later; contact EU GPT if you consistently hit "
        "limits during normal operation."
    ),
    Kind.SERVER_ERROR: (
        "An unexpected failure in EU GPT, retried once or twice. If it persists the issue is on "
        "EU GPT's side: check the status page and reach out."
    ),
    Kind.UNAVAILABLE: (
        "The load balancer reports the backend overloaded or restarting: transient, retried with "
        "exponential backoff."
    ),
    Kind.CLIENT_ERROR: "The server rejected the request (4xx). Do not retry without changes.",
    Kind.CONNECTION: "The request never reached the server (connect failure); retried.",
    Kind.TIMEOUT: (
        "The request was sent but no complete response came back (read timeout or reset); "
        "retried. The endpoint ignores Idempotency-Key: a retry generates a fresh response."
    ),
    Kind.UPSTREAM_TIMEOUT: "The model took too long (stream error upstream_timeout). Retry.",
    Kind.UPSTREAM_ERROR: (
        "The model returned an internal error (stream error upstream_error). Retry."
    ),
    Kind.INTERNAL_ERROR: "Generic platform failure (stream error internal_error). Retry once.",
    Kind.CANCELLED: (
        "The request was cancelled (e.g. the upstream conversation was deleted mid-flight). "
        "Not retried."
    ),
    Kind.STREAM_ERROR: (
        "The stream ended with an undocumented error code; only documented codes are retried."
    ),
    Kind.INCOMPLETE_STREAM: (
        "The stream ended with neither response.completed nor an error event; do not assume "
        "success just because the stream opened."
    ),
}


def _rule(kind: Kind, retries: int, advice: str = "", **match: object) -> Rule:
    return Rule(
        kind=kind,
        retry=retries > 0,
        max_retries=retries,
        advice=advice,
        **match,  # type: ignore[arg-type] # status/code/failure/backoff keywords, checked by Rule
    )


def _eugpt(kind: Kind, retries: int, **match: object) -> Rule:
    return _rule(kind, retries, ADVICE[kind], **match)


EUGPT: Final = Policy(
    name="eugpt",
    rules=(
        _eugpt(Kind.INVALID_REQUEST, 0, status=400),
        _eugpt(Kind.AUTHENTICATION, 0, status=401),
        _eugpt(Kind.PERMISSION, 0, status=403),
        _eugpt(Kind.NOT_FOUND, 0, status=404),
        _eugpt(Kind.RATE_LIMITED, 6, status=429, backoff=Backoff(initial=1.0, max_delay=20.0)),
        _eugpt(Kind.SERVER_ERROR, 2, status=500),
        _eugpt(Kind.UNAVAILABLE, 5, status=[502, 503, 504]),
        _eugpt(Kind.CLIENT_ERROR, 0, status="4xx"),
        _eugpt(Kind.SERVER_ERROR, 2, status="5xx"),
        _eugpt(Kind.UPSTREAM_TIMEOUT, 3, code="upstream_timeout"),
        _eugpt(Kind.UPSTREAM_ERROR, 3, code="upstream_error"),
        _eugpt(Kind.INTERNAL_ERROR, 1, code="internal_error"),
        _eugpt(Kind.CANCELLED, 0, code="cancelled"),
        _eugpt(Kind.STREAM_ERROR, 0, code=ANY_CODE),
        _eugpt(Kind.STREAM_ERROR, 0, failure=Failure.STREAM_ERROR),
        _eugpt(Kind.CONNECTION, 5, failure=Failure.CONNECTION),
        _eugpt(Kind.TIMEOUT, 2, failure=Failure.TIMEOUT),
        _eugpt(Kind.INCOMPLETE_STREAM, 2, failure=Failure.INCOMPLETE_STREAM),
    ),
    backoff=Backoff(),
    max_attempts=10,
    budget=RetryBudget(),
)
"""The EU GPT API's error contract (``spec/eugpt-errors.txt``): the default everywhere.

One rule per documented outcome, each carrying the error page's advice: 400, 401, 403,
404 and other 4xx are never retried; 429 up to 6 times (1 s doubling to 20 s, the
server's ``Retry-After`` honoured); 500 and other 5xx twice; 502/503/504 five times; a
connect failure five times, a read timeout twice; in a stream, ``upstream_timeout`` and
``upstream_error`` three times, ``internal_error`` once, ``cancelled`` and undocumented
codes never, an incomplete stream twice. At most 10 attempts in all; waits of 0.5 s
doubling to 8 s with full jitter unless a rule has its own. A retry budget (500 tokens, a
retry costs 5, 10 after a timeout, a success refunds 1) bounds retries across calls; no
limiter and no breaker unless configured (:doc:`/storm`). The whole table, generated
from this object: :doc:`/contract`.
"""

HTTP: Final = Policy(
    name="http",
    rules=(
        _rule(Kind.RATE_LIMITED, 5, status=429),
        _rule(Kind.UNAVAILABLE, 5, status=[502, 503, 504]),
        _rule(Kind.SERVER_ERROR, 2, status=500),
        _rule(Kind.CLIENT_ERROR, 0, status="4xx"),
        _rule(Kind.SERVER_ERROR, 0, status="5xx"),
        _rule(Kind.CONNECTION, 3, failure=Failure.CONNECTION),
        _rule(Kind.TIMEOUT, 2, failure=Failure.TIMEOUT),
        _rule(Kind.INCOMPLETE_STREAM, 2, failure=Failure.INCOMPLETE_STREAM),
        _rule(Kind.STREAM_ERROR, 0, failure=Failure.STREAM_ERROR),
    ),
    backoff=Backoff(),
    max_attempts=8,
)
"""A conservative contract for any HTTP API: transient statuses and transport failures only.

429 and 502/503/504 are retried up to 5 times, 500 twice, a connect failure 3 times, a
read timeout and an incomplete event stream twice; every other 4xx and 5xx, and a
stream ``error`` event, never. Error codes in bodies play no part. At most 8 attempts in
all; waits of 0.5 s doubling to 8 s with full jitter. Select it with ``extends = "http"``
in a policy file, or ``RETRYPOLICY_PROFILE=http``.
"""

PROFILES: Final[dict[str, Policy]] = {"eugpt": EUGPT, "http": HTTP}
"""Built-in policies by the name a TOML ``extends`` uses."""
