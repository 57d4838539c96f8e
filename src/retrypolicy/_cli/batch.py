"""``retrypolicy batch run|status|requeue``: JSON Lines batches at most once each, resumable.

The logic is in :mod:`retrypolicy.batch`; this module is its command line, and
:mod:`._batch_command` wires a requests session (the requests adapter) and, with ``--fake``,
the fake server into it: the application layer is the only one that imports adapters or
:mod:`retrypolicy.testing`.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from ._common import Subparsers, add_policy_options, positive_float, positive_int

__all__ = ["add_to"]


def _ledger_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--ledger", required=True, metavar="LEDGER", help=help)


def add_to(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``batch`` and its subcommands (``batch run|status|requeue``)."""
    run_epilog = (
        "exit codes: 0 every job done; 1 some jobs failed, input lines were bad, or the "
        "input holds no job; 2 bad usage or input (a missing file too), or a setup error "
        "stopped the run; 130 interrupted (143 by SIGTERM)."
    )
    ledger_epilog = "exit codes: 0 ok; 2 bad usage, or a ledger that cannot be read."
    batch = sub.add_parser(
        "batch",
        help="run a JSON Lines batch of requests at most once each, resumable",
        description=(
            "Batch jobs with a client-side dedupe ledger: `batch run` posts each line of a "
            "JSON Lines file to /v1/responses at most once to success, and resumes where a "
            "killed run stopped; `batch status` counts the jobs of a ledger and what they "
            "cost; `batch requeue` puts failed jobs back to pending."
        ),
        epilog="each subcommand's --help says its exit codes and options.",
    )
    batch.set_defaults(run=_run)
    group = batch.add_subparsers(dest="batch_command", metavar="SUBCOMMAND", required=True)
    run = group.add_parser(
        "run",
        help="post every line of INPUT.jsonl once; rerun to resume",
        description=(
            'Post each line of INPUT (a JSON object: the request body plus an "id", the '
            "job id, which is not sent) to /v1/responses, under the policy, recording each "
            "job in the ledger; write one JSON line per finished job to --out. Run it again "
            "to resume: only pending, retryable-failed and abandoned jobs run, and an id "
            "with a done line in --out is never sent again. Bad lines are reported with "
            "their numbers and skipped. A setup error (a 401; the first jobs all failing "
            "with one 4xx and none succeeding) stops the run, puts those jobs back to "
            "pending and exits 2 saying what to fix. Ctrl-C or SIGTERM lets the running "
            "jobs end (a second one gives them back to pending) and says how many are left."
        ),
        epilog=run_epilog,
    )
    run.add_argument("input", metavar="INPUT.jsonl", help="the requests, one JSON object a line")
    _ledger_option(run, "an SQLite file (created if missing), or redis://host:port/db")
    run.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="results, one JSON line per job (appended; a regular file: a rerun reads it)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--base-url",
        metavar="URL",
        help=(
            "the API's base URL, http(s)://host[:port][/path], with or without a trailing "
            "/v1 (both post to .../v1/responses); the key comes from EUGPT_API_KEY"
        ),
    )
    where.add_argument(
        "--fake",
        action="store_true",
        help="run against a built-in fake EU GPT server instead (to try the command)",
    )
    run.add_argument(
        "--concurrency", type=positive_int, default=8, metavar="N", help="parallel jobs (8)"
    )
    run.add_argument(
        "--lease",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long a crashed worker's jobs stay locked (30; renewed while running)",
    )
    run.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        metavar="SECONDS",
        help="read timeout of one request (300)",
    )
    add_policy_options(run)
    status = group.add_parser(
        "status",
        help="count a ledger's jobs per state and failure kind, and their cost",
        description=(
            "Count the jobs of a ledger per state, the failed ones per kind, and the "
            "requests they cost (retries, and jobs re-sent after an interruption)."
        ),
        epilog=ledger_epilog,
    )
    _ledger_option(status, "an SQLite file, or redis://host:port/db")
    status.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: total, pending, running, done, failed, requests, "
        "retries, resent (integers)",
    )
    requeue = group.add_parser(
        "requeue",
        help="put failed jobs back to pending, to send them again",
        description=(
            "Put the failed jobs of a ledger back to pending — all of them, or those of the "
            "given kinds and ids — once their cause is fixed, so that the next `batch run` "
            "sends them again without new ids. Done jobs are never touched."
        ),
        epilog=ledger_epilog,
    )
    _ledger_option(requeue, "an SQLite file, or redis://host:port/db")
    requeue.add_argument(
        "--kind",
        action="append",
        metavar="KIND",
        help="only failed jobs of this kind (e.g. authentication, not_found); repeatable",
    )
    requeue.add_argument("--id", action="append", metavar="ID", help="only this job id; repeatable")


def _run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the batch subcommand *args* names."""
    from . import _batch_command as c  # noqa: PLC0415 - the ledgers and the runner: load only here

    commands = {"run": c.run_command, "status": c.status_command, "requeue": c.requeue_command}
    return commands[args.batch_command](args, out)
