"""What a processor does with a run of entries read from a durable log (the local log's entries in
embedded mode, raw Kafka messages in the processor role): flatten the OTLP requests, run the
processor chain once over all their records, and encode the rows for the next stage (Native
blocks for the ClickHouse exporter, JSON messages for the enriched topics). The same function runs
in a thread or in worker processes (`inferline.service.workers`), in both wirings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.core import metrics
from inferline.core.records import SPANS, Batch, LogRecord, SourceEntry, Span
from inferline.exporters.clickhouse.native import encode_block
from inferline.otlp.flatten import flatten_logs, flatten_spans
from inferline.processors.chain import ProcessorChain
from inferline.storage.schema import LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES

Output = TypeVar("Output")
# Turns the chain's rows into what the next stage takes (picklable: it travels to workers).
Encoder = Callable[[Batch], Output]
Held = dict[tuple[str, int], int]  # (topic, partition) -> lowest offset the join holds

# Stages of a failure (the `stage` dead-letter header, the `reason` label of the DLQ metric).
DECODE, PROCESS = "decode", "process"


class Failure(NamedTuple):
    """An entry whose records were not all processed: which, why, and at which stage. Its valid
    records (if any) were processed; the entry itself goes to the dead letters."""

    entry: int  # its index in the run
    stage: str
    reason: str


class Processed(NamedTuple, Generic[Output]):
    """A run's rows, encoded, and what the normaliser's join still holds."""

    output: Output
    # The lowest offset per source partition whose record the join still holds in memory; a
    # position must not be committed past it (a restart replays what rebuilds that memory).
    held: Held
    failed: list[Failure]


def process_entries(
    chain: ProcessorChain, entries: list[SourceEntry], encoder: Encoder[Output]
) -> Processed[Output]:
    """Flatten, run the chain over all entries at once (one batch, one join pass), encode. An entry
    that cannot be read, or whose records the chain fails on, is reported in `failed`; the rest
    goes on."""
    failed: list[Failure] = []
    spans: list[Span] = []
    logs: list[LogRecord] = []
    runs: list[tuple[int, list[Span], list[LogRecord]]] = []
    for i, entry in enumerate(entries):
        try:
            entry_spans, entry_logs, refused = _flatten(entry)
        except Exception as e:
            failed.append(Failure(i, DECODE, f"{type(e).__name__}: {e}"[:500]))
            continue
        if refused:
            # Records the shared validation refuses (a raw topic can be filled by a stock
            # Collector that never applied it): never dropped silently.
            failed.append(Failure(i, DECODE, refused))
        spans += entry_spans
        logs += entry_logs
        runs.append((i, entry_spans, entry_logs))
    if not spans and not logs:
        return Processed(encoder(Batch()), held_offsets(chain), failed)
    try:
        batch = chain.run(spans, logs)
    except Exception:
        # Find the entries at fault: run them one by one; the failing ones go to the dead letters.
        batch = Batch()
        for i, entry_spans, entry_logs in runs:
            try:
                one = chain.run(entry_spans, entry_logs)
            except Exception as e:
                failed.append(Failure(i, PROCESS, f"{type(e).__name__}: {e}"[:500]))
                continue
            batch.inferences += one.inferences
            batch.spans += one.spans
            batch.logs += one.logs
    return Processed(encoder(batch), held_offsets(chain), failed)


def _flatten(entry: SourceEntry) -> tuple[list[Span], list[LogRecord], str]:
    """The entry's records, each with its origin, and why some were refused ("" if none)."""
    origin = (entry.topic, entry.partition, entry.offset)
    if entry.kind == SPANS:
        flat_spans = flatten_spans(ExportTraceServiceRequest.FromString(entry.payload), entry.project_id)
        for span in flat_spans.records:
            span.origin = origin
        total = flat_spans.rejected + len(flat_spans.records)
        why = f"{flat_spans.rejected} of {total} spans cannot be stored (the others were processed): "
        return flat_spans.records, [], why + flat_spans.error if flat_spans.rejected else ""
    flat_logs = flatten_logs(ExportLogsServiceRequest.FromString(entry.payload), entry.project_id)
    for record in flat_logs.records:
        record.origin = origin
    total = flat_logs.rejected + len(flat_logs.records)
    why = f"{flat_logs.rejected} of {total} log records cannot be stored (the others were processed): "
    return [], flat_logs.records, why + flat_logs.error if flat_logs.rejected else ""


def held_offsets(chain: ProcessorChain) -> Held:
    return chain.normaliser.held_offsets()


def expire_held(chain: ProcessorChain) -> Held:
    """Lets the join drop what outlived its window (when no entries come to do it)."""
    chain.normaliser.expire()
    return held_offsets(chain)


def forget_partitions(chain: ProcessorChain, partitions: list[tuple[str, int]]) -> Held:
    """Drops what the join holds from records of `partitions` (revoked from this consumer)."""
    chain.normaliser.forget(partitions)
    return held_offsets(chain)


def native_blocks(batch: Batch) -> Batch:
    """The rows as Native blocks for the ClickHouse exporter, plus the few fields of each
    inference the metrics read."""
    out = Batch(observed=[{k: row.get(k) for k in metrics.OBSERVED_FIELDS} for row in batch.inferences])
    for table, rows in (
        (OTEL_TRACES, batch.spans),
        (OTEL_LOGS, batch.logs),
        (LLM_INFERENCES, batch.inferences),
    ):
        if rows:
            out.encoded.append((table.name, len(rows), encode_block(table, rows)))
    return out
