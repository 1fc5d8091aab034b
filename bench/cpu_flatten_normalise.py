"""CPU time of flattening and GenAI normalisation alone, for before/after comparisons on a busy host.

    python -m bench.cpu_flatten_normalise [--runs N] [--only flatten|normalise]

The inputs of `bench.stages` (4 GenAI requests of 200 spans, their 480 content logs), built from a
fixed seed so that two trees get the same spans; the timings are `time.thread_time` (CPU time of
this thread: time other processes take is not counted, though a busy core still slows it), best
of N runs of three calls each. Run it from the tree to measure (the code is imported from the
current directory), alternating trees: figures from different minutes do not compare here.
"""

from __future__ import annotations

import argparse
import random
import secrets
import time
from collections.abc import Callable

from bench.bench_pii import calibrate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--only", choices=("flatten", "normalise"))
    args = parser.parse_args(argv)

    rng = random.Random(5)
    secrets.token_bytes = rng.randbytes  # type: ignore[assignment]  # the same span ids in every tree

    from bench.stages import PROJECT, stage_inputs
    from inferline.core.logging import configure_logging
    from inferline.otlp.flatten import flatten_span_bytes
    from inferline.processors.normalise import GenAINormaliser

    configure_logging("error")
    inputs = stage_inputs()
    n, logged, spans, logs = inputs.span_count, inputs.logged, inputs.spans, inputs.logs

    def flatten() -> None:  # a worker's read of logged requests (bench.stages "flatten")
        for b in logged:
            flatten_span_bytes(b, PROJECT)

    def normalise() -> None:  # as bench.stages times it: a fresh normaliser, spans, then late logs
        normaliser = GenAINormaliser()
        normaliser.normalise(spans, [])
        normaliser.normalise([], logs)

    def best(fn: Callable[[], None]) -> float:
        fn()
        fastest = float("inf")
        for _ in range(args.runs):
            started = time.thread_time()
            for _ in range(3):
                fn()
            fastest = min(fastest, (time.thread_time() - started) / 3)
        return fastest / n * 1e6

    line = [f"calibration loop {calibrate():.1f} µs", f"{n} spans, {len(logs)} logs"]
    if args.only != "normalise":
        line.append(f"flatten {best(flatten):.2f} µs/span")
    if args.only != "flatten":
        line.append(f"normalise {best(normalise):.2f} µs/span")
    print(", ".join(line))


if __name__ == "__main__":
    main()
