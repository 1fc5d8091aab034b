"""A worker process's path in one process: CPU per span of `process_entries` (flatten, the whole
chain, Native blocks), pickling its result and what the worker does with its collector after a
batch, over distinct requests of the load generator (`--templates` contents, cycled, each copy
with ids and times of its own).

    python -m bench.worker_path [--kind genai|plain] [--requests 400] [--templates 16]
                                [--collector deferred|automatic]

`--collector deferred` is what a worker does (`core.memory.collector_deferred`: no automatic
collections during a batch, one young collection and a freeze after it); `automatic` lets Python
collect during the batch and freezes after it, as workers did before. Prints the CPU per span of
each fifth of the run and the share of it the collector took (timed by `gc.callbacks`). For
instruction counts, which a busy host does not move, run it under `valgrind --tool=callgrind`
with `PYTHONHASHSEED=0` at two `--requests` and divide the difference by the spans between them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import pickle
import random
import secrets
import time
from collections.abc import Iterator
from typing import Any

from bench.payloads import as_logged, build_template
from inferline.core.config import LocalLogSettings
from inferline.core.logging import configure_logging
from inferline.core.memory import collector_deferred, freeze_survivors, settle_after_start
from inferline.core.records import LOGS, SPANS, SourceEntry
from inferline.processors.chain import ProcessorChain
from inferline.service.processing import native_blocks, process_entries


@contextlib.contextmanager
def _automatic() -> Iterator[None]:
    yield
    freeze_survivors()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("genai", "plain"), default="genai")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--collector", choices=("deferred", "automatic"), default="deferred")
    parser.add_argument(
        "--templates", type=int, default=16, help="distinct request contents, cycled (1: copies of one)"
    )
    args = parser.parse_args(argv)
    configure_logging("error")
    # Requests of distinct content, as a worker gets them: a batch of one template's copies has
    # its texts scanned once for all (the PII stage scans each distinct text once per batch), which
    # made this path ~10-15% cheaper per span (143-166 against 171-181 µs, alternated twice).
    rng, prefix = random.Random(11), secrets.token_bytes(8)
    spans_per_request = 200 if args.kind == "genai" else 500
    templates = [
        build_template(args.kind, "grpc", spans_per_request, rng, prefix)
        for _ in range(min(args.requests, args.templates))
    ]
    chain = ProcessorChain()
    settle_after_start()
    entries: list[SourceEntry] = []
    spans_at: dict[int, int] = {}  # offset of a spans entry -> its spans
    for i in range(args.requests):
        template = templates[i % len(templates)]
        traces, logs = as_logged(*template.stamp(i << 16))
        spans_at[len(entries)] = template.spans
        entries.append(SourceEntry("log", 0, len(entries), SPANS, "bench", traces, time.time()))
        if logs:
            entries.append(SourceEntry("log", 0, len(entries), LOGS, "bench", logs, time.time()))

    collecting = [0.0, 0.0]  # seconds in collections, start of the current one
    collections = [0, 0, 0]

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[1] = time.process_time()
        else:
            collecting[0] += time.process_time() - collecting[1]
            collections[info["generation"]] += 1

    gc.callbacks.append(on_collection)
    around = collector_deferred if args.collector == "deferred" else _automatic
    per_batch = LocalLogSettings().read_entries  # a worker's batch, as the service reads the log
    batches = [entries[i : i + per_batch] for i in range(0, len(entries), per_batch)]
    fifth = max(1, len(batches) // 5)
    figures, cpu, spans, total_cpu = [], 0.0, 0, 0.0
    try:
        for n, batch in enumerate(batches, 1):
            started = time.process_time()
            with around():
                processed = process_entries(chain, batch, native_blocks)
            pickle.dumps(processed)
            del processed
            spent = time.process_time() - started
            cpu, total_cpu = cpu + spent, total_cpu + spent
            spans += sum(spans_at.get(e.offset, 0) for e in batch)
            if n % fifth == 0 or n == len(batches):
                figures.append(cpu / spans * 1e6)
                cpu, spans = 0.0, 0
    finally:
        gc.callbacks.remove(on_collection)
    print(
        f"{args.kind}, collector {args.collector}: "
        + " ".join(f"{f:.1f}" for f in figures)
        + f" µs/span; collector {collecting[0] / total_cpu * 100:.1f}% of the CPU "
        f"({collections[0]} young, {collections[1]} middle, {collections[2]} full collections)"
    )


if __name__ == "__main__":
    main()
