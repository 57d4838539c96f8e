"""SSE decoding (WHATWG event-stream rules) and the verdict on an EU GPT stream."""

from __future__ import annotations

import itertools
import json
import random
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import retrypolicy as rp
from retrypolicy import _sse
from retrypolicy._rules import Failure
from retrypolicy._sse import SSEDecoder, SSEEvent, StreamMonitor, StreamProblem, _frames, _head
from retrypolicy._sse import _monitor as _monitor_module
from retrypolicy._sse._exact import ExactDecoder

# -- helpers -------------------------------------------------------------------------

DEFAULT_LIMIT = _sse.DEFAULT_MAX_LINE_BYTES


def ev(
    data: str, event: str = "message", id: str | None = None, retry: int | None = None
) -> SSEEvent:
    """Shorthand for an expected event."""
    return SSEEvent(event=event, data=data, id=id, retry=retry)


def pieces(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    """*stream* cut at the given offsets (sorted, deduplicated, clipped)."""
    points = sorted({c for c in cuts if 0 < c < len(stream)})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def decode(
    chunks: Sequence[bytes], decoder: ExactDecoder | None = None
) -> tuple[list[SSEEvent], ExactDecoder]:
    """Feed *chunks* then close; return every event and the decoder."""
    decoder = decoder if decoder is not None else SSEDecoder()
    out: list[SSEEvent] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.close())
    return out, decoder


def state(decoder: ExactDecoder) -> tuple[object, ...]:
    """What a caller can observe of a decoder besides its events."""
    return (decoder.pending, decoder.overflowed, decoder.last_event_id, decoder.retry)


def frame(payload: dict[str, Any], event: str = "message") -> bytes:
    """One EU GPT frame as the server writes it."""
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def created(seq: int = 0) -> bytes:
    """The ``response.created`` frame."""
    return frame({"type": "response.created", "sequence_number": seq, "response": {"id": "r"}})


def delta(seq: int, text: str = "Hel") -> bytes:
    """A text delta frame."""
    return frame({"type": "response.output_text.delta", "sequence_number": seq, "delta": text})


def completed(seq: int) -> bytes:
    """The ``response.completed`` frame."""
    return frame({"type": "response.completed", "sequence_number": seq, "response": {"id": "r"}})


def error(code: str, message: str = "Model timed out") -> bytes:
    """An in-stream error frame, exactly as the spec shows it."""
    return frame({"type": "error", "code": code, "message": message})


def monitor_run(
    chunks: Iterable[bytes], monitor: StreamMonitor | None = None
) -> tuple[list[StreamProblem | None], StreamProblem | None, StreamMonitor]:
    """Feed every chunk; return what each feed said, what finish() said, and the monitor."""
    monitor = monitor if monitor is not None else StreamMonitor()
    said = [monitor.feed(chunk) for chunk in chunks]
    return said, monitor.finish(), monitor


# -- a line-by-line reference implementation of the WHATWG algorithm -----------------


def reference(stream: bytes) -> tuple[list[SSEEvent], bool]:
    """WHATWG event-stream interpretation, written for clarity; returns (events, pending)."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    *lines, partial = re.split(r"\r\n|\r|\n", text)
    out: list[SSEEvent] = []
    data: list[str] = []
    event, retry, last_id, dirty = "", None, None, False
    for line in lines:
        if not line:
            if data:
                out.append(SSEEvent(event or "message", "\n".join(data), last_id, retry))
            data, event, retry, dirty = [], "", None, False
            continue
        if line.startswith(":"):
            continue
        dirty = True
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\x00" not in value:
            last_id = value
        elif name == "retry" and value and all("0" <= c <= "9" for c in value):
            # ...and our documented guard: absurdly long values are ignored
            retry = int(value) if len(value.lstrip("0")) <= 15 else retry
    return out, dirty or bool(partial)


# -- WHATWG rules, one row per rule ---------------------------------------------------

WHATWG_CASES = [
    pytest.param(b"data: a\n\n", [ev("a")], id="LF line ends"),
    pytest.param(b"data: a\r\n\r\n", [ev("a")], id="CRLF line ends"),
    pytest.param(b"data: a\r\r", [ev("a")], id="CR line ends"),
    pytest.param(b"data: a\r\ndata: b\rdata: c\n\r\n", [ev("a\nb\nc")], id="mixed line ends"),
    pytest.param(b"data: a\r\r\n", [ev("a")], id="CR then CRLF is two line ends"),
    pytest.param(
        b"data: a\ndata: b\ndata: c\n\n", [ev("a\nb\nc")], id="multi-line data joined by LF"
    ),
    pytest.param(b"data: a\ndata:\n\n", [ev("a\n")], id="empty data line adds a LF"),
    pytest.param(b": hello\ndata: a\n: again\n\n", [ev("a")], id="comment lines ignored"),
    pytest.param(b": keepalive\n\n", [], id="comment-only block dispatches nothing"),
    pytest.param(b":\n\n", [], id="bare colon is a comment"),
    pytest.param(b"event: foo\ndata: a\n\n", [ev("a", "foo")], id="event field names the type"),
    pytest.param(
        b"event: foo\ndata: a\n\ndata: b\n\n", [ev("a", "foo"), ev("b")], id="event type resets"
    ),
    pytest.param(b"event:\ndata: a\n\n", [ev("a")], id="empty event type is message"),
    pytest.param(b"event: foo\n\ndata: a\n\n", [ev("a")], id="event without data: type discarded"),
    pytest.param(b"event: foo\nid: 3\n\n", [], id="event with empty data buffer not dispatched"),
    pytest.param(b"data\n\n", [ev("")], id="field without colon: data with empty value"),
    pytest.param(b"data\ndata\n\n", [ev("\n")], id="two empty data fields"),
    pytest.param(b"event\ndata: a\n\n", [ev("a")], id="event without colon: empty type"),
    pytest.param(b"data:  two\n\n", [ev(" two")], id="only one space after colon stripped"),
    pytest.param(b"data:nospace\n\n", [ev("nospace")], id="no space after colon"),
    pytest.param(b"data: a:b: c\n\n", [ev("a:b: c")], id="value keeps later colons"),
    pytest.param(b"data : a\n\n", [], id="space before colon is part of the name"),
    pytest.param(b"Data: a\n\n", [], id="field names are case-sensitive"),
    pytest.param(b"foo: bar\ndata: a\n\n", [ev("a")], id="unknown field ignored"),
    pytest.param(
        b"id: 1\ndata: a\n\ndata: b\n\n", [ev("a", id="1"), ev("b", id="1")], id="id persists"
    ),
    pytest.param(
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        [ev("a", id="1"), ev("b", id="1")],
        id="id containing NUL ignored",
    ),
    pytest.param(
        b"id: 1\ndata: a\n\nid\ndata: b\n\n", [ev("a", id="1"), ev("b", id="")], id="empty id"
    ),
    pytest.param(b"id: 7\n\ndata: a\n\n", [ev("a", id="7")], id="id set by undispatched block"),
    pytest.param(b"retry: 3000\ndata: a\n\n", [ev("a", retry=3000)], id="retry of ASCII digits"),
    pytest.param(b"retry: 30s\ndata: a\n\n", [ev("a")], id="retry with non-digits ignored"),
    pytest.param(b"retry: -1\ndata: a\n\n", [ev("a")], id="negative retry ignored"),
    pytest.param("retry: ٣\ndata: a\n\n".encode(), [ev("a")], id="non-ASCII digits ignored"),
    pytest.param(b"retry:\ndata: a\n\n", [ev("a")], id="empty retry ignored"),
    pytest.param(b"retry: " + b"9" * 5000 + b"\ndata: a\n\n", [ev("a")], id="absurd retry ignored"),
    pytest.param(
        b"retry: 5\ndata: a\n\ndata: b\n\n", [ev("a", retry=5), ev("b")], id="retry per block"
    ),
    pytest.param(b"\xef\xbb\xbfdata: a\n\n", [ev("a")], id="leading BOM skipped"),
    pytest.param(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n", [], id="only one BOM skipped"),
    pytest.param(b"data: a\n\n\xef\xbb\xbfdata: b\n\n", [ev("a")], id="BOM later is not skipped"),
    pytest.param(b"data: \xff\xfe\n\n", [ev("\ufffd\ufffd")], id="invalid UTF-8 replaced"),
    pytest.param(b"data: \xe2\x82\n\n", [ev("\ufffd")], id="truncated UTF-8 sequence replaced"),
    pytest.param("data: über 😀\n\n".encode(), [ev("über 😀")], id="multi-byte UTF-8"),
    pytest.param(b"data: a\n\n\n\ndata: b\n\n", [ev("a"), ev("b")], id="extra blank lines"),
    pytest.param(b"\n\n\ndata: a\n\n", [ev("a")], id="leading blank lines"),
    pytest.param(b"data: a\n", [], id="unterminated event discarded at EOF"),
    pytest.param(b"data: a", [], id="unterminated line discarded at EOF"),
    pytest.param(b"data: a\n\ndata: b", [ev("a")], id="complete event kept, partial dropped"),
    pytest.param(b"", [], id="empty stream"),
]


@pytest.mark.parametrize(("stream", "expected"), WHATWG_CASES)
def test_whatwg_rules(stream: bytes, expected: list[SSEEvent]) -> None:
    """Each WHATWG event-stream rule gives the events the spec prescribes."""
    events, _ = decode([stream])
    assert events == expected
    assert decode([stream], ExactDecoder())[0] == expected
    assert reference(stream)[0] == expected


@pytest.mark.parametrize(("stream", "expected"), WHATWG_CASES)
def test_whatwg_rules_byte_by_byte(stream: bytes, expected: list[SSEEvent]) -> None:
    """Feeding the same streams one byte at a time changes nothing."""
    events, _ = decode([stream[i : i + 1] for i in range(len(stream))])
    assert events == expected


@pytest.mark.parametrize(("stream", "expected"), WHATWG_CASES)
def test_whatwg_rules_every_split(stream: bytes, expected: list[SSEEvent]) -> None:
    """Cutting the stream in two at any offset changes nothing."""
    for cut in range(len(stream) + 1):
        events, _ = decode([stream[:cut], stream[cut:]])
        assert events == expected, cut


# -- chunk boundaries ---------------------------------------------------------------


def test_crlf_split_between_cr_and_lf() -> None:
    """An LF right after a chunk-ending CR completes the CRLF; it is not a blank line."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [ev("a\nb")]
    assert decoder.feed(b"\n") == []
    assert not decoder.pending


def test_cr_at_chunk_end_dispatches_at_once() -> None:
    """A blank line ended by a CR dispatches without waiting to see the next byte."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [ev("a")]


@pytest.mark.parametrize("text", ["über", "😀", "東京", "\u2028"])
def test_split_inside_multibyte_character(text: str) -> None:
    """A chunk boundary inside a UTF-8 character yields the character, not replacements."""
    stream = f"data: {text}\n\n".encode()
    for cut in range(len(stream) + 1):
        assert decode([stream[:cut], stream[cut:]])[0] == [ev(text)], cut


def test_bom_split_across_chunks() -> None:
    """A BOM arriving one byte at a time is still skipped."""
    assert decode([b"\xef", b"\xbb", b"\xbf", b"data: a\n\n"])[0] == [ev("a")]


def test_ordinary_frames_across_chunks() -> None:
    """A run of EU GPT frames cut at every offset decodes to the same events."""
    stream = created() + delta(1) + delta(2, "lo") + completed(3)
    whole = decode([stream])[0]
    assert len(whole) == 4
    for cut in range(len(stream) + 1):
        assert decode([stream[:cut], stream[cut:]])[0] == whole, cut


def test_empty_chunks_are_harmless() -> None:
    """Empty chunks neither dispatch nor reset anything."""
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\n") == [ev("a")]


def test_memoryview_and_bytearray_chunks() -> None:
    """Any bytes-like chunk works."""
    decoder = SSEDecoder()
    assert decoder.feed(bytearray(b"data: a\n")) == []
    assert decoder.feed(memoryview(b"\n")) == [ev("a")]


# -- end of stream ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "pending"),
    [
        pytest.param(b"", False, id="nothing"),
        pytest.param(b"data: a\n\n", False, id="ends after an event"),
        pytest.param(b"data: a\n\n: ping\n", False, id="ends after a comment"),
        pytest.param(b"data: a\n\n\n", False, id="ends after blank lines"),
        pytest.param(b"data: a\n", True, id="ends after a data line"),
        pytest.param(b"data: a\r", True, id="ends after a CR-terminated line"),
        pytest.param(b"data: a", True, id="ends inside a line"),
        pytest.param(b"id: 1\n", True, id="ends after an id line"),
        pytest.param(b"data: a\n\n\xe2\x82", True, id="ends inside a character"),
        pytest.param(b"data: a\n\n:", True, id="ends inside a comment line"),
    ],
)
def test_pending_tells_a_cut_stream(stream: bytes, pending: bool) -> None:
    """``pending`` says whether the stream ended inside an event."""
    decoder = SSEDecoder()
    decoder.feed(stream)
    before_close = decoder.pending
    decoder.close()
    assert decoder.pending is pending
    assert before_close is pending
    assert reference(stream)[1] is pending


def test_close_discards_and_is_final() -> None:
    """close() drops the unterminated event, is idempotent, and later feeds are ignored."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.close() == []
    assert decoder.closed
    assert decoder.close() == []
    assert decoder.feed(b"\ndata: b\n\n") == []


def test_retry_and_last_event_id_properties() -> None:
    """The stream-level reconnection time and last event id outlive their blocks."""
    decoder = SSEDecoder()
    decoder.feed(b"retry: 250\nid: x\n\ndata: a\n\n")
    assert decoder.retry == 250
    assert decoder.last_event_id == "x"


# -- bounded memory -----------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_overlong_line_is_dropped_with_its_event(chunk_size: int) -> None:
    """A line over the limit is discarded with its whole event; later events still arrive."""
    stream = b"data: first\n\nid: 5\ndata: a\ndata: " + b"x" * 500 + b"\ndata: b\n\ndata: next\n\n"
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    events, decoder = decode(chunks, SSEDecoder(max_line_bytes=64))
    assert events == [ev("first"), ev("next", id="5")]
    assert decoder.overflowed


def test_overlong_line_is_never_buffered_whole() -> None:
    """Ten megabytes of one line held back in small chunks keep the buffer under the limit."""
    decoder = SSEDecoder(max_line_bytes=1024)
    decoder.feed(b"data: ")
    for _ in range(10_000):
        assert decoder.feed(b"y" * 1000) == []
        assert sum(len(p) for p in decoder._tail) <= 1024
    assert decoder.feed(b"\n\ndata: ok\n\n") == [ev("ok")]
    assert decoder.overflowed


def test_line_limit_counts_utf8_bytes() -> None:
    """The limit is in UTF-8 bytes: 20 four-byte characters exceed 64 bytes."""
    assert decode([f"data: {'😀' * 14}\n\n".encode()], SSEDecoder(max_line_bytes=64))[0]
    events, decoder = decode([f"data: {'😀' * 20}\n\n".encode()], SSEDecoder(max_line_bytes=64))
    assert events == []
    assert decoder.overflowed


def test_line_exactly_at_the_limit_is_kept() -> None:
    """A line of exactly max_line_bytes is accepted; one byte more is not."""
    at_limit = b"data: " + b"z" * 58  # 64 bytes
    assert decode([at_limit + b"\n\n"], SSEDecoder(max_line_bytes=64))[0] == [ev("z" * 58)]
    assert decode([at_limit + b"z\n\n"], SSEDecoder(max_line_bytes=64))[0] == []


def test_event_data_limit() -> None:
    """An event whose data grows past max_event_bytes is dropped; one at the limit is kept."""
    decoder = SSEDecoder(max_line_bytes=64, max_event_bytes=10)
    assert decoder.feed(b"data: 12345\ndata: 6789\n\n") == [ev("12345\n6789")]
    assert not decoder.overflowed
    assert decoder.feed(b"data: 12345\ndata: 67890\n\ndata: ok\n\n") == [ev("ok")]
    assert decoder.overflowed


def test_overlong_comment_counts_as_overflow() -> None:
    """An oversized comment is also an overflow (the limit is per line, whatever it holds)."""
    events, decoder = decode(
        [b":" + b"p" * 100 + b"\ndata: a\n\ndata: b\n\n"], SSEDecoder(max_line_bytes=16)
    )
    assert events == [ev("b")]
    assert decoder.overflowed


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_limits_must_be_positive_ints(bad: Any) -> None:
    """A nonsensical limit is a programming error, reported at construction."""
    with pytest.raises(ValueError, match="max_line_bytes"):
        SSEDecoder(max_line_bytes=bad)
    with pytest.raises(ValueError, match="max_event_bytes"):
        SSEDecoder(max_event_bytes=bad)


# -- properties ---------------------------------------------------------------------

_value_chars = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="\r\n",
)
_values = st.text(_value_chars, max_size=12) | st.sampled_from(["", " x", "ü😀", "message", ":"])
_names = st.sampled_from(["data", "event", "id", "retry", "foo", "", "Data"])
_eols = st.sampled_from(["\n", "\r", "\r\n"])


@st.composite
def _lines(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["field", "bare", "comment", "blank", "retry", "frame", "dataframe"])
    )
    eol = draw(_eols)
    value = draw(_values)
    if kind == "field":
        text = f"{draw(_names)}:{value}{eol}"
    elif kind == "bare":
        text = f"{draw(_names)}{eol}"
    elif kind == "comment":
        text = f":{value}{eol}"
    elif kind == "blank":
        text = eol
    elif kind == "retry":
        text = f"retry: {draw(st.integers(0, 10**6))}{eol}"
    elif kind == "frame":
        text = f"event: {draw(st.sampled_from(['message', 'x', '']))}{eol}data: {value}{eol}{eol}"
    else:
        text = f"data: {value}{eol}{eol}"
    return text.encode()


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """SSE-shaped byte streams: fields, comments, frames, LF/CR/CRLF, BOM, bad bytes."""
    parts: list[bytes] = [draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))]
    for _ in range(draw(st.integers(0, 25))):
        if draw(st.integers(0, 9)) == 0:
            parts.append(draw(st.binary(max_size=6)))
        else:
            parts.append(draw(_lines()))
    return b"".join(parts)


def _cuts(stream: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, max(len(stream), 1)), max_size=12)


@settings(max_examples=300)
@given(st.data())
def test_any_chunking_gives_the_same_events(data: st.DataObject) -> None:
    """Any chunking of the same bytes yields the same events and the same end state."""
    stream = data.draw(streams())
    whole, d1 = decode([stream])
    cut, d2 = decode(pieces(stream, data.draw(_cuts(stream))))
    assert cut == whole
    assert state(d2) == state(d1)
    bytewise, d3 = decode([stream[i : i + 1] for i in range(len(stream))])
    assert bytewise == whole
    assert state(d3) == state(d1)


@settings(max_examples=300)
@given(streams())
def test_decoder_agrees_with_reference(stream: bytes) -> None:
    """The fast decoder matches a plain line-by-line WHATWG implementation."""
    events, decoder = decode([stream])
    expected, pending = reference(stream)
    assert events == expected
    assert decoder.pending == pending


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from([(1, 40), (1, 80), (9, 30), (DEFAULT_LIMIT, None)]))
def test_fast_path_equals_exact_decoder(
    data: st.DataObject, limits: tuple[int, int | None]
) -> None:
    """SSEDecoder (frame patterns) dispatches what the line-by-line ExactDecoder does, and
    ends in the same state, for any stream, any chunking and any limits."""
    stream = data.draw(streams() | long_streams())
    chunks = pieces(stream, data.draw(_cuts(stream)))
    max_line, max_event = limits
    fast, d1 = decode(chunks, SSEDecoder(max_line, max_event_bytes=max_event))
    exact, d2 = decode(chunks, ExactDecoder(max_line, max_event_bytes=max_event))
    assert fast == exact
    assert state(d1) == state(d2)
    pairs = SSEDecoder(max_line, max_event_bytes=max_event)
    exact_pairs = ExactDecoder(max_line, max_event_bytes=max_event)
    for chunk in chunks:
        assert pairs._feed_pairs(chunk) == exact_pairs._feed_pairs(chunk)
    assert pairs._close_pairs() == exact_pairs._close_pairs()


@settings(max_examples=200)
@given(st.data(), st.integers(1, 40), st.integers(1, 80))
def test_limits_are_chunking_invariant(data: st.DataObject, max_line: int, max_event: int) -> None:
    """With small limits, what is dropped does not depend on where chunks end."""
    stream = data.draw(streams())
    whole, d1 = decode([stream], SSEDecoder(max_line, max_event_bytes=max_event))
    cut, d2 = decode(
        pieces(stream, data.draw(_cuts(stream))), SSEDecoder(max_line, max_event_bytes=max_event)
    )
    assert cut == whole
    assert state(d2) == state(d1)
    for e in whole:
        assert len(e.data.encode()) <= max_event


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_never_raise(stream: bytes, cuts: list[int]) -> None:
    """Decoder and monitor accept any bytes, in any chunking, without raising."""
    events, _ = decode(pieces(stream, cuts))
    assert all(isinstance(e, SSEEvent) for e in events)
    said, final, _ = monitor_run(pieces(stream, cuts))
    assert all(p is None or isinstance(p, StreamProblem) for p in [*said, final])


@settings(max_examples=200)
@given(st.data())
def test_monitor_never_raises_on_event_shaped_garbage(data: st.DataObject) -> None:
    """Hostile JSON-ish event data (deep nesting, huge numbers, odd types) never raises."""
    junk = data.draw(
        st.sampled_from(
            [
                "[" * 100_000,
                '{"type":"error","code":' + "9" * 10_000 + "}",
                '{"type":"x","sequence_number":' + "9" * 30 + "}",
                '{"type":"x","sequence_number":1.5}',
                '{"type":"x","sequence_number":true}',
                '{"type":"x","sequence_number":1e3}',
                '{"type":{"nested":1},"sequence_number":2}',
                '{"type":"error","code":["a"],"message":{"m":1}}',
                '{"type":"error"',
                '{"type":"err\\u006fr","code":"upstream_error"}',
                "null",
                "",
            ]
        )
        | st.text(max_size=200)
    )
    said, final, _ = monitor_run([b"data: " + junk.encode() + b"\n\n"])
    assert all(p is None or isinstance(p, StreamProblem) for p in [*said, final])


# -- the stream verdict ---------------------------------------------------------------


def test_completed_stream_is_a_success() -> None:
    """created, deltas, completed: no problem at any point, and the properties agree."""
    stream = [created(), delta(1), delta(2), completed(3)]
    said, final, monitor = monitor_run(stream)
    assert said == [None] * 4
    assert final is None
    assert monitor.completed
    assert monitor.events_seen == 4
    assert monitor.last_type == "response.completed"
    assert monitor.problem is None


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("upstream_timeout", rp.Kind.UPSTREAM_TIMEOUT),
        ("upstream_error", rp.Kind.UPSTREAM_ERROR),
        ("internal_error", rp.Kind.INTERNAL_ERROR),
        ("cancelled", rp.Kind.CANCELLED),
        ("quota_gremlins", rp.Kind.STREAM_ERROR),
    ],
)
def test_error_event_is_reported_with_its_code(code: str, kind: rp.Kind) -> None:
    """An error event is a problem at once, with its code and message, classified per the spec."""
    monitor = StreamMonitor()
    assert monitor.feed(created() + delta(1)) is None
    problem = monitor.feed(error(code, "went wrong"))
    assert problem == StreamProblem(code=code, message="went wrong", failure=None, events_seen=3)
    assert monitor.feed(delta(2)) is problem
    assert monitor.finish() is problem
    assert not monitor.completed
    assert monitor.last_type == "error"
    assert rp.EUGPT.classify(code=problem.code, failure=problem.failure).kind == kind


def test_spec_error_frame_verbatim() -> None:
    """The exact error frame from the spec page is recognised."""
    problem = StreamMonitor().feed(
        b"event: message\n"
        b'data: {"type":"error","code":"upstream_timeout","message":"Model timed out"}\n'
        b"\n"
    )
    assert problem is not None
    assert (problem.code, problem.message, problem.failure) == (
        "upstream_timeout",
        "Model timed out",
        None,
    )


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        pytest.param(
            '{"code":"upstream_error","message":"boom"}', "upstream_error", "boom", id="JSON"
        ),
        pytest.param(
            "the model fell over", None, "error event: the model fell over", id="plain text"
        ),
        pytest.param('{"error":{"code":"c","message":"m"}}', "c", "m", id="nested error object"),
        pytest.param(
            '{"error":"cancelled"}', "cancelled", "error event cancelled", id="bare-string error"
        ),
        pytest.param('{"type":"error","code":429}', "429", "error event 429", id="numeric code"),
    ],
)
def test_event_error_frames(data: str, code: str | None, message: str) -> None:
    """A frame whose SSE ``event:`` field is ``error`` is an error, whatever its data says;
    without a usable code it is a stream_error failure."""
    problem = StreamMonitor().feed(created() + f"event: error\ndata: {data}\n\n".encode())
    failure = Failure.STREAM_ERROR if code is None else None
    assert problem == StreamProblem(code=code, message=message, failure=failure, events_seen=2)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            '{ "type" : "error", "code": "upstream_timeout", "message": "m" }', id="spaces"
        ),
        pytest.param(
            '{"code":"upstream_timeout","type":"error","message":"m"}', id="type not first"
        ),
        pytest.param(
            '{"type":"err\\u006fr","code":"upstream_timeout","message":"m"}', id="escaped"
        ),
        pytest.param('{"type":"error",\n"code":"upstream_timeout","message":"m"}', id="two lines"),
        pytest.param('\n{"type":"error","code":"upstream_timeout","message":"m"}', id="leading LF"),
    ],
)
def test_error_event_in_unusual_json_layouts(data: str) -> None:
    """Errors are found however the JSON is laid out, not only in the compact form."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    problem = StreamMonitor().feed(f"{lines}\n".encode())
    assert problem is not None
    assert problem.code == "upstream_timeout"


def test_truncated_mid_event() -> None:
    """A stream cut inside a frame is incomplete, and the message says it was cut mid-event."""
    whole = created() + delta(1) + delta(2)
    said, final, monitor = monitor_run([whole[:-20]])
    assert said == [None]
    assert final == StreamProblem(
        code=None,
        message=(
            "stream ended mid-event after 2 events without response.completed "
            "(last event type: response.output_text.delta)"
        ),
        failure=Failure.INCOMPLETE_STREAM,
        events_seen=2,
    )
    assert not monitor.completed


def test_truncated_between_events() -> None:
    """A stream that stops cleanly between frames, before completion, is incomplete."""
    said, final, _ = monitor_run([created(), delta(1), delta(2)])
    assert said == [None] * 3
    assert final == StreamProblem(
        code=None,
        message=(
            "stream ended after 3 events without response.completed "
            "(last event type: response.output_text.delta)"
        ),
        failure=Failure.INCOMPLETE_STREAM,
        events_seen=3,
    )


def test_empty_stream_is_incomplete() -> None:
    """A stream with no event at all is incomplete."""
    assert StreamMonitor().finish() == StreamProblem(
        code=None,
        message="stream ended after 0 events without response.completed",
        failure=Failure.INCOMPLETE_STREAM,
        events_seen=0,
    )


@pytest.mark.parametrize(
    ("seqs", "message"),
    [
        ((0, 1, 3), "sequence_number jumped from 1 to 3: corrupted stream"),
        ((0, 1, 1), "sequence_number jumped from 1 to 1: corrupted stream"),
        ((5, 4), "sequence_number jumped from 5 to 4: corrupted stream"),
    ],
)
def test_sequence_gap_is_a_corrupted_stream(seqs: tuple[int, ...], message: str) -> None:
    """A sequence_number that skips, repeats or goes back is reported at once as corrupted."""
    monitor = StreamMonitor()
    said = [monitor.feed(delta(s)) for s in seqs]
    assert said[:-1] == [None] * (len(seqs) - 1)
    assert said[-1] == StreamProblem(
        code=None, message=message, failure=Failure.INCOMPLETE_STREAM, events_seen=len(seqs)
    )
    assert monitor.feed(completed(seqs[-1] + 1)) is said[-1]
    assert monitor.finish() is said[-1]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda s: frame(
                {"type": "response.output_text.delta", "delta": "x", "sequence_number": s}
            ),
            id="sequence_number last",
        ),
        pytest.param(
            lambda s: f'data: {{"type": "d", "sequence_number": {s}, "delta": "x"}}\n\n'.encode(),
            id="with whitespace",
        ),
        pytest.param(
            lambda s: frame({"delta": "x", "sequence_number": s, "type": "d", "z": 1}),
            id="in the middle",
        ),
    ],
)
def test_sequence_gap_found_in_any_layout(make: Callable[[int], bytes]) -> None:
    """Sequence numbers are checked wherever the key sits in the object."""
    monitor = StreamMonitor()
    assert monitor.feed(make(0) + make(1)) is None
    problem = monitor.feed(make(3))
    assert problem is not None
    assert problem.message == "sequence_number jumped from 1 to 3: corrupted stream"


def test_first_sequence_number_can_be_anything() -> None:
    """Only continuity is checked: a stream may start at any number."""
    _, final, _ = monitor_run([created(41), delta(42), completed(43)])
    assert final is None


def test_events_without_sequence_number_are_not_checked() -> None:
    """Events lacking a sequence_number neither break nor reset the sequence."""
    no_seq = frame({"type": "response.output_text.delta", "delta": "x"})
    _, final, _ = monitor_run([created(0), no_seq, delta(1), no_seq, completed(2)])
    assert final is None


def test_nested_sequence_number_is_not_the_events() -> None:
    """A sequence_number inside a nested object is not the event's own."""
    nested = frame({"type": "response.output_item.added", "item": {"sequence_number": 99}})
    _, final, _ = monitor_run([created(0), nested, delta(1), completed(2)])
    assert final is None


def test_unknown_event_types_are_ignored() -> None:
    """Unknown types, non-JSON data and other SSE event names do not change the verdict."""
    stream = [
        b": keepalive\n\n",
        created(0),
        frame({"type": "rate_limits.updated", "limits": []}),
        b"data: ping\n\n",
        b"event: heartbeat\ndata: {}\n\n",
        delta(1),
        frame({"type": "response.something_new", "sequence_number": 2}),
        completed(3),
    ]
    said, final, monitor = monitor_run(stream)
    assert said == [None] * len(stream)
    assert final is None
    assert monitor.events_seen == 7


@pytest.mark.parametrize(
    "lookalike",
    [
        pytest.param(
            delta(1, '{"type":"error","code":"upstream_timeout"}'), id="error JSON as delta text"
        ),
        pytest.param(delta(1, '"type":"error"'), id="type-error fragment in text"),
        pytest.param(delta(1, "event: error\ndata: x"), id="SSE error frame as text"),
        pytest.param(
            frame(
                {
                    "type": "response.output_item.added",
                    "sequence_number": 1,
                    "item": {"type": "error"},
                }
            ),
            id="nested object of type error",
        ),
        pytest.param(
            frame({"type": "response.errors_summary", "sequence_number": 1}),
            id="type with error in it",
        ),
    ],
)
def test_error_lookalikes_are_not_errors(lookalike: bytes) -> None:
    """Text or nested objects that look like an error event do not make the stream fail."""
    said, final, _ = monitor_run([created(0), lookalike, completed(2)])
    assert said == [None] * 3
    assert final is None


def test_error_after_completion_still_counts() -> None:
    """An error event after response.completed makes the stream a failure (the last event)."""
    said, final, monitor = monitor_run([created(0), completed(1), error("internal_error")])
    assert said[:2] == [None, None]
    assert said[2] is not None
    assert said[2].code == "internal_error"
    assert final is said[2]
    assert not monitor.completed


def test_other_events_after_completion_are_ignored() -> None:
    """After completion, non-error events (even with a broken sequence) leave it a success."""
    said, final, monitor = monitor_run([created(0), completed(1), delta(7), completed(9)])
    assert said == [None] * 4
    assert final is None
    assert monitor.completed
    assert monitor.last_type == "response.completed"


def test_partial_data_after_completion_is_ignored() -> None:
    """A stream cut after its completion event is still a success."""
    _, final, _ = monitor_run([created(0) + completed(1) + b"event: message\ndata: {"])
    assert final is None


def test_oversized_line_is_a_problem() -> None:
    """A line over the limit before completion: the monitor cannot vouch for the stream."""
    monitor = StreamMonitor(max_line_bytes=256)
    assert monitor.feed(created(0)) is None
    problem = monitor.feed(delta(1, "x" * 1000))
    assert problem is not None
    assert problem.failure is Failure.INCOMPLETE_STREAM
    assert "longer than 256 bytes" in problem.message
    assert monitor.finish() is problem


def test_custom_event_types() -> None:
    """The completion and error types are parameters, for APIs that name them differently."""
    monitor = StreamMonitor(completed_type="done", error_type="failed")
    assert monitor.feed(b'data: {"type":"error"}\n\n') is None
    assert monitor.feed(b'data: {"type":"done"}\n\n') is None
    assert monitor.finish() is None
    problem = StreamMonitor(error_type="failed").feed(b'data: {"type":"failed","code":"x"}\n\n')
    assert problem is not None
    assert problem.code == "x"


def test_finish_is_idempotent_and_final() -> None:
    """finish() returns the same verdict every time; feeds after it change nothing."""
    monitor = StreamMonitor()
    monitor.feed(created(0))
    first = monitor.finish()
    assert first is not None
    assert monitor.finish() is first
    assert monitor.feed(completed(1)) is first
    assert not monitor.completed


def test_verdict_is_chunking_invariant() -> None:
    """Cutting an EU GPT stream anywhere gives the same verdict at the same event."""
    stream = created(0) + delta(1) + delta(2, "über 😀") + error("upstream_error") + delta(3)
    reference_said = StreamMonitor().feed(stream)
    for cut in range(len(stream) + 1):
        said, final, _ = monitor_run([stream[:cut], stream[cut:]])
        assert final == reference_said, cut
        assert next(p for p in said if p is not None) == reference_said


def test_ordinary_events_are_not_json_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict reads ordinary frames without json.loads; only the error event is parsed."""
    calls: list[str] = []
    real = _head.loads

    def counting(data: str) -> Any:
        calls.append(data)
        return real(data)

    for module in (_head, _monitor_module):
        monkeypatch.setattr(module, "loads", counting)
    stream = created(0) + b"".join(delta(i, f"text {i}") for i in range(1, 1000)) + completed(1000)
    _, final, _ = monitor_run([stream])
    assert final is None
    assert calls == []
    StreamMonitor().feed(error("upstream_timeout"))
    assert len(calls) == 1


def test_problem_message_is_bounded() -> None:
    """A huge error message or code from the server is cut to an excerpt."""
    problem = StreamMonitor().feed(error("c" * 5000, "m" * 5000))
    assert problem is not None
    assert problem.code is not None
    assert len(problem.message) <= 513
    assert len(problem.code) <= 513


# -- long lines split across many chunks ------------------------------------------------
#
# A 64 KiB data line (Reply.large_stream) arrives over several network reads. Whatever
# the reads, the events, the decoder's end state and the verdict must be those of the
# whole stream; and the frame patterns must only ever be run over complete lines.

_UNITS = ["lorem ipsum dolor sit amet ", "ü", "😀 ", "a: b ", '{"x":"y"} ', "é\u2028"]


def _long(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


@st.composite
def _long_lines(draw: st.DrawFn) -> bytes:
    eol = draw(_eols)
    value = _long(draw(st.sampled_from(_UNITS)), draw(st.integers(1_000, 70_000)))
    kind = draw(st.sampled_from(["frame", "dataframe", "multiline", "event", "comment", "id"]))
    if kind == "frame":
        text = f"event: message{eol}data: {value}{eol}{eol}"
    elif kind == "dataframe":
        text = f"data: {value}{eol}{eol}"
    elif kind == "multiline":
        text = f"data: {value}{eol}data: {value[:100]}{eol}data:{value}{eol}{eol}"
    elif kind == "event":
        text = f"event: {value}{eol}data: x{eol}{eol}"
    elif kind == "comment":
        text = f":{value}{eol}"
    else:
        text = f"id: {value}{eol}"
    return text.encode()


@st.composite
def long_streams(draw: st.DrawFn) -> bytes:
    """SSE streams mixing lines of 1-70 KB with ordinary short lines and stray bytes."""
    parts: list[bytes] = [draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))]
    for _ in range(draw(st.integers(1, 6))):
        choice = draw(st.integers(0, 9))
        if choice < 5:
            parts.append(draw(_long_lines()))
        elif choice < 9:
            parts.append(draw(_lines()))
        else:
            parts.append(draw(st.binary(max_size=6)))
    if draw(st.booleans()):  # end mid-line, or mid-character
        parts.append(draw(st.sampled_from([b"data: " + b"z" * 20_000, b"data: \xf0\x9f"])))
    return b"".join(parts)


def network_reads(stream: bytes, rnd: random.Random, low: int, high: int) -> list[bytes]:
    """*stream* cut into chunks of random sizes in low..high bytes."""
    out = []
    i = 0
    while i < len(stream):
        n = rnd.randint(low, high)
        out.append(stream[i : i + n])
        i += n
    return out


_READ_SIZES = st.sampled_from([(1, 16_384), (1_024, 16_384), (1, 64), (60_000, 140_000)])


@settings(max_examples=60, deadline=None)
@given(long_streams(), st.randoms(use_true_random=False), _READ_SIZES)
def test_long_lines_any_chunking_gives_the_same_events(
    stream: bytes, rnd: random.Random, sizes: tuple[int, int]
) -> None:
    """Long lines cut into network-sized reads decode as the whole stream does, per WHATWG."""
    whole, d1 = decode([stream])
    expected, pending = reference(stream)
    assert whole == expected
    assert d1.pending == pending
    cut, d2 = decode(network_reads(stream, rnd, *sizes))
    assert cut == whole
    assert state(d2) == state(d1)


@settings(max_examples=40, deadline=None)
@given(long_streams(), st.randoms(use_true_random=False), st.integers(8_000, 80_000))
def test_long_lines_limits_are_chunking_invariant(
    stream: bytes, rnd: random.Random, max_line: int
) -> None:
    """Near the line limit, what is dropped does not depend on where the reads end."""
    whole, d1 = decode([stream], SSEDecoder(max_line))
    cut, d2 = decode(network_reads(stream, rnd, 1, 16_384), SSEDecoder(max_line))
    assert cut == whole
    assert state(d2) == state(d1)
    assert all(len(e.data.encode()) <= 4 * max_line for e in whole)


@settings(max_examples=150)
@given(st.data())
def test_pairs_are_the_events(data: st.DataObject) -> None:
    """What StreamMonitor reads (event, data pairs) is exactly what feed() dispatches."""
    stream = data.draw(streams() | long_streams())
    chunks = pieces(stream, data.draw(_cuts(stream)))
    events, _ = decode(chunks)
    decoder = SSEDecoder()
    pairs = [p for chunk in chunks for p in decoder._feed_pairs(chunk)]
    pairs += decoder._close_pairs()
    assert pairs == [(e.event, e.data) for e in events]


def large_delta(seq: int, size: int) -> bytes:
    """A delta frame as Reply.large_stream sends it (about *size* bytes of text)."""
    return delta(seq, _long("lorem ipsum dolor sit amet ", size))


def verdict_reference(stream: bytes) -> tuple[str, int]:
    """The verdict rules applied plainly, with json.loads: (outcome, events seen)."""
    events, _ = reference(stream)
    prev: int | None = None
    for seen, e in enumerate(events, 1):
        obj = json.loads(e.data)
        if obj.get("type") == "error":
            return f"error {obj.get('code')}", seen
        seq = obj.get("sequence_number")
        if prev is not None and seq != prev + 1:
            return "gap", seen
        prev = seq
        if obj.get("type") == "response.completed":
            return "ok", seen
    return "incomplete", len(events)


def outcome(problem: StreamProblem | None) -> str:
    """A verdict in the terms of verdict_reference."""
    if problem is None:
        return "ok"
    if problem.failure is None or problem.failure is Failure.STREAM_ERROR:
        return f"error {problem.code}"
    return "gap" if "jumped" in problem.message else "incomplete"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 70_000), min_size=1, max_size=8),
    st.sampled_from(["completed", "error", "gap", "cut", "cut-mid-frame"]),
    st.integers(0, 7),
    st.randoms(use_true_random=False),
    _READ_SIZES,
)
def test_large_frames_any_chunking_gives_the_same_verdict(
    sizes: list[int], ending: str, where: int, rnd: random.Random, reads: tuple[int, int]
) -> None:
    """A large_stream-shaped stream gets the same verdict, at the same event, however read."""
    frames = [created(0)] + [large_delta(i, n) for i, n in enumerate(sizes, 1)]
    where = min(where, len(frames) - 1) + 1
    last = len(sizes) + 1
    if ending == "error":
        frames.insert(where, error("upstream_error", "x" * 1000))
    elif ending == "gap":
        frames.insert(where, large_delta(last + 5, 40_000))
    if ending != "cut":
        frames.append(completed(last + (1 if ending == "error" else 0)))
    stream = b"".join(frames)
    if ending == "cut-mid-frame":
        stream = stream[: len(stream) - 30_000]
    expected = verdict_reference(stream)

    said, final, monitor = monitor_run([stream])
    assert (outcome(final), final.events_seen if final else monitor.events_seen) == expected
    said_cut, final_cut, monitor_cut = monitor_run(network_reads(stream, rnd, *reads))
    assert final_cut == final
    assert monitor_cut.completed == monitor.completed
    assert next((p for p in said_cut if p is not None), None) == next(
        (p for p in said if p is not None), None
    )


class _Spy:
    """A compiled pattern that records the text regions it is asked to search."""

    def __init__(self, pattern: re.Pattern[str], regions: list[tuple[str, int, int]]) -> None:
        self.pattern = pattern
        self.regions = regions

    def match(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> Any:
        self.regions.append((text, pos, min(endpos, len(text))))
        return self.pattern.match(text, pos, endpos)

    def findall(self, text: str, pos: int = 0, endpos: int = sys.maxsize) -> Any:
        self.regions.append((text, pos, min(endpos, len(text))))
        return self.pattern.findall(text, pos, endpos)


@pytest.mark.parametrize("reads", [(1, 64), (1_024, 16_384), (60_000, 140_000)])
def test_frame_patterns_see_each_line_once(
    monkeypatch: pytest.MonkeyPatch, reads: tuple[int, int]
) -> None:
    """The frame patterns only see complete lines, so a partial line is never scanned per read.

    The work is counted, not timed: over a stream of 64 KiB frames read in pieces, the
    patterns are offered complete lines only, and less text in all than the stream holds
    (split lines bypass them: their end is found by ``str.find`` as each piece arrives).
    """
    regions: list[tuple[str, int, int]] = []
    for name in ("_FRAMES", "_FRAME", "_EXACT_EVENT", "_EXACT_DATA"):
        monkeypatch.setattr(_frames, name, _Spy(getattr(_frames, name), regions))
    stream = created(0) + b"".join(large_delta(i, 65_536) for i in range(1, 40)) + completed(40)
    chunks = network_reads(stream, random.Random(7), *reads)
    said, final, monitor = monitor_run(chunks)
    assert said == [None] * len(chunks)
    assert final is None
    assert monitor.events_seen == 41
    assert regions
    assert all(pos < end and text[end - 1] == "\n" for text, pos, end in regions)
    assert sum(end - pos for _, pos, end in regions) <= len(stream)


# -- the module's surface --------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    """The package's ``__all__`` lists exactly the public names it re-exports, sorted."""
    public = {name for name in vars(_sse) if not name.startswith("_")}
    assert _sse.__all__ == sorted(_sse.__all__)
    assert set(_sse.__all__) == public


def test_events_and_problems_are_frozen() -> None:
    """Events and problems are immutable values."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ev("a").data = "b"  # type: ignore[misc]
    problem = StreamProblem(code=None, message="m", failure=None, events_seen=0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        problem.message = "n"  # type: ignore[misc]


def test_core_imports_no_transport() -> None:
    """The SSE package imports only the standard library, attrs, redaction and the rules."""
    imports: set[str] = set()
    for path in Path(_sse.__file__).parent.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        imports |= set(re.findall(r"^(?:from|import) ([\w.]+)", source, re.MULTILINE))
    outside = {name for name in imports if not re.fullmatch(r"\._\w+", name)}
    assert outside == {
        "__future__",
        "codecs",
        "json",
        "re",
        "typing",
        "attrs",
        ".._redact",
        ".._rules",
    }


NO_USABLE_CODE = [
    pytest.param(b'event: message\ndata: {"type":"error"}\n\n', id="no code"),
    pytest.param(b'event: message\ndata: {"type":"error","code":null}\n\n', id="null code"),
    pytest.param(b'event: message\ndata: {"type":"error","code":""}\n\n', id="empty code"),
    pytest.param(b'event: message\ndata: {"type":"error","code":"  "}\n\n', id="blank code"),
    pytest.param(b'event: message\ndata: {"type":"error","code":true}\n\n', id="bool code"),
    pytest.param(b'event: message\ndata: {"type":"error","code":["x"]}\n\n', id="list code"),
    pytest.param(
        b'event: message\ndata: {"type":"error","code":{"c":"x"},"message":"m"}\n\n',
        id="object code",
    ),
    pytest.param(
        b'event: message\ndata: {"type":"error","error":{"message":"m"}}\n\n',
        id="nested error without code",
    ),
    pytest.param(b"event: error\ndata: the model fell over\n\n", id="data not JSON"),
    pytest.param(b"event: error\ndata: [1, 2]\n\n", id="data a JSON list"),
    pytest.param(b"event: error\ndata: {}\n\n", id="empty object"),
]


@pytest.mark.parametrize("frame", NO_USABLE_CODE)
@pytest.mark.parametrize("policy", [rp.EUGPT, rp.HTTP], ids=["eugpt", "http"])
def test_error_event_without_usable_code_is_a_failure(frame: bytes, policy: rp.Policy) -> None:
    """An error event without a usable code is a problem whose failure is stream_error and
    which classifies as stream_error, not retried — never as a success (it did before)."""
    monitor = StreamMonitor()
    problem = monitor.feed(created() + frame)
    assert problem is not None
    assert problem.code is None
    assert problem.failure is Failure.STREAM_ERROR
    assert monitor.finish() is problem
    assert not monitor.completed
    c = policy.classify(200, problem.code, failure=problem.failure)
    assert (c.kind, c.retryable) == (rp.Kind.STREAM_ERROR, False)


# -- the monitor's bytes-level path for long lines ---------------------------------------
#
# StreamMonitor keeps a long line as the raw chunks it arrives in and reads only a window
# at each end of a long data line (LazyDecoder._feed_lazy); with ``_fast`` off it decodes
# everything (SSEDecoder._feed_pairs, the frame patterns), and given an ExactDecoder it
# reads line by line. All three must judge every stream alike, feed by feed.


def _json_frame(text: str, eols: Sequence[str], event: str = "message") -> bytes:
    return f"event: {event}{eols[0]}data: {text}{eols[1]}{eols[2]}".encode()


@st.composite
def _verdict_frames(draw: st.DrawFn, seq: int) -> bytes:
    """One frame, mostly with a long data field, in the layouts the monitor reads."""
    eols = draw(st.lists(_eols, min_size=4, max_size=4) | _eols.map(lambda e: [e] * 4))
    if draw(st.integers(0, 7)) == 0:
        eols[2] = ""  # no blank line: the next frame's lines join this event
    eol = eols[0]
    kind = draw(
        st.sampled_from(
            [
                *["delta"] * 4,
                *("seq_last", "spaced", "no_seq", "long_type", "bad_bytes", "error"),
                *("event_error", "created", "completed", "multi_data", "short", "garbage"),
                *("error_compact", "binary"),
            ]
        )
    )
    size = draw(st.sampled_from([0, 100, 1_000, 1_030, 1_500, 4_000, 5_000, 40_000, 70_000]))
    text = json.dumps(_long(draw(st.sampled_from(_UNITS)), size), ensure_ascii=draw(st.booleans()))
    if kind == "delta":
        body = f'{{"type":"response.output_text.delta","sequence_number":{seq},"delta":{text}}}'
    elif kind == "seq_last":
        body = f'{{"type":"response.output_text.delta","delta":{text},"sequence_number":{seq}}}'
    elif kind == "spaced":
        body = (
            f'{{ "type" : "response.output_text.delta" ,\t"sequence_number" : {seq} , "d":{text}}}'
        )
    elif kind == "no_seq":
        body = f'{{"type":"response.output_text.delta","delta":{text}}}'
    elif kind == "long_type":
        body = f'{{"type":"{"t" * 300}","sequence_number":{seq},"delta":{text}}}'
    elif kind == "bad_bytes":
        raw = _json_frame(
            f'{{"type":"response.output_text.delta","sequence_number":{seq},"delta":{text}}}', eols
        )
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xe6\x9d", b"\xf0\x9f\x98"])) + raw[at:]
    elif kind == "error":
        code = draw(st.sampled_from(["server_error", "x" * 3000]))
        body = json.dumps({"type": "error", "code": code, "message": _long("m ", size)})
    elif kind == "error_compact":
        body = f'{{"type":"error","sequence_number":{seq},"code":"server_error","m":{text}}}'
    elif kind == "binary":  # invalid UTF-8, up to three times as long once decoded
        junk = draw(st.sampled_from([b"\xff", b"\xe6\x9d", b"\xc3", b"a\xf0\x9f\x98"]))
        more = draw(st.sampled_from(["", f"data: x{eol}", f"data: {text}{eol}"])).encode()
        return b"data: " + junk * (size // len(junk)) + eol.encode() + more + eols[2].encode()
    elif kind == "event_error":
        return _json_frame(_long("the model fell over ", size), eols, event="error")
    elif kind == "created":
        body = f'{{"type":"response.created","sequence_number":{seq},"r":{text}}}'
    elif kind == "completed":
        body = f'{{"type":"response.completed","sequence_number":{seq},"r":{text}}}'
    elif kind == "multi_data":
        head = f'{{"type":"response.output_text.delta","sequence_number":{seq},'
        return f"data: {head}{eol}data: {text}{eols[1]}data: }}{eols[2]}{eols[3]}".encode()
    elif kind == "short":
        return draw(_lines())
    else:
        return draw(st.binary(max_size=6))
    return _json_frame(body, eols)


@st.composite
def verdict_streams(draw: st.DrawFn) -> bytes:
    """Streams of real frames with large data fields, sequence numbers mostly in order."""
    parts: list[bytes] = [draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))]
    seq = draw(st.integers(0, 3))
    for _ in range(draw(st.integers(1, 8))):
        parts.append(draw(_verdict_frames(seq)))
        seq += 1 if draw(st.integers(0, 9)) else draw(st.integers(-2, 3))
    if draw(st.booleans()):  # end mid-line, or mid-character
        parts.append(draw(st.sampled_from([b"data: " + b"z" * 20_000, b"data: \xf0\x9f"])))
    return b"".join(parts)


def _verdicts(chunks: list[bytes], path: str, max_line: int) -> tuple[object, ...]:
    """What the monitor says of *chunks* when its decoder takes *path*."""
    monitor = StreamMonitor(max_line_bytes=max_line)
    if path != "bytes":
        monitor._fast = False  # decoded text: the frame patterns
    if path == "exact":
        monitor._decoder = ExactDecoder(max_line)  # type: ignore[assignment]
    said, final, _ = monitor_run(chunks, monitor)
    return said, final, monitor.events_seen, monitor.last_type, monitor.completed


def assert_paths_agree(chunks: list[bytes], max_line: int) -> None:
    """The bytes path and the frame patterns judge *chunks* as the exact decoder does."""
    exact = _verdicts(chunks, "exact", max_line)
    assert _verdicts(chunks, "frames", max_line) == exact
    assert _verdicts(chunks, "bytes", max_line) == exact


@settings(max_examples=200, deadline=None)
@given(
    verdict_streams() | long_streams(),
    st.randoms(use_true_random=False),
    _READ_SIZES | st.sampled_from([(16_384, 40_000), (32_768, 32_768)]),
    st.sampled_from([_sse.DEFAULT_MAX_LINE_BYTES, 150_000, 60_000, 9_000, 3_100]),
)
def test_lazy_path_gives_the_verdicts_of_the_exact_path(
    stream: bytes, rnd: random.Random, reads: tuple[int, int], max_line: int
) -> None:
    """Long lines held as bytes: the same problem, at the same feed, and the same state."""
    chunks = network_reads(stream, rnd, *reads)
    assert_paths_agree(chunks, max_line)


@settings(max_examples=100, deadline=None)
@given(verdict_streams(), st.data())
def test_lazy_path_any_cuts(stream: bytes, data: st.DataObject) -> None:
    """The same, for arbitrary cuts (ends of lines, CRLFs and characters split anyhow)."""
    chunks = pieces(stream, data.draw(_cuts(stream)))
    assert_paths_agree(chunks, 200_000)


def test_lazy_path_reads_large_frames_as_bytes() -> None:
    """The point of it: a 64 KiB data line read in pieces is never decoded whole."""
    stream = created(0) + b"".join(large_delta(i, 65_536) for i in range(1, 20)) + completed(20)
    chunks = network_reads(stream, random.Random(3), 1_024, 32_768)
    monitor = StreamMonitor()
    decoded: list[int] = []
    real = monitor._decoder._decoder

    class Counting:
        def decode(self, data: bytes, final: bool = False) -> str:
            decoded.append(len(data))
            return real.decode(data, final)

        def getstate(self) -> tuple[bytes, int]:
            return real.getstate()

    monitor._decoder._decoder = Counting()  # type: ignore[assignment]
    _, final, _ = monitor_run(chunks, monitor)
    assert final is None
    assert monitor.events_seen == 21
    assert sum(decoded) < len(stream) // 10


def _lazy_edge_cases() -> list[tuple[bytes, int]]:
    head = created(0) + b"event: message\ndata: "
    long_json = large_delta(1, 40_000).split(b"data: ", 1)[1].rstrip(b"\n")
    return [
        # a CRLF ending a long data line, straight into the next frame's event line
        (head + long_json + b"\r\nevent: message\ndata: " + long_json + b"\n\n", 1 << 20),
        # invalid UTF-8 decodes three times as long: over the line limit
        (created(0) + b"data: " + b"\xff" * 2_000 + b"\n\ndata: x\n\n" + completed(1), 5_000),
        # ... and over the event limit, counted after the first (long) data line
        (
            created(0)
            + b"data: "
            + b"\xff" * 1_300
            + b"\n"
            + (b"data: " + b"x" * 2_500 + b"\n") * 5
            + b"\n"
            + completed(1),
            4_000,
        ),
    ]


@pytest.mark.parametrize(("stream", "max_line"), _lazy_edge_cases())
def test_lazy_path_edge_cases(stream: bytes, max_line: int) -> None:
    """Cases the generated streams rarely reach, cut at every offset near the line ends."""
    for seed in range(40):
        for reads in [(1_024, 4_096), (4_000, 40_000), (30_000, 70_000)]:
            chunks = network_reads(stream, random.Random(seed), *reads)
            assert_paths_agree(chunks, max_line)


def test_lazy_path_copies_reused_buffers() -> None:
    """A bytearray the caller refills after each feed is not kept (as a long line's piece)."""
    stream = created(0) + large_delta(1, 40_000) + completed(2)
    monitor = StreamMonitor()
    buffer = bytearray()
    for i in range(0, len(stream), 3_000):
        buffer[:] = stream[i : i + 3_000]
        assert monitor.feed(memoryview(buffer) if i % 2 else buffer) is None  # type: ignore[arg-type]
        buffer[:] = b"\xff" * len(buffer)
    assert monitor.finish() is None
    assert monitor.events_seen == 3


def test_lazy_path_event_line_shortcuts_need_a_fresh_line() -> None:
    """``\\nevent: message\\n`` or ``event: message\\n`` at a chunk's start, before a long
    partial line, is not a fresh line after a partial line, a CR or an undecoded byte."""
    long_frame = large_delta(2, 1_500)
    delta_1 = delta(1).rstrip(b"\n")
    cases = [
        (created(0) + b"data", long_frame),  # a partial line before it
        (created(0) + b"data", b"\n" + long_frame),
        (created(0) + delta_1 + b"\r", b"\n" + long_frame),  # a CR before it
        (created(0) + b"event: error\n\xe6\x9d", long_frame),  # an undecoded character
    ]
    for before, after in cases:
        cut = len(after) - 100  # inside the long data line
        chunks = [before, after[:cut], after[cut:] + completed(3)]
        assert_paths_agree(chunks, _sse.DEFAULT_MAX_LINE_BYTES)


def test_error_event_with_lone_surrogate_escapes_is_printable() -> None:
    """An error event whose code or message escapes half a surrogate pair still gives a
    problem that prints as UTF-8: the lone half becomes U+FFFD."""
    monitor = StreamMonitor()
    problem = monitor.feed(
        b'data: {"type":"error","code":"upstream_timeout\\udc00","message":"x \\ud800"}\n\n'
    )
    assert problem is not None
    assert (problem.code, problem.message) == ("upstream_timeout\ufffd", "x \ufffd")
    (problem.code + problem.message).encode("utf-8")
