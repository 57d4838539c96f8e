"""retrypolicy: an HTTP API's error contract, executable.

A pure core classifies what happened and decides what to do next; the apply
layer and the transport adapters carry the decision out.

The names here are the ones a user types. The engine's values live in
documented submodules: :mod:`retrypolicy.transport` (the seam adapters drive:
``Outcome``, ``Decision``, ``AttemptState``, ``EXHAUSTED``, ``api_error``,
``redact``, the ``Retry-After`` parsers), :mod:`retrypolicy.instrumentation`
(hooks, ``RetryEvent``), :mod:`retrypolicy.testing` and :mod:`retrypolicy.typing`.
"""

from __future__ import annotations

import importlib
import warnings
from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from . import instrumentation
from ._backoff import Backoff
from ._breaker import CircuitBreaker
from ._budget import RetryBudget
from ._config import dump_policy, load_policy
from ._decorators import Attempt, Attempts, attempts, retry
from ._envelope import ErrorInfo, parse_error
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ClientError,
    ConfigError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    StreamError,
)
from ._limiter import AdaptiveLimiter
from ._policy import Policy
from ._profiles import EUGPT, HTTP
from ._rules import Classification, Failure, Kind, Rule, register_exception
from ._simulate import Scenario, Simulation, simulate

try:  # the installed distribution's version: one source of truth, pyproject.toml
    __version__: str = _metadata.version("retrypolicy")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from . import stores, testing, transport

_LAZY = frozenset({"stores", "testing", "transport", "typing"})
"""Submodules loaded on first use: ``testing`` brings a whole HTTP server."""
_MOVED = {
    "Outcome": "transport",
    "Decision": "transport",
    "AttemptState": "transport",
    "EXHAUSTED": "transport",
    "api_error": "transport",
    "redact": "transport",
    "parse_retry_after": "transport",
    "retry_after_from_headers": "transport",
    "RetryEvent": "instrumentation",
}
"""Engine values that were re-exported here before 0.1: still found, with a warning."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    home = _MOVED.get(name)
    if home is not None:
        warnings.warn(
            f"retrypolicy.{name} moved to retrypolicy.{home}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(f"{__name__}.{home}"), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "EUGPT",
    "HTTP",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AdaptiveLimiter",
    "Attempt",
    "Attempts",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Classification",
    "ClientError",
    "ConfigError",
    "ErrorInfo",
    "Failure",
    "InternalServerError",
    "Kind",
    "NotFoundError",
    "PermissionDeniedError",
    "Policy",
    "RateLimitError",
    "RetryBudget",
    "Rule",
    "Scenario",
    "ServiceUnavailableError",
    "Simulation",
    "StreamError",
    "attempts",
    "dump_policy",
    "instrumentation",
    "load_policy",
    "parse_error",
    "register_exception",
    "retry",
    "simulate",
    "stores",
    "testing",
    "transport",
]
