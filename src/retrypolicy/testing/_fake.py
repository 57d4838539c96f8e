"""A scriptable stand-in for the EU GPT API that speaks real HTTP/1.1 on 127.0.0.1.

Why a real server rather than a mocked transport: retry logic breaks where the
wire is involved, and that is the part a mock leaves out: keep-alive connections
being reused, a chunked SSE body read incrementally, a TCP reset half-way through
a stream, a server that reads the request and hangs up, a ``Retry-After`` holding an
HTTP-date. :class:`FakeEUGPT` runs a real socket server in a background thread. Every
client (``requests``, ``httpx`` sync and async, ``urllib3``, a plain socket) talks to
it as it would talk to the API, and a test scripts one :class:`Reply` per request::

    with FakeEUGPT(require_key=True) as server:
        server.script(
            Reply.error(503, retry_after=0),
            Reply.stream(2, end="error", code="upstream_timeout"),
        )
        ...  # point the client under test at server.url + "/v1/responses"
        assert server.request_count == 2

Only the standard library is used, so the fixture costs nothing to import, and
users can run it in their own integration tests and in the CLI demo.

Wire behaviour, following the API's error contract:

* ``POST /v1/responses`` takes the next scripted reply. With an empty script it
  answers with the server's ``default`` reply, or else with a 200 JSON response
  when the request body has ``"stream": false`` and a 200 ``text/event-stream``
  otherwise (``stream`` defaults to true on the API). The fake does not validate
  request bodies; script a 400 if you need one.
* Any other path gets a 404 envelope and any other method a 405. Neither takes a
  scripted reply.
* With ``require_key=True`` a missing, non-Bearer or non-``eugpt_`` key gets a 401
  envelope before the script is consulted, and the scripted reply stays queued.
* Every response carries ``x-request-id: req_<n>``. Stream frames are all
  ``event: message`` with a JSON ``data`` line, sent one HTTP chunk per event.
"""

from __future__ import annotations

import dataclasses
import itertools
import json as _json
import math
import re
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar, Final, Literal, cast, get_args
from urllib.parse import urlsplit

from retrypolicy._redact import redact, redact_headers

__all__ = ["FakeEUGPT", "RecordedRequest", "Reply"]

StreamEnd = Literal["completed", "error", "cut", "cut_mid_frame", "reset", "hang"]
"""How a :meth:`Reply.stream` ends (see there)."""

RequestSource = Literal["script", "default", "auth", "route"]
"""Where the reply to a recorded request came from."""

_ENDPOINT: Final = "/v1/responses"
_MAX_BODY: Final = 16 * 1024 * 1024  # request bodies above this get a 413
_MAX_TRAILERS: Final = 100
_PAUSE_SLICE: Final = 0.05  # how often a waiting reply checks whether its client left
_POLL_INTERVAL: Final = 0.05  # accept-loop poll; bounds how long stop() waits for it
_JOIN_TIMEOUT: Final = 2.0  # stop() waits at most this long for connection threads
_STREAM_ENDS: Final = frozenset(get_args(StreamEnd))
_EVENT_STREAM: Final = "text/event-stream; charset=utf-8"
_JSON: Final = "application/json"
_TEXT: Final = "text/plain; charset=utf-8"
_FRAME_HEAD: Final = b"event: message\ndata: "
_LARGE_DELTA: Final = 64 * 1024
_FILLER: Final = (b"lorem ipsum dolor sit amet " * (_LARGE_DELTA // 27 + 1))[:_LARGE_DELTA]
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX_RE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS_RE: Final = re.compile(r"[0-9]{1,20}")
_LINGER_RESET: Final = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)

# status -> (detail, error.type, error.code): what Reply.error fills in when not told.
_ERROR_DEFAULTS: Final[Mapping[int, tuple[str, str, str]]] = {
    400: ("input is required", "invalid_request_error", "invalid_request"),
    401: ("Invalid API key", "authentication_error", "invalid_api_key"),
    403: ("Project membership required", "permission_error", "project_forbidden"),
    404: ("Not found", "not_found_error", "not_found"),
    405: ("Method not allowed", "invalid_request_error", "method_not_allowed"),
    413: ("Request body too large", "invalid_request_error", "request_too_large"),
    429: ("Rate limit exceeded", "rate_limit_error", "rate_limit_exceeded"),
    500: ("Internal error during response generation", "server_error", "internal_error"),
    502: ("Bad gateway", "server_error", "bad_gateway"),
    503: ("Service unavailable", "server_error", "service_unavailable"),
    504: ("Gateway timeout", "server_error", "gateway_timeout"),
}

# in-stream error code -> default message (codes from the "Errors in the stream" section)
_STREAM_MESSAGES: Final[Mapping[str, str]] = {
    "upstream_timeout": "Model timed out",
    "upstream_error": "Model returned an internal error",
    "internal_error": "Internal error",
    "cancelled": "Request cancelled",
}


# --------------------------------------------------------------------------- validation


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(name: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{name}: expected {expected}, got {_show(value)}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_status(value: object, name: str = "status") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 200 <= value <= 599:
        raise _bad(name, "an HTTP status code from 200 to 599", value)
    return int(value)


def _check_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _bad(name, "a string", value)
    return value


def _check_optional_str(value: object, name: str) -> str | None:
    return None if value is None else _check_str(value, name)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, "true or false", value)
    return value


def _check_count(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(name, "a non-negative integer", value)
    return value


def _check_seconds(value: object, name: str) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or math.isnan(value)
        or value < 0
    ):
        raise _bad(name, "a non-negative number of seconds", value)
    return float(value)


def _check_header_value(value: str, name: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise _bad(name, "a header value without CR, LF or NUL", value)
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise _bad(name, "a header value encodable as latin-1", value) from None
    return value


def _check_hint(value: object, name: str) -> int | float | str | None:
    """A wait hint is sent verbatim: numbers, HTTP-dates and garbage are all fair game."""
    if value is None:
        return None
    if isinstance(value, str):
        return _check_header_value(value, name)
    if _is_number(value):
        return cast("int | float", value)
    raise _bad(name, "a number or a string", value)


def _check_headers(value: object, name: str = "headers") -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items: Iterable[object] = value.items()
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise _bad(name, "a mapping of header names to values, or a list of pairs", value)
    out: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise _bad(name, "[name, value] pairs", item)
        key, val = item
        if not isinstance(key, str) or not _TOKEN_RE.fullmatch(key):
            raise _bad(name, "header names that are HTTP tokens", key)
        if not isinstance(val, str):
            raise _bad(f"{name}[{key!r}]", "a string", val)
        out.append((key, _check_header_value(val, f"{name}[{key!r}]")))
    return tuple(out)


def _check_json_text(value: object, name: str) -> str:
    try:
        return _dumps(value, strict=True)
    except (TypeError, ValueError):
        raise _bad(name, "a JSON-serialisable value", value) from None


def _dumps(value: object, *, strict: bool = False) -> str:
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=not strict)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _status_defaults(status: int) -> tuple[str, str, str]:
    if status in _ERROR_DEFAULTS:
        return _ERROR_DEFAULTS[status]
    phrase = _phrase(status)
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_") or f"http_{status}"
    return phrase, kind, code


def _merge(
    defaults: Sequence[tuple[str, str]], overrides: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """*defaults* minus any header that *overrides* names, then *overrides*."""
    named = {name.lower() for name, _ in overrides}
    return [h for h in defaults if h[0].lower() not in named] + list(overrides)


def _frame(event: Mapping[str, object]) -> bytes:
    return _FRAME_HEAD + _dumps(event).encode() + b"\n\n"


def _delta_text(index: int) -> str:
    return f"chunk {index}. "


def _sequence_numbers(*, skip: bool) -> Iterator[int]:
    yield 0
    yield from itertools.count(2 if skip else 1)


# --------------------------------------------------------------------------- replies


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class Reply:
    """A frozen description of how the server answers one request.

    Build one with a constructor: :meth:`error`, :meth:`text`, :meth:`json`,
    :meth:`ok`, :meth:`stream`, :meth:`large_stream`, :meth:`reset`,
    :meth:`close_without_response`, :meth:`delay` or :meth:`from_data`. Every
    constructor takes ``headers=`` (extra response headers; they replace a default
    header of the same name, framing headers included, so take care) and ``delay=``
    (seconds to wait before answering; the wait ends early, without an answer, when
    the server stops or the client hangs up).

    Replies compare by value, are hashable and round-trip through
    :meth:`to_data` / :meth:`from_data`.
    """

    kind: ClassVar[str] = ""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay_seconds: float = 0.0
    retry_after: int | float | str | None = None
    retry_after_ms: int | float | str | None = None

    def __post_init__(self) -> None:
        if type(self) is Reply:
            raise TypeError("build a Reply with a constructor, e.g. Reply.error(503)")

    # ---- constructors -------------------------------------------------------------

    @classmethod
    def error(
        cls,
        status: int,
        *,
        detail: object = None,
        code: str | None = None,
        type: str | None = None,
        message: str | None = None,
        bare: bool = False,
        retry_after: int | float | str | None = None,
        retry_after_ms: int | float | str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """The API's JSON error envelope.

        ``{"detail": DETAIL, "error": {"type": TYPE, "code": CODE, "message": MESSAGE}}``,
        or with ``bare=True`` the bare-string form ``{"detail": DETAIL, "error": CODE}``.
        *detail* may be a string or any JSON value. Anything left out gets a default
        that fits *status* (e.g. 429 gives ``rate_limit_error`` /
        ``rate_limit_exceeded``); *message* defaults to *detail* when that is a string.
        *retry_after* becomes ``Retry-After`` and *retry_after_ms* becomes
        ``retry-after-ms``, sent verbatim, so an HTTP-date or garbage works too.
        """
        status = _check_status(status)
        default_detail, default_type, default_code = _status_defaults(status)
        detail_json = _check_json_text(default_detail if detail is None else detail, "detail")
        code = _check_optional_str(code, "code")
        resolved_code = default_code if code is None else code
        bare = _check_bool(bare, "bare")
        type = _check_optional_str(type, "type")
        error_type = None if bare else (default_type if type is None else type)
        if bare:
            _check_optional_str(message, "message")
            resolved_message = None
        else:
            resolved_message = _check_optional_str(message, "message")
            if resolved_message is None:
                decoded = _json.loads(detail_json)
                resolved_message = decoded if isinstance(decoded, str) else _phrase(status)
        return _ErrorReply(
            status=status,
            detail_json=detail_json,
            code=resolved_code,
            error_type=error_type,
            message=resolved_message,
            bare=bare,
            **_common(headers, delay, retry_after, retry_after_ms),
        )

    @classmethod
    def text(
        cls,
        status: int,
        text: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        *,
        retry_after: int | float | str | None = None,
        retry_after_ms: int | float | str | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """A plain-text body, as some 5xx paths (load balancers) send instead of JSON."""
        return _TextReply(
            status=_check_status(status),
            body_text=_check_str(text, "text"),
            **_common(headers, delay, retry_after, retry_after_ms),
        )

    @classmethod
    def json(
        cls,
        status: int,
        obj: object,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        *,
        retry_after: int | float | str | None = None,
        retry_after_ms: int | float | str | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """Any JSON body (*obj* is serialised now, so later changes to it do not leak in)."""
        return _JsonReply(
            status=_check_status(status),
            body_json=_check_json_text(obj, "body"),
            **_common(headers, delay, retry_after, retry_after_ms),
        )

    @classmethod
    def ok(
        cls,
        text: str = "Hello from FakeEUGPT.",
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """A 200 non-streamed response.

        The body is ``{"id": "resp_<n>", "object": "response", "status": "completed",
        "output_text": TEXT}``.
        """
        return _OkReply(output_text=_check_str(text, "text"), **_common(headers, delay))

    @classmethod
    def stream(
        cls,
        n_deltas: int = 3,
        *,
        end: StreamEnd = "completed",
        code: str = "upstream_timeout",
        message: str | None = None,
        skip_sequence: bool = False,
        interval: float = 0.0,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """A 200 ``text/event-stream``, sent chunked with one chunk per event.

        Events: ``response.created`` (``sequence_number`` 0), then *n_deltas*
        ``response.output_text.delta`` events whose ``delta`` is ``"chunk <i>. "``,
        then the ending chosen by *end*:

        * ``"completed"``: ``response.completed`` (its ``response.output_text`` is the
          concatenated deltas), then the chunked body ends normally.
        * ``"error"``: ``{"type": "error", "code": CODE, "message": MESSAGE}``, then
          the body ends normally. *message* defaults to the contract's wording for
          the documented codes.
        * ``"cut"``: the connection is closed cleanly (FIN) with the body unfinished.
        * ``"cut_mid_frame"``: half of one more delta frame is sent, then as ``"cut"``.
        * ``"reset"``: the connection is reset (RST).
        * ``"hang"``: nothing more is sent until the client leaves or the server stops.

        *skip_sequence* makes ``sequence_number`` jump from 0 to 2 after
        ``response.created``. *interval* waits that many seconds before each event
        after the first one and before the ending.
        """
        if end not in _STREAM_ENDS:
            raise _bad("end", f"one of {sorted(_STREAM_ENDS)}", end)
        code = _check_str(code, "code")
        message = _check_optional_str(message, "message")
        if end == "error":
            message = (
                message if message is not None else _STREAM_MESSAGES.get(code, "Stream failed")
            )
        return _StreamReply(
            n_deltas=_check_count(n_deltas, "n_deltas"),
            end=end,
            code=code if end == "error" else None,
            message=message if end == "error" else None,
            skip_sequence=_check_bool(skip_sequence, "skip_sequence"),
            interval=_check_seconds(interval, "interval"),
            **_common(headers, delay),
        )

    @classmethod
    def large_stream(
        cls,
        total_bytes: int,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """A 200 event stream of about *total_bytes*, generated as it is sent.

        The stream sends ``response.created``, then 64 KiB ``response.output_text.delta``
        frames until *total_bytes* of body were sent (the last delta is trimmed to land
        close), then ``response.completed``, whose ``response.output_chars`` gives the
        total delta length. Memory use stays constant whatever the size.
        """
        return _LargeStreamReply(
            total_bytes=_check_count(total_bytes, "total_bytes"), **_common(headers, delay)
        )

    @classmethod
    def reset(
        cls,
        before_headers: bool = True,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """Read the request, then reset the TCP connection (RST, via ``SO_LINGER`` 0).

        With ``before_headers=False`` the status line and headers of a 200 event stream
        are sent first, so the client sees the reset while reading the body.
        """
        return _ResetReply(
            before_headers=_check_bool(before_headers, "before_headers"),
            **_common(headers, delay),
        )

    @classmethod
    def close_without_response(cls, *, delay: float = 0.0) -> Reply:
        """Read the request, then close the connection cleanly (FIN) without a response."""
        return _CloseReply(**_common(None, delay))

    @classmethod
    def delay(cls, seconds: float, then: Reply) -> Reply:
        """*then*, answered after waiting *seconds* longer (see ``delay=``)."""
        if not isinstance(then, Reply):
            raise TypeError(f"then: expected a Reply, got {_show(then)}")
        seconds = _check_seconds(seconds, "seconds")
        return dataclasses.replace(then, delay_seconds=then.delay_seconds + seconds)

    # ---- plain data ---------------------------------------------------------------

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> Reply:
        """Build a reply from plain data, as read from a JSON or TOML script file.

        *data* is a mapping with a ``"kind"`` key. The other keys are the
        constructor's arguments under the same names, all optional except where
        marked *required*:

        ========================== ==================================================
        kind                       keys
        ========================== ==================================================
        ``error``                  ``status`` (required), ``detail`` (string or any JSON),
                                   ``code``, ``type``, ``message``, ``bare``, ``retry_after``,
                                   ``retry_after_ms``
        ``text``                   ``status`` (required), ``text`` (required), ``retry_after``,
                                   ``retry_after_ms``
        ``json``                   ``status`` (required), ``body`` (required, any JSON),
                                   ``retry_after``, ``retry_after_ms``
        ``ok``                     ``text``
        ``stream``                 ``n_deltas``, ``end``, ``code``, ``message``,
                                   ``skip_sequence``, ``interval``
        ``large_stream``           ``total_bytes`` (required)
        ``reset``                  ``before_headers``
        ``close_without_response`` (none)
        ========================== ==================================================

        Every kind also takes ``delay`` (seconds, a number >= 0) and every kind except
        ``close_without_response`` takes ``headers`` (an object of name to string,
        or a list of ``[name, value]`` pairs). For example::

            {"kind": "error", "status": 429, "retry_after": 2}
            {"kind": "stream", "n_deltas": 2, "end": "error", "code": "upstream_error"}
            {"kind": "text", "status": 502, "text": "Bad Gateway", "delay": 0.5}

        Raises:
            ValueError: for a missing or unknown kind, an unknown or missing key, or a
                value of the wrong type or range. The message names the key and what
                was expected.
        """
        if not isinstance(data, Mapping):
            raise _bad("reply data", "a mapping with a 'kind' key", data)
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in _KINDS:
            raise _bad("reply data: key 'kind'", f"one of {sorted(_KINDS)}", kind)
        spec = _KINDS[kind]
        for key in data:
            if key != "kind" and key not in spec.keys:
                allowed = ", ".join(sorted(spec.keys)) or "no other keys"
                raise ValueError(
                    f"reply data ({kind}): unknown key {_show(key)}; expected one of: {allowed}"
                )
        for key in spec.required:
            if key not in data:
                raise ValueError(f"reply data ({kind}): key {key!r} is required")
        kwargs: dict[str, Any] = {
            spec.params.get(key, key): value for key, value in data.items() if key != "kind"
        }
        try:
            return spec.build(**kwargs)
        except ValueError as exc:
            raise ValueError(f"reply data ({kind}): key {exc}") from None

    def to_data(self) -> dict[str, object]:
        """This reply as plain data that :meth:`from_data` turns back into an equal reply.

        Keys holding ``None`` are left out, so the result also fits TOML.
        """
        data: dict[str, object] = {"kind": self.kind}
        data.update(self._data())
        data["retry_after"] = self.retry_after
        data["retry_after_ms"] = self.retry_after_ms
        if self.headers:
            names = [name.lower() for name, _ in self.headers]
            unique = len(set(names)) == len(names)
            data["headers"] = dict(self.headers) if unique else [list(h) for h in self.headers]
        if self.delay_seconds:
            data["delay"] = self.delay_seconds
        return {key: value for key, value in data.items() if value is not None}

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.to_data().items())
        return redact(f"Reply({args})")

    # ---- what subclasses provide ------------------------------------------------------

    def _data(self) -> dict[str, object]:
        raise NotImplementedError

    def _play(self, out: _Handler) -> None:
        raise NotImplementedError

    def _extra_headers(self) -> list[tuple[str, str]]:
        hints = [("Retry-After", self.retry_after), ("retry-after-ms", self.retry_after_ms)]
        return _merge([(k, str(v)) for k, v in hints if v is not None], self.headers)


def _common(
    headers: object,
    delay: object,
    retry_after: object = None,
    retry_after_ms: object = None,
) -> dict[str, Any]:
    return {
        "headers": _check_headers(headers),
        "delay_seconds": _check_seconds(delay, "delay"),
        "retry_after": _check_hint(retry_after, "retry_after"),
        "retry_after_ms": _check_hint(retry_after_ms, "retry_after_ms"),
    }


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _ErrorReply(Reply):
    kind: ClassVar[str] = "error"
    detail_json: str
    code: str
    error_type: str | None
    message: str | None
    bare: bool

    def _data(self) -> dict[str, object]:
        return {
            "status": self.status,
            "detail": _json.loads(self.detail_json),
            "code": self.code,
            "type": self.error_type,
            "message": self.message,
            "bare": self.bare or None,
        }

    def body(self) -> bytes:
        detail = _json.loads(self.detail_json)
        error: object = (
            self.code
            if self.bare
            else {"type": self.error_type, "code": self.code, "message": self.message}
        )
        return _dumps({"detail": detail, "error": error}).encode()

    def _play(self, out: _Handler) -> None:
        out.send_full(self.status, _JSON, self.body(), self._extra_headers())


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _TextReply(Reply):
    kind: ClassVar[str] = "text"
    body_text: str

    def _data(self) -> dict[str, object]:
        return {"status": self.status, "text": self.body_text}

    def _play(self, out: _Handler) -> None:
        out.send_full(self.status, _TEXT, self.body_text.encode(), self._extra_headers())


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _JsonReply(Reply):
    kind: ClassVar[str] = "json"
    body_json: str

    def _data(self) -> dict[str, object]:
        return {"status": self.status, "body": _json.loads(self.body_json)}

    def _play(self, out: _Handler) -> None:
        out.send_full(self.status, _JSON, self.body_json.encode(), self._extra_headers())


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _OkReply(Reply):
    kind: ClassVar[str] = "ok"
    output_text: str

    def _data(self) -> dict[str, object]:
        return {"text": self.output_text}

    def _play(self, out: _Handler) -> None:
        body = {
            "id": out.response_id,
            "object": "response",
            "status": "completed",
            "output_text": self.output_text,
        }
        out.send_full(200, _JSON, _dumps(body).encode(), self._extra_headers())


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _StreamReply(Reply):
    kind: ClassVar[str] = "stream"
    n_deltas: int
    end: StreamEnd
    code: str | None
    message: str | None
    skip_sequence: bool
    interval: float

    def _data(self) -> dict[str, object]:
        return {
            "n_deltas": self.n_deltas,
            "end": self.end,
            "code": self.code,
            "message": self.message,
            "skip_sequence": self.skip_sequence or None,
            "interval": self.interval or None,
        }

    def _play(self, out: _Handler) -> None:
        out.start_stream(200, _EVENT_STREAM, self._extra_headers())
        numbers = _sequence_numbers(skip=self.skip_sequence)
        response = {"id": out.response_id, "object": "response", "status": "in_progress"}
        out.send_event(
            {"type": "response.created", "sequence_number": next(numbers), "response": response}
        )
        deltas: list[str] = []
        for index in range(self.n_deltas + 1):
            if not out.pause(self.interval):
                out.hang_up()
                return
            if index == self.n_deltas:
                break
            deltas.append(_delta_text(index))
            out.send_event(
                {
                    "type": "response.output_text.delta",
                    "sequence_number": next(numbers),
                    "delta": deltas[-1],
                }
            )
        if self.end == "completed":
            done = {**response, "status": "completed", "output_text": "".join(deltas)}
            out.send_event(
                {"type": "response.completed", "sequence_number": next(numbers), "response": done}
            )
            out.end_stream()
        elif self.end == "error":
            out.send_event({"type": "error", "code": self.code, "message": self.message})
            out.end_stream()
        elif self.end == "cut_mid_frame":
            frame = _frame(
                {
                    "type": "response.output_text.delta",
                    "sequence_number": next(numbers),
                    "delta": _delta_text(self.n_deltas),
                }
            )
            out.send_chunk(frame[: len(frame) // 2])
            out.hang_up()
        elif self.end == "reset":
            out.reset()
        elif self.end == "hang":
            out.pause(math.inf)
            out.hang_up()
        else:  # "cut"
            out.hang_up()


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _LargeStreamReply(Reply):
    kind: ClassVar[str] = "large_stream"
    total_bytes: int

    def _data(self) -> dict[str, object]:
        return {"total_bytes": self.total_bytes}

    def _play(self, out: _Handler) -> None:
        out.start_stream(200, _EVENT_STREAM, self._extra_headers())
        response = {"id": out.response_id, "object": "response", "status": "in_progress"}
        sent = out.send_event(
            {"type": "response.created", "sequence_number": 0, "response": response}
        )
        prefix = _FRAME_HEAD + b'{"type":"response.output_text.delta","sequence_number":'
        tail = b'"}\n\n'
        sequence = 1
        chars = 0
        while sent < self.total_bytes:
            if out.stopping:
                out.hang_up()
                return
            head = prefix + str(sequence).encode() + b',"delta":"'
            size = max(1, min(_LARGE_DELTA, self.total_bytes - sent - len(head) - len(tail)))
            frame = head + _FILLER[:size] + tail
            out.send_chunk(frame)
            sent += len(frame)
            chars += size
            sequence += 1
        done = {**response, "status": "completed", "output_chars": chars}
        out.send_event(
            {"type": "response.completed", "sequence_number": sequence, "response": done}
        )
        out.end_stream()


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _ResetReply(Reply):
    kind: ClassVar[str] = "reset"
    before_headers: bool

    def _data(self) -> dict[str, object]:
        return {"before_headers": self.before_headers}

    def _play(self, out: _Handler) -> None:
        if not self.before_headers:
            out.start_stream(200, _EVENT_STREAM, self._extra_headers())
        out.reset()


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _CloseReply(Reply):
    kind: ClassVar[str] = "close_without_response"

    def _data(self) -> dict[str, object]:
        return {}

    def _play(self, out: _Handler) -> None:
        out.hang_up()


@dataclasses.dataclass(frozen=True)
class _KindSpec:
    build: Callable[..., Reply]  # the constructor; from_data feeds it plain data
    keys: frozenset[str]
    required: tuple[str, ...] = ()
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)


_HINTS: Final = frozenset({"retry_after", "retry_after_ms"})
_BASE: Final = frozenset({"headers", "delay"})
_KINDS: Final[Mapping[str, _KindSpec]] = {
    "error": _KindSpec(
        Reply.error,
        _BASE | _HINTS | {"status", "detail", "code", "type", "message", "bare"},
        ("status",),
    ),
    "text": _KindSpec(Reply.text, _BASE | _HINTS | {"status", "text"}, ("status", "text")),
    "json": _KindSpec(
        Reply.json, _BASE | _HINTS | {"status", "body"}, ("status", "body"), {"body": "obj"}
    ),
    "ok": _KindSpec(Reply.ok, _BASE | {"text"}),
    "stream": _KindSpec(
        Reply.stream,
        _BASE | {"n_deltas", "end", "code", "message", "skip_sequence", "interval"},
    ),
    "large_stream": _KindSpec(Reply.large_stream, _BASE | {"total_bytes"}, ("total_bytes",)),
    "reset": _KindSpec(Reply.reset, _BASE | {"before_headers"}),
    "close_without_response": _KindSpec(Reply.close_without_response, frozenset({"delay"})),
}

_AUTO_STREAM: Final = Reply.stream()
_AUTO_OK: Final = Reply.ok()


# --------------------------------------------------------------------------- recording


@dataclasses.dataclass(frozen=True, repr=False)
class RecordedRequest:
    """One request as the server received it, and the reply it chose for it.

    ``headers`` has lower-cased names (repeated headers joined with ``", "``);
    ``json`` is the parsed body, or ``None`` when the body is not JSON; ``source`` says
    where ``reply`` came from (``"script"``, ``"default"``, ``"auth"`` for a 401 from
    ``require_key``, ``"route"`` for a 404/405); ``request_id`` is the ``x-request-id``
    sent back; ``client`` is the client's ``(host, port)``, the same for requests that
    shared a keep-alive connection. The ``repr`` never shows a credential.
    """

    method: str
    path: str
    headers: dict[str, str] = dataclasses.field(hash=False)
    body: bytes
    json: Any = dataclasses.field(hash=False)
    reply: Reply
    source: RequestSource
    request_id: str
    client: tuple[str, int]

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return (
            f"RecordedRequest(method={self.method!r}, path={redact(self.path)!r}, "
            f"headers={redact_headers(self.headers)!r}, body={redact(repr(body))}, "
            f"json={redact(_show(self.json))}, reply={self.reply!r}, source={self.source!r}, "
            f"request_id={self.request_id!r}, client={self.client!r})"
        )


# --------------------------------------------------------------------------- the server


def _auth_problem(headers: Mapping[str, str], valid_keys: frozenset[str] | None) -> str | None:
    """Why the request's credentials are refused, in words that never include the key."""
    value = headers.get("authorization")
    if value is None:
        return "Missing Authorization header; expected 'Bearer eugpt_...'"
    scheme, _, key = value.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return "Malformed Authorization header; expected 'Bearer eugpt_...'"
    if not key.startswith("eugpt_") or key == "eugpt_":
        return "API keys start with 'eugpt_'"
    if valid_keys is not None and key not in valid_keys:
        return "API key is unknown or has been revoked"
    return None


class FakeEUGPT:
    """A scriptable EU GPT API on ``127.0.0.1`` (ephemeral port, background thread).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. It serves
    HTTP/1.1 keep-alive connections from any number of clients at once, one thread
    per connection.

    Args:
        require_key: refuse requests to the endpoint whose ``Authorization`` is not
            ``Bearer eugpt_...`` with the API's 401 envelope, without taking a
            scripted reply.
        default: the reply used when the script is empty, instead of the automatic
            200 (JSON for ``"stream": false``, an event stream otherwise).
        valid_keys: when given, only these keys pass (others get a 401 as if
            revoked). Implies *require_key*.
        port: the port to listen on; 0 (the default) picks a free one.
    """

    def __init__(
        self,
        *,
        require_key: bool = False,
        default: Reply | None = None,
        valid_keys: Iterable[str] | None = None,
        port: int = 0,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port: expected 0 (any free port) to 65535, got {_show(port)}")
        self._bind_port = port
        if default is not None and not isinstance(default, Reply):
            raise TypeError(f"default: expected a Reply or None, got {_show(default)}")
        self._valid_keys = None if valid_keys is None else frozenset(valid_keys)
        self._require_key = require_key or self._valid_keys is not None
        self._default = default
        self._cond = threading.Condition()
        self._script: deque[Reply] = deque()
        self._records: list[RecordedRequest] = []
        self._errors: list[BaseException] = []
        self._numbers = itertools.count(1)
        self._lifecycle = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeEUGPT:
        """Bind the port (a free one by default), serve in a background thread; returns self."""
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("FakeEUGPT is already running")
            server = _Server(self, self._bind_port)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"FakeEUGPT:{server.server_port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread, self._port = server, thread, server.server_port
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection; idempotent, and prompt.

        Waiting replies end at once; open keep-alive connections and streams are shut
        down. Connection threads get at most a couple of seconds to finish.
        """
        with self._lifecycle:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        server.stopping.set()
        server.shutdown()  # returns once the accept loop has seen the request
        server.server_close()
        threads = server.drop_connections()
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for worker in [*threads, thread]:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FakeEUGPT:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (kept after :meth:`stop`)."""
        if self._port is None:
            raise RuntimeError("FakeEUGPT has not been started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def responses_url(self) -> str:
        """The endpoint's URL, ``http://127.0.0.1:PORT/v1/responses``."""
        return self.url + _ENDPOINT

    # ---- scripting ------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue *replies*; each request to the endpoint takes the next one, in order."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"script: expected Reply objects, got {_show(reply)}")
        with self._cond:
            self._script.extend(replies)

    def clear(self) -> None:
        """Forget the queued replies and the recorded requests (not the request-id count)."""
        with self._cond:
            self._script.clear()
            self._records.clear()

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._cond:
            return len(self._script)

    # ---- recording ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, in arrival order (a copy)."""
        with self._cond:
            return list(self._records)

    @property
    def request_count(self) -> int:
        """How many requests were received (malformed HTTP is not counted)."""
        with self._cond:
            return len(self._records)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised while serving (a bug in the fake, if not empty).

        A client that goes away is not an error. Nothing is printed.
        """
        with self._cond:
            return list(self._errors)

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least *count* requests were received; ``False`` on timeout.

        A request counts as received once its reply was chosen, before any ``delay``.
        """
        with self._cond:
            return self._cond.wait_for(lambda: len(self._records) >= count, timeout)

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        state = "running" if self.running else "stopped"
        return f"<FakeEUGPT {where} {state} pending={self.pending} requests={self.request_count}>"

    # ---- called from connection threads ---------------------------------------------

    def _next_number(self) -> int:
        with self._cond:
            return next(self._numbers)

    def _record_error(self, exc: BaseException) -> None:
        with self._cond:
            self._errors.append(exc)

    def _dispatch(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        client: tuple[str, int],
    ) -> tuple[Reply, int]:
        try:
            parsed: Any = _json.loads(body) if body else None
        except (ValueError, RecursionError):
            parsed = None
        path = urlsplit(target).path
        source: RequestSource
        with self._cond:
            number = next(self._numbers)
            if path != _ENDPOINT:
                source = "route"
                reply = Reply.error(404, detail="Not Found", message=f"No route for {path}")
            elif method != "POST":
                source = "route"
                reply = Reply.error(405, detail="Method Not Allowed", headers={"Allow": "POST"})
            elif (
                self._require_key
                and (problem := _auth_problem(headers, self._valid_keys)) is not None
            ):
                source = "auth"
                reply = Reply.error(401, detail="Invalid API key", message=problem)
            elif self._script:
                source, reply = "script", self._script.popleft()
            elif self._default is not None:
                source, reply = "default", self._default
            else:
                wants_json = isinstance(parsed, dict) and parsed.get("stream") is False
                source, reply = "default", _AUTO_OK if wants_json else _AUTO_STREAM
            self._records.append(
                RecordedRequest(
                    method=method,
                    path=target,
                    headers=headers,
                    body=body,
                    json=parsed,
                    reply=reply,
                    source=source,
                    request_id=f"req_{number}",
                    client=client,
                )
            )
            self._cond.notify_all()
        return reply, number


class _Server(HTTPServer):
    """An accept loop that tracks its connections so that stop() can shut them down."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, fake: FakeEUGPT, port: int = 0) -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self._open_lock = threading.Lock()
        self._open: dict[socket.socket, threading.Thread] = {}
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(), a DNS lookup: skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = cast("tuple[str, int]", self.server_address)[:2]
        self.server_name = host
        self.server_port = port

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"FakeEUGPT:{self.server_port}<-{client_address[1]}",
            daemon=True,
        )
        with self._open_lock:
            self._open[request] = worker
        worker.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - kept in FakeEUGPT.errors instead of printed
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._open_lock:
                self._open.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            self.fake._record_error(exc)

    def drop_connections(self) -> list[threading.Thread]:
        """Shut every open connection down (waking its thread); return the threads."""
        with self._open_lock:
            open_now = list(self._open.items())
        for sock, _ in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already closed or reset
        return [worker for _, worker in open_now]


class _Handler(BaseHTTPRequestHandler):
    """One connection: read requests, let the chosen Reply write the response."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeEUGPT"
    sys_version = ""
    disable_nagle_algorithm = True  # stream events must leave one by one, not coalesced

    request_number = 0
    response_id = ""
    _chunked = False

    @property
    def _server(self) -> _Server:
        return cast("_Server", self.server)

    @property
    def stopping(self) -> bool:
        return self._server.stopping.is_set()

    # ---- request loop ---------------------------------------------------------------

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and not self.stopping:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._serve()
        except OSError:
            # The client went away (reset, broken pipe) or stop() shut the socket down.
            self.close_connection = True

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else str(value)
        host, port = self.client_address[:2]
        reply, self.request_number = self._server.fake._dispatch(
            self.command, self.path, headers, body, (str(host), int(port))
        )
        self.response_id = f"resp_{self.request_number}"
        if not self.pause(reply.delay_seconds):
            self.hang_up()
            return
        reply._play(self)

    def _read_body(self) -> bytes | None:
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, "Unsupported Transfer-Encoding")
                return None
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        if not _DIGITS_RE.fullmatch(length_text.strip()):
            self.send_error(HTTPStatus.BAD_REQUEST, "Invalid Content-Length")
            return None
        length = int(length_text)
        if length > _MAX_BODY:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            size_text = line.split(b";", 1)[0].strip()
            if not _HEX_RE.fullmatch(size_text):
                self.send_error(HTTPStatus.BAD_REQUEST, "Invalid chunked body")
                return None
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > _MAX_BODY:
                self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                return None
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self.send_error(HTTPStatus.BAD_REQUEST, "Invalid chunked body")
                return None
            parts.append(chunk)
        for _ in range(_MAX_TRAILERS):
            if self.rfile.readline(65537) in (b"\r\n", b"\n", b""):
                break
        return b"".join(parts)

    # ---- what a Reply uses to write ------------------------------------------------

    def _head(self, status: int, headers: Sequence[tuple[str, str]]) -> bytes:
        base = [
            ("Server", self.server_version),
            ("Date", formatdate(usegmt=True)),
            ("x-request-id", f"req_{self.request_number}"),
        ]
        if self.close_connection:
            base.append(("Connection", "close"))
        elif self.request_version == "HTTP/1.0":
            base.append(("Connection", "keep-alive"))
        lines = [f"HTTP/1.1 {status} {_phrase(status)}"]
        lines += [f"{name}: {value}" for name, value in _merge(base, headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_full(
        self, status: int, content_type: str, body: bytes, headers: Sequence[tuple[str, str]]
    ) -> None:
        """A complete response with a Content-Length."""
        if status in (204, 304):
            framing: list[tuple[str, str]] = []
            body = b""
        else:
            framing = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if self.command == "HEAD":
            body = b""
        self.wfile.write(self._head(status, _merge(framing, headers)) + body)

    def start_stream(
        self, status: int, content_type: str, headers: Sequence[tuple[str, str]]
    ) -> None:
        """Status line and headers of a body sent piecemeal (chunked on HTTP/1.1)."""
        self._chunked = self.request_version != "HTTP/1.0"
        if not self._chunked:
            self.close_connection = True  # the body then ends when the connection does
        framing = [("Content-Type", content_type), ("Cache-Control", "no-cache")]
        if self._chunked:
            framing.append(("Transfer-Encoding", "chunked"))
        self.wfile.write(self._head(status, _merge(framing, headers)))

    def send_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    def send_event(self, event: Mapping[str, object]) -> int:
        frame = _frame(event)
        self.send_chunk(frame)
        return len(frame)

    def end_stream(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.close_connection = True

    def hang_up(self) -> None:
        """Close cleanly (FIN) once this request returns, whatever was sent so far."""
        self.close_connection = True

    def reset(self) -> None:
        """Reset the connection now: RST instead of FIN, by closing with SO_LINGER 0."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        finally:
            self.rfile.close()  # the socket only really closes once its makefile() is closed
            sock.close()

    def pause(self, seconds: float) -> bool:
        """Wait *seconds*; ``False`` as soon as the server stops or the client leaves."""
        stop = self._server.stopping
        if seconds <= 0:
            return not stop.is_set()
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if stop.wait(min(remaining, _PAUSE_SLICE)) or self._client_left():
                return False
        return False

    def _client_left(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # ---- quiet, and in the API's own shape --------------------------------------------

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (bad request line, bad framing) as the API's JSON envelope."""
        self.close_connection = True
        self.request_number = self._server.fake._next_number()
        Reply.error(int(code), detail=message or _phrase(int(code)))._play(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a test fixture must not write to stderr."""
