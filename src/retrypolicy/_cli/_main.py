"""The ``retrypolicy`` program: the parser of every command, and :func:`main`.

Parsing and dispatch only: each command is a module of this package with an
``add_to(subparsers)`` that registers it and the function it runs.

Exit codes: 0 success; 1 the input was understood and the answer is "no"
(``check`` found problems, some batch jobs failed); 2 bad usage, or an input that
cannot be read (missing, unreadable, not UTF-8). A closed standard output
(``retrypolicy schedule | head -1``) ends the command quietly with 0, and Ctrl-C
with 130: no traceback either way. ``serve-fake`` is the exception that proves
the rule: Ctrl-C and SIGTERM are how it is meant to stop, so they end it with 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .. import __version__
from .._errors import ConfigError
from . import batch, check, demo, dump, explain, schedule, serve_fake, simulate
from ._common import ENV_NOTE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["build_parser", "main"]

_EPILOG = (
    "exit codes: 0 success; 1 the answer is no (check found problems, batch jobs failed); "
    "2 bad usage, or an input that cannot be read (missing, unreadable, not UTF-8); 130 "
    f"Ctrl-C (serve-fake: 0, its normal stop). {ENV_NOTE}"
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, one subparser per command module."""
    parser = argparse.ArgumentParser(
        prog="retrypolicy",
        description="Explain, check and exercise an HTTP API's retry policy (default: EU GPT).",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"retrypolicy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (check, explain, schedule, dump, demo, serve_fake, batch, simulate):
        command.add_to(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with *argv* (default: ``sys.argv[1:]``); return the exit code.

    Never exits the interpreter itself, so tests can call it in-process: ``--help``
    and usage errors, which argparse ends with ``SystemExit``, return their code.
    """
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, or a usage error argparse has already reported
            return e.code if isinstance(e.code, int) else EXIT_USAGE
        try:
            code: int = args.run(args, sys.stdout)
        except ConfigError as e:
            print(f"retrypolicy {args.command}: {e}", file=sys.stderr)
            return EXIT_USAGE
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit-time flush stays quiet."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # not a real file: no flush
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
