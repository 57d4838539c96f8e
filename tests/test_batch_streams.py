"""`batch run` reads a streamed answer as server-sent events: a stream that completed is
stored, whatever its framing (an event's data over several ``data:`` lines, an event whose
data is not JSON, any line end), and is paid for once. It used to split the body into
lines and parse each ``data:`` line alone, so such a stream — paid for, and judged
complete by the adapter — failed for good as ``unknown`` and its answer was lost.

Every test runs the real command line (``main``) in-process against a real FakeEUGPT on
127.0.0.1 whose reply is the raw event-stream text of the table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retrypolicy._cli import _batch_command, main
from retrypolicy.batch._jsonl import final_lines
from retrypolicy.testing import FakeEUGPT, Reply

from .batch_crash import KEY, batch_env, write_input

Batch = Callable[[Reply], tuple[int, dict[str, object], int]]
ANSWER = {"id": "resp_1", "object": "response", "status": "completed", "output_text": "hi"}
CREATED = json.dumps({"type": "response.created", "sequence_number": 0, "response": {}})
COMPLETED = json.dumps({"type": "response.completed", "sequence_number": 1, "response": ANSWER})


def frame(data: str, end: str = "\n") -> str:
    """One ``event: message`` frame whose data is *data* (one ``data:`` line per line)."""
    lines = "".join(f"data: {line}{end}" for line in data.split("\n"))
    return f"event: message{end}{lines}{end}"


def split(text: str, at: int) -> str:
    """*text* cut in two lines at *at* (the two halves of one event's data; JSON allows
    the line end there: *at* is between two tokens)."""
    assert text[at - 1] == ","
    return text[:at] + "\n" + text[at:]


STREAMS = [
    # the raw stream body, as the API may frame it
    (frame(CREATED) + frame(COMPLETED)),  # the plain framing
    (frame(CREATED) + frame(split(COMPLETED, 30))),  # completed over two data: lines
    (frame(CREATED) + frame(json.dumps(json.loads(COMPLETED), indent=2))),  # over many
    (frame(CREATED) + "data: ping\n\n" + frame(COMPLETED)),  # a data event that is not JSON
    (frame(CREATED) + ": keep-alive\n\n" + frame(COMPLETED)),  # a comment
    (frame(CREATED, "\r\n") + frame(COMPLETED, "\r\n")),  # CRLF line ends
    (frame(CREATED, "\r") + frame(COMPLETED, "\r")),  # CR line ends
    (frame(CREATED).replace("data: ", "data:") + frame(COMPLETED).replace("data: ", "data:")),
    ("\ufeff" + frame(CREATED) + frame(COMPLETED)),  # a byte order mark
]


@pytest.fixture
def batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Batch]:
    """``batch(reply)``: one job against a fake API answering *reply*; (exit code, the
    job's final line, requests sent)."""
    batch_env(monkeypatch, tmp_path)
    write_input(tmp_path / "in.jsonl", 1, stream=True)
    with FakeEUGPT(valid_keys=[KEY]) as server:

        def run(reply: Reply) -> tuple[int, dict[str, object], int]:
            server.script(reply)
            argv = ["in.jsonl", "--ledger", "jobs.db", "--out", "out.jsonl"]
            code = main(["batch", "run", *argv, "--base-url", server.url])
            capsys.readouterr()
            line = final_lines(tmp_path / "out.jsonl").get("job-0000", {})
            return code, line, server.request_count

        yield run


def sse(body: str) -> Reply:
    return Reply.text(200, body, headers={"Content-Type": "text/event-stream"})


@pytest.mark.parametrize("body", STREAMS)
def test_a_completed_stream_is_stored_whatever_its_framing(batch: Batch, body: str) -> None:
    """The job is done with the completed event's response, after one request."""
    code, line, sent = batch(sse(body))
    assert (code, sent) == (0, 1)
    assert line["status"] == "done"
    assert line["response"] == ANSWER


def test_an_event_too_large_to_read_fails_for_good_and_is_not_paid_again(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completed event over the size limit is not buffered: the job fails with
    stream_error, final (resending would pay for as large an answer), after one request."""
    monkeypatch.setattr(_batch_command, "_MAX_EVENT_BYTES", 1024)
    big = json.dumps(
        {"type": "response.completed", "sequence_number": 1, "response": {"text": "x" * 4096}}
    )
    code, line, sent = batch(sse(frame(CREATED) + frame(big)))
    assert (code, sent) == (1, 1)
    assert line["status"] == "failed"
    error = line["error"]
    assert isinstance(error, dict)
    assert (error["kind"], error["retryable"]) == ("stream_error", False)
