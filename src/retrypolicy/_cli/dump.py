"""``retrypolicy dump``: a policy as a self-contained TOML file that ``check`` accepts."""

from __future__ import annotations

import argparse
from typing import TextIO

from .._config import dump_policy
from ._common import EXIT_OK, Subparsers, add_policy_options, epilog, policy_of

__all__ = ["add_to", "run"]


def add_to(sub: Subparsers[argparse.ArgumentParser]) -> None:
    dump = sub.add_parser(
        "dump",
        help="print a policy as TOML (the built-in EU GPT policy by default)",
        description=(
            "Print a policy as a self-contained TOML file that `check` accepts "
            "(retrypolicy dump | retrypolicy check -)."
        ),
        epilog=epilog("0 printed; 2 bad usage, or a --config file that cannot be used"),
    )
    add_policy_options(dump)
    dump.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print the policy the options name."""
    out.write(dump_policy(policy_of(args)))
    return EXIT_OK
