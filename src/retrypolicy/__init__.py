"""retrypolicy: an HTTP API's error contract, executable.

A pure core classifies what happened and decides what to do next; the apply
layer and the transport adapters carry the decision out.
"""

from __future__ import annotations

from . import _known, instrumentation, testing
from ._backoff import Backoff, parse_retry_after, retry_after_from_headers
from ._config import dump_policy, load_policy
from ._decorators import Attempt, Attempts, attempts, retry
from ._envelope import ErrorInfo, parse_error
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    ConfigError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    StreamError,
    api_error,
)
from ._events import RetryEvent
from ._outcome import EXHAUSTED, AttemptState, Decision, Outcome
from ._policy import Policy
from ._profiles import EUGPT, HTTP
from ._redact import redact
from ._rules import Classification, Failure, Kind, Rule, register_exception

_known.register_known_exceptions()

__all__ = [
    "EUGPT",
    "EXHAUSTED",
    "HTTP",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "Attempt",
    "AttemptState",
    "Attempts",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "Classification",
    "ClientError",
    "ConfigError",
    "Decision",
    "ErrorInfo",
    "Failure",
    "InternalServerError",
    "Kind",
    "NotFoundError",
    "Outcome",
    "PermissionDeniedError",
    "Policy",
    "RateLimitError",
    "RetryEvent",
    "Rule",
    "ServiceUnavailableError",
    "StreamError",
    "api_error",
    "attempts",
    "dump_policy",
    "instrumentation",
    "load_policy",
    "parse_error",
    "parse_retry_after",
    "redact",
    "register_exception",
    "retry",
    "retry_after_from_headers",
    "testing",
]
