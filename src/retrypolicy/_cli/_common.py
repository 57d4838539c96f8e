"""What every command shares: exit codes, argument types, the policy options, the epilogs.

The commands choose their policy exactly as the library does (:func:`policy_of`), so
the command line cannot explain a policy the library would not use.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TypeVar

from .._config import ConfigFileError, load_policy_with_sources
from .._defaults import CONFIG_ENV, PROFILE_ENV, default_policy, env_choice
from .._errors import ConfigError
from .._policy import Policy
from .._profiles import PROFILES

__all__ = [
    "ENV_NOTE",
    "EXIT_INTERRUPTED",
    "EXIT_NO",
    "EXIT_OK",
    "EXIT_USAGE",
    "Subparsers",
    "add_policy_options",
    "epilog",
    "plural",
    "policy_choice",
    "policy_of",
    "positive_float",
    "positive_int",
    "sigterm_as_interrupt",
    "tcp_port",
]

T = TypeVar("T")

EXIT_OK: Final = 0
EXIT_NO: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report Ctrl-C

ENV_NOTE: Final = (
    f"Without --config/--profile, {CONFIG_ENV} and {PROFILE_ENV} choose the policy, "
    "as in the library."
)

Subparsers = argparse._SubParsersAction  # argparse names no public type for add_subparsers()


def epilog(exit_codes: str, *notes: str) -> str:
    """A subcommand's epilog: its own exit codes, then only the notes that apply to it."""
    return " ".join([f"exit codes: {exit_codes}; 130 Ctrl-C.", *notes])


def _checked(text: str, parse: Callable[[str], T], ok: Callable[[T], bool], expected: str) -> T:
    """*text* parsed, if that works and the value is *ok*; else argparse's usage error."""
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _checked(text, int, lambda v: v >= 1, "a whole number >= 1")


def positive_float(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    return _checked(text, float, lambda v: 0 < v < math.inf, "a number of seconds > 0")


def tcp_port(text: str) -> int:
    """An argparse type: a TCP port, 0 for any free one."""
    return _checked(text, int, lambda v: 0 <= v <= 65535, "a port 0-65535 (0: any free port)")


def plural(n: int, word: str, words: str = "") -> str:
    """``1 job``, ``2 jobs``; *words* for a plural that is not *word* + s."""
    return f"{n} {word if n == 1 else words or word + 's'}"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """While the block runs, SIGTERM raises KeyboardInterrupt in the main thread, so it
    ends the command as Ctrl-C does; yields the signals received. (Signal handlers can
    only be set from the main thread: elsewhere nothing changes.)"""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(signum: int, _frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--profile P``, read by :func:`policy_of`, and :data:`ENV_NOTE`
    at the end of the epilog."""
    parser.epilog = f"{parser.epilog} {ENV_NOTE}"
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a policy file (TOML, or a pyproject.toml with [tool.retrypolicy]); "
        f"default: ${CONFIG_ENV}, else the built-in EU GPT policy",
    )
    parser.add_argument(
        "--profile",
        metavar="P",
        help="the policy to use from the file; without a file, a built-in profile "
        f"({', '.join(PROFILES)}); default: ${PROFILE_ENV}",
    )


_CHOOSE = f"--profile P (or {PROFILE_ENV})"
"""How a command's user chooses one policy of a file that defines several."""


def policy_choice(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """The file and the profile the options and the environment name, as :func:`policy_of`
    reads them: an option replaces only its own variable; a file named by
    ``RETRYPOLICY_CONFIG`` has its ``~`` expanded, as the library expands it."""
    config, profile = env_choice()
    if args.config is not None:
        config = Path(args.config)
    return config, profile if args.profile is None else args.profile


def policy_of(args: argparse.Namespace) -> Policy:
    """The policy the options name, read exactly as the library reads the environment.

    Without options: :func:`default_policy` itself. An option replaces only its own
    variable (``--profile`` picks a policy of ``RETRYPOLICY_CONFIG``'s file, or a
    built-in profile when no file is named).
    """
    if args.config is None and args.profile is None:
        return default_policy()
    config, profile = policy_choice(args)
    if config is None:
        try:
            return PROFILES[profile or "eugpt"]
        except KeyError:
            msg = (
                f"--profile {profile!r}: expected a built-in profile ({', '.join(PROFILES)}), "
                "or --config FILE naming a file that defines it"
            )
            raise ConfigError(msg) from None
    try:
        return load_policy_with_sources(config, profile, choose=_CHOOSE)[0]
    except ConfigFileError as e:
        if args.config is not None:
            raise
        named = f"named by {CONFIG_ENV}"
        raise ConfigError.for_file(e.path or config, e.problems, origin=named) from None
