"""The writer role: the enriched topics → the ClickHouse exporter, the same one embedded mode
uses (one insert per table per flush, whatever the number of partitions). Kafka offsets are
committed only once ClickHouse has the rows.

Replays are harmless: every flush is recorded as a plan in ClickHouse before its insert
(`inferline.exporters.clickhouse.plans`), and after a crash or a rebalance the recorded flushes
are rebuilt from the committed offsets and inserted again as they were (the enriched records
read back as the same rows; the rows the original left out are left out again), with their
tokens: ClickHouse drops what it already has and adds what it misses, in tables and rollup views.

A message that cannot be decoded, or a row ClickHouse would refuse, goes to the dead-letter
topic with the reason; the rest goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import NamedTuple, TypeVar

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, TopicPartition
from clickhouse_connect.driver.client import Client

from inferline.core import metrics
from inferline.core.config import Settings
from inferline.core.logging import error_summary
from inferline.core.memory import collector_deferred, freeze_survivors
from inferline.core.records import Batch, Row
from inferline.exporters.clickhouse.exporter import ClickHouseExporter, Delivery, Ranges
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.clickhouse.new_inferences import CERTAINLY_NEW, NewInferences, certainly_new
from inferline.exporters.clickhouse.plans import ClickHousePlans, source_name
from inferline.kafka.clients import (
    H_CALLS_REMEMBERED_SINCE,
    H_DLQ_LINE,
    H_SCHEMA,
    SCHEMA_VERSION,
    SCHEMA_VERSION_NDJSON,
    BrokerWatch,
    cluster_id,
    dead_letter_headers,
    header,
    make_consumer,
    make_producer,
    make_reader,
    poll,
    start_client,
    stop_client,
)
from inferline.kafka.consumer_lag import ConsumerLag
from inferline.storage.schema import INGEST_LEDGER, LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, SCORES, Table

log = structlog.get_logger()
_T = TypeVar("_T")

_DECIMAL_COLUMNS = {
    t.name: tuple(c.name for c in t.columns if "Decimal" in c.type)
    for t in (LLM_INFERENCES, OTEL_TRACES, OTEL_LOGS, SCORES, INGEST_LEDGER)
}


class _InvalidRow(ValueError):
    """A record ClickHouse would refuse (a value of the wrong type for its column)."""


def _decoded_row(value: bytes, table: Table) -> Row:
    """One record's JSON as a row (its type checked with the others of its message)."""
    row = orjson.loads(value)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    for col in _DECIMAL_COLUMNS[table.name]:
        v = row.get(col)
        if v is not None:
            row[col] = Decimal(v)
    return row


class _Listener(ConsumerRebalanceListener):
    def __init__(self, writer: WriterRole) -> None:
        self._writer = writer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._writer.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._writer.partitions_assigned(assigned)


class WriterRole:
    def __init__(self, settings: Settings, bootstrap: str, client: Client) -> None:
        ks = settings.kafka
        self._ks = ks
        self._group = ks.writer_group
        self._database = settings.clickhouse_database
        self._client = client
        self._tables: dict[str, Table] = {
            ks.inferences_topic: LLM_INFERENCES,
            ks.spans_topic: OTEL_TRACES,
            ks.logs_topic: OTEL_LOGS,
            ks.scores_topic: SCORES,
            ks.ledger_topic: INGEST_LEDGER,
        }
        self._max_rows = settings.batch.max_rows
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer
        self._producer: AIOKafkaProducer  # dead letters only
        self._plans = ClickHousePlans(client, self._database, self._group)
        batch = settings.batch
        if "max_delay_s" not in batch.model_fields_set:  # not chosen: the writer's own default
            batch = batch.model_copy(update={"max_delay_s": ks.writer_max_delay_s})
        self._exporter = ClickHouseExporter(
            Inserter(client, self._database),
            self._plans,
            self._stored,
            batch,
            insert_filter=NewInferences(client, self._database),
            quiet_s=ks.writer_quiet_s or None,
            replays_exactly=True,
            read_rest=self._read_rest,
        )
        self._positions: dict[TopicPartition, int] = {}  # next offset to deliver, per partition
        self._lag = ConsumerLag(self._group, self._tables)
        self._running = False
        self._stopping = asyncio.Event()
        self._broker = BrokerWatch()
        # Set once an assignment's recorded flushes are set up for rebuilding. aiokafka hands out
        # the records of new partitions while `on_partitions_assigned` still awaits (it marks the
        # reassignment done before it calls the listener): delivered then, they were taken for
        # new data before the rebuild of the flush they belong to was known.
        self._assigned = asyncio.Event()
        # Rebalances so far: records polled before one are not delivered after it (aiokafka reads
        # a kept partition again from its committed offset, so they would come twice).
        self._rebalances = 0

    @property
    def ready(self) -> bool:
        """Consuming, with partitions assigned, and the cluster answering."""
        return self._running and bool(self._consumer.assignment()) and self._broker.reachable

    @property
    def healthy(self) -> bool:
        return self._exporter.healthy

    async def run(self, stop: asyncio.Event) -> None:
        self._stopping = stop
        await asyncio.get_running_loop().run_in_executor(None, self._plans.create)
        ks = self._ks
        producer = await start_client(lambda: make_producer(ks, self._bootstrap), stop)
        if producer is None:
            return
        consumer = await start_client(lambda: make_consumer(ks, self._bootstrap, self._group), stop)
        if consumer is None:
            await stop_client(producer)
            return
        self._producer, self._consumer = producer, consumer
        self._exporter.start()
        self._consumer.subscribe(list(self._tables), listener=_Listener(self))
        self._running = True
        self._broker.start(self._consumer)
        log.info("writer started", topics=list(self._tables), group=self._group)
        try:
            while not stop.is_set():
                rebalances = self._rebalances
                polled = await poll(self._consumer, self._group, 200, self._max_rows)
                for tp, records in polled.items():
                    await self._deliver(tp, records, rebalances)
                if polled:
                    # The rows gathered for the next flush leave the collector's walks: a full
                    # collection walked them all ~15 times a run (docs/performance.md).
                    freeze_survivors()
                await self._lag.update(self._consumer)
        finally:
            self._running = False
            self._broker.stop()
            await self._exporter.close()  # stores (and commits) what was gathered
            self._lag.clear()
            await stop_client(self._consumer)
            await stop_client(self._producer)

    # -- rebalances ------------------------------------------------------------------------------

    async def partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Before partitions go: store and commit what was gathered, so they change hands at a
        committed offset."""
        self._assigned.clear()  # deliveries wait for the next assignment's rebuilds
        self._rebalances += 1
        if revoked:
            # A rebuild still gathering waits for deliveries that wait for this rebalance: it is
            # dropped uncommitted, and whoever holds its partitions next rebuilds it from its plan.
            self._exporter.drop_rebuild()
            await self._exporter.idle()
        for tp in revoked:
            self._positions.pop(tp, None)

    async def partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """New partitions start at their committed offsets; the recorded flushes past them are
        rebuilt before anything else is gathered. Both lookups are retried until they succeed:
        consuming without them would take a half-stored flush (rows in the table, not yet in its
        rollup views) for new data and skip what its views still miss. A partition the group never
        committed gets its starting offset committed first (`_start`), so that its first
        flush is rebuilt like any other. The cluster's id is looked up again on every assignment:
        the same address may now lead to a new cluster, and plans are read and recorded under the
        id of the one the offsets come from."""
        self._assigned.clear()
        kept = True
        try:
            kept = await self._set_up_rebuilds()
        finally:
            if kept:
                self._assigned.set()

    async def _set_up_rebuilds(self) -> bool:
        """False if the assignment was lost meanwhile (deliveries then wait for the next one)."""
        partitions = list(self._consumer.assignment())
        loop = asyncio.get_running_loop()
        # Before anything else: plans recorded after this may be another member's, live.
        since = await self._retried("read the clock", lambda: loop.run_in_executor(None, self._plans.now))
        if since is None or await self._retried("identify the cluster", self._use_cluster) is None:
            return True  # stopping
        committed = await self._retried("read committed offsets", lambda: self._committed(partitions))
        if committed is None:
            return True  # stopping
        fresh = [tp for tp in partitions if tp not in committed]
        if fresh:
            sources = [source_name(tp) for tp in fresh]
            forgot = await self._retried(
                "forget plans", lambda: loop.run_in_executor(None, self._plans.forget, sources, since)
            )
            if forgot is None:
                return True  # stopping
            try:
                started = await self._retried("commit new partitions' starts", lambda: self._start(fresh))
            except (CommitFailedError, IllegalStateError) as e:
                # Not ours any more (e.g. this member was evicted while the listener ran): no
                # retry can succeed, and the coordinator waits for this listener to rejoin.
                log.warning("the assignment was lost while it was set up", error=error_summary(e))
                return False
            if started is None:
                return True  # stopping
            committed.update(started)
        self._positions = dict(committed)
        flushes = await self._retried(
            "read the flush plans", lambda: loop.run_in_executor(None, self._plans.pending, committed)
        )
        if flushes is None:
            return True
        await self._exporter.idle()
        self._exporter.replay(flushes, committed)
        return True

    async def _use_cluster(self) -> str:
        cluster = await cluster_id(self._ks, self._bootstrap)
        await asyncio.get_running_loop().run_in_executor(None, self._plans.use_cluster, cluster)
        return cluster

    async def _start(self, fresh: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Partitions the group never committed (their plans just forgotten) get their starting
        offsets committed before anything of them is consumed. A killed writer's first flush is
        then rebuilt from its plan like any other (read as new data instead, its inferences were
        left out as stored, and the rollup views that had missed them never counted them). The
        plans forgotten are of an earlier topic of the same name, whose offsets mean other
        records (deleting a topic deletes the group's offsets of it), or of a group whose offsets
        expired; this version commits a partition before it flushes any of it (a writer of an
        earlier version did not: stop those cleanly before upgrading, docs/deploy.md)."""
        # Where `poll` starts such a partition: at its earliest record.
        starts: dict[TopicPartition, int] = await self._consumer.beginning_offsets(fresh)
        await self._consumer.commit(starts)
        for tp, start in starts.items():
            self._consumer.seek(tp, start)
        log.info("new partitions start at committed offsets", partitions=len(starts))
        return starts

    async def _committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        committed: dict[TopicPartition, int] = {}
        for tp in partitions:
            offset = await self._consumer.committed(tp)
            if offset is not None:
                committed[tp] = offset
        return committed

    async def _retried(self, what: str, attempt: Callable[[], Awaitable[_T]]) -> _T | None:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                return await attempt()
            except (CommitFailedError, IllegalStateError):
                raise  # the assignment is gone: retrying cannot help
            except Exception as e:
                log.error("a lookup failed; retrying", lookup=what, retry_in_s=delay, error=error_summary(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return None

    # -- consuming -------------------------------------------------------------------------------

    async def _deliver(self, tp: TopicPartition, records: list[ConsumerRecord], rebalances: int) -> None:
        if not self._assigned.is_set():
            waits = [asyncio.ensure_future(e.wait()) for e in (self._assigned, self._stopping)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        if self._stopping.is_set():
            return
        if rebalances != self._rebalances:
            # Polled across a rebalance: read again from the next offset to deliver, by whoever
            # holds the partition now. A poll that began before it may return records of the new
            # assignment (aiokafka waits for the assignment inside the poll): dropped without
            # this seek, they were skipped, and their range committed without their rows.
            if tp in self._positions:
                self._consumer.seek(tp, self._positions[tp])
                log.info("polled across a rebalance: read again", topic=tp.topic, partition=tp.partition)
            return
        limit = self._exporter.limit(tp)
        position = self._positions.get(tp, records[0].offset)
        if limit is not None:
            keep = [m for m in records if m.offset < limit]
            if len(keep) < len(records):  # read again once the rebuilt flush is stored
                self._consumer.seek(tp, records[len(keep)].offset if keep else position)
            records = keep
            if not records:
                await asyncio.sleep(0.02)
                return
        table = self._tables[tp.topic]
        rows: list[Row] = []
        for i, m in enumerate(records):
            rows += await self._decode(m, table)
            # A message may carry hundreds of rows (schema version 2): hand them over in runs of
            # about `max_rows`, each waiting for room in the exporter, so one poll cannot gather
            # more than its bound. Runs end at message boundaries: their offset ranges stay exact.
            if len(rows) >= self._max_rows or i == len(records) - 1:
                if rebalances != self._rebalances:
                    return  # an earlier run waited across a rebalance: the rest is read again
                end = m.offset + 1
                await self._exporter.consume(Delivery(tp, position, end, _batch_of(table, rows)))
                if rebalances != self._rebalances:
                    return  # positions are the new assignment's now
                self._positions[tp] = position = end
                rows = []

    async def _decode(self, m: ConsumerRecord, table: Table) -> list[Row]:
        """The message's rows (`_records_of`); what cannot be stored goes to the dead-letter
        topic."""
        # Decoded without automatic collections: a message's rows are made at once and kept for
        # the flush, and the young collections walked them again and again (with the encoding's,
        # 8% of the writer's CPU under load, docs/performance.md). JSON makes no cycles, so no
        # collection closes it either (a message was ~45 rows: one each, 0.9 s a run): what it
        # made is frozen, as after each poll.
        with collector_deferred(collect_young=False):
            rows, bad = _records_of(m, table)
        if bad:
            await self._dead_letters(m, bad)
        return rows

    async def _read_rest(self, ranges: Ranges) -> Batch:
        """The rows of a split flush's partitions held by other members, read by offset with a
        consumer of no group (nothing committed, no partition taken), decoded as `_deliver`
        decodes. Their bad records are left out as the original flush left them out (their
        dead letters were sent by whoever consumed them). Raises if a range cannot be read in
        full within a minute (e.g. retention deleted it)."""
        reader = make_reader(self._ks, self._bootstrap)
        try:
            await reader.start()
            wanted = {tp: (start, end) for tp, (start, end) in ranges.items() if end > start}
            reader.assign(list(wanted))
            for tp, (start, _) in wanted.items():
                reader.seek(tp, start)
            batch = Batch()
            deadline = asyncio.get_running_loop().time() + 60
            while wanted:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"{len(wanted)} partitions not read in full: {sorted(map(str, wanted))}"
                    )
                polled = await reader.getmany(timeout_ms=500, max_records=self._max_rows)
                for tp, records in polled.items():
                    if tp not in wanted:
                        continue
                    end = wanted[tp][1]
                    table = self._tables[tp.topic]
                    for m in records:
                        if m.offset < end:
                            batch.extend(_batch_of(table, _records_of(m, table)[0]))
                for tp in list(wanted):
                    # The position, not the last record: a transaction's marker takes an offset.
                    if await reader.position(tp) >= wanted[tp][1]:
                        reader.pause(tp)
                        del wanted[tp]
            return batch
        finally:
            await stop_client(reader)

    async def _dead_letters(self, m: ConsumerRecord, bad: list[_BadRecord]) -> None:
        """Each record (the message, or lines of it) to the dead-letter topic, with the message's
        key and headers and where it came from: sent together, then waited for together (a
        message of a thousand bad lines is one round of sends, and one log line)."""
        log.warning(
            "enriched records to the dead-letter topic",
            topic=m.topic,
            offset=m.offset,
            records=len(bad),
            lines=[b.line for b in bad[:10] if b.line is not None] or None,
            error=repr(bad[0].error),
        )
        sent = []
        for b in bad:
            headers = dead_letter_headers(m, "write", b.error)
            if b.line is not None:
                headers.append((H_DLQ_LINE, str(b.line).encode()))
            sent.append(await self._producer.send(self._ks.dlq_topic, b.value, key=m.key, headers=headers))
        await asyncio.gather(*sent)
        for b in bad:
            metrics.DLQ_RECORDS.labels("writer", b.reason).inc()

    # -- storing ---------------------------------------------------------------------------------

    async def _stored(self, ranges: Ranges) -> None:
        try:
            await self._consumer.commit({tp: end for tp, (_, end) in ranges.items()})
        except Exception as e:
            # Rebalanced meanwhile: the next owner rebuilds this flush from its plan (harmless).
            log.warning("offset commit failed; the flush is replayed later", error=error_summary(e))


def _records_of(m: ConsumerRecord, table: Table) -> tuple[list[Row], list[_BadRecord]]:
    """The message's rows: one (schema version 1, or no version header) or one per line (version
    2), and its records that cannot be stored (for version 2, each line alone: the message's other
    records are stored). Deterministic, so a replayed range decodes to the same rows."""
    version = header(m.headers, H_SCHEMA)
    one_row = version is None or version == SCHEMA_VERSION
    if not one_row and version != SCHEMA_VERSION_NDJSON:
        return [], [
            _BadRecord(m.value, ValueError(f"unsupported schema-version {version!r}"), "decode", None)
        ]
    if m.value is None:
        return [], [_BadRecord(None, ValueError("message has no value"), "decode", None)]
    rows: list[Row] = []
    lines: list[tuple[int, bytes]] = []  # each row's line number and JSON
    bad: list[_BadRecord] = []
    for i, value in enumerate([m.value] if one_row else m.value.split(b"\n")):
        if not one_row and not value.strip():
            continue  # blank lines (a trailing newline) are no records
        try:
            rows.append(_decoded_row(value, table))
            lines.append((i, value))
        except Exception as e:
            bad.append(_BadRecord(value, e, "decode", None if one_row else i))
    refused = table.problems(rows)
    if refused:  # ClickHouse would refuse them, and with them everyone's batch: dead letters
        for k, why in refused.items():
            i, value = lines[k]
            bad.append(_BadRecord(value, _InvalidRow(why), "invalid_row", None if one_row else i))
        bad.sort(key=lambda b: b.line or 0)
        rows = [row for k, row in enumerate(rows) if k not in refused]
    since = _calls_remembered_since(m) if table is LLM_INFERENCES else None
    if since is not None:
        for row in rows:
            row[CERTAINLY_NEW] = certainly_new(row, since)
    return rows, bad


def _calls_remembered_since(m: ConsumerRecord) -> float | None:
    """The processor's word on its inference rows (`H_CALLS_REMEMBERED_SINCE`), if it gave one."""
    value = header(m.headers, H_CALLS_REMEMBERED_SINCE)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # not ours to trust: its rows are looked up


class _BadRecord(NamedTuple):
    """An enriched record the writer cannot store, for the dead-letter topic."""

    value: bytes | None
    error: Exception
    reason: str  # the dead-letter metric's label: decode | invalid_row
    line: int | None  # its line in a schema-version-2 message (None: the whole message)


def _batch_of(table: Table, rows: list[Row]) -> Batch:
    """`rows` of one enriched topic's table as a batch."""
    return Batch(
        inferences=rows if table is LLM_INFERENCES else [],
        spans=rows if table is OTEL_TRACES else [],
        logs=rows if table is OTEL_LOGS else [],
        scores=rows if table is SCORES else [],
        ledger=rows if table is INGEST_LEDGER else [],
    )


__all__ = ["WriterRole"]
