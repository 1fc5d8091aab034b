"""CPU of the look-up of stored inference rows (`NewInferences.stored_keys`) for one flush, after
`--flushes` flushes are stored: what a flush pays when its normaliser cannot vouch for its rows.

    python -m bench.lookup_cost [--flushes 30] [--copies 13] [--runs 3]

Stores `--flushes` flushes of `--copies` copies of the stage table's GenAI batch (each copy with
ids of its own) in a fresh chDB store with the service's schema, waits for merges, then looks up
the inference rows of a flush not stored (`--runs` times, new ids each): CPU of every thread of
the process per GenAI span of that flush, and the wall time of the look-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bench.merge_cost import chained_batch, insert_flushes
from bench.stages import _distinct_copy, _merges_settled, _process_cpu_s
from inferline.core.logging import configure_logging
from inferline.exporters.clickhouse.new_inferences import NewInferences
from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flushes", type=int, default=30)
    parser.add_argument("--copies", type=int, default=13, help="copies of the ~800-span batch per flush")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    base = chained_batch()
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(f"chdb://{tmp}/clickhouse")
        migrate(client)
        insert_flushes(client, base, args.flushes, args.copies)
        _merges_settled(client, 180)
        lookups = NewInferences(client, "default")
        spans = len(base.spans) * args.copies
        for run in range(args.runs):
            first = (args.flushes + run) * args.copies
            rows = [r for i in range(args.copies) for r in _distinct_copy(base, first + i).inferences]
            cpu, wall = _process_cpu_s(), time.perf_counter()
            found = lookups.stored_keys(rows)
            cpu, wall = _process_cpu_s() - cpu, time.perf_counter() - wall
            print(
                f"{len(rows):,} inference rows looked up after {args.flushes} flushes: "
                f"{cpu / spans * 1e6:.1f} µs/span, {wall * 1000:.0f} ms, {len(found)} found"
            )
        client.close()


if __name__ == "__main__":
    configure_logging("warning")
    main()
