"""Throughput of retrypolicy's SSE decoder and stream verdict against httpx-sse.

Run: ``python bench/bench_sse.py [--mb 10] [--large-mb 50] [--repeat 9]`` (needs the
``bench`` extra).

Two scenarios, each timed interleaved so that drift in machine load hits every
contender alike:

1. *small frames*: a ~10 MB EU GPT response stream of realistic frames
   (``response.created``, text deltas with ASCII, non-ASCII and JSON-escaped text,
   ``response.completed``) cut into random 4-64 KiB chunks (fixed seed);
2. *large frames*: a ~50 MB stream shaped exactly like ``Reply.large_stream``
   (``response.created``, 64 KiB ``response.output_text.delta`` frames, the last one
   trimmed, ``response.completed``) cut into random 1-16 KiB chunks (fixed seed), so
   nearly every frame arrives split over several reads.

The contenders:

(a) httpx-sse: bytes -> incremental UTF-8 text (what ``httpx.Response.iter_text``
    does) -> ``SSELineDecoder`` -> ``line.rstrip("\\n")`` -> ``SSEDecoder.decode``,
    exactly the path of ``EventSource.iter_sse`` minus the HTTP machinery;
(b) a naive incremental line parser written plainly, as a reference (it builds the
    same event objects as (c) but skips CR-only line ends, BOM, id, retry and limits);
(c) ``retrypolicy._sse.SSEDecoder``;
(d) ``retrypolicy._sse.StreamMonitor`` (decode + verdict);
(e) ``retrypolicy._sse._exact.ExactDecoder``: (c) without its fast path, line by line
    (what the fast path buys; skipped on versions before the package split).

Reports, per scenario, the median MB/s of each and the ratio to httpx-sse.
"""

from __future__ import annotations

import argparse
import codecs
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable

from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder

from retrypolicy._sse import SSEDecoder, SSEEvent, StreamMonitor

try:
    from retrypolicy._sse._exact import ExactDecoder
except ImportError:  # before _sse became a package: no exact decoder to compare with
    ExactDecoder = None  # type: ignore[assignment,misc]

WORDS = (
    *("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "the"),
    *("model", "keeps", "on", "writing", "and", "writing", "and", "writing"),
    *("über", "naïve", "café", "Straße", "déjà", "東京", "😀", "résumé", "—", "«quoted»"),
    *('"escaped"', "tab\there", "line\nbreak", "back\\slash"),
)


def build_stream(target_bytes: int, seed: int = 1) -> tuple[bytes, int]:
    """A stream of about *target_bytes*: created, deltas, completed. Returns (bytes, events)."""
    rng = random.Random(seed)
    frames: list[bytes] = []

    def frame(payload: dict[str, object]) -> None:
        data = json.dumps(payload, ensure_ascii=rng.random() < 0.5, separators=(",", ":"))
        frames.append(f"event: message\ndata: {data}\n\n".encode())

    seq = 0
    frame(
        {
            "type": "response.created",
            "sequence_number": seq,
            "response": {"id": "resp_1", "status": "in_progress"},
        }
    )
    size = len(frames[0])
    while size < target_bytes:
        seq += 1
        delta = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        frame({"type": "response.output_text.delta", "sequence_number": seq, "delta": delta})
        size += len(frames[-1])
    seq += 1
    frame(
        {
            "type": "response.completed",
            "sequence_number": seq,
            "response": {"id": "resp_1", "status": "completed"},
        }
    )
    return b"".join(frames), len(frames)


# The shape of ``Reply.large_stream`` (retrypolicy.testing._replies._LargeStreamReply),
# rebuilt here so the bench measures the decoder, not the fake server.
LARGE_DELTA = 64 * 1024
LARGE_FILLER = (b"lorem ipsum dolor sit amet " * (LARGE_DELTA // 27 + 1))[:LARGE_DELTA]


def build_large_stream(target_bytes: int) -> tuple[bytes, int]:
    """What ``Reply.large_stream(target_bytes)`` sends: (bytes, events)."""

    def frame(payload: dict[str, object]) -> bytes:
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        return f"event: message\ndata: {data}\n\n".encode()

    response: dict[str, object] = {"id": "resp_1", "object": "response", "status": "in_progress"}
    frames = [frame({"type": "response.created", "sequence_number": 0, "response": response})]
    sent = len(frames[0])
    prefix = b'event: message\ndata: {"type":"response.output_text.delta","sequence_number":'
    tail = b'"}\n\n'
    sequence = 1
    chars = 0
    while sent < target_bytes:
        head = prefix + str(sequence).encode() + b',"delta":"'
        size = max(1, min(LARGE_DELTA, target_bytes - sent - len(head) - len(tail)))
        frames.append(head + LARGE_FILLER[:size] + tail)
        sent += len(frames[-1])
        chars += size
        sequence += 1
    done = {**response, "status": "completed", "output_chars": chars}
    frames.append(
        frame({"type": "response.completed", "sequence_number": sequence, "response": done})
    )
    return b"".join(frames), len(frames)


def chunked(data: bytes, seed: int = 2, low: int = 4 * 1024, high: int = 64 * 1024) -> list[bytes]:
    """*data* cut at random positions into chunks of *low*..*high* bytes."""
    rng = random.Random(seed)
    out = []
    i = 0
    while i < len(data):
        n = rng.randint(low, high)
        out.append(data[i : i + n])
        i += n
    return out


def run_httpx_sse(chunks: list[bytes]) -> list[tuple[str, str]]:
    """(a) httpx-sse's own line splitting and decoder, fed as ``iter_sse`` feeds them."""
    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = SSELineDecoder()
    decoder = HttpxSSEDecoder()
    out: list[tuple[str, str]] = []
    for chunk in chunks:
        for line in lines.decode(text_decoder.decode(chunk)):
            sse = decoder.decode(line.rstrip("\n"))
            if sse is not None:
                out.append((sse.event, sse.data))
    tail = text_decoder.decode(b"", True)
    for line in [*(lines.decode(tail) if tail else []), *lines.flush()]:
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            out.append((sse.event, sse.data))
    return out


def run_naive(chunks: list[bytes]) -> list[tuple[str, str]]:
    """(b) A plain incremental line parser: decode, split on LF, one branch per field.

    It builds the same :class:`SSEEvent` objects as (c), so (b) vs (c) compares parsing
    strategies; it skips what (c) must also do (CR-only line ends, BOM, id, retry, limits).
    """
    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buffer = ""
    event, data = "", []
    out: list[tuple[str, str]] = []
    for chunk in chunks:
        buffer += text_decoder.decode(chunk)
        *lines, buffer = buffer.split("\n")
        for raw in lines:
            line = raw.rstrip("\r")
            if not line:
                if data:
                    sse = SSEEvent(event or "message", "\n".join(data), None, None)
                    out.append((sse.event, sse.data))
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    return out


def run_ours(
    chunks: list[bytes], decoder_class: type[SSEDecoder] = SSEDecoder
) -> list[tuple[str, str]]:
    """(c) retrypolicy's SSEDecoder (or another class of decoder)."""
    decoder = decoder_class()
    out: list[tuple[str, str]] = []
    for chunk in chunks:
        out.extend([(e.event, e.data) for e in decoder.feed(chunk)])
    out.extend([(e.event, e.data) for e in decoder.close()])
    return out


def run_exact(chunks: list[bytes]) -> list[tuple[str, str]]:
    """(e) retrypolicy's ExactDecoder: the decoder without its fast path."""
    return run_ours(chunks, ExactDecoder)  # type: ignore[arg-type]


def run_monitor(chunks: list[bytes]) -> int:
    """(d) retrypolicy's StreamMonitor: decode and judge."""
    monitor = StreamMonitor()
    for chunk in chunks:
        problem = monitor.feed(chunk)
        assert problem is None, problem
    assert monitor.finish() is None
    return monitor.events_seen


def median_seconds(
    contenders: dict[str, Callable[[list[bytes]], object]], chunks: list[bytes], repeat: int
) -> dict[str, float]:
    """Interleave the contenders *repeat* times; the median wall time of each."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn(chunks)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def scenario(title: str, data: bytes, n_events: int, chunks: list[bytes], repeat: int) -> None:
    """Check every contender agrees on *chunks*, time them, print a table."""
    reference = run_httpx_sse(chunks)
    assert len(reference) == n_events
    assert run_naive(chunks) == reference
    assert run_ours(chunks) == reference
    assert run_monitor(chunks) == n_events

    contenders: dict[str, Callable[[list[bytes]], object]] = {
        "(a) httpx-sse SSELineDecoder+SSEDecoder": run_httpx_sse,
        "(b) naive line parser": run_naive,
        "(c) retrypolicy SSEDecoder": run_ours,
        "(d) retrypolicy StreamMonitor": run_monitor,
    }
    if ExactDecoder is not None:
        assert run_exact(chunks) == reference
        contenders["(e) retrypolicy ExactDecoder"] = run_exact
    medians = median_seconds(contenders, chunks, repeat)

    mb = len(data) / 1_000_000
    base = medians["(a) httpx-sse SSELineDecoder+SSEDecoder"]
    print(f"{title}: {mb:.1f} MB, {n_events} events, {len(chunks)} chunks")
    print()
    print(f"| {'contender':<40} | {'median ms':>9} | {'MB/s':>7} | {'vs httpx-sse':>12} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 9}|{'-' * 14}|")
    for name, seconds in medians.items():
        print(
            f"| {name:<40} | {seconds * 1000:>9.1f} | {mb / seconds:>7.1f} "
            f"| {base / seconds:>11.2f}x |"
        )
    print()


def main(argv: list[str] | None = None) -> None:
    """Run both scenarios and print a table for each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mb", type=float, default=10.0, help="small-frame stream size in MB (1e6 bytes)"
    )
    parser.add_argument(
        "--large-mb", type=float, default=50.0, help="large-frame stream size in MB (1e6 bytes)"
    )
    parser.add_argument("--repeat", type=int, default=9, help="interleaved runs (median)")
    args = parser.parse_args(argv)

    print(
        f"Python {platform.python_version()} on {platform.machine()}; "
        f"median of {args.repeat} interleaved runs"
    )
    print()
    data, n_events = build_stream(int(args.mb * 1_000_000))
    scenario("small frames, random 4-64 KiB chunks", data, n_events, chunked(data), args.repeat)
    data, n_events = build_large_stream(int(args.large_mb * 1_000_000))
    scenario(
        "64 KiB frames (Reply.large_stream), random 1-16 KiB chunks",
        data,
        n_events,
        chunked(data, seed=3, low=1024, high=16 * 1024),
        args.repeat,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
