"""urllib3 on the success path: PoolManager with PolicyRetry against urllib3's own Retry.

Run: python bench/bench_urllib3.py
Target: PolicyRetry within 5% of ``Retry(3)`` in requests/s. One keep-alive PoolManager per
case against the fake EU GPT server on 127.0.0.1 (its 200 JSON reply); interleaved rounds,
medians. On a 200 urllib3 asks the Retry one question (``is_retry``), so this measures that
answer plus everything urllib3 does anyway.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import urllib3
from _timing import interleaved, per_call_ns, table
from urllib3.util import Retry

import retrypolicy as rp
from retrypolicy.testing import FakeEUGPT, Reply
from retrypolicy_urllib3 import PolicyRetry

BODY = b'{"input": "hi", "stream": false}'
HEADERS = {"content-type": "application/json"}
BASELINE = "Retry(3)"


def paired(
    cases: dict[str, Callable[[], object]], *, number: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median ns per call of each case, and the median of its per-round ratio to the first.

    The order rotates every round and the ratios pair cases measured moments apart, so a
    shared, noisy machine drifting between rounds does not bias the comparison.
    """
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for fn in cases.values():  # warm up: connections open, caches filled
        per_call_ns(fn, max(number // 10, 1))
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            samples[name].append(per_call_ns(cases[name], number))
    base = samples[names[0]]
    medians = {name: statistics.median(s) for name, s in samples.items()}
    ratios = {
        name: statistics.median(x / b for x, b in zip(s, base, strict=True))
        for name, s in samples.items()
    }
    return medians, ratios


def main() -> None:
    rp.instrumentation.set_hooks([])
    with FakeEUGPT(default=Reply.json(200, {"id": "resp_1", "output_text": "ok"})) as server:
        url = server.responses_url
        pools = {
            BASELINE: urllib3.PoolManager(retries=Retry(3)),
            "Retry(5, POST, forcelist)": urllib3.PoolManager(
                retries=Retry(5, allowed_methods=None, status_forcelist=[429, 500, 502, 503, 504])
            ),
            "PolicyRetry()": urllib3.PoolManager(retries=PolicyRetry()),
        }
        for pm in pools.values():
            assert pm.request("POST", url, body=BODY, headers=HEADERS).status == 200
        results, ratios = paired(
            {
                name: (lambda pm=pm: pm.request("POST", url, body=BODY, headers=HEADERS))
                for name, pm in pools.items()
            },
            number=200,
            rounds=21,
        )
    print(f"Python {sys.version.split()[0]}, urllib3 {urllib3.__version__}; ", end="")
    print("POST, 200 JSON, keep-alive, loopback\n")
    print(table(results, baseline=BASELINE))
    print()
    for name, ns in results.items():
        print(f"{name:<28} {1e9 / ns:8.0f} requests/s")
    print()
    for name, ratio in ratios.items():
        print(f"{name:<28} x {ratio:.3f} of {BASELINE} (median of the per-round ratios)")
    ratio = ratios["PolicyRetry()"]
    verdict = "within" if ratio <= 1.05 else "OUTSIDE"
    print(f"\nPolicyRetry / Retry(3): {ratio:.3f} ({verdict} the 5% target)")
    # the one question urllib3 asks a Retry on a 200, without the network around it
    plain, ours = Retry(3), PolicyRetry()
    question = interleaved(
        {
            BASELINE + ".is_retry": lambda: plain.is_retry("POST", 200, False),
            "PolicyRetry().is_retry": lambda: ours.is_retry("POST", 200, False),
        },
        number=200_000,
    )
    print()
    print(table(question, baseline=BASELINE + ".is_retry"))


if __name__ == "__main__":
    main()
