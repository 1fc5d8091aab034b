"""The PII stage alone, on the stage bench's batch: µs of CPU per GenAI span, and each step alone.

    python bench/pii_stage.py [--runs 20]        # CPU time (time.thread_time), best of --runs
    valgrind --tool=callgrind python bench/pii_stage.py --batches 1   # then --batches 3:
                                                  # (Ir of 3 - Ir of 1) / 2 / spans = Ir per span

The batch is `bench.stages`' own (4 requests of 200 GenAI spans with their log records, normalised
and turned into rows), each run on an untouched deep copy. CPU time, not wall time, and the best of
many runs: on a shared machine other processes only ever add time. The steps are timed alone on
the same inputs (the values and the joined buffer the stage itself builds); they use the
processor's private methods, so an older or newer `pii.py` may lack one (reported as n/a).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_pii import calibrate
from bench.stages import stage_batch, stage_inputs
from inferline.core.logging import configure_logging
from inferline.core.records import Batch
from inferline.processors import pii
from inferline.processors.chain import build_processor


def best_cpu(fn: Callable[[Any], object], runs: int, setup: Callable[[], Any] | None = None) -> float:
    """Seconds of CPU of the fastest of `runs` calls (`setup` makes each call's argument, untimed)."""
    best = float("inf")
    for _ in range(runs):
        arg = setup() if setup is not None else None
        started = time.thread_time()
        fn(arg)
        best = min(best, time.thread_time() - started)
    return best


class _Recording(pii._Engine):
    """Keeps the texts of the last batch scan (a compiled engine's methods cannot be replaced on
    the instance; the engine allows subclasses for this)."""

    def __init__(self, rules: list[Any]) -> None:
        super().__init__(rules)
        self.texts: list[str] = []

    def find_many(self, texts: list[str], allow: frozenset[str]) -> list[list[tuple[int, int, int]]]:
        self.texts = list(texts)
        return super().find_many(texts, allow)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per figure (best of)")
    parser.add_argument("--batches", type=int, help="only process this many batches (for callgrind)")
    args = parser.parse_args(argv)
    configure_logging("error")
    inputs = stage_inputs()
    base, spans = stage_batch(inputs), inputs.span_count
    stage: Any = build_processor("pii", {})
    if args.batches is not None:
        copies = [copy.deepcopy(base) for _ in range(3)]  # the same allocations whatever --batches
        for batch in copies[: args.batches]:
            stage.process(batch)
        return

    def us(seconds: float) -> str:
        return f"{seconds / spans * 1e6:6.1f} µs/span"

    print(f"calibration loop {calibrate():.1f} µs; {spans} GenAI spans; best of {args.runs} runs, CPU time")
    whole = best_cpu(stage.process, args.runs, lambda: copy.deepcopy(base))
    print(f"  {'PII stage (process, fresh copy)':<41} {us(whole)}")
    # The texts the batch scan joins, as the stage builds them.
    engine = stage._engine
    stage._engine = recording = _Recording(engine.rules)
    stage.process(copy.deepcopy(base))
    stage._engine = engine
    texts = recording.texts
    data = pii._SEPARATOR_BYTES.join([t.encode("ascii", "replace") for t in texts]) + b" "
    scratches, literal_scratch = engine._scratch()
    print(f"  ({len(texts)} distinct texts scanned, {len(data) / spans:,.0f} bytes per span)")

    def scan(db: Any, sc: Any) -> Callable[[Any], object]:
        return lambda _: db.scan(data, match_event_handler=pii._on_match, context=[], scratch=sc)

    def collect(_: Any) -> None:
        out: list[str] = []
        resources: dict[int, list[str]] = {}
        for row in base.inferences:
            stage._collect_inference(row, out, resources)
        for row in base.spans:
            stage._collect_span(row, out, resources)
        for row in base.logs:
            stage._collect_log(row, out, resources)

    def prescan(batch: Batch) -> None:
        stage._memo, stage._shared_counts = {}, {}
        try:
            stage._prescan(batch)
        finally:
            for name in ("_memo", "_shared_counts", "_scanned", "_prescanned", "_clean_values"):
                if hasattr(stage, name):
                    setattr(stage, name, None)

    steps: list[tuple[str, Callable[[Any], object], Callable[[], Any] | None]] = [
        *(
            (f"Hyperscan scan, anchor database {i + 1} of {len(engine.dbs)}", scan(db, sc), None)
            for i, (db, sc) in enumerate(zip(engine.dbs, scratches, strict=True))
        ),
        ("Hyperscan scan, names database", scan(engine.literal_db, literal_scratch), None),
        ("find_many (encode, join, every scan, map)", lambda _: engine.find_many(texts, frozenset()), None),
        ("collecting the values (warm rows)", collect, None),
        ("pre-scan, all of it (fresh copy)", prescan, lambda: copy.deepcopy(base)),
    ]
    for label, fn, setup in steps:
        try:
            print(f"  {label:<41} {us(best_cpu(fn, args.runs, setup))}")
        except Exception as e:  # the code under test changed shape: say so, go on
            print(f"  {label:<41} n/a ({type(e).__name__}: {str(e)[:60]})")


if __name__ == "__main__":
    main()
