"""Fuzz the transport seam: arbitrary bytes, in arbitrary chunks, never raise.

The stream check and the exchange step read remote data; whatever a server or a
broken proxy sends, they answer with a classified problem (or None), never an
exception, and never a ``success`` for a failure. Hypothesis drives both with
structured junk (real frames, truncated frames, gzip of either, random bytes) for
``--examples`` examples each (default 100,000) and prints the counts.

    python bench/fuzz_seam.py [--examples N]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import time
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import retrypolicy as rp
from retrypolicy.transport import AdapterOptions, StreamCheck

POLICY = rp.EUGPT
FRAMES = [
    b'event: message\ndata: {"type":"response.created","sequence_number":0}\n\n',
    b'event: message\ndata: {"type":"response.output_text.delta","sequence_number":1}\n\n',
    b'event: message\ndata: {"type":"response.completed","sequence_number":2}\n\n',
    b'event: message\ndata: {"type":"error","code":"upstream_timeout","message":"x"}\n\n',
    b"event: error\ndata: {not json\n\n",
    b'data: {"type":"error"}\n\n',
    b"\r\n",
    b":comment\n",
]

pieces = st.one_of(
    st.binary(max_size=300), st.sampled_from(FRAMES), st.text(max_size=80).map(str.encode)
)
encodings = st.sampled_from([None, "identity", "gzip", "deflate", "br", "gzip, deflate", "x-gzip"])


def encode(data: bytes, encoding: str | None, corrupt: bool) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        data = gzip.compress(data)
    elif encoding == "deflate":
        data = zlib.compress(data)
    elif encoding == "gzip, deflate":
        data = zlib.compress(gzip.compress(data))
    if corrupt and data:
        data = (
            data[: len(data) // 2]
            + bytes([data[len(data) // 2] ^ 0xFF])
            + data[len(data) // 2 + 1 :]
        )
    return data


counts = {"stream": 0, "stream_problems": 0, "judge": 0, "judge_failures": 0}


def fuzz_stream(examples: int) -> None:
    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        parts=st.lists(pieces, max_size=20),
        encoding=encodings,
        corrupt=st.booleans(),
        cuts=st.lists(st.integers(0, 4000), max_size=8),
        lost=st.booleans(),
    )
    def run(
        parts: list[bytes], encoding: str | None, corrupt: bool, cuts: list[int], lost: bool
    ) -> None:
        data = encode(b"".join(parts), encoding, corrupt)
        bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        check = StreamCheck(POLICY, content_encoding=encoding)
        problem = None
        for a, b in itertools.pairwise(bounds):
            problem = check.feed(data[a:b]) or problem
            _ = check.committed
        problem = check.lost(ConnectionResetError()) if lost else check.close()
        counts["stream"] += 1
        if problem is not None:
            counts["stream_problems"] += 1
            kind = POLICY.classify(200, problem.code, failure=problem.failure).kind
            assert kind != rp.Kind.SUCCESS, problem
            assert isinstance(check.error(problem), rp.StreamError)

    run()


def fuzz_judge(examples: int) -> None:
    loop = AdapterOptions(policy=POLICY).loop()

    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        status=st.integers(0, 1000),
        body=st.one_of(
            st.binary(max_size=500),
            st.builds(
                lambda o: json.dumps(o).encode(),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: (
                        st.lists(inner, max_size=4)
                        | st.dictionaries(
                            st.sampled_from(["detail", "error", "code", "type", "message"]),
                            inner,
                            max_size=4,
                        )
                    ),
                    max_leaves=12,
                ),
            ),
        ),
        headers=st.dictionaries(
            st.sampled_from(["Retry-After", "retry-after-ms", "Content-Type", "Content-Encoding"]),
            st.text(max_size=60),
            max_size=4,
        ),
        encoding=encodings,
        corrupt=st.booleans(),
    )
    def run(
        status: int, body: bytes, headers: dict[str, str], encoding: str | None, corrupt: bool
    ) -> None:
        outcome = loop.judge(
            status, headers, encode(body, encoding, corrupt), content_encoding=encoding
        )
        counts["judge"] += 1
        if outcome is not None:
            counts["judge_failures"] += 1
            assert POLICY.classify(outcome.status, outcome.code).kind != rp.Kind.SUCCESS

    run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    args = parser.parse_args()
    started = time.perf_counter()
    fuzz_stream(args.examples)
    fuzz_judge(args.examples)
    took = time.perf_counter() - started
    print(
        f"stream check: {counts['stream']:,} examples "
        f"({counts['stream_problems']:,} with a problem); "
        f"exchange step: {counts['judge']:,} examples ({counts['judge_failures']:,} failures); "
        f"no exception; {took:.0f} s"
    )


if __name__ == "__main__":
    main()
