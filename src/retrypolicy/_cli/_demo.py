"""The demo itself: the library against a live fake API (the command is :mod:`.demo`).

The demo is the main job a new user runs: a realistic morning of EU GPT
failures, each handled by the policy through a real HTTP stack on 127.0.0.1,
with the retry events as they happen and a summary that fits one screen.

Only what a plain install has is required: the fake server is the standard
library, the demo drives ``requests`` (a core dependency) and also ``httpx``
when it is installed; without it, the httpx scenarios run through requests and
the closing note says what ``httpx`` would add. Nothing is ever cut short: a line
wider than :data:`WIDTH` wraps. Where to read on comes from the installed package's
metadata (``[project.urls]``), since a pip install has no ``docs/`` folder.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, nullcontext
from importlib import metadata
from types import ModuleType
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import attrs
import requests

from .. import instrumentation
from .._decorators import retry
from .._errors import APIError
from .._events import RetryEvent
from .._profiles import EUGPT
from .._redact import redact
from ..testing import FakeEUGPT, Reply, instant
from ._common import EXIT_OK

__all__ = ["WIDTH", "project_urls", "run_demo"]

WIDTH: Final = 100
"""No line the demo prints is wider than this: longer ones wrap, none is cut."""

_KEY: Final = "eugpt_demo_0000000000000000"
_TIMEOUT: Final = 10.0
_HTTPX_INSTALL: Final = "pip install 'retrypolicy[httpx]'"
_PAGES: Final = ("requests", "httpx", "decorating", "configuration")


def _say(out: TextIO, text: str = "") -> None:
    """Print *text*; a line wider than :data:`WIDTH` wraps, indented under its start."""
    for line in text.split("\n"):
        indent = " " * (len(line) - len(line.lstrip(" ")) + 4)
        for part in textwrap.wrap(line, WIDTH, subsequent_indent=indent) or [""]:
            print(part, file=out)


def _table(rows: Sequence[Sequence[str]], widths: Sequence[int]) -> Iterator[str]:
    """The rows as columns of *widths*; a cell wider than its column wraps within it."""
    for row in rows:
        cells = [textwrap.wrap(c, w) or [""] for c, w in zip(row, widths, strict=True)]
        for parts in itertools.zip_longest(*cells, fillvalue=""):
            yield "  ".join(p.ljust(w) for p, w in zip(parts, widths, strict=True)).rstrip()


def project_urls() -> dict[str, str]:
    """``[project.urls]`` of the installed package, by label; empty when not installed."""
    try:
        entries = metadata.metadata("retrypolicy").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return {}
    pairs = (entry.partition(",") for entry in entries)
    return {label.strip(): url.strip() for label, _, url in pairs}


def _published(url: str | None) -> bool:
    """Whether *url* is a real address, not a placeholder on the reserved ``.invalid``."""
    host = urlsplit(url).hostname if url else None
    return bool(host) and not (host or "").endswith(".invalid")


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
    return f"{status} {text!r}"


def _scenarios(server: FakeEUGPT, stack: ExitStack) -> Iterator[_Scenario]:
    from retrypolicy_requests import RetryAdapter  # noqa: PLC0415 - a sibling package

    url = server.responses_url
    auth = {"Authorization": f"Bearer {_KEY}"}
    session = stack.enter_context(requests.Session())
    session.mount("http://", RetryAdapter(EUGPT))
    strict = stack.enter_context(requests.Session())
    strict.mount("http://", RetryAdapter(EUGPT, raise_on_give_up=True))

    def ask() -> str:
        r = session.post(url, json={"input": "Hello", "stream": False}, headers=auth, timeout=10)
        return _answer(r.status_code, r.json())

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

        def ask_httpx() -> str:
            r = client.post(url, json={"input": "Hello", "stream": False})
            return _answer(r.status_code, r.json())

        def stream_httpx() -> str:
            with client.stream("POST", url, json={"input": "Hello"}) as r:
                events = sum(1 for line in r.iter_lines() if line.startswith("data:"))
            return f"{r.status_code}, {events} events, completed"

    stream_whole_exchange = retry(EUGPT)(stream_answer)

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
    return EXIT_OK


def _print_summary(rows: list[_Row], out: TextIO, *, instant_waits: bool) -> None:
    header = ("scenario", "requests", "waited", "result")
    cells = [(r.scenario, str(r.requests), f"{r.waited:.2f}s", r.result) for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    widths[-1] = min(widths[-1], max(WIDTH - sum(widths[:-1]) - 2 * (len(widths) - 1), 10))
    _say(out, "\nsummary" + (" (waits skipped with --instant)" if instant_waits else ""))
    for line in _table([header, tuple("-" * w for w in widths), *cells], widths):
        _say(out, line)


def _print_next(out: TextIO, *, httpx_installed: bool) -> None:
    _say(out, "\nnext:")
    _say(out, "  retrypolicy explain 429     what the policy does with a 429, and why")
    _say(out, "  retrypolicy schedule        the waits before each retry, per kind")
    _say(out, "  retrypolicy serve-fake      this fake API, for your own integration tests")
    urls = project_urls()
    docs = urls.get("Documentation")
    if _published(docs):
        _say(out, f"  docs: {docs} ({', '.join(_PAGES)})")
    else:
        pages = ", ".join(f"{p}.md" for p in _PAGES)
        _say(out, f"  docs: not published online yet; docs/ in the source has them ({pages})")
    if _published(source := urls.get("Source")):
        _say(out, f"  source: {source}")
    if not httpx_installed:
        _say(out, "  httpx is not installed, so its scenarios ran through requests; for the")
        _say(out, f"  httpx transport too: {_HTTPX_INSTALL}")
