"""What a processor does with a run of entries read from a durable log (the local log's entries in
embedded mode, raw Kafka messages in the processor role): flatten the OTLP requests, run the
processor chain once over all their records, and encode the rows for the next stage (Native
blocks for the ClickHouse exporter, JSON messages for the enriched topics). The same function runs
in a thread or in worker processes (`inferline.service.workers`), in both wirings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

import structlog

from inferline.core import metrics
from inferline.core.ledger import (
    ACCEPTED,
    DEAD_LETTERED,
    LOGS_SIGNAL,
    SPANS_SIGNAL,
    STORED,
    EntryKey,
    Ledger,
    ReceiverTally,
    minute_of,
)
from inferline.core.records import (
    LEDGER,
    SPAN_CARRIER,
    SPANS,
    Batch,
    LeftOut,
    LogRecord,
    Row,
    SourceEntry,
    Span,
)
from inferline.exporters.clickhouse.native import encode_block
from inferline.exporters.clickhouse.new_inferences import CERTAINLY_NEW, certainly_new
from inferline.otlp.flatten import Flattened, flatten_log_bytes, flatten_span_bytes
from inferline.otlp.validate import reason_code
from inferline.processors.chain import ProcessorChain
from inferline.storage.schema import LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, SCORES, Table

log = structlog.get_logger()

Output = TypeVar("Output")
# Turns the chain's rows into what the next stage takes (picklable: it travels to workers).
Encoder = Callable[[Batch], Output]
Held = dict[tuple[str, int], int]  # (topic, partition) -> lowest offset the join holds

# Stages of a failure (the `stage` dead-letter header, the `reason` label of the DLQ metric).
DECODE, PROCESS, ENCODE = "decode", "process", "encode"
# Ledger reasons of records dead-lettered after the durable point.
UNDECODABLE, PROCESSING_FAILED, UNENCODABLE = "undecodable_entry", "processing_failed", "unencodable_row"


class Failure(NamedTuple):
    """An entry whose records were not all processed: which, why, and at which stage. Its valid
    records (if any) were processed; the entry itself goes to the dead letters."""

    entry: int  # its index in the run
    stage: str
    reason: str


class Processed(NamedTuple, Generic[Output]):
    """A run's rows (with its counts for the ingest ledger), encoded, and what the normaliser's
    join still holds."""

    output: Output
    # The lowest offset per source partition whose record the join still holds in memory; a
    # position must not be committed past it (a restart replays what rebuilds that memory).
    held: Held
    failed: list[Failure]


def process_entries(
    chain: ProcessorChain, entries: list[SourceEntry], encoder: Encoder[Output]
) -> Processed[Output]:
    """Flatten, run the chain over all entries at once (one batch, one join pass), count the
    ingest ledger, encode. An entry that cannot be read, or whose records the chain fails on, is
    reported in `failed`; the rest goes on."""
    failed: list[Failure] = []
    spans: list[Span] = []
    logs: list[LogRecord] = []
    ledger = Ledger()
    runs: list[_Run] = []
    now = time.time()
    received_at = max((entry.received_at or now for entry in entries), default=now)
    for i, entry in enumerate(entries):
        key = EntryKey(
            entry.project_id,
            minute_of(entry.received_at or now),
            f"{entry.topic}/{entry.partition}/{entry.offset}",
        )
        if entry.kind == LEDGER:
            try:
                ledger.add_tally(key, ReceiverTally.decode(entry.payload))
            except Exception as e:
                failed.append(Failure(i, DECODE, "ledger tally: " + _why(e)))
            continue
        signal = SPANS_SIGNAL if entry.kind == SPANS else LOGS_SIGNAL
        try:
            flat = _flatten(entry)
        except Exception as e:
            failed.append(Failure(i, DECODE, _why(e)))
            # What it held is unknown: the ledger counts the entry as one record, dead-lettered.
            ledger.add(key, signal, ACCEPTED, 1)
            ledger.add(key, signal, DEAD_LETTERED, 1, UNDECODABLE)
            continue
        ledger.add(key, signal, ACCEPTED, len(flat.records) + flat.rejected)
        if flat.rejected:
            # Records the shared validation refuses (a raw topic can be filled by a stock
            # Collector that never applied it): never dropped silently.
            kind = "spans" if entry.kind == SPANS else "log records"
            total = flat.rejected + len(flat.records)
            why = f"{flat.rejected} of {total} {kind} cannot be stored (the others were processed): "
            failed.append(Failure(i, DECODE, why + flat.error))
            ledger.add(key, signal, DEAD_LETTERED, flat.rejected, reason_code(flat.error))
        run = _Run(i, key, signal, [], [])
        if entry.kind == SPANS:
            run.spans.extend(flat.records)
        else:
            run.logs.extend(flat.records)
        spans += run.spans
        logs += run.logs
        runs.append(run)
    batch = Batch()
    if spans or logs:
        try:
            batch = chain.run(spans, logs, received_at)
        except Exception:
            # Find the entries at fault: run them one by one; the failing ones go to the dead letters.
            batch = Batch()
            for run in runs:
                try:
                    one = chain.run(run.spans, run.logs, received_at)
                except Exception as e:
                    failed.append(Failure(run.entry, PROCESS, _why(e)))
                    run.stored = False
                    # A retry of its calls in a later entry is then the only copy to store.
                    chain.normaliser.forget_calls({s.origin for s in run.spans})
                    continue
                batch.extend(one)
    for run in runs:
        n = len(run.spans) + len(run.logs)
        if run.stored:
            ledger.add(run.key, run.signal, STORED, n)
        else:
            ledger.add(run.key, run.signal, DEAD_LETTERED, n, PROCESSING_FAILED)
    batch.ledger = ledger.rows()
    output = encoder(batch)
    if batch.left_out:
        # Rare (a value no column rule foresaw): count the rows left out against their entries,
        # keep those entries as dead letters with the reason, and encode again with the counts.
        _account_left_out(batch, [run for run in runs if run.stored], ledger, failed)
        batch.ledger = ledger.rows()
        output = encoder(batch)
    return Processed(output, held_offsets(chain), failed)


def _account_left_out(batch: Batch, runs: list[_Run], ledger: Ledger, failed: list[Failure]) -> None:
    """Moves the rows the encoder left out from "stored" to "dead-lettered" in the ledger, reports
    their entries as failed (stage `encode`), and takes the rows out of `batch`, so that the next
    encoding holds the counts and none of those rows. `runs` are the entries whose records made
    `batch`, in order: `batch.spans` (`batch.logs`) holds their spans (log records) in that order."""
    span_runs = [run for run in runs for _ in run.spans]
    log_runs = [run for run in runs for _ in run.logs]
    # Rows made of a record (an inference of its span, a score of the span or evaluation log
    # record that carried it), whose own record is stored: the entry is kept all the same.
    by_span: dict[tuple[object, object], _Run] = {
        (s.trace_id, s.span_id): run for run in runs for s in run.spans
    }
    reasons: dict[int, str] = {}
    for left in batch.left_out:
        run: _Run | None
        if left.table == OTEL_TRACES.name:
            run = span_runs[left.position]
        elif left.table == OTEL_LOGS.name:
            run = log_runs[left.position]
        elif left.table == LLM_INFERENCES.name:
            row = batch.inferences[left.position]
            run = by_span.get((row.get("trace_id"), row.get("span_id")))
        else:
            carrier = batch.score_carriers[left.position]
            run = (span_runs if carrier.kind == SPAN_CARRIER else log_runs)[carrier.position]
        if run is None:  # made of a record of an earlier run (the join held it): logged only
            continue
        if left.table in (OTEL_TRACES.name, OTEL_LOGS.name):
            ledger.add(run.key, run.signal, STORED, -1)
            ledger.add(run.key, run.signal, DEAD_LETTERED, 1, UNENCODABLE)
        reasons.setdefault(run.entry, f"a {left.table} row could not be encoded: {left.reason}")
    reported = {f.entry for f in failed}  # already kept as a dead letter, with its first reason
    failed += [Failure(entry, ENCODE, why) for entry, why in reasons.items() if entry not in reported]
    gone: dict[str, set[int]] = {}
    for left in batch.left_out:
        gone.setdefault(left.table, set()).add(left.position)
    for table, rows in _rows_by_table(batch):
        if table.name in gone:
            rows[:] = [row for i, row in enumerate(rows) if i not in gone[table.name]]
    if SCORES.name in gone:
        left_scores = gone[SCORES.name]
        batch.score_carriers = [c for i, c in enumerate(batch.score_carriers) if i not in left_scores]
    batch.left_out = []


def _why(e: Exception) -> str:
    """A dead letter's reason: the error and its message, bounded."""
    return f"{type(e).__name__}: {e}"[:500]


@dataclass(slots=True)
class _Run:
    """The records of one entry, for the ledger and for running the chain entry by entry."""

    entry: int
    key: EntryKey
    signal: str
    spans: list[Span]
    logs: list[LogRecord]
    stored: bool = True


def _flatten(entry: SourceEntry) -> Flattened:
    """The entry's records, each with its origin, and how many were refused and why."""
    origin = (entry.topic, entry.partition, entry.offset)
    if entry.kind == SPANS:
        flat = flatten_span_bytes(entry.payload, entry.project_id)
    else:
        flat = flatten_log_bytes(entry.payload, entry.project_id)
    for record in flat.records:
        record.origin = origin
    return flat


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


def _rows_by_table(batch: Batch) -> tuple[tuple[Table, list[Row]], ...]:
    """The batch's lists of rows, each with the table they go to."""
    return (
        (OTEL_TRACES, batch.spans),
        (OTEL_LOGS, batch.logs),
        (LLM_INFERENCES, batch.inferences),
        (SCORES, batch.scores),
    )


def native_blocks(batch: Batch) -> Batch:
    """The rows as Native blocks for the ClickHouse exporter, plus the few fields of each
    inference the metrics read and the exporter's look-up of stored rows needs."""
    since = batch.calls_remembered_since
    observed = []
    for row in batch.inferences:
        fields = {k: row.get(k) for k in metrics.OBSERVED_FIELDS}
        fields[CERTAINLY_NEW] = certainly_new(row, since)
        observed.append(fields)
    out = Batch(observed=observed, ledger=batch.ledger)  # the ledger: a few rows, counted once stored
    for table, rows in _rows_by_table(batch):
        if rows:
            out.encoded.append(_encoded(table, rows, batch.left_out))
    return out


def _encoded(table: Table, rows: list[Row], left_out: list[LeftOut]) -> tuple[str, int, bytes]:
    """`rows` as one Native block. If the block cannot be made (a value no column rule foresaw),
    the rows that cannot be encoded on their own are left out (added to `left_out`, logged and
    counted) and the rest stored: a batch that failed to encode was replayed and failed again,
    forever, holding up everything behind it in its partition."""
    try:
        return table.name, len(rows), encode_block(table, rows)
    except Exception:
        kept = []
        for i, row in enumerate(rows):
            try:
                encode_block(table, [row])
            except Exception as e:
                metrics.ROWS_NOT_STORED.labels(table.name).inc()
                log.error(
                    "a row could not be encoded for ClickHouse and is left out",
                    table=table.name,
                    trace_id=row.get("trace_id", row.get("TraceId")),
                    span_id=row.get("span_id", row.get("SpanId")),
                    error=type(e).__name__,
                )
                left_out.append(LeftOut(table.name, i, _why(e)))
            else:
                kept.append(row)
        return table.name, len(kept), encode_block(table, kept)
