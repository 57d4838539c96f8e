"""``retrypolicy demo``: a realistic failure scenario against a built-in fake EU GPT server.

Registering the command costs nothing: the demo (:mod:`._demo`), which loads the
adapters and the fake server, is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from ._common import Subparsers, epilog

__all__ = ["add_to", "run"]


def add_to(sub: Subparsers[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="run a realistic failure scenario against a built-in fake EU GPT server",
        description=(
            "Start the fake EU GPT server on 127.0.0.1 and run a scripted scenario - a 429 "
            "with Retry-After, a 503 burst, streams that die with upstream_timeout, a 401 - "
            "through the requests adapter and, when installed, the httpx transport, printing "
            "each retry event and a summary."
        ),
        epilog=epilog(
            "0 the demo ran; 2 bad usage",
            "The demo always uses the built-in EU GPT policy (rp.EUGPT).",
        ),
    )
    demo.add_argument(
        "--instant", action="store_true", help="skip the real waits (they are still shown)"
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo."""
    from ._demo import run_demo  # noqa: PLC0415 - starts a server and clients: load only here

    return run_demo(out, instant_waits=args.instant)
