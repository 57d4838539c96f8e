"""``retrypolicy batch run|status|requeue``: the runner from a shell.

``batch run`` posts each line of a JSON Lines file to ``/v1/responses`` through the
library's normal retry path — a ``requests`` session with the policy's
:class:`~retrypolicy_requests.RetryAdapter`, inside the runner's own ``@rp.retry``-style
loop for streams that fail mid-answer — so it shares whatever the policy carries
(``Retry-After``, storm protection). Each line's ``id`` is its job id: it is not sent
in the body, but as the ``Idempotency-Key`` header (:func:`._model.idempotency_key`:
header-safe and one-to-one), which the API ignores today and which makes the server
dedupe too on the day it honours it.

Every request is money, so the command checks what it can before it sends anything
(the base URL, the files), stops at a setup error (see :mod:`._setup`), never sends a
job whose id has a ``done`` line in ``--out`` (whatever the ledger says), and says what
the run cost. Every message it prints starts with ``retrypolicy batch:``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO
from urllib.parse import urlsplit

from .._errors import ConfigError, StreamError
from .._rules import Kind
from .._sse import SSEDecoder, SSEEvent
from .._sse._head import HEAD_COMPACT, loads, read_slow
from ..batch._jsonl import NotAResultsFileError, ResultsFile, ResultsFileBusyError, read_jobs
from ..batch._ledger import job_retry_hook
from ..batch._ledger_redis import RedisLedger
from ..batch._ledger_sqlite import SQLiteLedger
from ..batch._model import UNSERIALIZABLE_RESULT, JobRecord, JobState, LedgerError, idempotency_key
from ..batch._runner import BatchReport, run_batch
from ..batch._setup import PROBE, what_to_fix
from ..stores._clients import safe_url
from ..transport import is_event_stream
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_NO,
    EXIT_OK,
    EXIT_USAGE,
    plural,
    policy_of,
    sigterm_as_interrupt,
)

if TYPE_CHECKING:
    import requests

    from .._policy import Policy
    from ..batch._ledger import LedgerBase
    from ..batch._model import LedgerCounts

__all__ = [
    "KEY_ENV",
    "PREFIX",
    "open_ledger",
    "requeue_command",
    "responses_url",
    "run_command",
    "status_command",
]

KEY_ENV: Final = "EUGPT_API_KEY"
PREFIX: Final = "retrypolicy batch:"
"""The start of every line the batch commands print."""
_FAKE_KEY: Final = "eugpt_fake_batch_0000000000000000"
_ENDPOINT: Final = "/v1/responses"
_CONNECT_TIMEOUT: Final = 10.0
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
_MAX_EVENT_BYTES: Final = 64 * 1024 * 1024
"""The largest stream event ``batch run`` reads (a ``response.completed`` holds the whole
answer, twice: its output and ``output_text``)."""
_READ_BYTES: Final = 64 * 1024


# -- checked before anything is created --------------------------------------------------


def responses_url(base_url: str) -> str:
    """The ``/v1/responses`` URL of the API whose base is *base_url*.

    The base may end with ``/v1`` or not (``https://api.example.eu`` and
    ``https://api.example.eu/v1`` both reach ``https://api.example.eu/v1/responses``);
    it must be an ``http://`` or ``https://`` URL with a host. ConfigError otherwise,
    before any file or connection is made.
    """
    expected = (
        "expected the API's base URL, http:// or https:// and a host, such as "
        "https://api.example.eu (with or without /v1)"
    )
    try:
        parts = urlsplit(base_url.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (
        parts is None
        or parts.scheme not in {"http", "https"}
        or not parts.hostname
        or not port_ok
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(f"--base-url {base_url}: {expected}")
    path = parts.path.rstrip("/")
    for suffix in (_ENDPOINT, "/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{parts.netloc}{path}{_ENDPOINT}"


def _check_out(out_path: str) -> Path:
    """*out_path* as a results file: a regular file (or a new one) in a directory."""
    why = "results go to a file, which a rerun reads back so that no id gets a second line"
    if out_path == "-":
        raise ConfigError(f"--out -: expected a file path, not standard output ({why})")
    path = Path(out_path)
    where = str(path.absolute())
    device = where.startswith(("/dev/", "/proc/")) and not where.startswith("/dev/shm/")  # noqa: S108 - a path compared, no file made
    if device or (path.exists() and not path.is_file()):
        raise ConfigError(
            f"--out {out_path}: expected a regular file, and this is not one ({why}); "
            "write to a file, then read or `tail -f` it"
        )
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out_path}: the directory {str(parent)!r} does not exist")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether the paths *a* and *b* name one file (through links too), existing or not."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_distinct(input_path: str, out_path: str, ledger_spec: str) -> None:
    """INPUT, --out and an SQLite --ledger are three files: results appended to the input
    or the ledger would ruin it (a swapped or mistyped path)."""
    named = [("INPUT", input_path), ("--out", out_path)]
    if "://" not in ledger_spec:
        named.append(("--ledger", ledger_spec))
    for i, (second, b) in enumerate(named):
        for first, a in named[:i]:
            if _same_file(Path(a), Path(b)):
                raise ConfigError(
                    f"{second} {b}: the same file as {first}; the requests, the results and "
                    "the ledger are three files (swapped or mistyped paths?)"
                )


def _check_key(key: str) -> None:
    """An API key an ``Authorization`` header carries as it is: visible ASCII characters
    only (a CR or a newline from a ``.env`` file would fail every job, unsent)."""
    if not all("!" <= c <= "~" for c in key):
        raise ConfigError(
            f"{KEY_ENV}: expected the API key alone, visible ASCII characters without "
            "spaces or line breaks; it holds another character (a stray newline, CR or "
            "space from the file or shell that set it?)"
        )


def shown(spec: str) -> str:
    """A ledger spec as messages show it: a Redis URL's password masked."""
    return safe_url(spec) if "://" in spec else spec


def _check_ledger_spec(spec: str) -> None:
    """A ledger spec names an SQLite file or a Redis URL with a database number."""
    if "://" not in spec:
        return
    scheme = spec.split("://", 1)[0].lower()
    if scheme not in _REDIS_SCHEMES:
        raise ConfigError(
            f"--ledger {shown(spec)}: expected an SQLite file path or a Redis URL "
            "(redis://host:port/db, rediss://..., unix://...), not a "
            f"{scheme}:// URL"
        )
    if scheme != "unix":
        db = urlsplit(spec).path.strip("/")
        if db and not db.isdigit():
            raise ConfigError(
                f"--ledger {shown(spec)}: expected a database number after the host "
                f"(redis://host:port/0), got {db!r}"
            )


def open_ledger(
    spec: str, *, policy: Policy | None = None, lease: float = 30.0, create: bool = True
) -> LedgerBase:
    """The ledger *spec* names: ``redis://host:port/db`` (a :class:`RedisLedger`, keys
    under ``retrypolicy:batch``) or a file path (a :class:`SQLiteLedger`). Without
    *create*, the file must exist, and one in a directory this process cannot write is
    opened for reading only (``batch status``)."""
    _check_ledger_spec(spec)
    if "://" in spec:
        try:
            import redis  # noqa: PLC0415 - the optional extra
        except ImportError:
            msg = (
                f"--ledger {shown(spec)}: a Redis ledger needs redis: "
                "pip install 'retrypolicy[redis]'"
            )
            raise ConfigError(msg) from None
        try:
            client = redis.Redis.from_url(spec)
            client.ping()
        except (ValueError, redis.RedisError) as e:
            msg = f"--ledger {shown(spec)}: expected a reachable Redis server URL ({e})"
            raise ConfigError(msg) from None
        return RedisLedger(client, policy=policy, lease=lease)
    path = Path(spec)
    if not create and not path.is_file():
        msg = f"--ledger {spec}: no such ledger file (a `batch run` with it creates it)"
        raise ConfigError(msg)
    try:
        return SQLiteLedger(path, policy=policy, lease=lease)
    except LedgerError as e:
        if not create:
            with contextlib.suppress(LedgerError):
                return SQLiteLedger(path, policy=policy, lease=lease, read_only=True)
        raise ConfigError(f"--ledger {shown(spec)}: {_after_name(e)}") from None


def _after_name(error: LedgerError) -> str:
    """A ledger's message without its leading ``ledger 'path':`` (the caller names it)."""
    text = str(error)
    return text.split(": ", 1)[1] if text.startswith("ledger ") and ": " in text else text


# -- the requests --------------------------------------------------------------------------


def _events(response: requests.Response, decoder: SSEDecoder) -> Iterator[SSEEvent]:
    """The events of a streamed body, as they arrive (decoded: gzip...)."""
    for chunk in response.iter_content(chunk_size=_READ_BYTES):
        yield from decoder.feed(chunk)
    yield from decoder.close()


def _completed(response: requests.Response) -> Any:
    """The ``response`` object of a stream's ``response.completed`` event.

    The stream is read as server-sent events (:class:`~retrypolicy._sse.SSEDecoder`: an
    event's data over several ``data:`` lines, any line end), and an event whose data is
    not JSON is ignored, as any unknown event is: an answer that completed is never lost
    to its framing. Memory is bounded: an event larger than :data:`_MAX_EVENT_BYTES` is
    refused as a ``stream_error``, which is final (the answer was paid for; sending it
    again would pay for one as large). The adapter's stream check raises
    :class:`~retrypolicy.StreamError` while the stream is read when it carries an
    ``error`` event or ends without completing.
    """
    decoder = SSEDecoder(_MAX_EVENT_BYTES, max_event_bytes=_MAX_EVENT_BYTES)
    for event in _events(response, decoder):
        data = event.data
        head = HEAD_COMPACT.match(data)  # the event's type, read without parsing its data:
        etype = head[1] if head is not None else read_slow(data)[0]  # deltas are most of it
        if etype == "response.completed" and isinstance(value := loads(data), dict):
            return value.get("response")
    if decoder.overflowed:
        raise StreamError(
            f"the stream held an event larger than {_MAX_EVENT_BYTES} bytes, not read",
            status=response.status_code,
            kind=Kind.STREAM_ERROR,
            retryable=False,
        )
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
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key(job_id)}
        with session.post(
            url, json=body, headers=headers, timeout=(_CONNECT_TIMEOUT, timeout), stream=True
        ) as r:
            if is_event_stream(r.headers):  # the adapter's reading: every Content-Type line
                return _completed(r)
            return r.json()

    return post_response


@contextlib.contextmanager
def _endpoint(url: str | None, err: TextIO) -> Iterator[tuple[str, str]]:
    """(URL of /v1/responses, API key): the real API's, or (*url* None) a fake server's."""
    if url is not None:
        yield url, os.environ.get(KEY_ENV, "")
        return
    from ..testing import FakeEUGPT  # noqa: PLC0415 - only with --fake

    with FakeEUGPT() as server:
        print(f"{PREFIX} --fake: against a fake EU GPT server on {server.url}", file=err)
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


# -- what is printed -------------------------------------------------------------------------


def cost_line(paid: BatchReport | LedgerCounts) -> str:
    """What was paid for: requests sent for how many jobs, retries, re-sends."""
    return (
        f"cost: {plural(paid.requests, 'request')} sent for {plural(paid.sent_jobs, 'job')} "
        f"({plural(paid.retries, 'retry', 'retries')}, {plural(paid.resent, 'job')} "
        "re-sent after an interruption)"
    )


def _summary(
    report: BatchReport, input_name: str, bad: int, adopted: int, ledger_spec: str
) -> list[str]:
    parts = [f"{report.done} done now"]
    if report.earlier_done:
        parts.append(f"{report.earlier_done} done earlier")
    if report.failed:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(report.failed_kinds.items()))
        parts.append(f"{report.failed} failed ({kinds})")
    if report.earlier_failed:
        parts.append(f"{report.earlier_failed} failed earlier for good")
    lines = [f"{plural(report.total, 'job')} from {input_name}: " + ", ".join(parts)]
    lines.append(cost_line(report))
    if adopted:
        lines.append(
            f"{plural(adopted, 'job')} had a done line in --out but not in the ledger: "
            "recorded as done, not sent again"
        )
    if bad:
        lines.append(f"{plural(bad, 'bad input line')} skipped (listed above)")
    if report.retryable_failed:
        lines.append(
            f"{report.retryable_failed} failed with a retryable kind (the policy gave up "
            "for now): they have no result line yet; run the same command again to retry "
            "them"
        )
    if report.earlier_failed:
        lines.append(
            f"`retrypolicy batch requeue --ledger {shown(ledger_spec)}` puts the jobs that failed "
            "for good back to pending, once their cause is fixed"
        )
    return [f"{PREFIX} {line}" for line in lines]


def _stopped_line(report: BatchReport, url: str) -> str:
    """The one line of a run a setup error stopped: what happened, what to fix."""
    failure = report.stopped
    assert failure is not None  # noqa: S101 - the caller checked
    got = (
        f"HTTP {failure.status} {failure.kind}" if failure.status else f"no answer ({failure.kind})"
    )
    if failure.code and failure.code != failure.kind:
        got += f" ({failure.code})"
    if failure.kind == Kind.AUTHENTICATION:
        what = f"the first job got {got} from {url}"
    else:
        what = f"the first {PROBE} jobs that failed got {got} from {url}, and none succeeded"
    return (
        f"{PREFIX} stopped: {what}; {what_to_fix(failure.kind)}. "
        f"{plural(report.requeued, 'job')} that got it are pending again: fix it and run "
        "the same command"
    )


class _Tally:
    """``on_finish``: a final record goes to the results file; the counts are for the line
    an interrupt prints."""

    def __init__(self, results: ResultsFile) -> None:
        self.results = results
        self.done = self.final_failed = 0
        self.lock = threading.Lock()

    def finish(self, record: JobRecord) -> None:
        with self.lock:
            if record.state is JobState.DONE:
                self.done += 1
            elif record.final:
                self.final_failed += 1
        if record.final:
            self.results.write(record)


def _adopt_done_lines(results: ResultsFile, ledger: LedgerBase, ids: set[str]) -> int:
    """Jobs with a done line in --out are done, whatever the ledger says: record the ones
    it does not have as done (from the line), so none is sent again; how many."""
    adopted = 0
    for job_id in sorted(results.done_ids & ids):
        record = ledger.get(job_id)
        if record is not None and record.state is JobState.DONE:
            continue
        try:
            result = json.dumps(results.done_response(job_id), ensure_ascii=False)
        except (KeyError, ValueError, TypeError):
            result = "null"
        ledger.finish(job_id, result, 0)
        adopted += 1
    return adopted


def run_command(args: argparse.Namespace, out: TextIO) -> int:  # noqa: PLR0915 - checked in order
    """``batch run``: 0 when every job is done; 1 when some failed or lines were bad (or
    the input holds no job); 2 for bad usage and for a setup error that stopped the run;
    130 (143 for SIGTERM) when interrupted."""
    policy = policy_of(args)
    input_path, ledger_spec, out_path, base_url = args.input, args.ledger, args.out, args.base_url
    err = sys.stderr
    if base_url is None and not args.fake:  # both: argparse's mutually exclusive group says no
        raise ConfigError(
            "expected --base-url URL (the API's base; the key from "
            f"{KEY_ENV}), or --fake to run against a built-in fake EU GPT server"
        )
    url = None if base_url is None else responses_url(base_url)
    key = os.environ.get(KEY_ENV, "")
    if url is not None and not key:
        raise ConfigError(f"--base-url {base_url}: set {KEY_ENV} to the API key to send")
    _check_key(key)
    out_file = _check_out(out_path)
    _check_ledger_spec(ledger_spec)
    _check_distinct(input_path, out_path, ledger_spec)
    try:
        jobs, bad = read_jobs(Path(input_path))
    except OSError as e:
        raise ConfigError(f"INPUT {input_path}: cannot read it ({e.strerror or e})") from None
    for problem in bad:
        print(f"{PREFIX} {input_path} {problem}", file=err)
    if not jobs:
        what = "only bad lines" if bad else "no job (it is empty, or blank lines only)"
        print(f"{PREFIX} {input_path} holds {what}: nothing to run", file=err)
        return EXIT_NO
    existed = out_file.exists()
    try:
        results = ResultsFile(out_file)
    except (ResultsFileBusyError, NotAResultsFileError) as e:
        raise ConfigError(f"--out {e}") from None
    except OSError as e:
        raise ConfigError(f"--out {out_path}: cannot write it ({e.strerror or e})") from None
    tally = _Tally(results)
    with results:
        try:
            ledger = open_ledger(ledger_spec, policy=policy, lease=args.lease)
        except BaseException:
            results.close()
            if not existed:
                with contextlib.suppress(OSError):
                    out_file.unlink()
            raise
        if results.cut:
            print(
                f"{PREFIX} {out_path}: cut off {results.cut} bytes of a line left "
                "unfinished by a crash",
                file=err,
            )

        with contextlib.closing(ledger):
            adopted = _adopt_done_lines(results, ledger, {job_id for job_id, _ in jobs})
            with (
                _endpoint(url, err) as (target, key),
                _session(policy, args.concurrency) as session,
                sigterm_as_interrupt() as signals,
            ):
                try:
                    report = run_batch(
                        [(job_id, (job_id, body)) for job_id, body in jobs],
                        http_job(session, target, key, args.timeout),
                        ledger=ledger,
                        policy=policy,
                        concurrency=args.concurrency,
                        on_finish=tally.finish,
                    )
                except KeyboardInterrupt:
                    left = len(jobs) - tally.done - tally.final_failed
                    print(
                        f"{PREFIX} interrupted: {tally.done} done, {left} left; run the "
                        "same command to resume",
                        file=err,
                    )
                    return 128 + signals[0] if signals else EXIT_INTERRUPTED
    for line in _summary(report, input_path, len(bad), adopted, ledger_spec):
        print(line, file=out)
    print(f"{PREFIX} results in {out_path} ({plural(results.written, 'new line')})", file=out)
    if report.stopped is not None:
        print(_stopped_line(report, target), file=err)
        return EXIT_USAGE
    return EXIT_OK if report.ok and not bad else EXIT_NO


def status_command(args: argparse.Namespace, out: TextIO) -> int:
    """``batch status``: jobs per state, failed jobs per kind, and what they cost."""
    ledger_spec = args.ledger
    with contextlib.closing(open_ledger(ledger_spec, create=False)) as ledger:
        counts = ledger.counts()
    if args.json:
        value = {
            "total": counts.total,
            **{str(state): int(counts.states.get(state, 0)) for state in JobState},
            "requests": counts.requests,
            "retries": counts.retries,
            "resent": counts.resent,
        }
        print(json.dumps(value), file=out)
        return EXIT_OK
    print(f"{shown(ledger_spec)}: {plural(counts.total, 'job')}", file=out)
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
    print(cost_line(counts), file=out)
    return EXIT_OK


KINDS: Final = (*sorted(str(k) for k in Kind if k != Kind.SUCCESS), UNSERIALIZABLE_RESULT)
"""The built-in failure kinds ``batch requeue --kind`` accepts (and a policy's own kinds,
once the ledger holds a failure of one)."""


def requeue_command(args: argparse.Namespace, out: TextIO) -> int:
    """``batch requeue``: failed jobs (of ``--kind``, among ``--id``) back to pending."""
    ledger_spec, kinds, ids = args.ledger, args.kind, args.id
    with contextlib.closing(open_ledger(ledger_spec, create=False)) as ledger:
        try:
            if unknown := sorted(set(kinds or ()) - set(KINDS)):
                # a policy's own rules may name their kinds: those the ledger holds are fine
                held = set(ledger.counts().failed_kinds)
                if unknown := [kind for kind in unknown if kind not in held]:
                    known = ", ".join(sorted({*KINDS, *held}))
                    raise ConfigError(
                        f"--kind {unknown[0]}: expected a failure kind, one of {known} (the "
                        "built-in kinds and those of this ledger's failed jobs)"
                    )
            n = ledger.requeue(kinds=kinds, job_ids=ids)
        except LedgerError as e:
            raise ConfigError(f"--ledger {shown(ledger_spec)}: {_after_name(e)}") from None
    which = f" of kind {', '.join(sorted(set(kinds)))}" if kinds else ""
    print(
        f"{PREFIX} {plural(n, 'failed job')}{which} put back to pending; `batch run` with "
        "this ledger sends them again (a new result line supersedes the old one)",
        file=out,
    )
    if ids is not None and n < len(set(ids)):
        print(
            f"{PREFIX} {plural(len(set(ids)) - n, 'given id')} left as they are: not "
            "failed" + (" with those kinds" if kinds else "") + " (done, pending, running or "
            "unknown to the ledger); a done job is never sent again",
            file=out,
        )
    return EXIT_OK
