"""The engine's CPU per GenAI span for inserts and the merges they cause, with table settings to
try, and what the parts left behind cost the dashboard's queries.

    python -m bench.merge_cost [--flushes 30] [--copies 13] [--settings "merge_selector_base=10"]
                               [--tables otel_traces,otel_logs,llm_inferences] [--no-merges]

Inserts `--flushes` flushes of `--copies` copies of the stage table's GenAI batch (~800 spans,
their log records and inference rows; each copy with ids of its own: ReplacingMergeTree would
collapse copies) into a fresh chDB store with the service's schema and rollup views, as the
embedded main process does (13 copies: ~10,400 spans, about one flush at `max_rows` 30,000), then
waits until merges are done. Prints the CPU time of every thread of the process per span, less
the encoding done between inserts, the active parts left, and the median of 7 runs of a few
queries the API makes (`FINAL` reads merge the parts at query time). `--settings` is applied with
`ALTER TABLE … MODIFY SETTING` to `--tables`; `--no-merges` stops merges (the insert alone).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from typing import Any

from bench.stages import _distinct_copy, _merges_settled, _process_cpu_s, stage_batch, stage_inputs
from inferline.core.logging import configure_logging
from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.clickhouse.native import encode_block
from inferline.processors.chain import ProcessorChain
from inferline.storage.clickhouse import connect
from inferline.storage.schema import LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, migrate

QUERIES = {
    "count FINAL": "SELECT count() FROM llm_inferences FINAL",
    "latest 50 FINAL": "SELECT inference_id, model, start_time FROM llm_inferences FINAL "
    "WHERE project_id = 'bench' ORDER BY start_time DESC LIMIT 50",
    "p95 and cost by model": "SELECT model, quantile(0.95)(latency_ms), sum(total_cost_usd) "
    "FROM llm_inferences GROUP BY model",
    "spans of a trace": "SELECT count() FROM otel_traces "
    "WHERE TraceId IN (SELECT TraceId FROM otel_traces LIMIT 1)",
}


def chained_batch() -> Batch:
    """The stage table's GenAI batch after the whole processor chain."""
    base = stage_batch(stage_inputs())
    for stage in ProcessorChain().stages:
        stage.process(base)
    return base


def insert_flushes(client: Any, base: Batch, flushes: int, copies: int) -> float:
    """Inserts `flushes` flushes of `copies` copies of `base` (ids of their own, numbered from
    0), each as the embedded exporter would (Native blocks, one insert per table); returns
    the CPU seconds spent encoding them, which is not the engine's."""
    inserter = Inserter(client)
    tables = (OTEL_TRACES, OTEL_LOGS, LLM_INFERENCES)
    encoding_s = 0.0
    for flush in range(flushes):
        t = time.thread_time()
        blocks = []
        for i in range(copies):
            copy = _distinct_copy(base, flush * copies + i)
            for table, rows in zip(tables, (copy.spans, copy.logs, copy.inferences), strict=True):
                blocks.append((table.name, len(rows), encode_block(table, rows)))
        encoding_s += time.thread_time() - t
        inserter.insert(Batch(encoded=blocks), uuid.uuid4().hex)
    return encoding_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flushes", type=int, default=30)
    parser.add_argument("--copies", type=int, default=13, help="copies of the ~800-span batch per flush")
    parser.add_argument("--settings", default="", help='e.g. "merge_selector_base=10"')
    parser.add_argument("--tables", default="otel_traces,otel_logs,llm_inferences")
    parser.add_argument("--no-merges", action="store_true")
    args = parser.parse_args(argv)

    base = chained_batch()
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(f"chdb://{tmp}/clickhouse")
        migrate(client)
        if args.no_merges:
            client.command("SYSTEM STOP MERGES")
        elif args.settings:
            for table in args.tables.split(","):
                client.command(f"ALTER TABLE {table} MODIFY SETTING {args.settings}")
        spans = len(base.spans) * args.copies * args.flushes
        started, wall = _process_cpu_s(), time.monotonic()
        encoding_s = insert_flushes(client, base, args.flushes, args.copies)
        inserted = _process_cpu_s()
        _merges_settled(client, 180)
        settled = _process_cpu_s()
        engine = (settled - started - encoding_s) / spans * 1e6
        after = (settled - inserted) / spans * 1e6
        parts = client.query(
            "SELECT table, count() FROM system.parts WHERE active AND database = currentDatabase() "
            "AND table IN ('otel_traces', 'otel_logs', 'llm_inferences') GROUP BY table ORDER BY table"
        ).result_rows
        label = "merges stopped" if args.no_merges else (args.settings or "defaults")
        print(f"{label}: {spans:,} spans in {time.monotonic() - wall:.0f} s")
        print(f"  engine CPU {engine:.1f} µs/span (of which after the last insert {after:.1f})")
        print("  active parts " + ", ".join(f"{t} {n}" for t, n in parts))
        for name, sql in QUERIES.items():
            runs = []
            for _ in range(7):
                t = time.perf_counter()
                client.query(sql)
                runs.append(time.perf_counter() - t)
            print(f"  {name:<24} {statistics.median(runs) * 1000:7.1f} ms")
        client.close()


if __name__ == "__main__":
    configure_logging("warning")
    main()
