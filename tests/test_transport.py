"""The transport seam on its own: options, the attempt loop as steps, stream checks, decoding.

No transport and no socket here: the seam is sans-I/O, so its rules are tested
by feeding it what an adapter would have read.
"""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import retrypolicy as rp
from retrypolicy._sse import SSEDecoder, bytes_before_event
from retrypolicy.transport import (
    EXHAUSTED,
    MAX_ERROR_BODY,
    MAX_PRIME_BYTES,
    AdapterOptions,
    ContentDecoder,
    Exchange,
    StreamCheck,
    is_event_stream,
    normalize_methods,
)

FAST = rp.EUGPT.evolve(backoff=rp.Backoff(jitter="none", initial=0.5, max_delay=0.5))


def frame(obj: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(obj).encode() + b"\n\n"


CREATED = frame({"type": "response.created", "sequence_number": 0})
ITEM = frame({"type": "response.output_item.added", "sequence_number": 1})
PART = frame({"type": "response.content_part.added", "sequence_number": 2})
DELTA = frame({"type": "response.output_text.delta", "sequence_number": 1, "delta": "x"})
COMPLETED = frame({"type": "response.completed", "sequence_number": 2})
TIMEOUT_EVENT = frame({"type": "error", "code": "upstream_timeout", "message": "slow"})


# -- methods: one reading for every adapter ----------------------------------------------


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        (None, None),
        ("POST", frozenset({"POST"})),
        ("post", frozenset({"POST"})),
        (["get", "POST"], frozenset({"GET", "POST"})),
        (("PUT",), frozenset({"PUT"})),
        (frozenset({"delete"}), frozenset({"DELETE"})),
    ],
)
def test_methods_are_normalised_once(given_: Any, expected: frozenset[str] | None) -> None:
    """A single string is one method; iterables give several; names are upper-cased."""
    assert normalize_methods(given_) == expected


@pytest.mark.parametrize(
    ("given_", "error", "says"),
    [
        ([], ValueError, "at least one"),
        ([1], TypeError, "not a method name"),
        ([""], TypeError, "not a method name"),
        (42, TypeError, "expected a method name"),
    ],
)
def test_bad_methods_name_the_input(given_: Any, error: type[Exception], says: str) -> None:
    """A wrong ``methods`` fails at construction, naming what was given and what is expected."""
    with pytest.raises(error, match=says):
        AdapterOptions(methods=given_)


def test_options_default_to_the_default_policy() -> None:
    """Without a policy, an adapter uses the default one (EU GPT unless configured)."""
    assert AdapterOptions().policy is rp.EUGPT


def test_options_refuse_a_non_policy() -> None:
    """A policy that is not a Policy is refused with the expected type named."""
    with pytest.raises(TypeError, match=r"expected a retrypolicy\.Policy"):
        AdapterOptions(policy="eugpt")  # type: ignore[arg-type]


def test_options_refuse_a_string_preamble() -> None:
    """A preamble given as one string (a common slip) is refused."""
    with pytest.raises(TypeError, match="collection of event types"):
        AdapterOptions(preamble="response.created")


@pytest.mark.parametrize(
    ("methods", "method", "resendable", "retrying"),
    [
        (None, "POST", True, True),
        ("POST", "post", True, True),
        ("POST", "GET", True, False),
        (None, "POST", False, False),
    ],
)
def test_loop_retries_only_its_methods_and_resendable_bodies(
    methods: str | None, method: str, resendable: bool, retrying: bool
) -> None:
    """A method outside ``methods`` or a one-shot body gets a loop that never retries."""
    loop = AdapterOptions(policy=FAST, methods=methods).loop(method, resendable=resendable)
    assert loop.retrying is retrying


# -- the attempt loop as steps ---------------------------------------------------------------


def test_loop_steps_retry_then_succeed() -> None:
    """503 then 200: one wait of the policy's delay, a retry.succeeded event, attempts 2."""
    events: list[str] = []
    options = AdapterOptions(
        policy=FAST,
        on_retry=lambda e: events.append(e.name),
        on_success=lambda e: events.append(e.name),
    )
    loop = options.loop("POST")
    loop.begin()
    outcome = loop.judge(503, {}, b'{"error": {"code": "busy"}}')
    assert outcome is not None
    assert outcome.code == "busy"
    assert loop.failed(outcome) == 0.5
    loop.begin()
    assert loop.judge(200, {}) is None
    loop.succeeded()
    response = type("R", (), {})()
    assert loop.finish(response) is response
    assert response.retry_attempts == 2
    assert events == ["retry.scheduled", "retry.succeeded"]


def test_loop_waits_are_zero_and_recorded_in_instant_mode() -> None:
    """Under rp.testing.instant() the seam says "sleep 0" and records the real wait."""
    loop = AdapterOptions(policy=FAST).loop("POST")
    with rp.testing.instant() as clock:
        loop.begin()
        outcome = loop.judge(503, {})
        assert outcome is not None
        assert loop.failed(outcome) == 0.0
    assert clock.waits == [0.5]


def test_loop_gives_up_and_marks_the_final_response_exhausted() -> None:
    """After the last allowed retry the loop gives up; the response is marked for outer layers."""
    loop = AdapterOptions(policy=FAST).loop("POST")
    with rp.testing.instant():
        for _ in range(1 + 2):  # 500: two retries
            loop.begin()
            outcome = loop.judge(500, {})
            assert outcome is not None
            wait = loop.failed(outcome)
    assert wait is None
    response = type("R", (), {})()
    loop.finish(response, outcome)
    assert getattr(response, EXHAUSTED) is True
    assert response.retry_attempts == 3


def test_loop_that_may_not_retry_marks_nothing() -> None:
    """A request that was not the policy's to retry is not marked: an outer layer may retry it."""
    loop = AdapterOptions(policy=FAST, methods="GET").loop("POST")
    loop.begin()
    outcome = loop.judge(503, {})
    assert outcome is not None
    assert loop.failed(outcome) is None
    response = type("R", (), {})()
    loop.finish(response, outcome)
    assert not hasattr(response, EXHAUSTED)


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (429, b'{"error": {"code": "rate"}}', rp.RateLimitError, "rate"),
        (401, b'{"detail": "revoked"}', rp.AuthenticationError, None),
        (403, b'{"error": "project_forbidden"}', rp.PermissionDeniedError, "project_forbidden"),
    ],
)
def test_raise_on_give_up_raises_the_matching_error(
    status: int, body: bytes, cls: type[rp.APIError], code: str | None
) -> None:
    """With raise_on_give_up the final failure is released and raised as its APIError."""
    loop = AdapterOptions(policy=FAST, raise_on_give_up=True).loop("POST")
    closed: list[bool] = []
    response = type("R", (), {"close": lambda self: closed.append(True)})()
    with rp.testing.instant():
        outcome = None
        for _ in range(10):
            loop.begin()
            outcome = loop.judge(status, {}, body)
            assert outcome is not None
            if loop.failed(outcome) is None:
                break
    assert outcome is not None
    with pytest.raises(cls) as info:
        loop.finish(response, outcome)
    assert info.value.code == code
    assert info.value.attempts == loop.attempts
    assert closed == [True]


def counting_classifications(policy: rp.Policy) -> tuple[rp.Policy, list[tuple[Any, ...]]]:
    """*policy* as a policy that records every ``classify`` asked of it."""
    asked: list[tuple[Any, ...]] = []

    class Counting(rp.Policy):
        def classify(self, *args: Any, **kwargs: Any) -> rp.Classification:
            asked.append(args)
            return super().classify(*args, **kwargs)

    fields = {a.alias: getattr(policy, a.name) for a in attrs.fields(rp.Policy) if a.init}
    return Counting(**fields), asked


def test_give_up_raises_the_machines_verdict_without_classifying_again() -> None:
    """finish() with raise_on_give_up builds the error from the machine's decision: the
    failure the machine gave up on is not classified a second (or third) time."""
    policy, asked = counting_classifications(FAST)
    loop = AdapterOptions(policy=policy, raise_on_give_up=True).loop("POST")
    with rp.testing.instant():
        for _ in range(1 + 2):  # 500: two retries
            loop.begin()
            outcome = loop.judge(500, {}, b'{"error": {"code": "boom"}}')
            assert outcome is not None
            wait = loop.failed(outcome)
    assert wait is None
    assert loop.decision is not None
    asked.clear()
    with pytest.raises(rp.InternalServerError) as info:
        loop.finish(type("R", (), {})(), outcome)
    assert asked == []
    assert info.value.kind == loop.decision.classification.kind == rp.Kind.SERVER_ERROR
    assert info.value.code == "boom"
    assert info.value.retryable is True
    assert getattr(info.value, EXHAUSTED) is True


def test_give_up_on_a_request_not_retried_classifies_it_once() -> None:
    """A request outside ``methods`` has no decision to reuse: finish() with
    raise_on_give_up classifies its failure once, and raises the matching error."""
    policy, asked = counting_classifications(FAST)
    loop = AdapterOptions(policy=policy, methods="GET", raise_on_give_up=True).loop("POST")
    loop.begin()
    outcome = loop.judge(503, {})
    assert outcome is not None
    assert loop.failed(outcome) is None
    asked.clear()
    with pytest.raises(rp.ServiceUnavailableError) as info:
        loop.finish(type("R", (), {})(), outcome)
    assert asked == [(503, None)]
    assert info.value.retryable is True
    assert not hasattr(info.value, EXHAUSTED)


def test_run_reraises_the_transport_exception_unchanged() -> None:
    """run(): a transport exception the policy gives up on reaches the caller as it was."""
    loop = AdapterOptions(policy=FAST).loop("POST")
    err = ConnectionRefusedError("refused")

    def attempt() -> Exchange:
        raise err

    with rp.testing.instant(), pytest.raises(ConnectionRefusedError) as info:
        loop.run(attempt)
    assert info.value is err
    assert loop.attempts == 1 + 5  # connection: five retries in EU GPT
    assert getattr(err, EXHAUSTED) is True


def test_run_releases_every_response_it_retries_past() -> None:
    """run(): a response retried past is released before the next attempt."""
    released: list[int] = []
    loop = AdapterOptions(policy=FAST).loop("POST")
    statuses = iter([503, 503, 200])

    def attempt() -> Exchange:
        n = loop.attempts
        status = next(statuses)
        return Exchange(status, loop.judge(status, {}), close=lambda: released.append(n))

    with rp.testing.instant():
        assert loop.run(attempt) == 200
    assert released == [1, 2]


def test_judge_decodes_an_encoded_error_body() -> None:
    """An error body still encoded as it came off the wire is judged decoded."""
    body = gzip.compress(b'{"error": {"code": "project_forbidden"}}')
    outcome = AdapterOptions().loop().judge(403, {}, body, content_encoding="gzip")
    assert outcome is not None
    assert outcome.code == "project_forbidden"


# -- stream checks ---------------------------------------------------------------------------


def check(**kw: Any) -> StreamCheck:
    return AdapterOptions(policy=FAST, **kw).stream_check()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Content-Type": "text/event-stream"}, True, id="plain"),
        pytest.param({"content-type": "TEXT/EVENT-STREAM; charset=utf-8"}, True, id="any case"),
        pytest.param([("CONTENT-TYPE", "text/event-stream ; charset=utf-8")], True, id="pairs"),
        pytest.param({"Content-Type": "application/json"}, False, id="json"),
        pytest.param({}, False, id="none"),
        pytest.param(
            [("Content-Type", "text/event-stream"), ("content-type", "text/event-stream")],
            True,
            id="sent twice",
        ),
        pytest.param(
            [("Content-Type", "application/json"), ("Content-Type", "text/event-stream")],
            True,
            id="the last type wins",
        ),
        pytest.param(
            [("Content-Type", "text/event-stream"), ("Content-Type", "application/json")],
            False,
            id="the last type wins, either way",
        ),
        pytest.param({"Content-Type": "text/event-stream, */*"}, True, id="*/* is no type"),
        pytest.param({"Content-Type": "text/event-stream, junk"}, True, id="junk is no type"),
        pytest.param(
            {"Content-Type": 'text/event-stream; note="a, text/plain"'},
            True,
            id="a comma inside a quoted parameter",
        ),
    ],
)
def test_is_event_stream_reads_content_type_as_fetch_does(headers: Any, expected: bool) -> None:
    """The header's name and value in any case; on several lines (or as a list), the last
    value that is a media type wins, as the Fetch standard reads Content-Type."""
    assert is_event_stream(headers) is expected


@pytest.mark.parametrize(
    ("chunks", "committed"),
    [
        ([CREATED], False),
        ([CREATED, DELTA], True),
        ([CREATED, ITEM], False),  # OpenAI's order: no text yet
        ([CREATED, ITEM, PART], False),
        ([CREATED, frame({"type": "response.output_text.done", "sequence_number": 1})], True),
        ([b"event: message\ndata: {"], False),  # half an event
    ],
)
def test_commit_rule(chunks: list[bytes], committed: bool) -> None:
    """A stream is committed to the caller once an event past the preamble arrived."""
    c = check()
    for chunk in chunks:
        assert c.feed(chunk) is None
    assert c.committed is committed


def test_preamble_is_an_option() -> None:
    """An adapter may narrow or widen the preamble: here only response.created precedes text."""
    c = check(preamble={"response.created"})
    c.feed(CREATED + ITEM)
    assert c.committed


def test_commit_after_max_prime_bytes() -> None:
    """A stream with no content event within MAX_PRIME_BYTES is handed to the caller anyway."""
    c = check()
    c.feed(b": " + b"x" * MAX_PRIME_BYTES + b"\n")
    assert c.committed


@pytest.mark.parametrize(
    ("chunks", "kind"),
    [
        ([CREATED, DELTA, COMPLETED], None),
        ([CREATED, TIMEOUT_EVENT], rp.Kind.UPSTREAM_TIMEOUT),
        ([CREATED, DELTA], rp.Kind.INCOMPLETE_STREAM),
        ([CREATED, b'event: error\ndata: {"message": "no code"}\n\n'], rp.Kind.STREAM_ERROR),
        ([CREATED, b"event: error\ndata: not json\n\n"], rp.Kind.STREAM_ERROR),
        ([CREATED, frame({"type": "error", "code": "mystery"})], rp.Kind.STREAM_ERROR),
    ],
)
def test_stream_verdicts(chunks: list[bytes], kind: rp.Kind | None) -> None:
    """Every way a stream ends has a verdict; every failure has a failure kind."""
    c = check()
    problem = None
    for chunk in chunks:
        problem = c.feed(chunk) or problem
    problem = problem or c.close()
    if kind is None:
        assert problem is None
        return
    assert problem is not None
    assert FAST.classify(200, problem.code, failure=problem.failure).kind == kind
    assert c.error(problem).kind == kind


def test_completed_stream_survives_a_lost_connection() -> None:
    """After response.completed, a broken connection is no problem at all."""
    c = check()
    c.feed(CREATED + DELTA + COMPLETED)
    assert c.lost(ConnectionResetError()) is None


def test_lost_connection_before_completion_is_incomplete() -> None:
    """A connection lost before response.completed is an incomplete stream (retryable)."""
    c = check()
    c.feed(CREATED + DELTA)
    problem = c.lost(ConnectionResetError())
    assert problem is not None
    assert problem.failure is rp.Failure.INCOMPLETE_STREAM


def test_guard_raises_after_delivering_what_came_before() -> None:
    """guard(): the bytes before the failure reach the caller, then rp.StreamError."""
    c = check()
    got: list[bytes] = []
    with pytest.raises(rp.StreamError) as info:
        for chunk in c.guard([CREATED, DELTA, TIMEOUT_EVENT]):
            got.append(chunk)
    assert got[:2] == [CREATED, DELTA]
    assert info.value.code == "upstream_timeout"


def test_guard_ignores_a_break_after_completion() -> None:
    """guard(): a transport error after response.completed ends the stream quietly."""

    def chunks() -> Any:
        yield CREATED + DELTA + COMPLETED
        raise ConnectionResetError

    assert b"".join(check().guard(chunks())) == CREATED + DELTA + COMPLETED


def test_guard_turns_a_break_into_a_stream_error() -> None:
    """guard(): a transport error before completion raises StreamError from it."""

    def chunks() -> Any:
        yield CREATED + DELTA
        raise ConnectionResetError

    with pytest.raises(rp.StreamError) as info:
        list(check().guard(chunks()))
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert info.value.kind == rp.Kind.INCOMPLETE_STREAM


def test_guard_replays_primed_chunks_without_judging_them_twice() -> None:
    """Chunks fed while priming are yielded first and not fed again (no false seq gap)."""
    c = check()
    c.feed(CREATED)
    c.feed(DELTA)
    out = b"".join(c.guard([COMPLETED], primed=[CREATED, DELTA]))
    assert out == CREATED + DELTA + COMPLETED


async def _collect(c: StreamCheck, chunks: list[bytes]) -> bytes:
    async def source() -> Any:
        for chunk in chunks:
            yield chunk

    return b"".join([chunk async for chunk in c.aguard(source())])


def test_aguard_is_guard_for_async_streams() -> None:
    """aguard(): the same verdicts for an async byte stream."""
    import asyncio  # noqa: PLC0415

    ok = asyncio.run(_collect(check(), [CREATED, DELTA, COMPLETED]))
    assert ok == CREATED + DELTA + COMPLETED
    with pytest.raises(rp.StreamError):
        asyncio.run(_collect(check(), [CREATED, DELTA]))


# -- content decoding ------------------------------------------------------------------------


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


STREAM = CREATED + DELTA + COMPLETED


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("identity", lambda b: b),
        ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b))),
    ],
)
def test_encoded_stream_is_judged_decoded(encoding: str, encode: Any) -> None:
    """A complete stream, however encoded, is a success when judged decoded in any chunking."""
    data = encode(STREAM)
    for size in (1, 7, len(data)):
        c = StreamCheck(FAST, content_encoding=encoding)
        for i in range(0, len(data), size):
            assert c.feed(data[i : i + size]) is None
        assert c.close() is None


@pytest.mark.parametrize("encoding", ["compress", "gzip"])
def test_undecodable_stream_cannot_be_vouched_for(encoding: str) -> None:
    """An unknown coding, or corrupt gzip, is a stream that cannot be verified."""
    c = StreamCheck(FAST, content_encoding=encoding)
    c.feed(b"\x00\x01definitely not gzip")
    problem = c.close()
    assert problem is not None
    assert problem.failure is rp.Failure.INCOMPLETE_STREAM


def test_decode_prefix_is_bounded() -> None:
    """A decompression bomb in an error body yields at most the limit, in bounded steps."""
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    out = ContentDecoder("gzip").decode_prefix(bomb, MAX_ERROR_BODY)
    assert len(out) == MAX_ERROR_BODY


def test_decoder_never_raises_on_garbage() -> None:
    """Corrupt input sets ``failed`` instead of raising."""
    d = ContentDecoder("deflate")
    assert list(d.decode(b"\xff" * 64)) == []
    assert d.failed


# -- the seam never raises on remote data ---------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(
        st.binary(max_size=200) | st.sampled_from([CREATED, DELTA, COMPLETED, TIMEOUT_EVENT])
    ),
    encoding=st.sampled_from([None, "gzip", "deflate", "br", "identity"]),
)
def test_stream_check_never_raises(data: list[bytes], encoding: str | None) -> None:
    """Arbitrary bytes in arbitrary chunks give a classified problem or None, never an exception."""
    c = StreamCheck(FAST, content_encoding=encoding)
    for chunk in data:
        c.feed(chunk)
    problem = c.close()
    if problem is not None:
        assert FAST.classify(200, problem.code, failure=problem.failure).kind != rp.Kind.SUCCESS


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(100, 599),
    body=st.binary(max_size=300),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "retry-after-ms", "Content-Type", "x"]),
        st.text(max_size=40),
    ),
    encoding=st.sampled_from([None, "gzip", "deflate"]),
)
def test_judge_never_raises(
    status: int, body: bytes, headers: dict[str, str], encoding: str | None
) -> None:
    """The exchange step takes any status, headers and body prefix without raising."""
    outcome = (
        AdapterOptions(policy=FAST).loop().judge(status, headers, body, content_encoding=encoding)
    )
    if outcome is not None:
        assert FAST.classify(outcome.status, outcome.code).kind != rp.Kind.SUCCESS


# -- the guard raises in place of the failing event -----------------------------------------


def _frame(obj: dict[str, Any], newline: bytes = b"\n") -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return b"event: message" + newline + b"data: " + data + newline + newline


@settings(max_examples=300, deadline=None)
@given(
    n_deltas=st.integers(0, 6),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    error_kind=st.sampled_from(["error", "gap"]),
)
def test_guard_hands_over_every_event_before_the_failure_and_never_it(
    n_deltas: int, newline: bytes, cuts: list[int], error_kind: str
) -> None:
    """However the stream falls into chunks, the guard yields a prefix of it that holds
    every complete event before the failing one and no complete failing frame."""
    good = [{"type": "response.created", "sequence_number": 0}] + [
        {"type": "response.output_text.delta", "sequence_number": i, "delta": f"d{i}"}
        for i in range(1, n_deltas + 1)
    ]
    bad: dict[str, Any] = (
        {"type": "error", "sequence_number": n_deltas + 1, "code": "upstream_error"}
        if error_kind == "error"
        else {"type": "response.output_text.delta", "sequence_number": n_deltas + 5}
    )
    wire = b"".join(_frame(e, newline) for e in good)
    full = wire + _frame(bad, newline)
    points = sorted({c % (len(full) + 1) for c in cuts} | {0, len(full)})
    chunks = [full[a:b] for a, b in itertools.pairwise(points) if b > a]
    check = StreamCheck(rp.EUGPT)
    got = bytearray()
    with pytest.raises(rp.StreamError):
        for piece in check.guard(iter(chunks)):
            got += piece
    assert full.startswith(bytes(got))
    assert len(got) >= len(wire) - len(newline)  # at most a line end of the last frame is held
    decoder = SSEDecoder()
    seen = [json.loads(e.data) for e in decoder.feed(bytes(got))]
    if len(got) >= len(wire):
        assert seen == good
    assert bad not in seen


@pytest.mark.parametrize(
    ("chunk", "previous", "expected"),
    [
        (b'event: message\ndata: {"a":1}\n\nevent: message\ndata: ERR\n\n', b"", 30),
        (b"data: ERR\n\n", b'data: {"a":1}\n\n', 0),
        (b"\nevent: message\ndata: ERR\n\n", b'data: {"a":1}\n', 1),
        (b"\r\nevent: message\r\ndata: ERR\r\n\r\n", b'data: {"a":1}\r', 2),
        (b'data: {"a":1}\r\n\r\ndata:ERR\r\n\r\n', b"", 17),
        (b"RR\n\n", b"data: E", 0),  # the frame began in the chunk before
        (b'data: {"x":"ERR"}\n\ndata: ERR\n\n', b"", 19),  # the needle inside another frame
    ],
    ids=["two-frames", "frame-first", "straddle-lf", "straddle-crlf", "crlf", "split", "decoy"],
)
def test_bytes_before_event_cuts_at_the_failing_frame(
    chunk: bytes, previous: bytes, expected: int
) -> None:
    """The cut lands at the start of the failing frame, wherever its boundary falls."""
    assert bytes_before_event(chunk, "ERR", previous) == chunk[:expected]
