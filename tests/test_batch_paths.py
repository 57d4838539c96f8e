"""A swapped or mistyped path costs nothing and ruins nothing: `batch run` writes results
only to a new file or to a results file of its own, never into the input, the ledger or
some other file (which it used to append to, or cut the last line of), and INPUT, --out
and --ledger must be three files.

Every test runs the real command line (``main``) in-process against a real FakeEUGPT on
127.0.0.1, with real files in tmp_path.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retrypolicy._cli import main
from retrypolicy.batch import JobState, SQLiteLedger
from retrypolicy.batch._jsonl import NotAResultsFileError, ResultsFile, final_lines
from retrypolicy.testing import FakeEUGPT

from .batch_crash import KEY, batch_env, write_input

Batch = Callable[..., tuple[int, str, str]]
DONE = b'{"id":"job-0000","status":"done","attempts":1,"response":{"id":"r"}}\n'


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEUGPT]:
    """A fake EU GPT API that knows the key of the environment; in tmp_path, an input of
    20 jobs."""
    batch_env(monkeypatch, tmp_path)
    write_input(tmp_path / "in.jsonl", 20)
    with FakeEUGPT(valid_keys=[KEY]) as fake:
        yield fake


@pytest.fixture
def batch(capsys: pytest.CaptureFixture[str], server: FakeEUGPT) -> Batch:
    """``batch(*argv)``: `batch run in.jsonl --base-url <fake> *argv`; (exit code, stdout,
    stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["batch", "run", "in.jsonl", "--base-url", server.url, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


NOT_RESULTS = [
    # what --out holds, the line the message names
    (b"my notes\nline two without a newline", "line 1"),
    (b"my notes\n", "line 1"),
    (DONE + b"not json\n" + DONE, "line 2"),
    (DONE + b"a last line of text", "line 2"),
    (DONE + b'{"id": "job-0001", "input": "a request, not a result"}\n', "line 2"),
    (b"\x00\x01SQLite format 3\x00\xff\xfe", "line 1"),
]


@pytest.mark.parametrize(("content", "where"), NOT_RESULTS)
def test_some_other_file_as_out_is_refused_and_left_as_it_is(
    batch: Batch, tmp_path: Path, server: FakeEUGPT, content: bytes, where: str
) -> None:
    """--out naming a file that holds a line no results file has: exit 2 naming the line,
    not a byte of it changed (its last line used to be cut off as "left by a crash", and
    results appended), nothing sent, no ledger created."""
    other = tmp_path / "other.txt"
    other.write_bytes(content)
    code, _, err = batch("--ledger", "jobs.db", "--out", "other.txt")
    assert code == 2
    assert f"--out other.txt: {where} is not a line of a `batch run` results file" in err
    assert other.read_bytes() == content
    assert server.request_count == 0
    assert not (tmp_path / "jobs.db").exists()


def test_swapped_ledger_and_out_leave_both_intact(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """`--ledger out.jsonl --out jobs.db` after a run: refused, the ledger file is not cut
    (it used to lose its tail and then break the next run with a traceback), and the
    right command afterwards sends nothing."""
    assert batch("--ledger", "jobs.db", "--out", "out.jsonl")[0] == 0
    ledger_bytes = (tmp_path / "jobs.db").read_bytes()
    results_bytes = (tmp_path / "out.jsonl").read_bytes()
    code, _, err = batch("--ledger", "out.jsonl", "--out", "jobs.db")
    assert code == 2
    assert "--out jobs.db: line 1 is not a line of a `batch run` results file" in err
    assert (tmp_path / "jobs.db").read_bytes() == ledger_bytes
    assert (tmp_path / "out.jsonl").read_bytes() == results_bytes
    code, out, _ = batch("--ledger", "jobs.db", "--out", "out.jsonl")
    assert code == 0
    assert "0 done now, 20 done earlier" in out
    assert server.request_count == 20


SAME_FILE = [
    # argv after INPUT, the message
    (("--ledger", "jobs.db", "--out", "in.jsonl"), "--out in.jsonl: the same file as INPUT"),
    (("--ledger", "in.jsonl", "--out", "out.jsonl"), "--ledger in.jsonl: the same file as INPUT"),
    (("--ledger", "r.jsonl", "--out", "r.jsonl"), "--ledger r.jsonl: the same file as --out"),
    (("--ledger", "./sub/../r", "--out", "r"), "--ledger ./sub/../r: the same file as --out"),
]


@pytest.mark.parametrize(("argv", "message"), SAME_FILE)
def test_input_out_and_ledger_are_three_files(
    batch: Batch, tmp_path: Path, server: FakeEUGPT, argv: tuple[str, ...], message: str
) -> None:
    """A path given twice is refused before anything is created or sent: the input stays
    as it was (results were appended to it), and no file is made (one file used to be
    both the SQLite ledger and the results)."""
    (tmp_path / "sub").mkdir()
    before = (tmp_path / "in.jsonl").read_bytes()
    code, _, err = batch(*argv)
    assert code == 2
    assert message in err
    assert (tmp_path / "in.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "sub"]
    assert server.request_count == 0


RECOVERED = [
    # what --out holds, what the file holds once opened, bytes cut
    (DONE, DONE, 0),
    (DONE.rstrip(b"\n"), DONE, 0),  # only the newline was lost: the line stays
    (DONE + DONE[:20], DONE, 20),  # a line cut short by a crash
    (DONE + b'{"i', DONE, 3),
    (DONE + b"\x00" * 8, DONE, 8),  # a power loss's zero bytes
    (DONE + b"\x00\x00" + DONE[:9], DONE, 11),
    (b"", b"", 0),
    (b"\n\n", b"\n\n", 0),
]


@pytest.mark.parametrize(("content", "after", "cut"), RECOVERED)
def test_a_results_file_is_recovered_as_before(
    tmp_path: Path, content: bytes, after: bytes, cut: int
) -> None:
    """A results file of this command still opens: a tail cut short by a crash (or zero
    bytes) is cut off, a last line missing only its newline is kept."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    with ResultsFile(path) as results:
        assert results.cut == cut
        assert results.done_ids == ({"job-0000"} if DONE in after else set())
    assert path.read_bytes() == after


def test_the_results_file_class_refuses_other_files_too(tmp_path: Path) -> None:
    """ResultsFile itself raises NotAResultsFileError (a ValueError) for another file, and
    leaves it as it was."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello")
    with pytest.raises(NotAResultsFileError, match="line 1 is not a line"):
        ResultsFile(path)
    assert path.read_bytes() == b"hello"
    assert issubclass(NotAResultsFileError, ValueError)


@pytest.mark.parametrize("fill", [b"x", b"\x00" * 1000 + b"x"], ids=["text", "zeros-then-text"])
def test_a_large_other_file_is_refused_without_being_read_whole(
    tmp_path: Path, fill: bytes
) -> None:
    """A mistyped ``--out`` naming a large file that is not a results file (a disk image, a
    log with no newline) is refused from its first bytes: its size is never read into
    memory, and it is left as it was."""
    path = tmp_path / "image.bin"
    size = 16 * 1024 * 1024
    path.write_bytes(fill + b"x" * (size - len(fill)))
    tracemalloc.start()
    try:
        with pytest.raises(NotAResultsFileError, match="line 1 is not a line"):
            ResultsFile(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < size // 8
    assert path.stat().st_size == size


def test_a_results_file_with_long_lines_keeps_them_and_cuts_a_short_tail(tmp_path: Path) -> None:
    """Result lines longer than the first bytes read of a line are read whole and kept
    (their responses served from the file), and a tail cut short by a crash is cut off."""
    path = tmp_path / "out.jsonl"
    lines = [
        json.dumps({"id": f"j{n}", "status": "done", "response": {"text": "y" * 100_000}})
        for n in range(3)
    ]
    cut = b'{"id":"j3","status":"do'
    path.write_bytes("\n".join(lines).encode() + b"\n" + cut)
    results = ResultsFile(path)
    try:
        assert results.done_ids == {"j0", "j1", "j2"}
        assert results.done_response("j2") == {"text": "y" * 100_000}
    finally:
        results.close()
    assert path.read_bytes().endswith(lines[-1].encode() + b"\n")


def test_a_rerun_on_its_own_results_file_still_works(
    batch: Batch, tmp_path: Path, server: FakeEUGPT
) -> None:
    """The check does not stand in the way of the normal rerun: one line per id."""
    assert batch("--ledger", "jobs.db", "--out", "out.jsonl")[0] == 0
    code, _, _ = batch("--ledger", "jobs.db", "--out", "out.jsonl")
    assert code == 0
    assert len(final_lines(tmp_path / "out.jsonl")) == 20
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 20
    with SQLiteLedger(tmp_path / "jobs.db") as ledger:
        assert ledger.counts().states[JobState.DONE] == 20
    assert server.request_count == 20
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])["status"] == "done"


def test_a_one_line_file_of_another_kind_is_left_as_it_is(tmp_path: Path) -> None:
    """A file whose only line is a whole JSON object that is not a result line (an input
    line, its newline missing) is some other file: refused and left as it was, never cut
    as if a crash had left the line unfinished."""
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b'{"id":"a","input":"hello, a whole request"}')
    with pytest.raises(NotAResultsFileError, match="line 1 is not a line"):
        ResultsFile(path)
    assert path.read_bytes() == b'{"id":"a","input":"hello, a whole request"}'


def test_zero_bytes_before_a_whole_line_are_skipped(tmp_path: Path) -> None:
    """Zero bytes a power loss left before a result line (the file system zero-filled a
    block, then the next run wrote after it) are skipped: the line's id stays done, its
    response served from the right place."""
    path = tmp_path / "out.jsonl"
    first = json.dumps({"id": "a", "status": "done", "response": {"n": 1}}).encode()
    second = json.dumps({"id": "b", "status": "done", "response": {"n": 2}}).encode()
    path.write_bytes(first + b"\n" + b"\x00" * 4096 + second + b"\n")
    results = ResultsFile(path)
    try:
        assert results.done_ids == {"a", "b"}
        assert results.done_response("b") == {"n": 2}
    finally:
        results.close()


def test_zero_bytes_before_a_whole_last_line_are_skipped(tmp_path: Path) -> None:
    """The last line, its newline missing, after zero bytes a power loss left: a whole
    result line, kept (its newline added), as the same line with its newline is."""
    path = tmp_path / "out.jsonl"
    line = json.dumps({"id": "a", "status": "done", "response": 1}).encode()
    path.write_bytes(b"\x00\x00" + line)
    results = ResultsFile(path)
    try:
        assert results.done_ids == {"a"}
        assert results.done_response("a") == 1
    finally:
        results.close()
    assert path.read_bytes() == b"\x00\x00" + line + b"\n"
