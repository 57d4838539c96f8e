"""``retrypolicy batch run`` and ``retrypolicy batch status``: the runner from a shell.

``batch run`` posts each line of a JSON Lines file to ``/v1/responses`` through the
library's normal retry path — a ``requests`` session with the policy's
:class:`~retrypolicy_requests.RetryAdapter`, inside the runner's own ``@rp.retry``-style
loop for streams that fail mid-answer — so it shares whatever the policy carries
(``Retry-After``, storm protection). Each line's ``id`` is its job id: it is not sent
in the body, but as the ``Idempotency-Key`` header, which the API ignores today and
which makes the server dedupe too on the day it honours it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from .._errors import ConfigError, StreamError
from .._rules import Kind
from ._jsonl import ResultsFile, ResultsFileBusyError, read_jobs
from ._ledger import job_retry_hook
from ._ledger_redis import RedisLedger
from ._ledger_sqlite import SQLiteLedger
from ._model import JobRecord, JobState, LedgerError
from ._runner import BatchReport, run_batch

if TYPE_CHECKING:
    import requests

    from .._policy import Policy
    from ._ledger import LedgerBase

__all__ = ["KEY_ENV", "open_ledger", "run_command", "status_command"]

KEY_ENV: Final = "EUGPT_API_KEY"
_FAKE_KEY: Final = "eugpt_fake_batch_0000000000000000"
_ENDPOINT: Final = "/v1/responses"
_CONNECT_TIMEOUT: Final = 10.0

EXIT_OK, EXIT_NO, EXIT_USAGE = 0, 1, 2


def open_ledger(
    spec: str, *, policy: Policy | None = None, lease: float = 30.0, create: bool = True
) -> LedgerBase:
    """The ledger *spec* names: ``redis://host:port/db`` (a :class:`RedisLedger`, keys
    under ``retrypolicy:batch``) or a file path (a :class:`SQLiteLedger`)."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis  # noqa: PLC0415 - the optional extra
        except ImportError:
            msg = f"--ledger {spec}: a Redis ledger needs redis: pip install 'retrypolicy[redis]'"
            raise ConfigError(msg) from None
        try:
            client = redis.Redis.from_url(spec)
            client.ping()
        except (ValueError, redis.RedisError) as e:
            msg = f"--ledger {spec}: expected a reachable Redis server URL ({e})"
            raise ConfigError(msg) from None
        return RedisLedger(client, policy=policy, lease=lease)
    path = Path(spec)
    if not create and not path.is_file():
        msg = f"--ledger {spec}: no such ledger file (a `batch run` with it creates it)"
        raise ConfigError(msg)
    try:
        return SQLiteLedger(path, policy=policy, lease=lease)
    except LedgerError as e:
        raise ConfigError(f"--ledger {spec}: {e}") from None


def _completed(response: requests.Response) -> Any:
    """The ``response`` object of a stream's ``response.completed`` event.

    The adapter's stream check raises :class:`~retrypolicy.StreamError` while the
    stream is read when it carries an ``error`` event or ends without completing.
    """
    for line in response.iter_lines():
        if line.startswith(b"data:"):
            event = json.loads(line[5:])
            if isinstance(event, dict) and event.get("type") == "response.completed":
                return event.get("response")
    raise StreamError(
        "the stream ended without response.completed",
        status=response.status_code,
        kind=Kind.INCOMPLETE_STREAM,
        retryable=True,
    )


def http_job(
    session: requests.Session, url: str, key: str, timeout: float
) -> Callable[[tuple[str, dict[str, Any]]], Any]:
    """The job function: POST one request body, return the response object (JSON)."""

    def post_response(item: tuple[str, dict[str, Any]]) -> Any:
        job_id, body = item
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": job_id}
        with session.post(
            url, json=body, headers=headers, timeout=(_CONNECT_TIMEOUT, timeout), stream=True
        ) as r:
            ctype = r.headers.get("content-type", "")
            if ctype.split(";", 1)[0].strip().lower() == "text/event-stream":
                return _completed(r)
            return r.json()

    return post_response


@contextlib.contextmanager
def _endpoint(base_url: str | None, err: TextIO) -> Iterator[tuple[str, str]]:
    """(URL of /v1/responses, API key): the real API's, or a fake server's."""
    if base_url is not None:
        key = os.environ.get(KEY_ENV, "")
        if not key:
            msg = f"--base-url {base_url}: set {KEY_ENV} to the API key to send"
            raise ConfigError(msg)
        yield base_url.rstrip("/") + _ENDPOINT, key
        return
    from ..testing import FakeEUGPT  # noqa: PLC0415 - only without --base-url

    with FakeEUGPT() as server:
        print(
            f"retrypolicy batch run: no --base-url, so against a fake EU GPT server on "
            f"{server.url} (give --base-url and {KEY_ENV} for the real API)",
            file=err,
        )
        yield server.responses_url, os.environ.get(KEY_ENV) or _FAKE_KEY


def _session(policy: Policy, concurrency: int) -> requests.Session:
    import requests  # noqa: PLC0415 - a core dependency, loaded when a batch runs

    from retrypolicy_requests import RetryAdapter  # noqa: PLC0415 - the sibling adapter

    session = requests.Session()
    adapter = RetryAdapter(
        policy,
        raise_on_give_up=True,
        on_retry=job_retry_hook,
        pool_connections=1,
        pool_maxsize=concurrency,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary(report: BatchReport, input_name: str, bad: int) -> list[str]:
    parts = [f"{report.done} done now"]
    if report.earlier_done:
        parts.append(f"{report.earlier_done} done earlier")
    if report.failed:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(report.failed_kinds.items()))
        parts.append(f"{report.failed} failed ({kinds})")
    if report.earlier_failed:
        parts.append(f"{report.earlier_failed} failed earlier for good")
    lines = [f"batch: {_plural(report.total, 'job')} from {input_name}: " + ", ".join(parts)]
    if bad:
        lines.append(f"batch: {_plural(bad, 'bad input line')} skipped (listed above)")
    if report.retryable_failed:
        lines.append(
            f"batch: {report.retryable_failed} failed with a retryable kind (the policy gave "
            "up for now): they have no result line yet; run the same command again to retry "
            "them"
        )
    return lines


def run_command(
    *,
    input_path: str,
    ledger_spec: str,
    out_path: str,
    base_url: str | None,
    concurrency: int,
    lease: float,
    timeout: float,
    policy: Policy,
    out: TextIO,
    err: TextIO | None = None,
) -> int:
    """``batch run``: 0 when every job is done; 1 when some failed or lines were bad."""
    err = sys.stderr if err is None else err
    try:
        jobs, bad = read_jobs(Path(input_path))
    except OSError as e:
        msg = f"INPUT {input_path}: cannot read it ({e.strerror or e})"
        raise ConfigError(msg) from None
    for problem in bad:
        print(f"retrypolicy batch run: {input_path} {problem}", file=err)
    ledger = open_ledger(ledger_spec, policy=policy, lease=lease)
    try:
        try:
            results = ResultsFile(Path(out_path))
        except ResultsFileBusyError as e:
            raise ConfigError(f"--out {e}") from None
        except OSError as e:
            raise ConfigError(f"--out {out_path}: cannot write it ({e.strerror or e})") from None
        if results.cut:
            print(
                f"retrypolicy batch run: {out_path}: cut off {results.cut} bytes of a line "
                "left unfinished by a crash",
                file=err,
            )

        def write(record: JobRecord) -> None:
            if record.final:
                results.write(record)

        with results, _endpoint(base_url, err) as (url, key):
            session = _session(policy, concurrency)
            with session:
                report = run_batch(
                    [(job_id, (job_id, body)) for job_id, body in jobs],
                    http_job(session, url, key, timeout),
                    ledger=ledger,
                    policy=policy,
                    concurrency=concurrency,
                    on_finish=write,
                )
    finally:
        ledger.close()
    for line in _summary(report, input_path, len(bad)):
        print(line, file=out)
    print(f"batch: results in {out_path} ({results.written} new lines)", file=out)
    return EXIT_OK if report.ok and not bad else EXIT_NO


def status_command(*, ledger_spec: str, out: TextIO) -> int:
    """``batch status``: jobs per state and failed jobs per kind."""
    ledger = open_ledger(ledger_spec, create=False)
    try:
        counts = ledger.counts()
    finally:
        ledger.close()
    print(f"{ledger_spec}: {_plural(counts.total, 'job')}", file=out)
    for state in JobState:
        n = counts.states.get(state, 0)
        note = ""
        if state is JobState.FAILED and n:
            note = f"  ({n - counts.retryable_failed} final, {counts.retryable_failed} retryable)"
        print(f"  {state:<8} {n:>7}{note}", file=out)
    if counts.failed_kinds:
        print("failed by kind:", file=out)
        width = max(len(k) for k in counts.failed_kinds)
        for kind, n in sorted(counts.failed_kinds.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {kind:<{width}} {n:>7}", file=out)
    return EXIT_OK
