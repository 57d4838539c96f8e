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

Two modes play a whole fleet's weather rather than one request's reply (the storm
benchmarks and tests use them; both are off by default, and both read the server's
``clock=``): an outage (:meth:`FakeEUGPT.outage`) and a token bucket (``rate_limit=``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
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
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Final, Literal, cast
from urllib.parse import urlsplit

from retrypolicy._redact import redact, redact_headers

from ._replies import Reply, _check_seconds, _is_number, show
from ._wire import frame, merge, phrase

__all__ = ["FakeEUGPT", "OnRequest", "RecordedRequest", "RequestSource"]

RequestSource = Literal["script", "default", "auth", "route", "outage", "rate_limit"]
"""Where the reply to a recorded request came from."""

OnRequest = Callable[["RecordedRequest", "int | None", str], None]
"""``on_request(request, status, outcome)``: called once a reply was served.

*status* is the status line sent (None when the connection ended before one);
*outcome* says how the response ended: ``"sent"`` for a complete body, and for an
event stream ``"completed"``, ``"error <code> after <n> deltas"``, ``"cut after <n>
deltas"`` or ``"reset after <n> deltas"``; ``"reset before the response"``, ``"closed
without a response"``, or ``"client left ..."`` when the client hung up first.
"""

_ENDPOINT: Final = "/v1/responses"
_MAX_BODY: Final = 16 * 1024 * 1024  # request bodies above this get a 413
_MAX_TRAILERS: Final = 100
_PAUSE_SLICE: Final = 0.05  # how often a waiting reply checks whether its client left
_POLL_INTERVAL: Final = 0.05  # accept-loop poll; bounds how long stop() waits for it
_JOIN_TIMEOUT: Final = 2.0  # stop() waits at most this long for connection threads
_HEX_RE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS_RE: Final = re.compile(r"[0-9]{1,20}")
_LINGER_RESET: Final = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)

_AUTO_STREAM: Final = Reply.stream()
_AUTO_OK: Final = Reply.ok()
_OUTAGE: Final = Reply.error(503)


def _check_rate_limit(value: object) -> tuple[float, float] | None:
    """``(rate_per_s, burst)``: a positive rate and a burst of at least one request."""
    if value is None:
        return None
    if isinstance(value, tuple | list) and len(value) == 2:
        rate, burst = value
        if _is_number(rate) and _is_number(burst) and 0 < rate < math.inf and 1 <= burst < math.inf:
            return float(rate), float(burst)
    raise ValueError(
        "rate_limit: expected (rate_per_s, burst) with rate_per_s > 0 and burst >= 1, "
        f"or None; got {show(value)}"
    )


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
            f"json={redact(show(self.json))}, reply={self.reply!r}, source={self.source!r}, "
            f"request_id={self.request_id!r}, client={self.client!r})"
        )


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
        on_request: called from the connection's thread after each recorded request
            was answered, as ``on_request(request, status, outcome)`` (see
            :data:`OnRequest`); the fake itself prints nothing. An exception it
            raises lands in :attr:`errors`.
        rate_limit: ``(rate_per_s, burst)``: a token bucket holding at most *burst*
            requests (full at the first request) and refilled at *rate_per_s*. A
            request to the endpoint that passed ``require_key`` takes a token; when
            none is left it gets a 429 envelope (``rate_limit_error`` /
            ``rate_limit_exceeded``) with ``Retry-After`` in whole seconds (at least
            1, as HTTP allows no fraction), and its scripted reply stays queued.
        clock: the monotonic clock (seconds) that :meth:`outage` and *rate_limit*
            read; :func:`time.monotonic` by default. A test passes its own to drive
            both without sleeping.
    """

    def __init__(
        self,
        *,
        require_key: bool = False,
        default: Reply | None = None,
        valid_keys: Iterable[str] | None = None,
        port: int = 0,
        on_request: OnRequest | None = None,
        rate_limit: tuple[float, float] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if clock is not None and not callable(clock):
            raise TypeError(f"clock: expected a callable returning seconds, got {show(clock)}")
        self._clock: Callable[[], float] = time.monotonic if clock is None else clock
        self._rate_limit = _check_rate_limit(rate_limit)
        self._tokens = 0.0 if self._rate_limit is None else self._rate_limit[1]
        self._refilled: float | None = None  # when the bucket was last topped up
        self._outage: tuple[float, float, Reply] | None = None  # (start, end, reply)
        if on_request is not None and not callable(on_request):
            raise TypeError(f"on_request: expected a callable or None, got {show(on_request)}")
        self._on_request = on_request
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port: expected 0 (any free port) to 65535, got {show(port)}")
        self._bind_port = port
        if default is not None and not isinstance(default, Reply):
            raise TypeError(f"default: expected a Reply or None, got {show(default)}")
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

    def script(self, *replies: Reply) -> None:
        """Queue *replies*; each request to the endpoint takes the next one, in order."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"script: expected Reply objects, got {show(reply)}")
        with self._cond:
            self._script.extend(replies)

    def clear(self) -> None:
        """Forget the queued replies, the recorded requests and the status counts.

        The request-id count, an outage and the rate limit's bucket are kept.
        """
        with self._cond:
            self._script.clear()
            self._records.clear()

    def outage(self, seconds: float, *, after: float = 0.0, reply: Reply | None = None) -> None:
        """Answer every request to the endpoint with *reply* (a 503 envelope) for *seconds*.

        The outage starts *after* seconds from now (on the server's clock) and ends on
        its own; calling again replaces it, and ``outage(0)`` ends one at once. It
        comes before ``require_key`` and the rate limit, as a load balancer answers
        for a backend that is down, and scripted replies stay queued meanwhile.
        """
        seconds = _check_seconds(seconds, "seconds")
        after = _check_seconds(after, "after")
        if reply is not None and not isinstance(reply, Reply):
            raise TypeError(f"reply: expected a Reply or None, got {show(reply)}")
        with self._cond:
            start = self._clock() + after
            self._outage = (start, start + seconds, _OUTAGE if reply is None else reply)

    @property
    def in_outage(self) -> bool:
        """Whether a request arriving now would get the outage's reply."""
        with self._cond:
            return self._outage_reply(self._clock()) is not None

    @property
    def status_counts(self) -> dict[int, int]:
        """How many recorded requests got each status (of the reply chosen), since
        the start or :meth:`clear`; a reset or closed connection counts as its reply's
        ``status`` field."""
        with self._cond:
            return dict(Counter(record.reply.status for record in self._records))

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._cond:
            return len(self._script)

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

    def _served(self, request: RecordedRequest, status: int | None, outcome: str) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(request, status, outcome)
        except Exception as exc:  # noqa: BLE001 - a broken callback must not break serving
            self._record_error(exc)

    def _outage_reply(self, now: float) -> Reply | None:
        outage = self._outage
        if outage is None or not outage[0] <= now < outage[1]:
            return None
        return outage[2]

    def _wait_for_token(self, now: float) -> float:
        """Take a token from the bucket: 0.0, or the seconds until one is back (none taken)."""
        rate, burst = cast("tuple[float, float]", self._rate_limit)
        if self._refilled is not None:
            self._tokens = min(burst, self._tokens + max(0.0, now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / rate

    def _dispatch(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        client: tuple[str, int],
    ) -> tuple[RecordedRequest, int]:
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
            elif self._outage is not None and (down := self._outage_reply(self._clock())):
                source, reply = "outage", down
            elif (
                self._require_key
                and (problem := _auth_problem(headers, self._valid_keys)) is not None
            ):
                source = "auth"
                reply = Reply.error(401, detail="Invalid API key", message=problem)
            elif self._rate_limit is not None and (wait := self._wait_for_token(self._clock())):
                source = "rate_limit"
                reply = _rate_limited(max(1, math.ceil(wait - 1e-9)))
            elif self._script:
                source, reply = "script", self._script.popleft()
            elif self._default is not None:
                source, reply = "default", self._default
            else:
                wants_json = isinstance(parsed, dict) and parsed.get("stream") is False
                source, reply = "default", _AUTO_OK if wants_json else _AUTO_STREAM
            record = RecordedRequest(
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
            self._records.append(record)
            self._cond.notify_all()
        return record, number


@functools.lru_cache(maxsize=64)
def _rate_limited(retry_after: int) -> Reply:
    """The 429 the rate limit answers with (one per hint value: replies are frozen)."""
    return Reply.error(429, retry_after=retry_after)


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
            with contextlib.suppress(OSError):  # already closed or reset
                sock.shutdown(socket.SHUT_RDWR)
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
    # what was sent for the current request, for FakeEUGPT's on_request callback
    _status: int | None = None
    _streamed = False
    _deltas = 0
    _last_event: Mapping[str, object] | None = None
    _ending = ""

    @property
    def _server(self) -> _Server:
        return cast("_Server", self.server)

    @property
    def stopping(self) -> bool:
        return self._server.stopping.is_set()

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
        fake = self._server.fake
        record, self.request_number = fake._dispatch(
            self.command, self.path, headers, body, (str(host), int(port))
        )
        self.response_id = f"resp_{self.request_number}"
        self._status, self._streamed, self._deltas, self._last_event = None, False, 0, None
        self._ending = ""
        try:
            if not self.pause(record.reply.delay_seconds):
                self.hang_up()
                self._ending = "left"
                return
            record.reply._play(self)
        except OSError:
            self._ending = "left"
            raise
        finally:
            fake._served(record, self._status, self._outcome())

    def _outcome(self) -> str:
        """How the current response ended, in words (see :data:`OnRequest`)."""
        after = f" after {self._deltas} delta{'' if self._deltas == 1 else 's'}"
        if self._ending == "left":
            where = "before the response" if self._status is None else "mid-response"
            return f"client left {where}"
        if self._status is None:
            reset = self._ending == "reset"
            return "reset before the response" if reset else "closed without a response"
        if not self._streamed:
            return "sent"
        if self._ending != "ended":
            return ("reset" if self._ending == "reset" else "cut") + after
        last = self._last_event or {}
        if last.get("type") == "response.completed":
            return "completed"
        if last.get("type") == "error":
            return f"error {last.get('code')}{after}"
        return "ended" + after

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

    # ---- what a Reply uses to write (the Wire protocol documents each) ---------------

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
        self._status = status
        lines = [f"HTTP/1.1 {status} {phrase(status)}"]
        lines += [f"{name}: {value}" for name, value in merge(base, headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_full(
        self, status: int, content_type: str, body: bytes, headers: Sequence[tuple[str, str]]
    ) -> None:
        if status in (204, 304):
            framing: list[tuple[str, str]] = []
            body = b""
        else:
            framing = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if self.command == "HEAD":
            body = b""
        self.wfile.write(self._head(status, merge(framing, headers)) + body)

    def start_stream(
        self, status: int, content_type: str, headers: Sequence[tuple[str, str]]
    ) -> None:
        self._chunked = self.request_version != "HTTP/1.0"
        self._streamed = True
        framing = [("Content-Type", content_type), ("Cache-Control", "no-cache")]
        if self._chunked:
            framing.append(("Transfer-Encoding", "chunked"))
        else:
            self.close_connection = True  # the body then ends when the connection does
        self.wfile.write(self._head(status, merge(framing, headers)))

    def send_chunk(self, data: bytes, deltas: int = 0) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
            self._deltas += deltas

    def send_event(self, event: Mapping[str, object]) -> int:
        data = frame(event)
        self.send_chunk(data)
        self._last_event = event
        if event.get("type") == "response.output_text.delta":
            self._deltas += 1
        return len(data)

    def end_stream(self) -> None:
        self._ending = "ended"
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.close_connection = True

    def hang_up(self) -> None:
        self.close_connection = True

    def reset(self) -> None:
        """Reset the connection now: RST instead of FIN, by closing with SO_LINGER 0."""
        self.close_connection = True
        self._ending = "reset"
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        finally:
            self.rfile.close()  # the socket only really closes once its makefile() is closed
            sock.close()

    def pause(self, seconds: float) -> bool:
        stop = self._server.stopping
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
        Reply.error(int(code), detail=message or phrase(int(code)))._play(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a test fixture must not write to stderr."""
