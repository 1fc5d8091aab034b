"""CPU time of one processor stage on the stage table's GenAI batch, for before/after comparisons.

    python bench/stage_cpu.py sentiment [--repo PATH] [--runs 40]

Builds the batch `python -m bench --only stages` uses (4 requests of 200 GenAI spans: 986 inference
rows for 803 spans), then runs one long-lived processor on it `--runs` times and prints the best
CPU time (`time.thread_time`, so time the host gives other processes is not counted) in µs per
span, and the calibration loop. `--repo` imports `inferline` from another checkout (e.g. a
`git worktree` of the commit before a change), so before and after can be run alternately in the
same minutes with the same inputs. For instruction counts, which a busy host does not move, run it
under `valgrind --tool=callgrind` (with `PYTHONHASHSEED=0` and `--no-calibration`) with `--runs 1`
and `--runs 6` and divide the difference by 5 x 803 (docs/performance.md, "2026-12-04, night:
sentiment under 15 µs").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="processor name, e.g. sentiment")
    parser.add_argument("--repo", type=Path, help="import inferline from this checkout")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument(
        "--no-calibration", action="store_true", help="skip the calibration loop (timed: not for callgrind)"
    )
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str((args.repo or here).resolve()))
    sys.path.insert(1, str(here))

    import inferline
    from bench.bench_pii import calibrate
    from bench.stages import stage_batch, stage_inputs
    from inferline.core.records import Batch
    from inferline.processors.chain import build_processor

    inputs = stage_inputs()
    spans = inputs.span_count
    rows = stage_batch(inputs).inferences
    batch = Batch(inferences=rows)
    stage = build_processor(args.stage, {})
    stage.process(batch)  # warm (the sentiment stage's word cache, as in a running service)
    best = float("inf")
    for _ in range(args.runs):
        started = time.thread_time()
        stage.process(batch)
        best = min(best, time.thread_time() - started)
    source = Path(inferline.__file__).resolve().parent.parent
    calibration = "" if args.no_calibration else f"; calibration loop {calibrate():.1f} µs"
    print(
        f"{args.stage} ({source}): best of {args.runs}: {best / spans * 1e6:.2f} µs/span CPU "
        f"({len(rows)} rows, {spans} spans){calibration}"
    )


if __name__ == "__main__":
    main()
