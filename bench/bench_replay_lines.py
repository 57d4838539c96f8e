"""Lines out of a replayed aiohttp body: what `async for line in response.content` costs
once the middleware has peeked at a response (its buffer handed out a line at a time).

Run: python bench/bench_replay_lines.py
"""

from __future__ import annotations

import asyncio
import io
import statistics
import time

from retrypolicy_aiohttp._middleware import CheckedContent


async def empty():  # type: ignore[no-untyped-def]
    return
    yield


async def replayed(body: bytes) -> float:
    """Seconds to read *body* a line at a time out of a replayed aiohttp body."""
    content = CheckedContent(None, [body], empty())  # type: ignore[arg-type]
    started = time.perf_counter()
    n = 0
    while line := await content.readline():
        n += len(line)
    assert n == len(body)
    return time.perf_counter() - started


def buffered(body: bytes) -> float:
    """The same out of an in-memory file (io.BytesIO.readline), the floor."""
    reader = io.BytesIO(body)
    started = time.perf_counter()
    n = 0
    while line := reader.readline():
        n += len(line)
    assert n == len(body)
    return time.perf_counter() - started


async def main() -> None:
    for events in (2_000, 20_000, 200_000):
        body = b"".join(b'data: {"delta": "token %d"}\n\n' % i for i in range(events))
        ours = statistics.median([await replayed(body) for _ in range(5)])
        floor = statistics.median([buffered(body) for _ in range(5)])
        print(
            f"{len(body) / 1e6:6.2f} MB, {2 * events} lines: replayed {ours * 1000:7.1f} ms, "
            f"BytesIO {floor * 1000:6.1f} ms ({ours / floor:.1f}x)"
        )


if __name__ == "__main__":
    asyncio.run(main())
