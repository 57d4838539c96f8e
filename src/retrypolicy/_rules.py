"""Classification: what happened (status, error code, transport failure) -> a class.

A :class:`Rule` matches on an HTTP status (exact, a list, or a class such as
``"5xx"``), on an error code, on a transport failure, or on a combination; the
first rule of a policy that matches decides. The rules know nothing of any
transport library: adapters translate their exceptions into failure names
(``"connection"``, ``"timeout"``) through :func:`register_exception`.
"""

from __future__ import annotations

import enum
import errno
import re
import socket
import ssl
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Final, TypeAlias

import attrs

from ._backoff import Backoff
from ._budget import whole_at_least
from ._failure import Failure

__all__ = [
    "ANY_CODE",
    "Classification",
    "Failure",
    "Kind",
    "Rule",
    "StatusMatch",
    "failure_of",
    "failure_of_kind",
    "register_exception",
]


class Kind(enum.StrEnum):
    """The classes of outcome the built-in profiles know.

    A ``str`` enum: ``Kind.RATE_LIMITED == "rate_limited"``. Policies written in
    TOML may label their rules with other strings; those come back as plain
    ``str``.
    """

    SUCCESS = "success"
    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    UNAVAILABLE = "unavailable"
    CLIENT_ERROR = "client_error"
    CONNECTION = "connection"
    TIMEOUT = "timeout"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_ERROR = "upstream_error"
    INTERNAL_ERROR = "internal_error"
    CANCELLED = "cancelled"
    STREAM_ERROR = "stream_error"
    INCOMPLETE_STREAM = "incomplete_stream"
    UNKNOWN = "unknown"


_KINDS: Final = {k.value: k for k in Kind}


def as_kind(label: str) -> str:
    """Return the :class:`Kind` member for *label* if there is one, else *label*."""
    return _KINDS.get(label, label)


ANY_CODE: Final = "*"
"""A rule's ``code`` that matches any error code that is present."""

_CLASS_RE: Final = re.compile(r"^([1-5])xx$")


@attrs.frozen
class StatusMatch:
    """Which statuses a rule matches: exact codes and/or whole classes (``5xx``)."""

    codes: frozenset[int] = frozenset()
    classes: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, spec: int | str | Iterable[int | str]) -> StatusMatch:
        """Build from ``503``, ``[502, 503]``, ``"5xx"`` or ``["4xx", 500]``.

        Raises:
            ValueError: naming the offending item and what was expected.
        """
        items: Iterable[int | str] = [spec] if isinstance(spec, int | str) else spec
        codes: set[int] = set()
        classes: set[int] = set()
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool):
                if not 100 <= item <= 599:
                    msg = f"status {item!r}: expected an HTTP status 100-599"
                    raise ValueError(msg)
                codes.add(item)
            elif isinstance(item, str) and (m := _CLASS_RE.match(item.strip().lower())):
                classes.add(int(m.group(1)))
            elif isinstance(item, str) and item.strip().isdecimal():  # int() reads any of these
                codes |= cls.parse(int(item.strip())).codes
            else:
                msg = f"status {item!r}: expected an HTTP status 100-599 or a class like '5xx'"
                raise ValueError(msg)
        if not codes and not classes:
            msg = "status []: expected at least one status or class"
            raise ValueError(msg)
        return cls(frozenset(codes), frozenset(classes))

    def __contains__(self, status: int) -> bool:
        return status in self.codes or status // 100 in self.classes

    def to_data(self) -> int | str | list[int | str]:
        """The TOML form: a bare int or class when there is one item, a list otherwise."""
        items: list[int | str] = [*sorted(self.codes), *(f"{c}xx" for c in sorted(self.classes))]
        return items[0] if len(items) == 1 else items


def _to_status_match(value: object) -> StatusMatch | None:
    if value is None or isinstance(value, StatusMatch):
        return value
    return StatusMatch.parse(value)  # type: ignore[arg-type] # parse() checks every item


def _to_failure(value: object) -> Failure | None:
    if value is None or isinstance(value, Failure):
        return value
    try:
        return Failure(str(value))
    except ValueError:
        expected = ", ".join(repr(f.value) for f in Failure)
        msg = f"failure {value!r}: expected one of {expected}"
        raise ValueError(msg) from None


def _label(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        msg = f"{attr.name} {value!r}: expected a string"
        raise TypeError(msg)
    if not value:
        msg = f"{attr.name} '': expected a non-empty string"
        raise ValueError(msg)


@attrs.frozen(kw_only=True)
class Rule:
    """One line of an error contract: *when* this happens, *what* it is and *whether* to retry.

    At least one of ``status``, ``code`` and ``failure`` must be set; all that
    are set must match. ``code="*"`` matches any code that is present.
    """

    kind: str = attrs.field(converter=as_kind, validator=_label)
    retry: bool = attrs.field(validator=attrs.validators.instance_of(bool))
    max_retries: int = attrs.field(default=0, validator=whole_at_least(0))
    status: StatusMatch | None = attrs.field(default=None, converter=_to_status_match)
    code: str | None = attrs.field(default=None, validator=attrs.validators.optional(_label))
    failure: Failure | None = attrs.field(default=None, converter=_to_failure)
    advice: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    backoff: Backoff | None = None
    """A backoff for this rule's outcomes, or None to use the policy's."""

    def __attrs_post_init__(self) -> None:
        if self.status is None and self.code is None and self.failure is None:
            msg = "rule: expected at least one of status, code, failure"
            raise ValueError(msg)

    def matches(self, status: int | None, code: str | None, failure: Failure | None) -> bool:
        """True when every condition this rule sets holds."""
        if self.failure is not None and self.failure is not failure:
            return False
        if self.status is not None and (status is None or status not in self.status):
            return False
        return self.code is None or (code is not None and self.code in (ANY_CODE, code))


@attrs.frozen
class Classification:
    """What a policy makes of an outcome."""

    kind: str
    retryable: bool
    max_retries: int
    reason: str
    advice: str = ""
    rule: Rule | None = attrs.field(default=None, repr=False, eq=False)


# The exception registry: adapters (and the apply layer, for well-known
# transports) teach the core what exception types mean without the core
# importing them. A key is a type, or "package.QualName" for a type the core
# must not import (matched on the top-level package, so re-exports work). A
# value is a Failure, None ("not a transport failure"), or a function that
# looks at the exception. The most specific class in the MRO wins.
FailureResolver: TypeAlias = "Failure | Callable[[BaseException], Failure | None] | None"

_NETWORK_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED",
        "ENETUNREACH",
        "EHOSTUNREACH",
        "ENETDOWN",
        "EHOSTDOWN",
        "EADDRNOTAVAIL",
        "ECONNABORTED",
        "ETIMEDOUT",
    )
    if hasattr(errno, name)
)


def _os_error(exc: BaseException) -> Failure | None:
    """A bare OSError is a network failure only when its errno says so (not ENOENT...)."""
    no = getattr(exc, "errno", None)
    if no == errno.ETIMEDOUT:
        return Failure.TIMEOUT
    return Failure.CONNECTION if no in _NETWORK_ERRNOS else None


_EXCEPTIONS: dict[type[BaseException] | str, FailureResolver] = {
    ConnectionRefusedError: Failure.CONNECTION,
    ConnectionResetError: Failure.TIMEOUT,
    ConnectionAbortedError: Failure.TIMEOUT,
    BrokenPipeError: Failure.TIMEOUT,
    ConnectionError: Failure.CONNECTION,
    TimeoutError: Failure.TIMEOUT,
    socket.gaierror: Failure.CONNECTION,
    socket.herror: Failure.CONNECTION,
    ssl.SSLCertVerificationError: None,  # a certificate problem needs a fix, not a retry
    ssl.SSLError: Failure.CONNECTION,
    OSError: _os_error,
}
_failure_cache: dict[type[BaseException], FailureResolver] = {}
plain_failures: dict[type[BaseException], Failure] = {}
"""Exception types whose every instance without attributes is the same transport failure (no
response on the class, not an API error): the extractor's fast path, learnt as it goes and
forgotten with the registry's cache."""


def register_exception(
    exc_type: type[BaseException] | str,
    failure: Failure | str | Callable[[BaseException], Failure | None] | None,
) -> None:
    """Teach every policy what an exception type means.

    *exc_type* is a class, or ``"package.QualName"`` for one the caller does not
    want to import (``"httpx.ReadTimeout"``). *failure* is ``"connection"`` (the
    request never left), ``"timeout"`` (sent, no complete response), ``None``
    (not a transport failure, even if a base class is), or a function of the
    exception returning one of those.
    """
    _load_known()  # the well-known names first: what the caller registers wins over them
    _EXCEPTIONS[exc_type] = failure if callable(failure) else _to_failure(failure)
    _failure_cache.clear()
    plain_failures.clear()


_known_loaded: list[bool] = [False]


_loading_known: ContextVar[bool] = ContextVar("retrypolicy_loading_known", default=False)
"""True while this thread registers the table (its own look-ups must not start it again)."""


def _load_known() -> None:
    """Register requests', httpx's and urllib3's exceptions by name, once, when first needed:
    importing retrypolicy does no work beyond its re-exports.

    The loaded flag is set only once the whole table is registered: a thread that sees it
    finds every name. Threads that arrive together each register the table (the same
    entries, in the same order), so none classifies with half of it — with half of it,
    requests' ``ConnectionError`` would be cached as nothing (kind ``unknown``)."""
    if _known_loaded[0] or _loading_known.get():
        return
    token = _loading_known.set(True)
    try:
        from ._known import known_exceptions  # noqa: PLC0415 - loaded when first needed

        for name, failure in known_exceptions(failure_of).items():
            register_exception(name, failure)
    finally:
        _loading_known.reset(token)
    _known_loaded[0] = True


def _resolver_for(tp: type[BaseException]) -> FailureResolver:
    _load_known()
    for base in tp.__mro__:
        found = _EXCEPTIONS.get(base, _MISSING)
        if found is _MISSING:
            key = f"{base.__module__.partition('.')[0]}.{base.__qualname__}"
            found = _EXCEPTIONS.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value] # _MISSING ruled out above
    return None


_MISSING: Final = object()

_FAILURE_OF_KIND: Final[dict[str, Failure]] = {
    Kind.CONNECTION: Failure.CONNECTION,
    Kind.TIMEOUT: Failure.TIMEOUT,
    Kind.INCOMPLETE_STREAM: Failure.INCOMPLETE_STREAM,
    Kind.STREAM_ERROR: Failure.STREAM_ERROR,
}


def failure_of_kind(kind: str) -> Failure | None:
    """The failure behind an error of *kind* (an APIError's kind), if it is one."""
    return _FAILURE_OF_KIND.get(kind)


def failure_of(exc: BaseException) -> Failure | None:
    """The failure an exception stands for, or None if it is not a transport failure."""
    tp = type(exc)
    try:
        resolver = _failure_cache[tp]
    except KeyError:
        resolver = _failure_cache[tp] = _resolver_for(tp)
    if resolver is None or isinstance(resolver, Failure):
        return resolver
    try:
        return _to_failure(resolver(exc))
    except Exception:  # noqa: BLE001 - a broken resolver must not break classification
        return None
