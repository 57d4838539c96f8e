"""aiohttp on the success path: a plain ClientSession against one with RetryMiddleware.

Run: python bench/bench_aiohttp.py [--number 100] [--rounds 31] [--stream-mb 20]

1. Requests per second, POST with a 200 JSON reply and with a short 200 event stream
   (the fake's default), one keep-alive session per case against the fake EU GPT
   server on 127.0.0.1: ``aiohttp.ClientSession()`` and
   ``aiohttp.ClientSession(middlewares=(RetryMiddleware(),))``, the body read with
   ``await response.read()``. Interleaved rounds, medians, the ratio to plain.
2. The middleware's own time per request, free of the server's noise: timing
   middlewares just outside and just inside ``RetryMiddleware`` see the same request;
   the difference (µs) is what it adds, shown against the plain request's median time.
   For the stream this includes reading the stream up to its first content event.
3. Stream throughput: a ``Reply.large_stream`` read with ``iter_any()`` plain and
   through the middleware's check, in MB/s.

The fake server runs in a process of its own (``multiprocessing``), so that it does not
share the client's GIL. The target: RetryMiddleware within 5% of plain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import aiohttp
from _timing import interleaved, table

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_aiohttp import RetryMiddleware

PLAIN = "plain aiohttp.ClientSession"
RETRY = "ClientSession + RetryMiddleware"
Body = dict[str, object]
Session = aiohttp.ClientSession


class Stopwatch:
    """A middleware that adds up the time spent below it."""

    def __init__(self) -> None:
        self.samples: list[int] = []

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        started = time.perf_counter_ns()
        try:
            return await handler(request)
        finally:
            self.samples.append(time.perf_counter_ns() - started)


def one(
    loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession, url: str, body: Body
) -> Callable[[], object]:
    async def request() -> bytes:
        async with session.post(url, json=body) as response:
            return await response.read()

    return lambda: loop.run_until_complete(request())


def own_time_us(loop: asyncio.AbstractEventLoop, url: str, body: Body, number: int) -> float:
    """Median µs spent in RetryMiddleware itself (outside minus inside), per request."""
    outside, inside = Stopwatch(), Stopwatch()
    session = loop.run_until_complete(_session(outside, RetryMiddleware(), inside))
    call = one(loop, session, url, body)
    for _ in range(number):
        call()
    loop.run_until_complete(session.close())
    own = [o - i for o, i in zip(outside.samples, inside.samples, strict=True)]
    return statistics.median(own[number // 10 :]) / 1000


def stream_mb_s(
    url: str, size: int, loop: asyncio.AbstractEventLoop, clients: dict[str, Session]
) -> dict[str, float]:
    """Median MB/s reading an event stream of *size* bytes with ``iter_any()``, interleaved."""

    async def read(session: Session) -> int:
        total = 0
        async with session.post(url, json={"input": "hi"}) as response:
            async for chunk in response.content.iter_any():
                total += len(chunk)
        return total

    def run(session: Session) -> Callable[[], object]:
        return lambda: loop.run_until_complete(read(session))

    runs = {name: run(session) for name, session in clients.items()}
    return {name: size / ns * 1e3 for name, ns in interleaved(runs, number=1, rounds=7).items()}


def _serve(default: Reply | None, conn: Connection) -> None:
    with FakeEUGPT(default=default) as server:
        conn.send(server.responses_url)
        conn.recv()  # until the parent is done


@contextlib.contextmanager
def served(default: Reply | None = None) -> Iterator[str]:
    """The URL of a fake EU GPT server running in a process of its own."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(default, child), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(5)


async def _session(*middlewares: aiohttp.ClientMiddlewareType) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(middlewares=middlewares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--number", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--stream-mb", type=int, default=20)
    args = parser.parse_args()
    rp.instrumentation.set_hooks([])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    cases: tuple[tuple[str, Body], ...] = (
        ("POST, 200 JSON", {"input": "hi", "stream": False}),
        ("POST, 200 event stream of 5 events (the fake's default), read whole", {"input": "hi"}),
    )
    # with an empty script the fake answers JSON for "stream": false, else an event stream
    with served() as url:
        clients = {
            PLAIN: loop.run_until_complete(_session()),
            RETRY: loop.run_until_complete(_session(RetryMiddleware())),
        }
        print(f"Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}\n")
        for title, body in cases:
            runs = {name: one(loop, s, url, body) for name, s in clients.items()}
            results = interleaved(runs, number=args.number, rounds=args.rounds)
            own = own_time_us(loop, url, body, args.number * 10)
            print(title)
            print(table(results, baseline=PLAIN))
            for name, ns in results.items():
                print(f"{name:<34} {1e9 / ns:8.0f} requests/s")
            share = own * 1000 / results[PLAIN]
            print(f"RetryMiddleware's own time: {own:.1f} µs/request = {share:.1%} of plain\n")

        size = args.stream_mb * 1_000_000
        with served(Reply.large_stream(size)) as big:
            mb = stream_mb_s(big, size, loop, clients)
        print(f"event stream of {args.stream_mb} MB read with iter_any(), median of 7 rounds")
        for name, value in mb.items():
            print(f"{name:<34} {value:8.0f} MB/s  {value / mb[PLAIN]:6.2f}x plain")
        for session in clients.values():
            loop.run_until_complete(session.close())
    loop.close()


if __name__ == "__main__":
    main()
