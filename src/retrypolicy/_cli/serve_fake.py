"""``retrypolicy serve-fake``: the fake EU GPT API, for a user's own integration tests.

It serves until Ctrl-C or SIGTERM - both its normal way to stop, so both exit 0 after
the summary (a test harness stops it with ``kill``). One line per request goes to
standard error as it is answered: requests are answered on their own threads, so each
line is written whole, under a lock, in one call, and lines never merge. The fake
server is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import threading
from typing import TYPE_CHECKING, TextIO

import attrs

from .._errors import ConfigError
from .._redact import redact
from ._common import EXIT_OK, Subparsers, plural, sigterm_as_interrupt, tcp_port

if TYPE_CHECKING:
    from ..testing import FakeEUGPT, RecordedRequest

__all__ = ["add_to", "run"]


def add_to(sub: Subparsers[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve-fake",
        help="serve the fake EU GPT API for your own integration tests",
        description=(
            "Serve the fake EU GPT API on 127.0.0.1 until interrupted. With --script, the "
            "replies in the file (a JSON list, or [[replies]] tables in a .toml file) answer "
            "the first requests in order; then every request gets the default success. Each "
            "request is reported on standard error as it is answered, and a summary at exit."
        ),
        epilog=(
            "exit codes: 0 stopped by Ctrl-C or SIGTERM, its normal end (the summary is "
            "printed first); 2 bad usage, a --script that cannot be used, or a --port that "
            "cannot be bound."
        ),
    )
    serve.add_argument("--port", type=tcp_port, default=8765, help="port (8765; 0: any free)")
    serve.add_argument("--script", metavar="FILE", help="replies to serve first, in order")
    serve.add_argument(
        "--require-key", action="store_true", help="answer 401 without a Bearer eugpt_ key"
    )
    serve.add_argument(
        "--quiet", action="store_true", help="no line per request and no summary on stderr"
    )
    serve.set_defaults(run=run)


def _wait_forever(server: FakeEUGPT) -> None:
    """Block until interrupted (Ctrl-C, or SIGTERM, raises KeyboardInterrupt here)."""
    del server  # tests replace this function and drive the server instead
    forever = threading.Event()
    while not forever.wait(0.5):  # timed waits: a signal is always seen within half a second
        pass


@attrs.define
class _Report:
    """What serve-fake says on *stream* (unless *quiet*): a line per request served, and a
    closing summary. The connection threads share the stream: each line is one write,
    under the lock."""

    stream: TextIO
    quiet: bool
    statuses: collections.Counter[str] = attrs.field(factory=collections.Counter)
    sources: collections.Counter[str] = attrs.field(factory=collections.Counter)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def served(self, request: RecordedRequest, status: int | None, outcome: str) -> None:
        with self.lock:
            self.statuses["no response" if status is None else str(status)] += 1
            self.sources[request.source] += 1
        self.line(_request_line(request, status, outcome))

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self.lock, contextlib.suppress(OSError, ValueError):  # stderr gone: keep serving
            self.stream.write(text + "\n")
            self.stream.flush()

    def summary(self, pending: int) -> str:
        with self.lock:
            total = sum(self.sources.values())
            statuses = ", ".join(f"{s} x{n}" for s, n in sorted(self.statuses.items()))
            sources = ", ".join(f"{n} {s}" for s, n in sorted(self.sources.items()))
        text = f"served {plural(total, 'request')}"
        if total:
            text += f" ({sources}; {statuses})"
        return f"{text}; {plural(pending, 'scripted reply', 'scripted replies')} left unused"


def _request_line(request: RecordedRequest, status: int | None, outcome: str) -> str:
    shown = "---" if status is None else str(status)
    line = (
        f"{request.request_id} {request.method} {redact(request.path)} -> {shown} "
        f"{request.reply.kind} ({request.source})"
    )
    if outcome != "sent":
        line += f": {outcome}"
    return line


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Serve the fake API until Ctrl-C or SIGTERM; 2 when the script or port cannot be used.

    Unless ``--quiet``, each request is reported on standard error as it is answered,
    and a summary when the server stops.
    """
    from ..testing import FakeEUGPT  # noqa: PLC0415 - a whole HTTP server: load only here
    from ..testing._replies import load_script  # noqa: PLC0415 - only serve-fake needs it

    script = args.script
    replies = load_script(script) if script is not None else []  # ConfigError: main says 2
    report = _Report(sys.stderr, args.quiet)
    try:
        server = FakeEUGPT(port=args.port, require_key=args.require_key, on_request=report.served)
        server.start()
    except OSError as e:
        msg = f"--port {args.port}: expected a free port on 127.0.0.1; found {e.strerror or e}"
        raise ConfigError(msg) from None
    try:
        server.script(*replies)
        # SIGTERM is handled before the address is announced: a supervisor that reads it and
        # stops the server at once gets the summary too
        with sigterm_as_interrupt(), contextlib.suppress(KeyboardInterrupt):
            print(f"serving the fake EU GPT API on {server.responses_url}", file=out, flush=True)
            print(
                f"{plural(len(replies), 'scripted reply', 'scripted replies')}, "
                "then the default success; Ctrl-C stops",
                file=out,
                flush=True,
            )
            _wait_forever(server)
    finally:
        server.stop()
    report.line(report.summary(server.pending))
    return EXIT_OK
