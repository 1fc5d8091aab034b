"""Micro-benchmark of the GenAI normaliser: µs per span over the doc's section-10 examples.

Run: `.venv/bin/python bench/bench_normalise.py [iterations]`. Prints per-example and mixed figures;
no assertions (performance is shown here, never in unit tests).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.normalise import GenAINormaliser
from tests.genai_examples import EXAMPLE_KEYS, example, flat_span, make_logs, make_span


def _bench(spans: list, logs: list, iterations: int) -> float:
    n = GenAINormaliser()
    n.normalise(spans, logs)  # warm-up
    best = float("inf")
    for _ in range(15):  # best of many: the figure should not depend on neighbours' load
        t0 = time.perf_counter()
        for _ in range(iterations):
            n.normalise(spans, logs)
        best = min(best, time.perf_counter() - t0)
    return best / (iterations * len(spans)) * 1e6


def _reference_ns() -> float:
    """ns per `dict.get` here, to compare figures taken on different (or busy) machines."""
    d = {"a": 1}
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(200_000):
            d.get("a")
        best = min(best, time.perf_counter() - t0)
    return best / 200_000 * 1e9


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print(f"reference: {_reference_ns():.1f} ns per dict.get in a Python loop on this machine")
    all_spans = []
    all_logs = []
    for key in EXAMPLE_KEYS:
        ex = example(key)
        span = make_span(ex)
        logs = make_logs(ex)
        all_spans.append(span)
        all_logs.extend(logs)
        print(f"{key:>6}  {_bench([span], logs, iterations):7.2f} µs/span")
    print(f"{'mixed':>6}  {_bench(all_spans, all_logs, iterations):7.2f} µs/span  (7 examples per call)")
    http = [
        flat_span(
            {"http.request.method": "GET", "url.full": "https://x/y", "http.response.status_code": 200},
            name=f"GET /y{i}",
        )
        for i in range(10)
    ]
    print(f"{'non-ai':>6}  {_bench(http, [], iterations):7.2f} µs/span  (HTTP spans, no row)")


if __name__ == "__main__":
    main()
