"""requests on the success path: RetryAdapter against a plain HTTPAdapter and urllib3's Retry.

Run: python bench/bench_requests.py
Target (issue 4): within 5% of the plain transport. One keep-alive session per case against
the fake EU GPT server on 127.0.0.1 (its 200 JSON reply); interleaved rounds, medians.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import requests
from _timing import interleaved, table
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_requests import RetryAdapter

BODY = {"input": "hi", "stream": False}


def session(adapter: HTTPAdapter) -> requests.Session:
    s = requests.Session()
    s.mount("http://", adapter)
    return s


def main() -> None:
    rp.instrumentation.set_hooks([])
    with FakeEUGPT(default=Reply.json(200, {"id": "resp_1", "output_text": "ok"})) as server:
        url = server.responses_url
        cases = {
            "plain HTTPAdapter": session(HTTPAdapter()),
            "HTTPAdapter(max_retries=Retry(5))": session(
                HTTPAdapter(max_retries=Retry(5, allowed_methods=None, status_forcelist=[503]))
            ),
            "retrypolicy RetryAdapter": session(RetryAdapter()),
        }
        results = interleaved(
            {name: (lambda s=s: s.post(url, json=BODY, timeout=5)) for name, s in cases.items()},
            number=300,
            rounds=7,
        )
    print(f"Python {sys.version.split()[0]}; POST, 200 JSON, keep-alive, loopback\n")
    print(table(results, baseline="plain HTTPAdapter", unit="µs".replace("µ", "n")))
    print()
    for name, ns in results.items():
        print(f"{name:<36} {1e9 / ns:8.0f} requests/s")


if __name__ == "__main__":
    main()
