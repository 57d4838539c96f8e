"""``retrypolicy batch run|status``: JSON Lines batches at most once each, resumable.

The logic is in :mod:`retrypolicy.batch`; this module is its command line. It is the
place the batch command's wiring of adapters and the fake server (today in
``retrypolicy.batch._command``) belongs: the application layer is the only one that
imports adapters or :mod:`retrypolicy.testing`.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from .._defaults import CONFIG_ENV, PROFILE_ENV
from ._common import add_policy_options as _add_policy_options
from ._common import policy_of as _policy_of
from ._common import positive_float as _positive_float
from ._common import positive_int as _positive_int

__all__ = ["add_to"]


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``batch`` and its subcommands."""
    _add_batch(sub)


_BATCH_EPILOG = (
    "exit codes: 0 every job done; 1 some jobs failed or input lines were bad; 2 bad usage "
    f"or input (a missing file too). Without --config/--profile, {CONFIG_ENV} and "
    f"{PROFILE_ENV} choose the policy, as in the library."
)


def _add_batch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``batch run`` and ``batch status``: the logic is in :mod:`retrypolicy.batch`."""
    batch = sub.add_parser(
        "batch",
        help="run a JSON Lines batch of requests at most once each, resumable",
        description=(
            "Batch jobs with a client-side dedupe ledger: `batch run` posts each line of a "
            "JSON Lines file to /v1/responses at most once to success, and resumes where a "
            "killed run stopped; `batch status` counts the jobs of a ledger."
        ),
        epilog=_BATCH_EPILOG,
    )
    group = batch.add_subparsers(dest="batch_command", metavar="SUBCOMMAND", required=True)
    run = group.add_parser(
        "run",
        help="post every line of INPUT.jsonl once; rerun to resume",
        description=(
            'Post each line of INPUT (a JSON object: the request body plus an "id", the '
            "job id, which is not sent) to /v1/responses, under the policy, recording each "
            "job in the ledger; write one JSON line per finished job to --out. Run it again "
            "to resume: only pending, retryable-failed and abandoned jobs run. Bad lines are "
            "reported with their numbers and skipped. The API key is read from "
            "EUGPT_API_KEY. Exit 0 when every job is done, 1 when some failed or lines "
            "were bad."
        ),
        epilog=_BATCH_EPILOG,
    )
    run.add_argument("input", metavar="INPUT.jsonl", help="the requests, one JSON object a line")
    run.add_argument(
        "--ledger",
        required=True,
        metavar="LEDGER",
        help="an SQLite file (created if missing), or redis://host:port/db",
    )
    run.add_argument(
        "--out", required=True, metavar="FILE", help="results, one JSON line per job (appended)"
    )
    run.add_argument(
        "--base-url",
        metavar="URL",
        help="the API's base URL; default: a built-in fake EU GPT server, so it runs as is",
    )
    run.add_argument(
        "--concurrency", type=_positive_int, default=8, metavar="N", help="parallel jobs (8)"
    )
    run.add_argument(
        "--lease",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long a crashed worker's jobs stay locked (30; renewed while running)",
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="read timeout of one request (300)",
    )
    _add_policy_options(run)
    run.set_defaults(run=_batch_run)
    status = group.add_parser(
        "status",
        help="count a ledger's jobs per state and failure kind",
        description="Count the jobs of a ledger per state, and the failed ones per kind.",
        epilog=_BATCH_EPILOG,
    )
    status.add_argument(
        "--ledger", required=True, metavar="LEDGER", help="an SQLite file, or redis://host:port/db"
    )
    status.set_defaults(run=_batch_status)


# -- batch ---------------------------------------------------------------------------


def _batch_run(args: argparse.Namespace, out: TextIO) -> int:
    from ..batch._command import run_command  # noqa: PLC0415 - loads requests and the adapter

    return run_command(
        input_path=args.input,
        ledger_spec=args.ledger,
        out_path=args.out,
        base_url=args.base_url,
        concurrency=args.concurrency,
        lease=args.lease,
        timeout=args.timeout,
        policy=_policy_of(args),
        out=out,
    )


def _batch_status(args: argparse.Namespace, out: TextIO) -> int:
    from ..batch._command import status_command  # noqa: PLC0415

    return status_command(ledger_spec=args.ledger, out=out)
