"""The reply DSL: :class:`Reply`, its constructors, and its plain-data form for script files.

A reply is a frozen description of how the fake server answers one request;
each kind knows how to play itself through a :class:`~._wire.Wire`. Arguments
are checked when a reply is built, so a bad script fails where it is written,
not in the server thread.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json as _json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeGuard, get_args

from retrypolicy._errors import ConfigError
from retrypolicy._redact import redact

from ._wire import (
    EVENT_STREAM,
    FILLER,
    JSON,
    LARGE_DELTA,
    TEXT,
    Wire,
    delta_event,
    delta_head,
    delta_text,
    dumps,
    frame,
    merge,
    phrase,
    response_object,
    sequence_numbers,
)

__all__ = ["Reply", "StreamEnd", "load_script", "show"]

StreamEnd = Literal["completed", "error", "cut", "cut_mid_frame", "reset", "hang"]
"""How a :meth:`Reply.stream` ends (see there)."""

_STREAM_ENDS: Final = frozenset(get_args(StreamEnd))
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


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


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(name: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{name}: expected {expected}; found {show(value)}")


def _did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``; did you mean "x"?`` for the closest of *choices*, or "" when none is close."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _is_number(value: object) -> TypeGuard[int | float]:
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
    if not _is_number(value) or math.isnan(value) or value < 0:
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
        return value
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
        where = f"{name}[{key!r}]"
        out.append((key, _check_header_value(_check_str(val, where), where)))
    return tuple(out)


def _check_json_text(value: object, name: str) -> str:
    try:
        return dumps(value, strict=True)
    except (TypeError, ValueError):
        raise _bad(name, "a JSON-serialisable value", value) from None


def _status_defaults(status: int) -> tuple[str, str, str]:
    if status in _ERROR_DEFAULTS:
        return _ERROR_DEFAULTS[status]
    words = phrase(status)
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_") or f"http_{status}"
    return words, kind, code


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
        bare = _check_bool(bare, "bare")
        type = _check_optional_str(type, "type")
        message = _check_optional_str(message, "message")
        if not bare and message is None:
            decoded = _json.loads(detail_json)
            message = decoded if isinstance(decoded, str) else phrase(status)
        return _ErrorReply(
            status=status,
            detail_json=detail_json,
            code=default_code if code is None else code,
            error_type=None if bare else (default_type if type is None else type),
            message=None if bare else message,
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
        """A 200 non-streamed response: a full Responses API ``Response`` object.

        ``{"id": "resp_<n>", "object": "response", "created_at": 1767225600, "status":
        "completed", "model": "auto", "output": [MESSAGE], "parallel_tool_calls": true,
        "tool_choice": "auto", "tools": [], ..., "output_text": TEXT}``, where MESSAGE is
        one completed assistant message ``msg_0`` whose one ``output_text`` part holds
        TEXT. Only the response id differs from one response to the next. The openai
        SDK accepts it under strict validation, and its ``response.output_text`` is
        TEXT; the top-level ``output_text`` is a convenience for raw-HTTP callers (the
        SDK keeps it as an extra field).
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

        Every frame is ``event: message`` with the event as its ``data``, and every
        event has the shape the openai SDK validates strictly, ``type`` first and
        ``sequence_number`` second. Events: ``response.created`` (``sequence_number``
        0; a full ``Response`` object, status ``in_progress``, empty ``output``), then
        *n_deltas* ``response.output_text.delta`` events (``item_id`` ``msg_0``,
        ``output_index`` and ``content_index`` 0, ``logprobs`` ``[]``) whose ``delta``
        is ``"chunk <i>. "``, then the ending chosen by *end*:

        * ``"completed"``: ``response.completed`` (a full ``Response`` object whose
          one output message, and top-level ``output_text``, hold the concatenated
          deltas), then the chunked body ends normally.
        * ``"error"``: ``{"type": "error", "sequence_number": N, "code": CODE,
          "message": MESSAGE}``, N continuing the sequence, then the body ends
          normally. *message* defaults to the contract's wording for the documented
          codes.
        * ``"cut"``: the connection is closed cleanly (FIN) with the body unfinished.
        * ``"cut_mid_frame"``: half of one more delta frame is sent, then as ``"cut"``.
        * ``"reset"``: the connection is reset (RST).
        * ``"hang"``: nothing more is sent until the client leaves or the server stops.

        *skip_sequence* makes ``sequence_number`` jump from 0 to 2 after
        ``response.created``. *interval* waits that many seconds before each event
        after the first one and before the ending.
        """
        if not isinstance(end, str) or end not in _STREAM_ENDS:
            raise _bad("end", f"one of {sorted(_STREAM_ENDS)}", end)
        code = _check_str(code, "code")
        message = _check_optional_str(message, "message")
        if end == "error" and message is None:
            message = _STREAM_MESSAGES.get(code, "Stream failed")
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
        close), then ``response.completed``, all shaped as in :meth:`stream`. The text
        is not sent twice: the completed response's ``output`` is empty and its
        ``output_chars`` gives the total delta length. Memory use stays constant
        whatever the size.
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
            raise TypeError(f"then: expected a Reply, got {show(then)}")
        seconds = _check_seconds(seconds, "seconds")
        return dataclasses.replace(then, delay_seconds=then.delay_seconds + seconds)

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
                value of the wrong type or range. The message names the key, what was
                expected and what was found, with a suggestion for a misspelt name.
        """
        reply, problems = _from_data(data)
        if reply is None:
            raise ValueError("reply data: " + "; and ".join(problems))
        return reply

    def to_data(self) -> dict[str, object]:
        """This reply as plain data that :meth:`from_data` turns back into an equal reply.

        Keys holding ``None`` are left out, so the result also fits TOML.
        """
        data: dict[str, object] = {"kind": self.kind, **self._data()}
        data |= {"retry_after": self.retry_after, "retry_after_ms": self.retry_after_ms}
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

    def _data(self) -> dict[str, object]:
        """What :meth:`to_data` holds besides the keys every kind has."""
        return {}

    def _play(self, out: Wire) -> None:
        raise NotImplementedError

    def _extra_headers(self) -> list[tuple[str, str]]:
        hints = [("Retry-After", self.retry_after), ("retry-after-ms", self.retry_after_ms)]
        return merge([(k, str(v)) for k, v in hints if v is not None], self.headers)


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

    def _play(self, out: Wire) -> None:
        error = {"type": self.error_type, "code": self.code, "message": self.message}
        body = {"detail": _json.loads(self.detail_json), "error": self.code if self.bare else error}
        out.send_full(self.status, JSON, dumps(body).encode(), self._extra_headers())


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _TextReply(Reply):
    kind: ClassVar[str] = "text"
    body_text: str

    def _data(self) -> dict[str, object]:
        return {"status": self.status, "text": self.body_text}

    def _play(self, out: Wire) -> None:
        out.send_full(self.status, TEXT, self.body_text.encode(), self._extra_headers())


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _JsonReply(Reply):
    kind: ClassVar[str] = "json"
    body_json: str

    def _data(self) -> dict[str, object]:
        return {"status": self.status, "body": _json.loads(self.body_json)}

    def _play(self, out: Wire) -> None:
        out.send_full(self.status, JSON, self.body_json.encode(), self._extra_headers())


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _OkReply(Reply):
    kind: ClassVar[str] = "ok"
    output_text: str

    def _data(self) -> dict[str, object]:
        return {"text": self.output_text}

    def _play(self, out: Wire) -> None:
        body = response_object(out.response_id, status="completed", text=self.output_text)
        out.send_full(200, JSON, dumps(body).encode(), self._extra_headers())


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

    def _play(self, out: Wire) -> None:
        out.start_stream(200, EVENT_STREAM, self._extra_headers())
        numbers = sequence_numbers(skip=self.skip_sequence)
        response = response_object(out.response_id, status="in_progress", text=None)
        out.send_event(
            {"type": "response.created", "sequence_number": next(numbers), "response": response}
        )
        for index in range(self.n_deltas + 1):
            if not out.pause(self.interval):
                out.hang_up()
                return
            if index < self.n_deltas:
                out.send_event(delta_event(next(numbers), delta_text(index)))
        if self.end == "completed":
            text = "".join(map(delta_text, range(self.n_deltas)))
            done = response_object(out.response_id, status="completed", text=text)
            out.send_event(
                {"type": "response.completed", "sequence_number": next(numbers), "response": done}
            )
            out.end_stream()
        elif self.end == "error":
            error = {"type": "error", "sequence_number": next(numbers)}
            out.send_event(error | {"code": self.code, "message": self.message})
            out.end_stream()
        elif self.end == "reset":
            out.reset()
        else:  # "cut", "cut_mid_frame" or "hang": a clean close (FIN), the body unfinished
            if self.end == "cut_mid_frame":
                cut = frame(delta_event(next(numbers), delta_text(self.n_deltas)))
                out.send_chunk(cut[: len(cut) // 2])
            elif self.end == "hang":
                out.pause(math.inf)
            out.hang_up()


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _LargeStreamReply(Reply):
    kind: ClassVar[str] = "large_stream"
    total_bytes: int

    def _data(self) -> dict[str, object]:
        return {"total_bytes": self.total_bytes}

    def _play(self, out: Wire) -> None:
        out.start_stream(200, EVENT_STREAM, self._extra_headers())
        response = response_object(out.response_id, status="in_progress", text=None)
        sent = out.send_event(
            {"type": "response.created", "sequence_number": 0, "response": response}
        )
        tail = b'"}\n\n'
        sequence = 1
        chars = 0
        while sent < self.total_bytes:
            if out.stopping:
                out.hang_up()
                return
            head = delta_head(sequence)
            size = max(1, min(LARGE_DELTA, self.total_bytes - sent - len(head) - len(tail)))
            frame = head + FILLER[:size] + tail
            out.send_chunk(frame, deltas=1)
            sent += len(frame)
            chars += size
            sequence += 1
        # the text is not sent twice: the output stays empty and output_chars counts it
        done = response_object(out.response_id, status="completed", text=None, output_chars=chars)
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

    def _play(self, out: Wire) -> None:
        if not self.before_headers:
            out.start_stream(200, EVENT_STREAM, self._extra_headers())
        out.reset()


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class _CloseReply(Reply):
    kind: ClassVar[str] = "close_without_response"

    def _play(self, out: Wire) -> None:
        out.hang_up()


_KINDS: Final = frozenset(cls.kind for cls in Reply.__subclasses__())
"""Every kind of reply: each is built by the constructor of the same name."""
_KEY_OF: Final = {"obj": "body"}
"""A constructor's parameter -> its key in plain data, where the two differ."""


def _params(kind: str) -> dict[str, inspect.Parameter]:
    """The parameters of the constructor of *kind*, by their keys in plain data."""
    params = inspect.signature(getattr(Reply, kind)).parameters.values()
    return {_KEY_OF.get(p.name, p.name): p for p in params}


# --------------------------------------------------------------------------- script files


def _from_data(data: object, where: str = "") -> tuple[Reply | None, list[str]]:
    """The reply *data* describes, or None and every problem found (``key: expected ...``).

    Unknown and missing keys are all reported; of the values, the first bad one
    (a constructor stops there). *where* prefixes each key path (``replies[0]``).
    """
    prefix = f"{where}." if where else ""
    if not isinstance(data, Mapping):
        found = show(data)
        return None, [f"{where or 'reply'}: expected a table with a 'kind' key; found {found}"]
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        found = "none" if kind is None else show(kind)
        kinds = ", ".join(sorted(_KINDS))
        hint = _did_you_mean(kind, _KINDS)
        return None, [f"{prefix}kind: expected one of: {kinds}; found {found}{hint}"]
    params = _params(kind)
    problems: list[str] = []
    for key in data:
        if key != "kind" and key not in params:
            allowed = ", ".join(["kind", *sorted(params)])
            hint = _did_you_mean(key, params)
            problems.append(
                f"{prefix}{key}: unknown key for kind {kind!r}; expected one of: {allowed}{hint}"
            )
    problems += [
        f"{prefix}{key}: expected a value (required for kind {kind!r}); found none"
        for key, param in params.items()
        if param.default is param.empty and key not in data
    ]
    if problems:
        return None, problems
    kwargs = {params[key].name: value for key, value in data.items() if key != "kind"}
    try:
        return getattr(Reply, kind)(**kwargs), []
    except ValueError as exc:  # the constructors' messages start with the key
        return None, [f"{prefix}{exc}"]
    except TypeError as exc:
        return None, [f"{where or 'reply'}: expected arguments of kind {kind!r}; found {exc}"]


def _script_data(path: Path, text: bytes) -> tuple[object, str]:
    """The parsed file and its form, ``"toml"`` or ``"json"`` (*path*'s suffix decides)."""
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text.decode("utf-8")), "toml"
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            msg = f"expected a TOML script ([[replies]] tables); found invalid TOML: {e}"
            raise ValueError(msg) from None
    try:
        return _json.loads(text), "json"
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        msg = (
            "expected a JSON script (a list of replies; a TOML script needs a .toml name); "
            f"found invalid JSON: {e}"
        )
        raise ValueError(msg) from None


def _replies_list(data: object, form: str, problems: list[str]) -> list[object] | None:
    """The list of reply tables in a parsed script, or None with the problems found."""
    if form == "json" and isinstance(data, list):
        return data
    if not isinstance(data, Mapping):
        problems.append(
            f"expected a list of replies (or an object with a 'replies' list); found {show(data)}"
        )
        return None
    if form == "json" and "kind" in data:
        problems.append(
            "expected a list of replies; found a single reply object (put it in [ ... ])"
        )
        return None
    for key in data:
        if key != "replies":
            problems.append(
                f"{key}: unknown key; expected one of: replies{_did_you_mean(key, ['replies'])}"
            )
    replies = data.get("replies")
    if replies is None:
        if not problems:  # else a misspelt "replies" was reported with a suggestion
            expected = "[[replies]] tables" if form == "toml" else "a 'replies' list"
            problems.append(f"replies: expected {expected}; found none")
        return None
    if not isinstance(replies, list):
        problems.append(f"replies: expected a list of replies; found {show(replies)}")
        return None
    return replies


def load_script(path: str | Path) -> list[Reply]:
    """The replies of a script file, in order, checked as strictly as a policy file.

    A JSON file holds a list of reply objects (or ``{"replies": [...]}``); a ``.toml``
    file holds ``[[replies]]`` tables. Each reply is :meth:`Reply.from_data`'s form.

    Raises:
        ConfigError: naming the file and every problem found, each with its key path
            (``replies[2].status``), what was expected and what was found, and a
            suggestion for a misspelt name.
    """
    file = Path(path)
    problems: list[str] = []
    replies: list[Reply] = []
    try:
        data, form = _script_data(file, file.read_bytes())
    except FileNotFoundError:
        problems.append("cannot read the script: expected an existing file; found none")
    except OSError as e:
        problems.append(f"cannot read the script: expected a readable file; found {e}")
    except ValueError as e:
        problems.append(str(e))
    else:
        items = _replies_list(data, form, problems)
        for index, item in enumerate(items or []):
            reply, found = _from_data(item, f"replies[{index}]")
            problems += found
            if reply is not None:
                replies.append(reply)
    if problems:
        raise ConfigError.for_file(file, problems)
    return replies
