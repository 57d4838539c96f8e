"""The openai SDK on the success path: through our transport vs the SDK's own retries.

Run: python bench/bench_openai.py [--number 200] [--rounds 15] [--in-process]

``client.responses.create`` against the fake EU GPT server on 127.0.0.1 (keep-alive, the
same fake for every case), one client per case:

* ``SDK, own retries``: ``openai.OpenAI(max_retries=2)``, the SDK as it comes — the
  baseline the target is measured against (within 5%);
* ``SDK + RetryTransport``: ``retrypolicy_openai.client()``, ``max_retries=0``, every
  response judged by the policy (the 200 JSON answered at once, the event stream checked
  event by event);
* ``SDK, no retries``: ``openai.OpenAI(max_retries=0)``: on success it does what the
  baseline does, so its ratio shows the noise of the run.

Three workloads: a plain response (``stream=False``, 200 JSON), the same with the async
clients, and a streamed response (``stream=True``, 3 deltas, every event iterated).
Interleaved rounds, medians, ratios to the baseline.

Then, without the network (the loopback ratios move ±8% between two identical clients on
a loaded machine, more than what is measured): the transport's own cost per request —
``RetryTransport(MockTransport)`` against the bare ``httpx2.MockTransport``, both answering
the fake's own bodies at once, the body read to its end — next to the cost of one SDK
call over the same mock. Medians and best rounds (load only ever adds time: on a shared
machine the best round is the steadier figure for a difference of a few µs).

The server runs in its own process (``retrypolicy serve-fake``), as the API would: with
``--in-process`` it runs in a thread of this one instead, and shares its GIL with the
client, which penalises whatever makes the client wait for the server's next event (the
transport reads a stream's first events before it hands the response over).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx2
import openai
from _timing import interleaved, per_call_ns, table

import retrypolicy as rp
import retrypolicy_openai
from retrypolicy.testing import FakeEUGPT
from retrypolicy_httpx.httpx2 import RetryTransport

KEY = "eugpt_bench"
BASELINE = "SDK, own retries (max_retries=2)"
OURS = "SDK + RetryTransport (max_retries=0)"
BARE = "SDK, no retries (max_retries=0)"


@contextlib.contextmanager
def fake_server(*, in_process: bool) -> Iterator[str]:
    """The base URL of a fake EU GPT: a thread here, or ``retrypolicy serve-fake``."""
    if in_process:
        with FakeEUGPT() as server:  # stream=False: 200 JSON; else an event stream
            yield server.url + "/v1"
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "retrypolicy", "serve-fake", "--port", str(port), "--quiet"]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)  # noqa: S603 - ours
    try:
        for _ in range(200):  # up to 10 s for it to listen
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("retrypolicy serve-fake did not start")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)


def sync_clients(base_url: str) -> dict[str, openai.OpenAI]:
    return {
        BASELINE: openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=2),
        OURS: retrypolicy_openai.client(base_url=base_url, api_key=KEY),
        BARE: openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0),
    }


def async_clients(base_url: str) -> dict[str, openai.AsyncOpenAI]:
    return {
        BASELINE: openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=2),
        OURS: retrypolicy_openai.async_client(base_url=base_url, api_key=KEY),
        BARE: openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0),
    }


def plain(clients: dict[str, openai.OpenAI]) -> dict[str, Callable[[], object]]:
    def case(client: openai.OpenAI) -> Callable[[], object]:
        def call() -> object:
            response = client.responses.create(model="auto", input="hi", stream=False)
            assert response.output_text
            return response

        return call

    return {name: case(client) for name, client in clients.items()}


def streamed(clients: dict[str, openai.OpenAI]) -> dict[str, Callable[[], object]]:
    def case(client: openai.OpenAI) -> Callable[[], object]:
        def call() -> object:
            events = list(client.responses.create(model="auto", input="hi", stream=True))
            assert events[-1].type == "response.completed"
            return events

        return call

    return {name: case(client) for name, client in clients.items()}


def plain_async(
    clients: dict[str, openai.AsyncOpenAI], loop: asyncio.AbstractEventLoop
) -> dict[str, Callable[[], object]]:
    def case(client: openai.AsyncOpenAI) -> Callable[[], object]:
        async def call() -> object:
            response = await client.responses.create(model="auto", input="hi", stream=False)
            assert response.output_text
            return response

        return lambda: loop.run_until_complete(call())

    return {name: case(client) for name, client in clients.items()}


def captured(base_url: str) -> dict[bool, tuple[bytes, str]]:
    """The fake's bodies and content types for stream=False and stream=True, as served."""
    bodies: dict[bool, tuple[bytes, str]] = {}
    with httpx2.Client() as http:
        for stream in (False, True):
            body = {"model": "auto", "input": "hi", "stream": stream}
            response = http.post(base_url + "/responses", json=body)
            bodies[stream] = (response.content, response.headers["content-type"])
    return bodies


MOCK_URL = "http://api.invalid/v1"


def mock(bodies: dict[bool, tuple[bytes, str]]) -> httpx2.MockTransport:
    def answer(request: httpx2.Request) -> httpx2.Response:
        content, ctype = bodies[b'"stream":true' in request.content]
        return httpx2.Response(200, content=content, headers={"content-type": ctype})

    return httpx2.MockTransport(answer)


def transport_cases(
    bodies: dict[bool, tuple[bytes, str]], *, stream: bool
) -> dict[str, Callable[[], object]]:
    """One request through each transport, its body read to the end (as the SDK does)."""
    body = {"model": "auto", "input": "hi", "stream": stream}
    request = httpx2.Request("POST", MOCK_URL + "/responses", json=body)
    transports = {
        "MockTransport": mock(bodies),
        "RetryTransport(MockTransport)": RetryTransport(None, mock(bodies)),  # as client()
    }

    def case(transport: httpx2.BaseTransport) -> Callable[[], object]:
        def call() -> object:
            response = transport.handle_request(request)
            for _ in response.stream:  # type: ignore[union-attr]
                pass
            response.close()
            return response

        return call

    return {name: case(t) for name, t in transports.items()}


def best_round(cases: dict[str, Callable[[], object]], *, number: int, rounds: int) -> dict:
    """The fastest round's ns per call of each case, the cases run in turn in every round."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, fn in cases.items():
            best[name] = min(best[name], per_call_ns(fn, number))
    return best


def report_mock(
    title: str, bodies: dict[bool, tuple[bytes, str]], *, stream: bool, timing: dict
) -> None:
    """The transport's own µs per request, and that as a share of one SDK call."""
    sdk = openai.OpenAI(
        base_url=MOCK_URL,
        api_key=KEY,
        max_retries=2,
        http_client=openai.DefaultHttpxClient(transport=mock(bodies)),
    )
    calls = (streamed if stream else plain)({BASELINE: sdk})
    cases = {**transport_cases(bodies, stream=stream), **calls}
    median = interleaved(cases, **timing)
    best = best_round(cases, **timing)
    sdk.close()
    print(title)
    for name in cases:
        print(f"{name:<40} {median[name] / 1000:8.1f} µs median {best[name] / 1000:8.1f} best")
    ours, bare = "RetryTransport(MockTransport)", "MockTransport"
    added = (median[ours] - median[bare]) / 1000
    added_best = (best[ours] - best[bare]) / 1000
    share = (median[ours] - median[bare]) / median[BASELINE]
    share_best = (best[ours] - best[bare]) / best[BASELINE]
    print(
        f"the transport adds {added:+.1f} µs per request (median; {added_best:+.1f} best): "
        f"{share:+.1%} of an SDK call ({share_best:+.1%} best round)\n"
    )


def report(title: str, results: dict[str, float]) -> None:
    print(title)
    print(table(results, baseline=BASELINE, unit="µs"))
    ratio = results[OURS] / results[BASELINE]
    verdict = "within" if ratio <= 1.05 else "OVER"
    print(f"ours / SDK's own retries: {ratio:.3f} ({verdict} the 5% target)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--in-process", action="store_true", help="the server in a thread")
    args = parser.parse_args()
    rp.instrumentation.set_hooks([])
    timing = {"number": args.number, "rounds": args.rounds}
    where = "a thread of this process" if args.in_process else "its own process"
    with fake_server(in_process=args.in_process) as base_url:
        print(f"Python {sys.version.split()[0]}, openai {openai.__version__}, loopback")
        print(f"fake EU GPT in {where}\n")
        clients = sync_clients(base_url)
        us = {k: v / 1000 for k, v in interleaved(plain(clients), **timing).items()}
        report("responses.create(stream=False), sync, µs per call (median)", us)
        us = {k: v / 1000 for k, v in interleaved(streamed(clients), **timing).items()}
        report("responses.create(stream=True), 3 deltas iterated, sync, µs per call", us)
        for client in clients.values():
            client.close()
        bodies = captured(base_url)

        loop = asyncio.new_event_loop()
        aclients = async_clients(base_url)
        try:
            cases = plain_async(aclients, loop)
            us = {k: v / 1000 for k, v in interleaved(cases, **timing).items()}
            report("responses.create(stream=False), async, µs per call (median)", us)
        finally:
            for aclient in aclients.values():
                loop.run_until_complete(aclient.close())
            loop.close()

    timing = {"number": args.number * 2, "rounds": args.rounds}
    report_mock("no network, stream=False (200 JSON)", bodies, stream=False, timing=timing)
    report_mock("no network, stream=True (3 deltas)", bodies, stream=True, timing=timing)


if __name__ == "__main__":
    main()
