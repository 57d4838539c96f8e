"""``retrypolicy demo`` and ``retrypolicy serve-fake``: the library against a live fake API.

The demo is the main job a new user runs: a realistic morning of EU GPT
failures, each handled by the policy through a real HTTP stack on 127.0.0.1,
with the retry events as they happen and a summary at the end.
"""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any, TextIO

import attrs
import httpx
import requests
import structlog

from . import instrumentation
from ._decorators import retry
from ._errors import APIError
from ._events import RetryEvent
from ._profiles import EUGPT
from .testing import FakeEUGPT, Reply, instant

__all__ = ["run_demo", "serve_fake"]

_KEY = "eugpt_demo_0000000000000000"


@attrs.define
class _Row:
    scenario: str
    via: str
    requests: int = 0
    waited: float = 0.0
    result: str = ""


def _logger(out: TextIO) -> Any:
    return structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=out.isatty(), pad_event_to=18),
        ],
    )


def _scenarios(
    server: FakeEUGPT,
) -> Iterator[tuple[str, str, list[Reply], Callable[[], str]]]:
    from retrypolicy_httpx import RetryTransport  # noqa: PLC0415 - optional extra
    from retrypolicy_requests import RetryAdapter  # noqa: PLC0415

    url = server.responses_url
    auth = {"Authorization": f"Bearer {_KEY}"}
    session = requests.Session()
    session.mount("http://", RetryAdapter(EUGPT))
    client = httpx.Client(transport=RetryTransport(EUGPT), headers=auth, timeout=10)
    strict = requests.Session()
    strict.mount("http://", RetryAdapter(EUGPT, raise_on_give_up=True))

    def ask_json() -> str:
        r = session.post(url, json={"input": "Hello", "stream": False}, headers=auth, timeout=10)
        return f"{r.status_code} {r.json().get('output_text', '')[:30]!r}"

    def ask_httpx() -> str:
        r = client.post(url, json={"input": "Hello", "stream": False})
        return f"{r.status_code} {r.json().get('output_text', '')[:30]!r}"

    def stream_httpx() -> str:
        with client.stream("POST", url, json={"input": "Hello"}) as r:
            events = sum(1 for line in r.iter_lines() if line.startswith("data:"))
        return f"{r.status_code}, {events} events, completed"

    @retry(EUGPT)
    def stream_requests() -> str:
        with session.post(url, json={"input": "Hello"}, headers=auth, stream=True) as r:
            events = sum(1 for line in r.iter_lines() if line.startswith(b"data:"))
        return f"{r.status_code}, {events} events, completed"

    def revoked() -> str:
        try:
            strict.post(url, json={"input": "Hello"}, headers=auth, timeout=10)
        except APIError as e:
            return f"{type(e).__name__}: {e.advice.split('.')[0]}"
        return "no error?"

    yield (
        "429 with Retry-After: 1",
        "requests",
        [Reply.error(429, code="rate_limit_exceeded", detail="Too many requests", retry_after=1)],
        ask_json,
    )
    yield ("503 burst from the load balancer", "httpx", [Reply.error(503)] * 3, ask_httpx)
    yield (
        "stream: upstream_timeout before content",
        "httpx",
        [Reply.stream(0, end="error", code="upstream_timeout")],
        stream_httpx,
    )
    yield (
        "stream: upstream_timeout mid-answer",
        "requests + @rp.retry",
        [Reply.stream(3, end="error", code="upstream_timeout")],
        stream_requests,
    )
    yield (
        "401: key revoked",
        "requests (raise_on_give_up)",
        [Reply.error(401, detail="Invalid API key", code="invalid_api_key")],
        revoked,
    )


def run_demo(out: TextIO, *, instant_waits: bool = False) -> int:
    """Run the scripted scenario; print events and a summary table to *out*."""
    rows: list[_Row] = []
    current: list[_Row] = []

    def tally(event: RetryEvent) -> None:
        if current and event.name == instrumentation.SCHEDULED:
            current[0].waited += event.delay

    previous = instrumentation.get_hooks()
    instrumentation.set_hooks([instrumentation.StructlogHook(_logger(out)), tally])
    try:
        with FakeEUGPT() as server, ExitStack() as stack:
            stack.enter_context(instant() if instant_waits else nullcontext())
            print(f"fake EU GPT API on {server.url}", file=out)
            for title, via, replies, action in _scenarios(server):
                row = _Row(title, via)
                current[:] = [row]
                print(f"\n== {title}  (via {via})", file=out)
                before = server.request_count
                server.script(*replies)
                try:
                    row.result = action()
                except Exception as e:  # noqa: BLE001 - the demo reports whatever happened
                    row.result = f"{type(e).__name__}: {e}"[:60]
                row.requests = server.request_count - before
                print(f"-> {row.result}", file=out)
                rows.append(row)
    finally:
        instrumentation.set_hooks(previous)
    _print_summary(rows, out, instant_waits=instant_waits)
    return 0


def _print_summary(rows: list[_Row], out: TextIO, *, instant_waits: bool) -> None:
    header = ("scenario", "via", "requests", "waited", "result")
    cells = [(r.scenario, r.via, str(r.requests), f"{r.waited:.2f}s", r.result) for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    print("\nsummary" + (" (waits skipped with --instant)" if instant_waits else ""), file=out)
    for line in [header, tuple("-" * w for w in widths), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), file=out)


def _load_script(path: str) -> list[Reply]:
    text = Path(path).read_bytes()
    data: Any
    if path.endswith(".toml"):
        data = tomllib.loads(text.decode("utf-8")).get("replies", [])
    else:
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("replies", [])
    if not isinstance(data, list):
        msg = f"{path}: expected a list of replies (JSON list, or TOML [[replies]] tables)"
        raise ValueError(msg)
    replies = []
    for i, item in enumerate(data):
        try:
            replies.append(Reply.from_data(item))
        except ValueError as e:
            msg = f"{path}: replies[{i}]: {e}"
            raise ValueError(msg) from e
    return replies


def serve_fake(out: TextIO, *, port: int, script: str | None, require_key: bool) -> int:
    """Serve the fake API until interrupted (Ctrl-C); 2 when the script cannot be used."""
    import sys  # noqa: PLC0415

    try:
        replies = _load_script(script) if script is not None else []
    except (OSError, ValueError, tomllib.TOMLDecodeError) as e:
        print(f"retrypolicy serve-fake: --script: {e}", file=sys.stderr)
        return 2
    try:
        server = FakeEUGPT(port=port, require_key=require_key).start()
    except OSError as e:
        print(f"retrypolicy serve-fake: --port {port}: {e.strerror or e}", file=sys.stderr)
        return 2
    server.script(*replies)
    print(f"serving the fake EU GPT API on {server.url}/v1/responses", file=out, flush=True)
    print(f"{len(replies)} scripted replies, then the default success; Ctrl-C stops", file=out)
    out.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
