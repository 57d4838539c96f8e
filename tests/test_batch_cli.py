"""`retrypolicy batch run|status`: a JSON Lines batch against a real (fake) API, resumable."""

from __future__ import annotations

import io
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retrypolicy._cli import _build_parser, main
from retrypolicy.batch._jsonl import ResultsFile, lines
from retrypolicy.testing import FakeEUGPT, Reply

from .batch_crash import KEY, batch_env, crash_and_resume, write_input
from .redis_server import RedisServer

Batch = Callable[..., tuple[int, str, str]]


def results(path: Path) -> dict[str, dict[str, object]]:
    """The results file by id; fails if an id has two lines."""
    found = list(lines(path))
    counts = Counter(str(line["id"]) for line in found)
    assert [i for i, n in counts.items() if n > 1] == []
    return {str(line["id"]): line for line in found}


@pytest.fixture
def server() -> Iterator[FakeEUGPT]:
    """A fake EU GPT API in this process."""
    with FakeEUGPT(require_key=True) as fake:
        yield fake


@pytest.fixture
def batch(
    tmp_path: Path,
    server: FakeEUGPT,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Batch:
    """``batch("run", ...)``: main() in-process with the files in tmp_path and the server's
    URL; (exit code, stdout, stderr)."""
    batch_env(monkeypatch, tmp_path)

    def run(*args: str, url: bool = True) -> tuple[int, str, str]:
        argv = ["batch", *args]
        if url and args[0] == "run" and "--fake" not in args:
            argv += ["--base-url", server.url]
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_run_writes_one_line_per_job_then_resumes_with_nothing_to_do(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """Every line is posted once (body without id, key from EUGPT_API_KEY, the id as
    Idempotency-Key); one result line per job; a rerun sends nothing and writes nothing."""
    ids = write_input(tmp_path / "in.jsonl", 30)
    code, out, _ = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "results.jsonl")
    assert code == 0
    assert "30 jobs from in.jsonl: 30 done now" in out
    got = results(tmp_path / "results.jsonl")
    assert sorted(got) == ids
    assert got["job-0003"]["status"] == "done"
    response = got["job-0003"]["response"]
    assert isinstance(response, dict)
    assert response["object"] == "response"
    sent = server.requests
    assert len(sent) == 30
    assert all("id" not in r.json for r in sent)
    assert {r.headers["idempotency-key"] for r in sent} == set(ids)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in sent)
    assert got["job-0003"]["attempts"] == 1
    assert "cost: 30 requests sent for 30 jobs (0 retries, 0 jobs re-sent" in out

    code, out, _ = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "results.jsonl")
    assert code == 0
    assert "0 done now, 30 done earlier" in out
    assert "cost: 0 requests sent for 0 jobs" in out
    assert "(0 new lines)" in out
    assert server.request_count == 30
    assert len(results(tmp_path / "results.jsonl")) == 30


def test_bad_lines_are_reported_by_number_and_skipped(batch: Batch, tmp_path: Path) -> None:
    """Not JSON, not an object, no id, an empty id, a duplicate id: each named with its line
    number and skipped; the rest of the batch runs; exit 1."""
    (tmp_path / "in.jsonl").write_text(
        '{"id": "a", "input": "x", "stream": false}\n'
        "{not json\n"
        "[1, 2]\n"
        '{"input": "no id"}\n'
        "\n"
        '{"id": "", "input": "empty id"}\n'
        '{"id": "a", "input": "again"}\n'
        '{"id": "b", "input": "y", "stream": false}\n',
        encoding="utf-8",
    )
    code, out, err = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl")
    assert code == 1
    assert "in.jsonl line 2: not JSON" in err
    assert "in.jsonl line 3: expected a JSON object, got list" in err
    assert 'in.jsonl line 4: no id: expected an "id" field' in err
    assert "in.jsonl line 6: id '': expected" in err
    assert "in.jsonl line 7: duplicate id 'a' (first on line 1)" in err
    assert "line 5" not in err  # a blank line is no job and no problem
    assert "5 bad input lines skipped" in out
    assert sorted(results(tmp_path / "out.jsonl")) == ["a", "b"]


@pytest.mark.usefixtures("instant")
def test_failures_final_and_retryable(batch: Batch, tmp_path: Path, server: FakeEUGPT) -> None:
    """A 400 is final: its line has kind/code/attempts. 429s past the policy's retries are
    retryable: no line yet, the summary says to rerun, and the rerun runs only that job."""
    write_input(tmp_path / "in.jsonl", 3)
    server.script(
        Reply.error(400, detail="input is required", code="missing_input"),
        *[Reply.error(429, retry_after=1)] * 7,
    )
    code, out, _ = batch(
        "run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl", "--concurrency", "1"
    )
    assert code == 1
    assert "1 done now, 2 failed (invalid_request x1, rate_limited x1)" in out
    assert "1 failed with a retryable kind" in out
    got = results(tmp_path / "out.jsonl")
    assert sorted(got) == ["job-0000", "job-0002"]
    assert got["job-0000"]["status"] == "failed"
    assert got["job-0000"]["error"] == {
        "kind": "invalid_request",
        "code": "missing_input",
        "status": 400,
        "attempts": 1,
        "retryable": False,
        "message": got["job-0000"]["error"]["message"],
    }
    assert KEY not in (tmp_path / "out.jsonl").read_text()
    before = server.request_count
    assert before == 1 + 7 + 1
    code, out, _ = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl")
    assert code == 1  # job-0000 stays failed
    assert server.request_count == before + 1  # only the rate-limited job ran again
    assert sorted(results(tmp_path / "out.jsonl")) == ["job-0000", "job-0001", "job-0002"]
    code, out, _ = batch("status", "--ledger", "jobs.db")
    assert code == 0
    assert "jobs.db: 3 jobs" in out
    assert "done           2" in out
    assert "failed         1  (1 final, 0 retryable)" in out
    assert "invalid_request       1" in out
    assert "cost: 10 requests sent for 3 jobs (6 retries, 0 jobs re-sent" in out


@pytest.mark.usefixtures("instant")
def test_streams_store_the_completed_response(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """A streamed request stores the response of `response.completed`; a stream that dies
    mid-answer with upstream_timeout is run again whole."""
    write_input(tmp_path / "in.jsonl", 1, stream=True)
    server.script(Reply.stream(3, end="error", code="upstream_timeout"))
    code, _, _ = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl")
    assert code == 0
    assert server.request_count == 2
    response = results(tmp_path / "out.jsonl")["job-0000"]["response"]
    assert isinstance(response, dict)
    assert response["status"] == "completed"


@pytest.mark.usefixtures("instant")
def test_a_stream_whose_type_comes_twice_is_read_as_a_stream(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """A stream whose Content-Type line the server sends twice is read as the stream it is
    (as the adapter checked it), and its completed response stored, not parsed as JSON."""
    write_input(tmp_path / "in.jsonl", 1, stream=True)
    twice = [("Content-Type", "text/event-stream"), ("content-type", "text/event-stream")]
    server.script(Reply.stream(3, headers=twice))
    code, _, err = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl")
    assert code == 0, err
    assert server.request_count == 1
    response = results(tmp_path / "out.jsonl")["job-0000"]["response"]
    assert isinstance(response, dict)
    assert response["status"] == "completed"


def test_a_lost_line_is_rewritten_from_the_ledger_and_a_cut_line_is_cut(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """Killed between the ledger's commit and the line (lost), or in the middle of a line
    (cut): the rerun cuts the partial line and writes the lost ones from the stored
    results, without sending anything."""
    write_input(tmp_path / "in.jsonl", 5)
    batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl")
    out = tmp_path / "out.jsonl"
    kept = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(kept[:2]) + kept[2][:20], encoding="utf-8")  # 2 lost, 1 cut
    code, _, err = batch("run", "in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl")
    assert code == 0
    assert "cut off 20 bytes" in err
    assert server.request_count == 5
    assert len(results(out)) == 5


def test_redis_ledger_by_url(batch: Batch, tmp_path: Path, redis_server: RedisServer) -> None:
    """--ledger redis://... keeps the ledger in Redis; status reads it back."""
    import redis  # noqa: PLC0415

    redis.Redis.from_url(redis_server.url).flushdb()
    write_input(tmp_path / "in.jsonl", 4)
    code, _, _ = batch("run", "in.jsonl", "--ledger", redis_server.url, "--out", "out.jsonl")
    assert code == 0
    code, out, _ = batch("status", "--ledger", redis_server.url)
    assert "4 jobs" in out
    assert "done           4" in out


def test_usage_errors(batch: Batch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing input, a missing ledger for status, --base-url without a key, a results
    file another run holds: exit 2 with a message naming the input."""
    write_input(tmp_path / "in.jsonl", 1)
    code, _, err = batch("run", "nope.jsonl", "--ledger", "j.db", "--out", "o.jsonl")
    assert code == 2
    assert "INPUT nope.jsonl: cannot read it" in err
    code, _, err = batch("status", "--ledger", "missing.db")
    assert code == 2
    assert "--ledger missing.db: no such ledger file" in err
    monkeypatch.delenv("EUGPT_API_KEY")
    code, _, err = batch("run", "in.jsonl", "--ledger", "j.db", "--out", "o.jsonl")
    assert code == 2
    assert "set EUGPT_API_KEY" in err
    monkeypatch.setenv("EUGPT_API_KEY", KEY)
    with ResultsFile(tmp_path / "o.jsonl"):
        code, _, err = batch("run", "in.jsonl", "--ledger", "j.db", "--out", "o.jsonl")
    assert code == 2
    assert "another `retrypolicy batch run` is writing this file" in err
    code, _, err = batch(
        "run", "in.jsonl", "--ledger", "j.db", "--out", "o.jsonl", "--concurrency", "0"
    )
    assert code == 2


def test_runs_against_the_fake_only_when_asked(
    batch: Batch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither --base-url nor --fake: exit 2 naming both, nothing created; --fake (without a
    key) starts the built-in fake server and says so."""
    write_input(tmp_path / "in.jsonl", 3)
    monkeypatch.delenv("EUGPT_API_KEY")
    code, _, err = batch("run", "in.jsonl", "--ledger", "j.db", "--out", "o.jsonl", url=False)
    assert code == 2
    assert "expected --base-url URL" in err
    assert "or --fake" in err
    assert not (tmp_path / "j.db").exists()
    assert not (tmp_path / "o.jsonl").exists()
    code, _, err = batch("run", "in.jsonl", "--ledger", "j.db", "--out", "o.jsonl", "--fake")
    assert code == 0
    assert "retrypolicy batch: --fake: against a fake EU GPT server" in err
    assert len(results(tmp_path / "o.jsonl")) == 3


def test_the_readme_example_file_runs(
    batch: Batch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's `batch run examples/batch.jsonl --fake` command runs as written: 20
    jobs done."""
    example = Path(__file__).resolve().parent.parent / "examples" / "batch.jsonl"
    monkeypatch.delenv("EUGPT_API_KEY")
    code, _, _ = batch("run", str(example), "--ledger", "j.db", "--out", "o.jsonl", "--fake")
    assert code == 0
    assert {r["status"] for r in results(tmp_path / "o.jsonl").values()} == {"done"}
    assert len(results(tmp_path / "o.jsonl")) == 20


def test_sigkill_and_sigint_at_random_points_then_resume(tmp_path: Path) -> None:
    """200 jobs, 4 SIGKILLs or SIGINTs of `retrypolicy batch run`, reruns to the end: every
    job done once in the ledger, one result line per id, no job left running by a SIGINT,
    and a job completed twice by the server only when it was in flight at a SIGKILL (at
    most concurrency x SIGKILLs)."""
    soak = crash_and_resume(
        tmp_path,
        jobs=200,
        kills=4,
        concurrency=8,
        seed=12,
        ledger=str(tmp_path / "jobs.db"),
        signals=(signal.SIGKILL, signal.SIGINT),
    )
    assert soak.kills == 4
    assert soak.sigints == 2
    assert soak.extra <= soak.bound


def test_listed_in_help_and_quiet_on_a_closed_pipe(
    batch: Batch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`retrypolicy --help` lists batch; with stdout closed and httpx missing, run and status
    end without a traceback."""

    class BrokenStdout(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    assert "batch" in subprocess_help()
    write_input(tmp_path / "in.jsonl", 2)
    monkeypatch.setitem(sys.modules, "httpx", None)
    monkeypatch.setattr(sys, "stdout", BrokenStdout())
    for args in (
        ["run", "in.jsonl", "--ledger", "j.db", "--out", "o.jsonl", "--fake"],
        ["status", "--ledger", "j.db"],
    ):
        code, out, err = batch(*args)
        assert code == 0
        assert "Traceback" not in out + err


def subprocess_help() -> str:
    """`retrypolicy --help` as printed by the real parser."""
    buffer = io.StringIO()
    _build_parser().print_help(buffer)
    return buffer.getvalue()
