"""The pure core's hot functions: classify by status, parse_error on a small envelope.

Run: python bench/bench_core.py
Targets (issue 2): classify by status < 1 µs; parse_error on a 150-byte envelope < 5 µs
(json.loads of that envelope alone is the reference).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import interleaved, table

import retrypolicy as rp

ENVELOPE = (
    b'{"detail": "Internal error during response generation", '
    b'"error": {"type": "server_error", "code": "internal_error", "message": "Retry later"}}'
)


def main() -> None:
    policy = rp.EUGPT
    policy.classify(503)
    cases = {
        "json.loads(envelope)": lambda: json.loads(ENVELOPE),
        "parse_error(500, envelope)": lambda: rp.parse_error(500, ENVELOPE),
        "classify(503)": lambda: policy.classify(503),
        "classify(200, 'upstream_timeout')": lambda: policy.classify(200, "upstream_timeout"),
        "decide(Outcome(503))": lambda: policy.decide(rp.transport.Outcome(status=503)),
    }
    print(f"envelope: {len(ENVELOPE)} bytes; Python {sys.version.split()[0]}")
    results = interleaved(cases, number=50_000)
    print(table(results, baseline="json.loads(envelope)"))
    ok_classify = results["classify(503)"] < 1000
    ok_parse = results["parse_error(500, envelope)"] < 5000
    print(f"\nclassify < 1 µs: {'yes' if ok_classify else 'NO'}")
    print(f"parse_error < 5 µs: {'yes' if ok_parse else 'NO'}")


if __name__ == "__main__":
    main()
