"""`retrypolicy batch`: a typo costs nothing — setup errors stop the run, inputs are
checked before anything is created, requeue, never pay twice, ids that can always be sent.

Every test runs the real command line (``main``) in-process against a real FakeEUGPT on
127.0.0.1, with real SQLite files in tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retrypolicy._cli import main
from retrypolicy._cli._batch_command import responses_url
from retrypolicy.batch import JobState, SQLiteLedger
from retrypolicy.batch._jsonl import final_lines, lines
from retrypolicy.batch._model import idempotency_key
from retrypolicy.batch._setup import PROBE, setup_error
from retrypolicy.testing import FakeEUGPT, Reply

from .batch_crash import EXE, KEY, batch_env, write_input

Batch = Callable[..., tuple[int, str, str]]
FILES = ("--ledger", "jobs.db", "--out", "out.jsonl")


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fake EU GPT API that knows one key."""
    with FakeEUGPT(valid_keys=[KEY]) as fake:
        yield fake


@pytest.fixture
def batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Batch:
    """``batch(*argv)``: main() in-process in tmp_path; (exit code, stdout, stderr)."""
    batch_env(monkeypatch, tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["batch", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def states(path: Path) -> dict[JobState, int]:
    """The ledger file's jobs per state."""
    with SQLiteLedger(path) as ledger:
        return dict(ledger.counts().states)


# -- setup errors ---------------------------------------------------------------------------


SETUP_TABLE = [
    # kind, retryable, jobs of this run done so far, failed per kind so far, stop?
    ("authentication", False, 0, {"authentication": 1}, True),
    ("authentication", False, 10, {"authentication": 1}, True),
    ("not_found", False, 0, {"not_found": PROBE - 1}, False),
    ("not_found", False, 0, {"not_found": PROBE}, True),
    ("not_found", False, 1, {"not_found": PROBE}, False),
    ("invalid_request", False, 0, {"invalid_request": PROBE}, True),
    ("permission", False, 0, {"permission": PROBE}, True),
    ("client_error", False, 0, {"client_error": PROBE}, True),
    ("connection", True, 0, {"connection": PROBE}, True),
    ("rate_limited", True, 0, {"rate_limited": PROBE}, False),
    ("server_error", False, 0, {"server_error": PROBE}, False),
    ("unknown", False, 0, {"unknown": PROBE}, False),
    ("not_found", False, 0, {"invalid_request": PROBE}, False),
]


@pytest.mark.parametrize(("kind", "retryable", "done", "failed", "stop"), SETUP_TABLE)
def test_setup_error_table(
    kind: str, retryable: bool, done: int, failed: dict[str, int], stop: bool
) -> None:
    """A 401 stops at once; a 4xx kind (or no server) shared by the first PROBE failures
    with no success stops; after a success, or for server-side kinds, it never does."""
    assert setup_error(kind, retryable=retryable, succeeded=done, failed=failed) is stop


def test_a_wrong_key_stops_at_once_and_leaves_every_job_pending(
    batch: Batch, tmp_path: Path, server: FakeEUGPT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revoked key: at most one request per worker is sent, exit 2 with one line naming
    EUGPT_API_KEY, no job failed and no result line; the rerun with the right key does
    every job."""
    write_input(tmp_path / "in.jsonl", 200)
    monkeypatch.setenv("EUGPT_API_KEY", "eugpt_revoked_0000")
    code, out, err = batch("run", "in.jsonl", *FILES, "--base-url", server.url)
    assert code == 2
    stop = [line for line in err.splitlines() if "stopped" in line]
    assert len(stop) == 1
    assert stop[0].startswith("retrypolicy batch: stopped: the first job got HTTP 401")
    assert "check EUGPT_API_KEY" in stop[0]
    assert "pending again" in stop[0]
    assert server.request_count <= 2 * 8
    n = server.request_count  # one worker may have been the only one to send: "1 request"
    assert f"{n} {'request' if n == 1 else 'requests'} sent" in out
    got = states(tmp_path / "jobs.db")
    assert got[JobState.FAILED] == 0
    assert got[JobState.RUNNING] == 0
    assert got[JobState.PENDING] + got[JobState.DONE] == 200
    assert list(lines(tmp_path / "out.jsonl")) == []
    monkeypatch.setenv("EUGPT_API_KEY", KEY)
    code, out, _ = batch("run", "in.jsonl", *FILES, "--base-url", server.url)
    assert code == 0
    assert "200 done now" in out
    assert len(final_lines(tmp_path / "out.jsonl")) == 200


@pytest.mark.parametrize("path", ["/api", "/v2/", "/v1/v1"])
def test_a_wrong_base_path_stops_after_the_first_few_jobs(
    batch: Batch, tmp_path: Path, server: FakeEUGPT, path: str
) -> None:
    """Every job gets 404 (no such route): the run stops after the first few, exit 2 with a
    line saying to check --base-url, and no job is left failed."""
    write_input(tmp_path / "in.jsonl", 100)
    code, _, err = batch(
        "run", "in.jsonl", *FILES, "--base-url", server.url + path, "--concurrency", "4"
    )
    assert code == 2
    assert "got HTTP 404 not_found" in err
    assert "check --base-url" in err
    assert server.request_count <= 2 * 4 + PROBE
    got = states(tmp_path / "jobs.db")
    assert got[JobState.FAILED] == got[JobState.DONE] == got[JobState.RUNNING] == 0


def test_a_real_404_among_successes_stays_the_jobs_own(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """404s that come before the first success are held back, then reported as the jobs'
    own failures once a job succeeds: exit 1, lines that say not_found, nothing requeued."""
    write_input(tmp_path / "in.jsonl", 5)
    server.script(Reply.error(404), Reply.error(404), Reply.ok(), Reply.error(404))
    code, out, _ = batch("run", "in.jsonl", *FILES, "--base-url", server.url, "--concurrency", "1")
    assert code == 1
    assert "2 done now, 3 failed (not_found x3)" in out
    final = final_lines(tmp_path / "out.jsonl")
    assert sorted(final) == [f"job-000{i}" for i in range(5)]
    assert [final[f"job-000{i}"]["status"] for i in range(5)] == [
        "failed",
        "failed",
        "done",
        "failed",
        "done",
    ]
    assert states(tmp_path / "jobs.db")[JobState.FAILED] == 3


@pytest.mark.parametrize(
    ("base", "path"),
    [
        ("", "/v1/responses"),
        ("/", "/v1/responses"),
        ("/v1", "/v1/responses"),
        ("/v1/", "/v1/responses"),
        ("/eu", "/eu/v1/responses"),
        ("/eu/v1", "/eu/v1/responses"),
    ],
)
def test_base_url_with_or_without_v1(base: str, path: str) -> None:
    """The base URL may end with /v1 or not, and with a slash or not: one endpoint."""
    assert responses_url("https://api.example.eu:8443" + base) == (
        "https://api.example.eu:8443" + path
    )


@pytest.mark.parametrize(
    "bad",
    [
        "notaurl",
        "api.example.eu",
        "ftp://api.example.eu",
        "http://",
        "http://:80/",
        "https://api.example.eu:99999",
        "https://api.example.eu/v1?x=1",
        "https://h/#f",
    ],
)
def test_a_bad_base_url_is_refused_before_anything_is_created(
    batch: Batch, tmp_path: Path, bad: str
) -> None:
    """Not http(s) with a host: exit 2 naming --base-url and what is expected; neither the
    ledger nor the results file exists afterwards."""
    write_input(tmp_path / "in.jsonl", 1)
    code, _, err = batch("run", "in.jsonl", *FILES, "--base-url", bad)
    assert code == 2
    assert f"retrypolicy batch: --base-url {bad}: expected the API's base URL" in err
    assert not (tmp_path / "jobs.db").exists()
    assert not (tmp_path / "out.jsonl").exists()


# -- files and ledgers checked first -----------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("-", "--out -: expected a file path, not standard output"),
        ("/dev/stdout", "--out /dev/stdout: expected a regular file"),
        (".", "--out .: expected a regular file"),
        ("nowhere/out.jsonl", "the directory 'nowhere' does not exist"),
    ],
)
def test_a_bad_out_is_refused_before_the_ledger_is_created(
    batch: Batch, tmp_path: Path, out: str, message: str
) -> None:
    """--out must be a regular file in an existing directory: exit 2 saying so, no file
    named '-' and no ledger."""
    write_input(tmp_path / "in.jsonl", 1)
    code, _, err = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", out, "--fake")
    assert code == 2
    assert message in err
    assert not (tmp_path / "jobs.db").exists()
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(
    ("ledger", "message"),
    [
        ("http://127.0.0.1/jobs", "expected an SQLite file path or a Redis URL"),
        ("redis://127.0.0.1:6379/zz", "expected a database number after the host"),
    ],
)
def test_a_ledger_that_is_no_ledger_is_refused(
    batch: Batch, tmp_path: Path, ledger: str, message: str
) -> None:
    """An http:// ledger is not taken for a file; a Redis URL's database must be a number."""
    write_input(tmp_path / "in.jsonl", 1)
    for command in (["run", "in.jsonl", "--out", "o.jsonl", "--fake"], ["status"]):
        code, _, err = batch(*command, "--ledger", ledger)
        assert code == 2
        assert message in err
        assert err.startswith("retrypolicy batch: ")
    assert list(tmp_path.iterdir()) == [tmp_path / "in.jsonl"]


def test_an_empty_input_warns_and_creates_nothing(batch: Batch, tmp_path: Path) -> None:
    """An input with no job: a warning naming it, exit 1, no ledger, no results file."""
    (tmp_path / "in.jsonl").write_text("\n\n", encoding="utf-8")
    code, _, err = batch("run", "in.jsonl", *FILES, "--fake")
    assert code == 1
    assert "retrypolicy batch: in.jsonl holds no job" in err
    assert not (tmp_path / "jobs.db").exists()
    assert not (tmp_path / "out.jsonl").exists()


def test_status_reads_a_ledger_in_a_read_only_directory(batch: Batch, tmp_path: Path) -> None:
    """`batch status` on a ledger in a directory it cannot write still counts the jobs (as
    root, the command runs as `nobody` through setpriv: root writes anywhere)."""
    write_input(tmp_path / "in.jsonl", 2)
    ro = tmp_path / "ro"
    ro.mkdir()
    assert batch("run", "in.jsonl", "--ledger", "ro/jobs.db", "--out", "o.jsonl", "--fake")[0] == 0
    ro.chmod(0o555)
    try:
        if os.geteuid() != 0:
            code, out, _ = batch("status", "--ledger", "ro/jobs.db")
        else:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("root, and no setpriv to drop privileges")
            for parent in [tmp_path, *tmp_path.parents]:  # let `nobody` reach the file
                parent.chmod(parent.stat().st_mode | 0o005)
            nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
            probe = [*nobody, sys.executable, "-c", "import retrypolicy.batch"]
            tried = subprocess.run(probe, capture_output=True, timeout=60, check=False)  # noqa: S603
            if tried.returncode:
                pytest.skip("`nobody` cannot import retrypolicy from this environment")
            done = subprocess.run(  # noqa: S603 - our own command
                [*nobody, *EXE, "batch", "status", "--ledger", str(ro / "jobs.db")],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            code, out = done.returncode, done.stdout + done.stderr
    finally:
        ro.chmod(0o755)
    assert code == 0, out
    assert "done           2" in out


# -- requeue, never pay twice, cost -----------------------------------------------------------


def test_requeue_sends_failed_jobs_again_and_the_last_line_wins(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """After a success, 400s are final failures with a line each; `batch requeue --kind`
    puts them back; the rerun sends only them, and their new done line is the final one."""
    write_input(tmp_path / "in.jsonl", 4)
    server.script(Reply.ok(), Reply.error(400, code="bad_model"), Reply.error(403), Reply.ok())
    code, _, _ = batch("run", "in.jsonl", *FILES, "--base-url", server.url, "--concurrency", "1")
    assert code == 1
    code, out, _ = batch("requeue", "--ledger", "jobs.db", "--kind", "invalid_request")
    assert code == 0
    assert "retrypolicy batch: 1 failed job of kind invalid_request put back to pending" in out
    code, out, _ = batch("requeue", "--ledger", "jobs.db", "--id", "job-0000", "--id", "job-0002")
    assert "1 failed job put back" in out
    assert "1 given id left as they are" in out
    sent = server.request_count
    code, out, _ = batch("run", "in.jsonl", *FILES, "--base-url", server.url)
    assert code == 0
    assert server.request_count == sent + 2
    assert {r.headers["idempotency-key"] for r in server.requests[sent:]} == {
        "job-0001",
        "job-0002",
    }
    assert [line["status"] for line in lines(tmp_path / "out.jsonl")].count("failed") == 2
    assert {line["status"] for line in final_lines(tmp_path / "out.jsonl").values()} == {"done"}
    code, _, err = batch("requeue", "--ledger", "jobs.db", "--kind", "nonsense")
    assert code == 2
    assert "--kind nonsense: expected a failure kind" in err


def test_a_done_line_is_never_paid_twice_even_without_the_ledger(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """The ledger is lost, --out holds the results: the rerun sends nothing, records those
    jobs as done from their lines, and writes no second line."""
    write_input(tmp_path / "in.jsonl", 6)
    assert batch("run", "in.jsonl", *FILES, "--base-url", server.url)[0] == 0
    (tmp_path / "jobs.db").unlink()
    for extra in ("-wal", "-shm"):
        (tmp_path / f"jobs.db{extra}").unlink(missing_ok=True)
    code, out, _ = batch("run", "in.jsonl", *FILES, "--base-url", server.url)
    assert code == 0
    assert server.request_count == 6
    assert "6 jobs had a done line in --out but not in the ledger" in out
    assert "(0 new lines)" in out
    assert states(tmp_path / "jobs.db")[JobState.DONE] == 6
    assert len(list(lines(tmp_path / "out.jsonl"))) == 6


def test_status_says_the_cost_and_prints_json(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """Retries are counted per job and ledger-wide; --json is one object of integers."""
    write_input(tmp_path / "in.jsonl", 3)
    server.script(Reply.error(503, retry_after=0), Reply.error(503, retry_after=0))
    code, out, _ = batch("run", "in.jsonl", *FILES, "--base-url", server.url, "--concurrency", "1")
    assert code == 0
    assert "cost: 5 requests sent for 3 jobs (2 retries, 0 jobs re-sent" in out
    assert final_lines(tmp_path / "out.jsonl")["job-0000"]["attempts"] == 3
    code, out, _ = batch("status", "--ledger", "jobs.db")
    assert "cost: 5 requests sent for 3 jobs (2 retries, 0 jobs re-sent" in out
    code, out, _ = batch("status", "--ledger", "jobs.db", "--json")
    assert code == 0
    assert json.loads(out) == {
        "total": 3,
        "pending": 0,
        "running": 0,
        "done": 3,
        "failed": 0,
        "requests": 5,
        "retries": 2,
        "resent": 0,
    }


# -- ids ------------------------------------------------------------------------------------


KEY_TABLE = [
    ("job-0001", "job-0001"),
    ("a_b.c~d:e/f", "a_b.c~d:e/f"),
    ("doc-日本", "doc-%E6%97%A5%E6%9C%AC"),
    (" spaced ", "%20spaced%20"),
    ("two\nlines", "two%0Alines"),
    ("a b", "a%20b"),
    ("a%20b", "a%2520b"),
    ("é", "%C3%A9"),
]


@pytest.mark.parametrize(("job_id", "key"), KEY_TABLE)
def test_idempotency_key_table(job_id: str, key: str) -> None:
    """Visible ASCII without % is sent as is; anything else percent-encoded (one-to-one)."""
    assert idempotency_key(job_id) == key


def test_any_accepted_id_is_sent_and_an_unsendable_one_is_a_bad_line(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """Unicode, spaces, newlines and % in ids all run (their keys distinct and header-safe);
    a lone surrogate is refused as a bad line with its number, never a failed job."""
    ids = [job_id for job_id, _ in KEY_TABLE]
    body = "".join(json.dumps({"id": i, "input": "x", "stream": False}) + "\n" for i in ids)
    body += '{"id": "\\ud800", "input": "x"}\n'
    (tmp_path / "in.jsonl").write_text(body, encoding="utf-8")
    code, _, err = batch("run", "in.jsonl", *FILES, "--base-url", server.url)
    assert code == 1
    assert f"in.jsonl line {len(ids) + 1}: id '\\ud800': expected" in err
    assert sorted(final_lines(tmp_path / "out.jsonl")) == sorted(ids)
    assert {r.headers["idempotency-key"] for r in server.requests} == {k for _, k in KEY_TABLE}
    assert states(tmp_path / "jobs.db")[JobState.DONE] == len(ids)


@pytest.mark.usefixtures("instant")
def test_no_server_at_the_base_url_stops_the_run(batch: Batch, tmp_path: Path) -> None:
    """A port where nothing listens: after the first few jobs found no server (their
    retries spent), the run stops with exit 2, no job failed, and one line to check
    --base-url."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_input(tmp_path / "in.jsonl", 50)
    code, _, err = batch(
        "run", "in.jsonl", *FILES, "--base-url", f"http://127.0.0.1:{port}", "--concurrency", "2"
    )
    assert code == 2
    assert "got no answer (connection)" in err
    assert "no server answered there" in err
    got = states(tmp_path / "jobs.db")
    assert got[JobState.FAILED] == got[JobState.RUNNING] == 0
    assert got[JobState.PENDING] == 50


@pytest.mark.parametrize(
    "key",
    [f"{KEY}\r", f"{KEY}\n", f" {KEY}", f"{KEY} ", "eugpt_日本_0123456789", "eugpt_a\tb"],
    ids=["cr", "lf", "leading-space", "trailing-space", "non-ascii", "tab"],
)
@pytest.mark.parametrize("fake", [False, True], ids=["api", "fake"])
def test_a_key_that_cannot_be_sent_is_refused_before_anything_is_created(
    batch: Batch,
    tmp_path: Path,
    server: FakeEUGPT,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    fake: bool,
) -> None:
    """An EUGPT_API_KEY that cannot be an ``Authorization`` header's token as it is — a CR
    from a .env file written on Windows, a line break, a space, a non-ASCII character —
    is refused like a bad --base-url: exit 2 naming EUGPT_API_KEY and what is expected,
    the key itself never shown; nothing sent, no ledger, no results file. (It used to
    fail every job of the batch for good, kind ``unknown``, with a result line each.)"""
    monkeypatch.setenv("EUGPT_API_KEY", key)
    write_input(tmp_path / "in.jsonl", 3)
    where = ["--fake"] if fake else ["--base-url", server.url]
    code, out, err = batch("run", "in.jsonl", *FILES, *where)
    assert code == 2
    assert "retrypolicy batch: EUGPT_API_KEY: expected the API key alone" in err
    assert key.strip() not in out + err
    assert server.request_count == 0
    assert not (tmp_path / "jobs.db").exists()
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "ledger", ["redis://:hunter2@127.0.0.1:1/0", "redis://user:hunter2@127.0.0.1:1/zz"]
)
def test_a_redis_ledger_password_is_never_printed(
    batch: Batch, tmp_path: Path, ledger: str
) -> None:
    """A --ledger Redis URL that cannot be used (no server there, a database that is not a
    number) is named in the message with its password masked, by every batch command: a
    password must not reach a terminal or a CI log."""
    write_input(tmp_path / "in.jsonl", 1)
    masked = ledger.replace("hunter2", "***")
    for command in (["run", "in.jsonl", "--out", "o.jsonl", "--fake"], ["status"], ["requeue"]):
        code, out, err = batch(*command, "--ledger", ledger)
        assert code == 2
        assert "hunter2" not in out + err
        assert f"retrypolicy batch: --ledger {masked}: expected" in err
