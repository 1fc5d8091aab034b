"""The writer role: enriched topics → batches → ClickHouse, Kafka offsets committed only after
ClickHouse accepted the batch.

Replays are harmless. Every topic-partition range of a flush is inserted with the deduplication
token `{group}/{topic}/{partition}/{start}-{end}`; the tables drop a block whose token they have
seen (`non_replicated_deduplication_window`, or the replicated log on a cluster). A token only
repeats if the replayed range is exactly the same, so before inserting, the writer records the
flush *plan* (per partition: start and end offset) in `kafka_writer_plans`. After a crash between
insert and commit, whoever consumes that partition next starts at the committed offset, finds the
plan starting there, and cuts its range at exactly the recorded end: same rows, same token, no
duplicate. Ranges are per partition, so this holds even when a rebalance moves the partitions of
one flush to different writers.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition
from clickhouse_connect.driver.client import Client

from inferline.core import metrics
from inferline.core.config import Settings
from inferline.core.logging import error_summary
from inferline.core.records import Batch, Row
from inferline.exporters.clickhouse.flush_policy import FlushDelay
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.kafka.clients import (
    H_DLQ_ERROR,
    H_DLQ_OFFSET,
    H_DLQ_PARTITION,
    H_DLQ_STAGE,
    H_DLQ_TOPIC,
    H_SCHEMA,
    SCHEMA_VERSION,
    header,
    make_consumer,
    make_producer,
    start_client,
    stop_client,
)
from inferline.kafka.consumer_lag import ConsumerLag
from inferline.storage.schema import LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, Table

log = structlog.get_logger()

PLANS_TABLE = "kafka_writer_plans"
# Test-only fault injection: exit right after the ClickHouse insert, before the Kafka commit.
FAULT_CRASH_AFTER_INSERT = "INFERLINE_FAULT_CRASH_AFTER_INSERT"
FAULT_EXIT_CODE = 86

_DECIMAL_COLUMNS = {
    t.name: tuple(c.name for c in t.columns if "Decimal" in c.type)
    for t in (LLM_INFERENCES, OTEL_TRACES, OTEL_LOGS)
}


def plans_ddl(database: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{PLANS_TABLE}` (\n"
        "    group_id String, topic String, partition UInt32, start_offset Int64, end_offset Int64,\n"
        "    created_at DateTime64(3, 'UTC') DEFAULT now64(3)\n"
        ") ENGINE = ReplacingMergeTree(created_at)\n"
        "ORDER BY (group_id, topic, partition, start_offset)\n"
        "TTL toDateTime(created_at) + INTERVAL 7 DAY"
    )


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(slots=True)
class _Range:
    """Rows of one topic-partition waiting for a flush: offsets [start, end)."""

    start: int
    end: int
    first_at: float
    pinned_end: int | None = None  # end of a recorded plan this range must reproduce exactly
    rows: list[Row] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.pinned_end is None or self.end >= self.pinned_end


class _Listener(ConsumerRebalanceListener):
    def __init__(self, lock: asyncio.Lock, on_revoked: Callable[[list[TopicPartition]], None]) -> None:
        self._lock = lock
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Waits for a flush in progress (it commits first); unflushed rows of revoked partitions
        # are dropped: the next owner reads them again from the committed offset.
        async with self._lock:
            self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass


class KafkaWriter:
    def __init__(self, settings: Settings, bootstrap: str, client: Client) -> None:
        ks = settings.kafka
        self._ks = ks
        self._group = ks.writer_group
        self._database = settings.clickhouse_database
        self._client = client
        self._inserter = Inserter(client, self._database)
        self._tables: dict[str, Table] = {
            ks.inferences_topic: LLM_INFERENCES,
            ks.spans_topic: OTEL_TRACES,
            ks.logs_topic: OTEL_LOGS,
        }
        self._max_rows = settings.batch.max_rows
        self._delay = FlushDelay(settings.batch.min_delay_s, settings.batch.max_delay_s)
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer
        self._producer: AIOKafkaProducer  # dead letters only
        self._io = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert")
        self._lock = asyncio.Lock()
        self._ranges: dict[TopicPartition, _Range] = {}
        self._pins: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (start, end) of a recorded plan
        self._checked: set[TopicPartition] = set()  # plan looked up since the partition was assigned
        self._crash_after_insert = os.environ.get(FAULT_CRASH_AFTER_INSERT) == "1"
        self._lag = ConsumerLag(self._group, self._tables)
        self.healthy = True
        self.ready = False

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._io, self._client.command, plans_ddl(self._database)
        )
        ks = self._ks
        producer = await start_client(lambda: make_producer(ks, self._bootstrap), stop)
        if producer is None:
            return
        consumer = await start_client(lambda: make_consumer(ks, self._bootstrap, self._group), stop)
        if consumer is None:
            await stop_client(producer)
            return
        self._producer, self._consumer = producer, consumer
        self._consumer.subscribe(list(self._tables), listener=_Listener(self._lock, self._forget))
        self.ready = True
        log.info("writer started", topics=list(self._tables), group=self._group)
        try:
            while not stop.is_set():
                polled = await self._consumer.getmany(
                    timeout_ms=self._poll_timeout_ms(), max_records=self._max_rows
                )
                async with self._lock:
                    if polled:
                        await self._add(polled)
                    if self._due():
                        await self._flush()
                await self._lag.update(self._consumer)
            async with self._lock:
                await self._flush()  # what is complete; the rest is read again after a restart
        finally:
            self.ready = False
            self._lag.clear()
            await stop_client(self._consumer)
            await stop_client(self._producer)
            self._io.shutdown(wait=True)

    def _poll_timeout_ms(self) -> int:
        if not self._ranges:
            return 500
        oldest = min(r.first_at for r in self._ranges.values())
        return max(10, min(500, int((oldest + self._delay.seconds - time.monotonic()) * 1000)))

    def _forget(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self._ranges.pop(tp, None)
            self._pins.pop(tp, None)
            self._checked.discard(tp)

    # -- consuming -----------------------------------------------------------------------------

    async def _add(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        unchecked = {tp: records[0].offset for tp, records in polled.items() if tp not in self._checked}
        if unchecked:
            pins = await asyncio.get_running_loop().run_in_executor(self._io, self._find_plans, unchecked)
            self._pins.update(pins)
            self._checked.update(unchecked)
            for tp, (start, end) in pins.items():
                log.info(
                    "replaying a recorded batch plan",
                    topic=tp.topic,
                    partition=tp.partition,
                    start=start,
                    end=end,
                )
        for tp, records in polled.items():
            table = self._tables[tp.topic]
            for m in records:
                r = self._ranges.get(tp)
                if r is not None and r.pinned_end is not None and m.offset >= r.pinned_end:
                    # The replayed range is complete: it is flushed as recorded, before this row.
                    if not await self._flush():
                        return  # rewound: this poll's records come again
                    r = self._ranges.get(tp)
                if r is None:
                    r = self._ranges[tp] = _Range(m.offset, m.offset, time.monotonic())
                    pin = self._pins.pop(tp, None)
                    if pin is not None and pin[0] == m.offset:
                        r.pinned_end = pin[1]
                row = await self._decode(m, table)
                if row is not None:
                    r.rows.append(row)
                r.end = m.offset + 1

    async def _decode(self, m: ConsumerRecord, table: Table) -> Row | None:
        reason = "decode"  # the `reason` label of inferline_dlq_records_total
        try:
            version = header(m.headers, H_SCHEMA)
            if version is not None and version != SCHEMA_VERSION:
                raise ValueError(f"unsupported schema-version {version!r}")
            row = orjson.loads(m.value)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            for col in _DECIMAL_COLUMNS[table.name]:
                v = row.get(col)
                if v is not None:
                    row[col] = Decimal(v)
            problem = table.problem(row)
            if problem:  # ClickHouse would refuse it, and with it everyone's batch: dead-letter it
                reason = "invalid_row"
                raise ValueError(problem)
            return row
        except Exception as e:
            # Deterministic, so a replayed range decodes to the same rows.
            log.warning(
                "enriched message to the dead-letter topic", topic=m.topic, offset=m.offset, error=repr(e)
            )
            headers = [
                *list(m.headers or ()),
                (H_DLQ_ERROR, f"{type(e).__name__}: {e}"[:2000].encode()),
                (H_DLQ_STAGE, b"write"),
                (H_DLQ_TOPIC, m.topic.encode()),
                (H_DLQ_PARTITION, str(m.partition).encode()),
                (H_DLQ_OFFSET, str(m.offset).encode()),
            ]
            await self._producer.send_and_wait(self._ks.dlq_topic, m.value, key=m.key, headers=headers)
            metrics.DLQ_RECORDS.labels("writer", reason).inc()
            return None

    def _due(self) -> bool:
        complete = [r for r in self._ranges.values() if r.complete]
        if not complete:
            return False
        if any(r.pinned_end is not None for r in complete):
            return True
        if sum(len(r.rows) for r in complete) >= self._max_rows:
            return True
        return min(r.first_at for r in complete) + self._delay.seconds <= time.monotonic()

    # -- flushing ------------------------------------------------------------------------------

    async def _flush(self) -> bool:
        """False when the flush failed and consumption was rewound to the committed offsets."""
        ranges = {tp: r for tp, r in self._ranges.items() if r.complete}
        if not ranges:
            return True
        started = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self._write, ranges)
            self._delay.observe(time.monotonic() - started)
        except Exception as e:
            # Start over from the committed offsets: recorded plans pin the same ranges, so
            # whatever part of this flush did reach ClickHouse is not written twice.
            self.healthy = False
            log.error("flush failed; re-reading from the committed offsets", error=error_summary(e))
            await self._rewind()
            await asyncio.sleep(1.0)
            return False
        # Counted once committed in ClickHouse: a replay of these rows is skipped as already
        # stored (`_not_yet_stored`), so it is not counted again.
        for tp, r in ranges.items():
            if self._tables[tp.topic] is LLM_INFERENCES:
                metrics.observe_inferences(r.rows)
        if self._crash_after_insert:
            log.warning("fault injection: exiting after the insert, before the Kafka commit")
            os._exit(FAULT_EXIT_CODE)
        for tp in ranges:
            del self._ranges[tp]
        try:
            await self._consumer.commit({tp: r.end for tp, r in ranges.items()})
        except Exception as e:
            # Re-read from what is committed at once: the recorded plan pins the one range not
            # committed, so its replay is dropped. Going on instead would leave several ranges
            # uncommitted, and only the first of them would replay to its plan after a crash.
            self.healthy = False
            log.warning("offset commit failed; replaying from the committed offsets", error=error_summary(e))
            await self._rewind()
            return False
        self.healthy = True
        return True

    def _write(self, ranges: dict[TopicPartition, _Range]) -> None:
        new_plans = [
            [self._group, tp.topic, tp.partition, r.start, r.end]
            for tp, r in ranges.items()
            if r.pinned_end is None
        ]
        if new_plans:
            self._client.insert(
                f"`{self._database}`.`{PLANS_TABLE}`",
                new_plans,
                column_names=["group_id", "topic", "partition", "start_offset", "end_offset"],
            )
        for tp, r in ranges.items():
            if not r.rows:
                continue
            table = self._tables[tp.topic]
            if table is LLM_INFERENCES:
                r.rows = self._not_yet_stored(r.rows)
            batch = Batch(
                inferences=r.rows if table is LLM_INFERENCES else [],
                spans=r.rows if table is OTEL_TRACES else [],
                logs=r.rows if table is OTEL_LOGS else [],
            )
            self._inserter.insert(batch, f"{self._group}/{tp.topic}/{tp.partition}/{r.start}-{r.end}")

    def _not_yet_stored(self, rows: list[Row]) -> list[Row]:
        """Inference rows whose (inference_id, version) is not in ClickHouse yet. A processor that
        restarts replays what it had not committed; the table would collapse the copies on merge,
        but the rollup's materialized view would count them again. One trace's records share a
        partition and so a writer, so no other writer inserts the same row meanwhile."""
        ids, starts = set(), []
        for row in rows:
            try:
                ids.add(str(uuid.UUID(str(row.get("inference_id")))))
                starts.append(int(row["start_time"]))
            except (ValueError, TypeError, KeyError):
                continue  # such a row is refused at decode; nothing to look up
        if not ids:
            return rows
        found = self._client.query(
            f"SELECT toString(inference_id), version FROM `{self._database}`.llm_inferences "
            f"WHERE start_time BETWEEN fromUnixTimestamp64Nano({min(starts)}) "
            f"AND fromUnixTimestamp64Nano({max(starts)}) "
            f"AND inference_id IN ({', '.join(repr(i) for i in sorted(ids))})"
        ).result_rows
        seen = {(i, v) for i, v in found}
        fresh = []
        for row in rows:  # also a copy replayed into the same batch
            key = (str(row.get("inference_id")), row.get("version"))
            if key not in seen:
                seen.add(key)
                fresh.append(row)
        return fresh

    def _find_plans(self, first_offsets: dict[TopicPartition, int]) -> dict[TopicPartition, tuple[int, int]]:
        keys = ", ".join(
            f"({_quote(tp.topic)}, {tp.partition}, {offset})" for tp, offset in first_offsets.items()
        )
        rows = self._client.query(
            f"SELECT topic, partition, start_offset, max(end_offset) FROM `{self._database}`.`{PLANS_TABLE}` "
            f"WHERE group_id = {_quote(self._group)} AND (topic, partition, start_offset) IN ({keys}) "
            "GROUP BY topic, partition, start_offset"
        ).result_rows
        return {TopicPartition(t, p): (s, e) for t, p, s, e in rows}

    async def _rewind(self) -> None:
        self._forget([*self._ranges, *self._consumer.assignment()])
        for tp in self._consumer.assignment():
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)


__all__ = ["FAULT_CRASH_AFTER_INSERT", "FAULT_EXIT_CODE", "PLANS_TABLE", "KafkaWriter", "plans_ddl"]
