"""The EU GPT contract, one row per line of the DESIGN.md table and per sentence of the spec."""

from __future__ import annotations

import errno
import socket
import ssl

import pytest

import retrypolicy as rp
from retrypolicy import Failure, Kind

# (what happened, status, code, failure, kind, retryable, max_retries)
TABLE = [
    ("400 Bad Request: fix the request first", 400, None, None, Kind.INVALID_REQUEST, False, 0),
    ("401 Unauthorized: fix credentials", 401, None, None, Kind.AUTHENTICATION, False, 0),
    (
        "403 Forbidden: membership or plan",
        403,
        "project_forbidden",
        None,
        Kind.PERMISSION,
        False,
        0,
    ),
    ("404 Not Found: not coming back", 404, None, None, Kind.NOT_FOUND, False, 0),
    ("429: backoff with a cap, then slow down", 429, None, None, Kind.RATE_LIMITED, True, 6),
    ("500: retry once or twice", 500, None, None, Kind.SERVER_ERROR, True, 2),
    ("502: load balancer, transient", 502, None, None, Kind.UNAVAILABLE, True, 5),
    ("503: load balancer, transient", 503, None, None, Kind.UNAVAILABLE, True, 5),
    ("504: load balancer, transient", 504, None, None, Kind.UNAVAILABLE, True, 5),
    ("other 4xx: never", 409, None, None, Kind.CLIENT_ERROR, False, 0),
    ("other 4xx: never (422)", 422, None, None, Kind.CLIENT_ERROR, False, 0),
    ("other 5xx: like 500", 507, None, None, Kind.SERVER_ERROR, True, 2),
    (
        "connect failure: the request never left",
        None,
        None,
        Failure.CONNECTION,
        Kind.CONNECTION,
        True,
        5,
    ),
    ("read timeout / reset after sending", None, None, Failure.TIMEOUT, Kind.TIMEOUT, True, 2),
    (
        "stream error upstream_timeout: retry",
        200,
        "upstream_timeout",
        None,
        Kind.UPSTREAM_TIMEOUT,
        True,
        3,
    ),
    (
        "stream error upstream_error: retry",
        200,
        "upstream_error",
        None,
        Kind.UPSTREAM_ERROR,
        True,
        3,
    ),
    (
        "stream error internal_error: retry once",
        200,
        "internal_error",
        None,
        Kind.INTERNAL_ERROR,
        True,
        1,
    ),
    ("stream error cancelled: never", 200, "cancelled", None, Kind.CANCELLED, False, 0),
    ("undocumented stream code: never", 200, "model_on_fire", None, Kind.STREAM_ERROR, False, 0),
    (
        "stream error without a usable code: a failure, never",
        200,
        None,
        Failure.STREAM_ERROR,
        Kind.STREAM_ERROR,
        False,
        0,
    ),
    (
        "stream ended with neither",
        200,
        None,
        Failure.INCOMPLETE_STREAM,
        Kind.INCOMPLETE_STREAM,
        True,
        2,
    ),
]


@pytest.mark.parametrize(
    ("status", "code", "failure", "kind", "retryable", "max_retries"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_eugpt_table(
    status: int | None,
    code: str | None,
    failure: Failure | None,
    kind: Kind,
    retryable: bool,
    max_retries: int,
) -> None:
    """Each row of the DESIGN.md table classifies to its kind, retry verdict and limit."""
    c = rp.EUGPT.classify(status, code, failure=failure)
    assert (c.kind, c.retryable, c.max_retries) == (kind, retryable, max_retries)
    assert c.reason


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (400, ["fix the request"]),
        (401, ["Bearer", "eugpt_", "revoked", "environment"]),
        (403, ["membership", "plan"]),
        (404, ["not coming back"]),
        (429, ["Slow down"]),
        (500, ["status page"]),
    ],
)
def test_advice_follows_the_spec(status: int, words: list[str]) -> None:
    """The advice the spec gives for each class is surfaced on the classification."""
    advice = rp.EUGPT.classify(status).advice
    for word in words:
        assert word in advice


def test_status_is_checked_before_the_code() -> None:
    """Always check the HTTP status first: a 500 whose envelope says internal_error is a 500."""
    assert rp.EUGPT.classify(500, "internal_error").kind == Kind.SERVER_ERROR
    assert rp.EUGPT.classify(200, "internal_error").kind == Kind.INTERNAL_ERROR


def test_success_is_not_an_error() -> None:
    """A 2xx without an error code is a success and is never retried."""
    c = rp.EUGPT.classify(200)
    assert c.kind == Kind.SUCCESS
    assert not c.retryable


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(), Kind.CONNECTION),
        (ConnectionError(), Kind.CONNECTION),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), Kind.CONNECTION),
        (OSError(errno.ETIMEDOUT, "Connection timed out"), Kind.TIMEOUT),
        (socket.gaierror(-2, "Name or service not known"), Kind.CONNECTION),
        (ssl.SSLEOFError(), Kind.CONNECTION),
        (ssl.SSLCertVerificationError(), Kind.UNKNOWN),
        (FileNotFoundError(errno.ENOENT, "no such file"), Kind.UNKNOWN),
        (PermissionError(), Kind.UNKNOWN),
        (TimeoutError(), Kind.TIMEOUT),
        (ConnectionResetError(), Kind.TIMEOUT),
    ],
)
def test_stdlib_exceptions(exc: BaseException, kind: Kind) -> None:
    """Network errors are connection failures, timeouts and resets timeouts; file errors neither."""
    assert rp.EUGPT.classify(exception=exc).kind == kind


def test_registry_by_name_and_resolver() -> None:
    """A type can be registered by "package.QualName" or with a function of the exception."""

    class FlakyError(Exception):
        def __init__(self, transient: bool) -> None:
            super().__init__()
            self.transient = transient

    FlakyError.__module__ = "some_transport._impl"
    FlakyError.__qualname__ = "FlakyError"
    rp.register_exception("some_transport.FlakyError", lambda e: "timeout" if e.transient else None)  # type: ignore[attr-defined, return-value]
    assert rp.EUGPT.classify(exception=FlakyError(True)).kind == Kind.TIMEOUT
    assert rp.EUGPT.classify(exception=FlakyError(False)).kind == Kind.UNKNOWN


def test_unknown_exception_is_not_retried() -> None:
    """An exception the registry does not know is not a transport failure: never retried."""
    c = rp.EUGPT.classify(exception=ValueError("bug"))
    assert (c.kind, c.retryable) == (Kind.UNKNOWN, False)
    assert "ValueError" in c.reason


def test_register_exception() -> None:
    """Adapters teach the core their exception types; the most specific class wins."""

    class TransportTimeoutError(Exception):
        pass

    class ReadTimeoutError(TransportTimeoutError):
        pass

    rp.register_exception(TransportTimeoutError, "connection")
    rp.register_exception(ReadTimeoutError, rp.Failure.TIMEOUT)
    assert rp.EUGPT.classify(exception=TransportTimeoutError()).kind == Kind.CONNECTION
    assert rp.EUGPT.classify(exception=ReadTimeoutError()).kind == Kind.TIMEOUT


def test_api_error_classified_by_status_and_code() -> None:
    """A raised APIError is classified by the status and code it carries."""
    err = rp.EUGPT.error_for(rp.parse_error(503, b""))
    assert rp.EUGPT.classify(exception=err).kind == Kind.UNAVAILABLE
    stream = rp.StreamError("x", status=200, code="upstream_error", kind=Kind.UPSTREAM_ERROR)
    assert rp.EUGPT.classify(exception=stream).retryable


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, rp.BadRequestError),
        (401, rp.AuthenticationError),
        (403, rp.PermissionDeniedError),
        (404, rp.NotFoundError),
        (418, rp.ClientError),
        (429, rp.RateLimitError),
        (500, rp.InternalServerError),
        (503, rp.ServiceUnavailableError),
    ],
)
def test_error_factory(status: int, cls: type[rp.APIError]) -> None:
    """The factory builds the APIError subclass matching the class of the failure."""
    err = rp.EUGPT.error_for(rp.parse_error(status, b'{"detail": "nope"}'), attempts=3)
    assert type(err) is cls
    assert (err.status, err.attempts) == (status, 3)
    assert err.kind == rp.EUGPT.classify(status).kind
    assert "nope" in str(err)
    assert err.advice in str(err)


def test_rate_limit_error_says_to_slow_down() -> None:
    """After the 429 retries are spent, the error tells the caller to slow down."""
    err = rp.EUGPT.error_for(rp.parse_error(429, b""), attempts=7)
    assert isinstance(err, rp.RateLimitError)
    assert "slow down" in str(err).lower()
    assert "7 attempts" in str(err)


def test_connection_and_timeout_errors_subclass_builtins() -> None:
    """APIConnectionError is a ConnectionError and APITimeoutError a TimeoutError."""
    c = rp.transport.api_error(rp.EUGPT.classify(failure=Failure.CONNECTION), cause="refused")
    t = rp.transport.api_error(rp.EUGPT.classify(failure=Failure.TIMEOUT), cause="read timed out")
    assert isinstance(c, ConnectionError)
    assert isinstance(t, TimeoutError)
    assert "refused" in str(c)


def test_stream_errors_are_stream_error() -> None:
    """Every in-stream code raises StreamError, a subclass of APIError."""
    for code in ["upstream_timeout", "upstream_error", "internal_error", "cancelled", "new_code"]:
        err = rp.EUGPT.error_for(rp.ErrorInfo(status=200, code=code))
        assert isinstance(err, rp.StreamError)
        assert err.code == code


@pytest.mark.parametrize(
    ("status", "cls"),
    [(429, rp.RateLimitError), (418, rp.ClientError), (599, rp.InternalServerError)],
)
def test_error_class_for_a_custom_label(status: int, cls: type[rp.APIError]) -> None:
    """A rule labelled with a kind of the user's own still raises by its status class."""
    policy = rp.EUGPT.evolve(rules=[rp.Rule(kind="quota_exhausted", retry=False, status=status)])
    err = policy.error_for(rp.parse_error(status, b""))
    assert type(err) is cls
    assert err.kind == "quota_exhausted"


def test_error_class_without_status() -> None:
    """An unknown failure without a status is a plain APIError."""
    c = rp.Classification("mystery", retryable=False, max_retries=0, reason="?")
    assert type(rp.transport.api_error(c)) is rp.APIError


@pytest.mark.parametrize("policy", [rp.EUGPT, rp.HTTP], ids=["eugpt", "http"])
@pytest.mark.parametrize(
    ("status", "code"),
    [(200, None), (None, None), (200, "model_on_fire"), (200, "upstream_timeout")],
)
@pytest.mark.parametrize("failure", list(Failure))
def test_a_failure_is_never_a_success(
    policy: rp.Policy, status: int | None, code: str | None, failure: Failure
) -> None:
    """Whatever the status and code, an outcome carrying a failure never classifies as a
    success (nor does any StreamError, which carries one through its kind)."""
    assert policy.classify(status, code, failure=failure).kind != Kind.SUCCESS
    err = rp.StreamError("x", status=status, code=code, kind=Kind(failure.value))
    assert policy.classify(exception=err).kind != Kind.SUCCESS


@pytest.mark.parametrize("status", ["429", b"429", True, 429.5, float("nan")])
def test_classify_names_a_status_that_is_not_one(status: object) -> None:
    """A status must be an HTTP status: a string, bytes, a bool or a fraction is a TypeError
    that names it and says what was expected (a str used to fail inside the rules with
    "unsupported operand type(s) for //", a bool was taken as status 1: a success)."""
    with pytest.raises(
        TypeError, match=r"status .*: expected an HTTP status \(an int, e\.g\. 429\)"
    ):
        rp.EUGPT.classify(status)  # type: ignore[arg-type]


def test_classify_takes_http_status_members_and_whole_floats() -> None:
    """http.HTTPStatus members and whole floats are statuses, classified as the int is."""
    import http  # noqa: PLC0415

    assert rp.EUGPT.classify(http.HTTPStatus.TOO_MANY_REQUESTS).kind == "rate_limited"
    assert rp.EUGPT.classify(503.0).kind == "unavailable"
