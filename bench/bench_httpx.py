"""httpx on the success path: RetryTransport against a plain client and httpx-retries.

Run: python bench/bench_httpx.py [--stream-mb 50]

1. Requests per second, POST with a 200 JSON reply, one keep-alive client per case
   against the fake EU GPT server on 127.0.0.1: plain ``httpx.Client()``,
   ``httpx.Client(transport=RetryTransport())`` and ``httpx_retries.RetryTransport``
   (POST allowed, so that it does the same work); then the same for the async
   clients. Interleaved rounds, medians, ratios to the plain client.
2. The transport's own cost, without the network: the same three over
   ``httpx.MockTransport`` answering the canned 200 at once (µs per request added), as
   medians and as the best round (load only ever adds time: on a shared machine the
   best round is the steadier figure for a difference of a few µs).
   Then each wrapper's ``handle_request`` alone over an inner transport that hands back a
   prebuilt response, against a pass-through wrapper: the cost the transport itself adds,
   free of the client's noise, as a share of the MockTransport request.
3. Stream throughput: a ``Reply.large_stream`` read with ``iter_raw`` through a plain
   client and through ``RetryTransport`` (whose stream guard decodes and checks every
   event), in MB/s.

The server runs in this process (another thread, same GIL), so absolute numbers
include its cost; the ratios are what to look at.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx
import httpx_retries
from _timing import interleaved, per_call_ns, table

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_httpx import AsyncRetryTransport, RetryTransport

BODY = {"input": "hi", "stream": False}
METHODS = ["GET", "POST"]


def _their_retry() -> httpx_retries.Retry:
    return httpx_retries.Retry(total=5, allowed_methods=METHODS)


def sync_cases(url: str) -> dict[str, Callable[[], object]]:
    clients = {
        "plain httpx.Client": httpx.Client(),
        "retrypolicy RetryTransport": httpx.Client(transport=RetryTransport()),
        "httpx_retries.RetryTransport": httpx.Client(
            transport=httpx_retries.RetryTransport(retry=_their_retry())
        ),
    }
    return {name: (lambda c=c: c.post(url, json=BODY)) for name, c in clients.items()}


def async_cases(url: str, loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[], object]]:
    clients = {
        "plain httpx.AsyncClient": httpx.AsyncClient(),
        "retrypolicy AsyncRetryTransport": httpx.AsyncClient(transport=AsyncRetryTransport()),
        "httpx_retries.RetryTransport (async)": httpx.AsyncClient(
            transport=httpx_retries.RetryTransport(retry=_their_retry())
        ),
    }
    return {
        name: (lambda c=c: loop.run_until_complete(c.post(url, json=BODY)))
        for name, c in clients.items()
    }


class PassThrough(httpx.BaseTransport):
    """The floor: a transport that only hands the request on (any wrapper pays this)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)


class Canned(httpx.BaseTransport):
    """An inner transport that hands back one prebuilt 200: nothing but the wrapper runs."""

    def __init__(self, payload: bytes) -> None:
        self.response = httpx.Response(
            200, content=payload, headers={"Content-Type": "application/json"}
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.response


def own_cases(payload: bytes) -> dict[str, Callable[[], object]]:
    """Each wrapper's ``handle_request`` alone, over :class:`Canned` (no client around it)."""
    request = httpx.Request("POST", "http://api.invalid/v1/responses", json=BODY)
    transports: dict[str, httpx.BaseTransport] = {
        "pass-through wrapper": PassThrough(Canned(payload)),
        "RetryTransport": RetryTransport(transport=Canned(payload)),
        "httpx_retries.RetryTransport": httpx_retries.RetryTransport(
            transport=Canned(payload), retry=_their_retry()
        ),
    }
    return {name: (lambda t=t: t.handle_request(request)) for name, t in transports.items()}


def mock_cases(payload: bytes) -> dict[str, Callable[[], object]]:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=payload, headers={"Content-Type": "application/json"})

    def mock() -> httpx.MockTransport:
        return httpx.MockTransport(answer)

    clients = {
        "plain, MockTransport": httpx.Client(transport=mock()),
        "pass-through wrapper": httpx.Client(transport=PassThrough(mock())),
        "RetryTransport(MockTransport)": httpx.Client(transport=RetryTransport(transport=mock())),
        "httpx_retries(MockTransport)": httpx.Client(
            transport=httpx_retries.RetryTransport(transport=mock(), retry=_their_retry())
        ),
    }
    url = "http://api.invalid/v1/responses"
    return {name: (lambda c=c: c.post(url, json=BODY)) for name, c in clients.items()}


def best_round(
    cases: dict[str, Callable[[], object]], *, number: int, rounds: int
) -> dict[str, float]:
    """The fastest round's ns per call of each case, the cases run in turn in every round."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, fn in cases.items():
            best[name] = min(best[name], per_call_ns(fn, number))
    return best


def per_second(results: dict[str, float]) -> str:
    return "\n".join(f"{name:<38} {1e9 / ns:8.0f} requests/s" for name, ns in results.items())


def stream_mb_s(server: FakeEUGPT, size: int, rounds: int) -> dict[str, float]:
    """Median MB/s reading *size* bytes of event stream, per client, interleaved."""
    clients = {
        "plain client, iter_raw": httpx.Client(timeout=60),
        "RetryTransport (guarded), iter_raw": httpx.Client(transport=RetryTransport(), timeout=60),
    }
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            server.script(Reply.large_stream(size))
            started = time.perf_counter()
            total = 0
            with client.stream("POST", server.responses_url, json={"input": "hi"}) as response:
                for chunk in response.iter_raw():
                    total += len(chunk)
            samples[name].append(total / (time.perf_counter() - started) / 1e6)
    for client in clients.values():
        client.close()
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stream-mb", type=int, default=50)
    parser.add_argument("--number", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rp.instrumentation.set_hooks([])
    reply = Reply.json(200, {"id": "resp_1", "object": "response", "output_text": "ok"})
    with FakeEUGPT(default=reply) as server:
        url = server.responses_url
        print(f"Python {sys.version.split()[0]}, httpx {httpx.__version__}; POST, 200 JSON\n")
        results = interleaved(sync_cases(url), number=args.number, rounds=args.rounds)
        print(table(results, baseline="plain httpx.Client"))
        print(per_second(results), "\n")

        loop = asyncio.new_event_loop()
        try:
            results = interleaved(async_cases(url, loop), number=args.number, rounds=args.rounds)
        finally:
            loop.close()
        print(table(results, baseline="plain httpx.AsyncClient"))
        print(per_second(results), "\n")

        payload = b'{"id":"resp_1","object":"response","output_text":"ok"}'
        cases = mock_cases(payload)
        results = interleaved(cases, number=args.number * 5, rounds=args.rounds)
        print(table(results, baseline="plain, MockTransport"))
        best = best_round(cases, number=args.number, rounds=args.rounds * 4)
        base, best_base = results["plain, MockTransport"], best["plain, MockTransport"]
        for name, ns in results.items():
            print(
                f"{name:<38} {(ns - base) / 1000:+8.1f} µs/request over plain (median),"
                f" {(best[name] - best_base) / 1000:+6.1f} (best round)"
            )
        print()

        own = interleaved(own_cases(payload), number=args.number * 50, rounds=args.rounds)
        floor = own["pass-through wrapper"]
        print("the transport's own cost: handle_request over a canned 200, no client around it")
        for name, ns in own.items():
            extra = ns - floor
            print(
                f"{name:<38} {ns:8.0f} ns; {extra:+6.0f} ns over a pass-through ="
                f" {extra / base * 100:5.2f} % of a MockTransport request"
            )
        print()

        mb = stream_mb_s(server, args.stream_mb * 1_000_000, rounds=5)
        print(f"event stream of {args.stream_mb} MB, median of 5 rounds")
        base = mb["plain client, iter_raw"]
        for name, value in mb.items():
            print(f"{name:<38} {value:8.0f} MB/s  {value / base:6.2f}x plain")


if __name__ == "__main__":
    main()
