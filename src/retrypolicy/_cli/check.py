"""``retrypolicy check FILE``: every problem of a policy file in one report.

Exit 1 means the file was read and has problems (a finding); a file that cannot be
read at all - missing, unreadable, not UTF-8 - is bad input (2), as for every command.
``FILE`` ``-`` reads standard input, so ``retrypolicy dump | retrypolicy check -`` works.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Final, TextIO

from .._config import load_policies, load_policy
from .._config.literals import join_key
from .._config.load import _load_file
from .._errors import ConfigError
from ._common import EXIT_NO, EXIT_OK, EXIT_USAGE, Subparsers, epilog, plural

__all__ = ["add_to", "run"]

STDIN: Final = "<stdin>"
"""How a policy read from standard input is named in messages."""

_STDIN_LIMIT: Final = 16 * 1024 * 1024
"""A policy file is a few KiB: more than this on standard input is not one."""


def add_to(sub: Subparsers[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check",
        help="validate a policy file; list every problem",
        description="Validate a policy file: every policy in it, every problem in one report.",
        epilog=epilog(
            "0 every policy is valid; 1 the file has problems (each one is listed); 2 bad "
            "usage, or a FILE that cannot be read (missing, unreadable, not UTF-8)",
            "FILE '-' reads the policy from standard input: retrypolicy dump | retrypolicy check -",
        ),
    )
    check.add_argument(
        "file", metavar="FILE", help="the TOML file (or pyproject.toml); '-': standard input"
    )
    check.add_argument("--profile", metavar="P", help="check only this policy")
    check.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Check the file (or standard input) the arguments name."""
    with ExitStack() as stack:
        if args.file == "-":
            file, shown = _stdin_file(stack), Path(STDIN)
        else:
            file = shown = Path(args.file)
        problem = _unreadable(file)
        if problem is not None:
            print(f"retrypolicy check: {shown}: {problem}", file=sys.stderr)
            return EXIT_USAGE
        try:
            if args.profile is not None:
                names = [load_policy(file, args.profile).name]
            else:
                names = [*load_policies(file)]
        except ConfigError as e:
            if args.profile is None:
                print(ConfigError.for_file(shown, e.problems), file=sys.stderr)
                return EXIT_NO
            return _report_profile(file, shown, args.profile, e.problems)
    print(f"{shown}: ok ({', '.join(names)})", file=out)
    return EXIT_OK


def _stdin_file(stack: ExitStack) -> Path:
    """Standard input, saved where the loader (which reads files) can read it."""
    data = sys.stdin.buffer.read(_STDIN_LIMIT + 1)
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="retrypolicy-check-")))
    file = folder / "stdin.toml"
    file.write_bytes(data)
    return file


def _unreadable(file: Path) -> str | None:
    """Why *file* cannot be checked at all (bad input, exit 2), or None when it can."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return "cannot read the policy file: expected an existing file; found none"
    except OSError as e:
        return f"cannot read the policy file: expected a readable file; found {e.strerror or e}"
    if len(data) > _STDIN_LIMIT:
        return f"expected a policy file of at most {_STDIN_LIMIT // 1024 // 1024} MiB"
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return (
            "cannot read the policy file: expected UTF-8 text (TOML); "
            f"found byte 0x{data[e.start]:02x} on line {line}"
        )
    return None


def _report_profile(file: Path, shown: Path, profile: str, problems: list[str]) -> int:
    """``check --profile P``: the problems of policy P (and of the file as a whole) only.

    Problems of other policies still fail the check, as :func:`load_policy` checks
    the whole file, but are only counted, unless P cannot be built without them
    (it extends a broken policy): then they are the reason, and are listed.
    """
    asked = [p for p in problems if p.startswith("profile: ")]
    if asked:  # no such policy in the file: a usage error
        print(f"retrypolicy check: {ConfigError.for_file(shown, asked)}", file=sys.stderr)
        return EXIT_USAGE
    heads = [join_key(base, profile) for base in ("policies", "tool.retrypolicy.policies")]
    of_profile = tuple(f"{head}{mark}" for head in heads for mark in ".[:")
    bases = ("policies.", "tool.retrypolicy.policies.")
    own = [p for p in problems if p.startswith(of_profile) or not p.startswith(bases)]
    others = len(problems) - len(own)
    built = profile in _load_file(file, [])[1]
    if own or not built:
        print(ConfigError.for_file(shown, own or problems), file=sys.stderr)
    else:
        print(f"{shown}: policy {profile!r} is valid", file=sys.stderr)
    if others and (own or built):
        again = "-" if shown.name == STDIN else str(shown)
        print(
            f"{shown}: {plural(others, 'problem')} in other policies "
            f"{'makes' if others == 1 else 'make'} loading {profile!r} fail too: "
            f"`retrypolicy check {again}` lists them",
            file=sys.stderr,
        )
    return EXIT_NO
