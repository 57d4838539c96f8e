"""``retrypolicy demo`` and ``retrypolicy serve-fake``: the library against a live fake API.

The demo is the main job a new user runs: a realistic morning of EU GPT
failures, each handled by the policy through a real HTTP stack on 127.0.0.1,
with the retry events as they happen and a summary that fits one screen.

Only what a plain install has is required: the fake server is the standard
library, the demo drives ``requests`` (a core dependency) and also ``httpx``
when it is installed; without it, the httpx scenarios run through requests and
the closing note says what ``httpx`` would add.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, nullcontext
from types import ModuleType
from typing import Any, Final, TextIO, TypeVar

import attrs
import requests

from . import instrumentation
from ._decorators import retry
from ._errors import APIError, ConfigError
from ._events import RetryEvent
from ._profiles import EUGPT
from ._redact import redact
from .testing import FakeEUGPT, RecordedRequest, Reply, instant
from .testing._replies import load_script

__all__ = ["WIDTH", "run_demo", "serve_fake"]

WIDTH: Final = 100
"""No line the demo prints is wider than this."""

_KEY: Final = "eugpt_demo_0000000000000000"
_TIMEOUT: Final = 10.0
_HTTPX_INSTALL: Final = "pip install 'retrypolicy[httpx]'"

_F = TypeVar("_F", bound=Callable[..., Any])


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _say(out: TextIO, text: str = "") -> None:
    """Print *text*, each line cut to :data:`WIDTH` columns."""
    for line in text.split("\n"):
        print(_cut(line, WIDTH), file=out)


def _named(name: str) -> Callable[[_F], _F]:
    """Give a scenario function the name its retry events carry (``call=``)."""

    def rename(fn: _F) -> _F:
        fn.__name__ = fn.__qualname__ = name
        return fn

    return rename


def _event_line(event: RetryEvent) -> str:
    """``retry.scheduled  attempt=1 kind=rate_limited status=429 ... wait=1.00s``."""
    parts = [f"  {event.name:<16} attempt={event.attempt}"]
    for key, value in (("kind", event.kind), ("status", event.status), ("code", event.code)):
        if value is not None:
            parts.append(f"{key}={value}")
    if event.name == instrumentation.SCHEDULED:
        parts.append(f"wait={event.delay:.2f}s")
    else:
        parts.append(f"after={event.elapsed:.2f}s")
    return " ".join(parts)


def _httpx() -> ModuleType | None:
    """The ``httpx`` module, or None when it is not installed."""
    try:
        import httpx  # noqa: PLC0415 - an optional extra: the demo runs without it
    except ImportError:
        return None
    return httpx


@attrs.define
class _Row:
    scenario: str
    via: str
    requests: int = 0
    waited: float = 0.0
    result: str = ""


@attrs.frozen
class _Scenario:
    title: str
    via: str
    replies: list[Reply]
    action: Callable[[], str]


def _answer(status: int, body: Any) -> str:
    text = body.get("output_text", "") if isinstance(body, dict) else ""
    return f"{status} {text[:30]!r}"


def _scenarios(server: FakeEUGPT, stack: ExitStack) -> Iterator[_Scenario]:
    from retrypolicy_requests import RetryAdapter  # noqa: PLC0415 - a sibling package

    url = server.responses_url
    auth = {"Authorization": f"Bearer {_KEY}"}
    session = stack.enter_context(requests.Session())
    session.mount("http://", RetryAdapter(EUGPT))
    strict = stack.enter_context(requests.Session())
    strict.mount("http://", RetryAdapter(EUGPT, raise_on_give_up=True))

    @_named("ask")
    def ask() -> str:
        r = session.post(url, json={"input": "Hello", "stream": False}, headers=auth, timeout=10)
        return _answer(r.status_code, r.json())

    @_named("stream_answer")
    def stream_answer() -> str:
        with session.post(url, json={"input": "Hi"}, headers=auth, stream=True, timeout=10) as r:
            events = sum(1 for line in r.iter_lines() if line.startswith(b"data:"))
        return f"{r.status_code}, {events} events, completed"

    ask_httpx, stream_httpx, httpx_via = ask, stream_answer, "requests (httpx not installed)"
    httpx = _httpx()
    if httpx is not None:
        from retrypolicy_httpx import RetryTransport  # noqa: PLC0415 - needs httpx

        client = stack.enter_context(
            httpx.Client(transport=RetryTransport(EUGPT), headers=auth, timeout=_TIMEOUT)
        )
        httpx_via = "httpx"

        @_named("ask")
        def ask_httpx() -> str:
            r = client.post(url, json={"input": "Hello", "stream": False})
            return _answer(r.status_code, r.json())

        @_named("stream_answer")
        def stream_httpx() -> str:
            with client.stream("POST", url, json={"input": "Hello"}) as r:
                events = sum(1 for line in r.iter_lines() if line.startswith("data:"))
            return f"{r.status_code}, {events} events, completed"

    @retry(EUGPT)
    @_named("stream_answer")
    def stream_whole_exchange() -> str:
        return stream_answer()

    @_named("ask")
    def revoked() -> str:
        try:
            strict.post(url, json={"input": "Hello"}, headers=auth, timeout=_TIMEOUT)
        except APIError as e:
            return f"{type(e).__name__} ({e.kind}), not retried"
        return "no error?"

    yield _Scenario(
        "429 with Retry-After: 1",
        "requests",
        [Reply.error(429, code="rate_limit_exceeded", detail="Too many requests", retry_after=1)],
        ask,
    )
    yield _Scenario(
        "503 burst from the load balancer", httpx_via, [Reply.error(503)] * 3, ask_httpx
    )
    yield _Scenario(
        "stream: upstream_timeout before content",
        httpx_via,
        [Reply.stream(0, end="error", code="upstream_timeout")],
        stream_httpx,
    )
    yield _Scenario(
        "stream: upstream_timeout mid-answer",
        "requests + @rp.retry",
        [Reply.stream(3, end="error", code="upstream_timeout")],
        stream_whole_exchange,
    )
    yield _Scenario(
        "401: key revoked",
        "requests, raise_on_give_up",
        [Reply.error(401, detail="Invalid API key", code="invalid_api_key")],
        revoked,
    )


def run_demo(out: TextIO, *, instant_waits: bool = False) -> int:
    """Run the scripted scenario; print events and a summary table to *out*.

    A closed *out* (``demo | head -1``) raises :class:`BrokenPipeError` from the
    next line printed, never from inside a retry hook.
    """
    rows: list[_Row] = []
    current: list[_Row] = []
    broken: list[BrokenPipeError] = []

    def show(event: RetryEvent) -> None:
        if current and event.name == instrumentation.SCHEDULED:
            current[0].waited += event.delay
        try:
            _say(out, _event_line(event))
        except BrokenPipeError as e:  # raised again from the demo's own next line
            broken.append(e)

    previous = instrumentation.get_hooks()
    instrumentation.set_hooks([show])
    try:
        with FakeEUGPT() as server, ExitStack() as stack:
            stack.enter_context(instant() if instant_waits else nullcontext())
            _say(out, f"retrypolicy demo: a fake EU GPT API on {server.url}, the EU GPT policy,")
            _say(out, "and each retry event as it happens.")
            for scenario in _scenarios(server, stack):
                row = _Row(scenario.title, scenario.via)
                current[:] = [row]
                _say(out, f"\n== {scenario.title}  (via {scenario.via})")
                before = server.request_count
                server.script(*scenario.replies)
                try:
                    row.result = scenario.action()
                except Exception as e:  # noqa: BLE001 - the demo reports whatever happened
                    row.result = redact(f"{type(e).__name__}: {e}")
                if broken:
                    raise broken[0]
                row.requests = server.request_count - before
                _say(out, f"-> {row.result}")
                rows.append(row)
    finally:
        instrumentation.set_hooks(previous)
    _print_summary(rows, out, instant_waits=instant_waits)
    _print_next(out, httpx_installed=_httpx() is not None)
    return 0


def _print_summary(rows: list[_Row], out: TextIO, *, instant_waits: bool) -> None:
    header = ("scenario", "requests", "waited", "result")
    cells = [(r.scenario, str(r.requests), f"{r.waited:.2f}s", r.result) for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    widths[-1] = min(widths[-1], max(WIDTH - sum(widths[:-1]) - 2 * (len(widths) - 1), 10))
    _say(out, "\nsummary" + (" (waits skipped with --instant)" if instant_waits else ""))
    for line in [header, tuple("-" * w for w in widths), *cells]:
        fitted = [_cut(c, w).ljust(w) for c, w in zip(line, widths, strict=True)]
        _say(out, "  ".join(fitted).rstrip())


def _print_next(out: TextIO, *, httpx_installed: bool) -> None:
    _say(out, "\nnext:")
    _say(out, "  retrypolicy explain 429     what the policy does with a 429, and why")
    _say(out, "  retrypolicy schedule        the waits before each retry, per kind")
    _say(out, "  retrypolicy serve-fake      this fake API, for your own integration tests")
    _say(out, "  docs: requests.md, httpx.md, decorating.md, configuration.md (in docs/)")
    if not httpx_installed:
        _say(out, "  httpx is not installed, so its scenarios ran through requests; for the")
        _say(out, f"  httpx transport too: {_HTTPX_INSTALL}")


# -- serve-fake ------------------------------------------------------------------------------


def _plural(n: int, word: str, words: str = "") -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def _wait_forever(server: FakeEUGPT) -> None:
    """Block until interrupted (Ctrl-C raises KeyboardInterrupt here)."""
    del server  # tests replace this function and drive the server instead
    forever = threading.Event()
    while not forever.wait(0.5):  # timed waits: a signal is always seen within half a second
        pass


@attrs.define
class _Tally:
    """What serve-fake served, for its closing summary."""

    statuses: collections.Counter[str] = attrs.field(factory=collections.Counter)
    sources: collections.Counter[str] = attrs.field(factory=collections.Counter)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def add(self, request: RecordedRequest, status: int | None) -> None:
        with self.lock:
            self.statuses["no response" if status is None else str(status)] += 1
            self.sources[request.source] += 1

    def summary(self, pending: int) -> str:
        with self.lock:
            total = sum(self.sources.values())
            statuses = ", ".join(f"{s} x{n}" for s, n in sorted(self.statuses.items()))
            sources = ", ".join(f"{n} {s}" for s, n in sorted(self.sources.items()))
        text = f"served {_plural(total, 'request')}"
        if total:
            text += f" ({sources}; {statuses})"
        return f"{text}; {_plural(pending, 'scripted reply', 'scripted replies')} left unused"


def _request_line(request: RecordedRequest, status: int | None, outcome: str) -> str:
    shown = "---" if status is None else str(status)
    line = (
        f"{request.request_id} {request.method} {redact(request.path)} -> {shown} "
        f"{request.reply.kind} ({request.source})"
    )
    if outcome != "sent":
        line += f": {outcome}"
    return line


def serve_fake(
    out: TextIO,
    *,
    port: int,
    script: str | None,
    require_key: bool,
    quiet: bool = False,
    err: TextIO | None = None,
) -> int:
    """Serve the fake API until interrupted (Ctrl-C); 2 when the script or port cannot be used.

    Unless *quiet*, each request is reported on *err* (standard error) as it is
    answered, and a summary when the server stops.
    """
    log = sys.stderr if err is None else err
    replies = load_script(script) if script is not None else []  # ConfigError: main says 2
    tally = _Tally()

    def report(request: RecordedRequest, status: int | None, outcome: str) -> None:
        tally.add(request, status)
        if not quiet:
            with contextlib.suppress(OSError, ValueError):  # stderr gone: keep serving
                print(_request_line(request, status, outcome), file=log, flush=True)

    try:
        server = FakeEUGPT(port=port, require_key=require_key, on_request=report).start()
    except OSError as e:
        msg = f"--port {port}: expected a free port on 127.0.0.1; found {e.strerror or e}"
        raise ConfigError(msg) from None
    try:
        server.script(*replies)
        print(f"serving the fake EU GPT API on {server.responses_url}", file=out, flush=True)
        print(
            f"{_plural(len(replies), 'scripted reply', 'scripted replies')}, "
            "then the default success; Ctrl-C stops",
            file=out,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            _wait_forever(server)
    finally:
        server.stop()
    if not quiet:
        print(tally.summary(server.pending), file=log, flush=True)
    return 0
