"""The processor role: raw topics (otlp_proto) → the same `ProcessorChain` as embedded mode →
one JSON message per record on the enriched topic of its kind.

At-least-once: offsets are committed only after every enriched (and dead-letter) record of the
polled batch was acknowledged by Kafka, and never past a record whose content the normaliser's join
still holds in memory (log content waiting for its span, a row waiting for late content): each
partition's commit stops at the lowest such offset (`GenAINormaliser.held_offsets`), so a restart or
a rebalance replays those records (about a join window's worth) instead of losing the join.

A raw message that cannot be decoded or processed goes to the dead-letter topic with the error and
its source coordinates; the rest of the batch goes on. So does a message holding records that
cannot be stored (the rules of `inferline.otlp.validate`: a raw topic can be filled by a stock
Collector that never applied them): its valid records are processed, and the message itself, unchanged,
goes to the dead-letter topic (stage `decode`) with how many records were refused and why. No
record leaves the processor unaccounted for.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.core import metrics
from inferline.core.config import Settings
from inferline.core.records import Batch, LogRecord, Row, Span
from inferline.kafka.clients import (
    H_CONTENT_TYPE,
    H_DLQ_STAGE,
    H_KIND,
    H_SCHEMA,
    JSON,
    KIND_INFERENCE,
    KIND_LOG,
    KIND_SPAN,
    MESSAGE_OVERHEAD,
    SCHEMA_VERSION,
    BrokerWatch,
    dead_letter_headers,
    encode_row,
    header,
    make_consumer,
    make_producer,
    poll,
    start_client,
    stop_client,
)
from inferline.kafka.consumer_lag import ConsumerLag
from inferline.otlp.flatten import flatten_logs, flatten_spans
from inferline.processors.chain import ProcessorChain
from inferline.storage.keys import PROJECT_ID
from inferline.storage.schema import LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES

log = structlog.get_logger()

Outgoing = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]  # topic, key, value, headers


@dataclass(slots=True)
class _Parsed:
    message: ConsumerRecord
    spans: list[Span] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    kind: str = ""  # "spans" or "log records"
    rejected: int = 0  # records flatten refused (`inferline.otlp.validate`), and the first reason
    why: str = ""

    def refused(self) -> ValueError:
        """The dead-letter reason for the records flatten refused."""
        total = self.rejected + len(self.spans) + len(self.logs)
        return ValueError(
            f"{self.rejected} of {total} {self.kind} cannot be stored (the others were processed): {self.why}"
        )


class LockingListener(ConsumerRebalanceListener):
    """Holds a rebalance until the batch in progress is published and committed, so a partition
    changes hands at a committed offset (fewer replays), never in the middle of a batch.
    `on_revoked` (async) runs under the lock."""

    def __init__(self, lock: asyncio.Lock, on_assigned: Any = None, on_revoked: Any = None) -> None:
        self._lock = lock
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            if self._on_revoked is not None:
                await self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self._on_assigned is not None:
            self._on_assigned(assigned)


_TABLES = {KIND_INFERENCE: LLM_INFERENCES.name, KIND_SPAN: OTEL_TRACES.name, KIND_LOG: OTEL_LOGS.name}

# What a JSON number can carry here (orjson: int64 and uint64); no column holds more either.
_JSON_INT_MIN, _JSON_INT_MAX = -(1 << 63), (1 << 64) - 1


def _json_safe(value: Any, path: str, emptied: list[str]) -> Any:
    """`value` with the integers JSON cannot carry (a token count of 1e30 sent as a string or a
    double) emptied to null, as the writer empties values their column cannot hold."""
    if type(value) is int:
        if _JSON_INT_MIN <= value <= _JSON_INT_MAX:
            return value
        emptied.append(path)
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v, path or k, emptied) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, path, emptied) for v in value]
    return value


def _fit_row(row: Row, limit: int, table: str) -> bytes:
    """The row's JSON, with its largest values emptied while it exceeds the message limit: the
    record (ids, tokens, cost) still reaches the writer, only oversized content is cut."""
    try:
        value = encode_row(row)
    except TypeError:  # orjson: "Integer exceeds 64-bit range"; anything else raises again below
        emptied: list[str] = []
        row = _json_safe(row, "", emptied)
        columns = sorted(set(emptied))
        for column in columns:
            metrics.VALUES_OUT_OF_RANGE.labels(table, column).inc()
        log.warning("values beyond 64-bit integers were emptied", table=table, columns=columns)
        value = encode_row(row)
    if len(value) <= limit:
        return value
    row = dict(row)
    sizes = sorted(((len(encode_row({k: v})), k) for k, v in row.items()), reverse=True)
    for _, k in sizes:
        v = row[k]
        row[k] = (
            {} if isinstance(v, dict) else [] if isinstance(v, list) else "[truncated: too large for Kafka]"
        )
        value = encode_row(row)
        if len(value) <= limit:
            break
    log.warning("enriched record truncated to fit the Kafka message limit", limit=limit)
    return value


class ProcessorRole:
    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self._settings = settings
        self._ks = ks = settings.kafka
        self._chain = ProcessorChain(settings.processors)
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer
        self._producer: AIOKafkaProducer
        # One thread: the normaliser's join caches are not thread-safe, and the event loop stays
        # free for heartbeats and produce acknowledgements while a batch is processed.
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="process")
        self._lock = asyncio.Lock()
        self._limit = ks.max_message_bytes - MESSAGE_OVERHEAD
        # Per partition: the offset after the last processed record, and the last offset committed.
        self._position: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lag = ConsumerLag(ks.processor_group, [ks.raw_spans_topic, ks.raw_logs_topic])
        self._running = False
        self._broker = BrokerWatch()

    @property
    def ready(self) -> bool:
        """Consuming, with partitions assigned, and the cluster answering."""
        return self._running and bool(self._consumer.assignment()) and self._broker.reachable

    async def run(self, stop: asyncio.Event) -> None:
        ks = self._ks
        producer = await start_client(lambda: make_producer(ks, self._bootstrap), stop)
        if producer is None:
            return
        consumer = await start_client(lambda: make_consumer(ks, self._bootstrap, ks.processor_group), stop)
        if consumer is None:
            await stop_client(producer)
            return
        self._producer, self._consumer = producer, consumer
        self._consumer.subscribe(
            [ks.raw_spans_topic, ks.raw_logs_topic],
            listener=LockingListener(self._lock, on_revoked=self._revoked),
        )
        self._running = True
        self._broker.start(self._consumer)
        log.info(
            "processor started", topics=[ks.raw_spans_topic, ks.raw_logs_topic], group=ks.processor_group
        )
        try:
            while not stop.is_set():
                polled = await poll(self._consumer, ks.processor_group, 500, ks.max_poll_records)
                if polled:
                    async with self._lock:
                        await self._handle(polled, stop)
                elif self._behind():
                    # Idle: let the join expire what outlived its window, and commit past it.
                    async with self._lock:
                        await asyncio.get_running_loop().run_in_executor(
                            self._cpu, self._chain.normaliser.expire
                        )
                        await self._commit()
                await self._lag.update(self._consumer)
        finally:
            self._running = False
            self._broker.stop()
            self._lag.clear()
            await stop_client(self._consumer)
            await stop_client(self._producer)
            self._cpu.shutdown(wait=True)

    async def _handle(self, polled: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        messages = [m for records in polled.values() for m in records]
        loop = asyncio.get_running_loop()
        outgoing = await loop.run_in_executor(self._cpu, self._process, messages)
        delay = 0.5
        while True:
            try:
                acks = [
                    await self._producer.send(topic, value, key=key, headers=headers)
                    for topic, key, value, headers in outgoing
                ]
                await asyncio.gather(*acks)
                break
            except Exception as e:
                # Not committed: retry the same records (duplicates are possible, loss is not).
                log.error("producing enriched records failed, retrying", error=repr(e)[:200])
                if stop.is_set():
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self._count_dead_letters(outgoing)
        for tp, records in polled.items():
            self._position[tp] = records[-1].offset + 1
        await self._commit()

    def _count_dead_letters(self, published: list[Outgoing]) -> None:
        dlq = self._ks.dlq_topic
        for topic, _, _, headers in published:
            if topic == dlq:
                stage = header(headers, H_DLQ_STAGE) or b"process"
                metrics.DLQ_RECORDS.labels("processor", stage.decode()).inc()

    def _behind(self) -> bool:
        """Some partition has processed records that are not committed yet."""
        committed = self._committed
        return any(committed.get(tp, -1) < pos for tp, pos in self._position.items())

    async def _commit(self, partitions: list[TopicPartition] | None = None) -> None:
        """Commit each partition up to its processed position, but not past the lowest offset the
        join still holds, and never backwards. Call with the lock held and the CPU thread idle."""
        held = self._chain.normaliser.held_offsets()
        offsets = {}
        for tp in self._position if partitions is None else partitions:
            pos = self._position.get(tp)
            if pos is None:
                continue
            h = held.get((tp.topic, tp.partition))
            target = pos if h is None or h > pos else h
            if target > self._committed.get(tp, -1):
                offsets[tp] = target
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as e:
            # Rebalanced meanwhile: the next owner processes these again (at-least-once).
            log.warning("offset commit failed; records will be processed again", error=repr(e)[:200])
            return
        self._committed.update(offsets)

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        """Before partitions go: commit what can be, then drop what the join holds from them (their
        next owner, maybe this consumer again, replays it from the commit; kept, it would be merged
        twice)."""
        if not revoked:
            return
        await self._commit(revoked)
        dropped = self._chain.normaliser.forget([(tp.topic, tp.partition) for tp in revoked])
        for tp in revoked:
            self._position.pop(tp, None)
            self._committed.pop(tp, None)
        if dropped:
            log.info("partitions revoked: held join entries left to the replay", dropped=dropped)

    # -- CPU part, in the worker thread --------------------------------------------------------

    def _process(self, messages: list[ConsumerRecord]) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        parsed: list[_Parsed] = []
        for m in messages:
            try:
                p = self._parse(m)
            except Exception as e:
                outgoing.append(self._dead_letter(m, "decode", e))
                continue
            parsed.append(p)
            if p.rejected:
                # Records flatten refused: never dropped silently (the sender was told nothing).
                outgoing.append(self._dead_letter(m, "decode", p.refused()))
        try:
            batch = self._chain.run([s for p in parsed for s in p.spans], [r for p in parsed for r in p.logs])
        except Exception:
            # Find the message at fault: run them one by one, the failing ones to the DLQ.
            batch = Batch()
            for p in parsed:
                try:
                    one = self._chain.run(p.spans, p.logs)
                except Exception as e:
                    outgoing.append(self._dead_letter(p.message, "process", e))
                    continue
                batch.inferences += one.inferences
                batch.spans += one.spans
                batch.logs += one.logs
        ks = self._ks
        for topic, kind, rows, trace_col, project_col in (
            (ks.inferences_topic, KIND_INFERENCE, batch.inferences, "trace_id", "project_id"),
            (ks.spans_topic, KIND_SPAN, batch.spans, "TraceId", "ProjectId"),
            (ks.logs_topic, KIND_LOG, batch.logs, "TraceId", "ProjectId"),
        ):
            for row in rows:
                headers = [
                    (H_SCHEMA, SCHEMA_VERSION),
                    (H_KIND, kind),
                    (H_CONTENT_TYPE, JSON),
                    (ks.project_header, row[project_col].encode()),
                ]
                trace_id = row[trace_col]
                value = _fit_row(row, self._limit, _TABLES[kind])
                outgoing.append((topic, trace_id.encode() if trace_id else None, value, headers))
        return outgoing

    def _parse(self, m: ConsumerRecord) -> _Parsed:
        ks = self._ks
        raw_project = header(m.headers, ks.project_header)
        project = raw_project.decode() if raw_project else ks.default_project
        if not PROJECT_ID.match(project):
            raise ValueError(f"invalid project id in header {ks.project_header!r}")
        if m.value is None:
            raise ValueError("message has no value")
        p = _Parsed(m)
        origin = (m.topic, m.partition, m.offset)
        if m.topic == ks.raw_spans_topic:
            flat = flatten_spans(ExportTraceServiceRequest.FromString(m.value), project)
            p.spans, p.kind = flat.records, "spans"
            for s in p.spans:
                s.origin = origin
        else:
            flat = flatten_logs(ExportLogsServiceRequest.FromString(m.value), project)
            p.logs, p.kind = flat.records, "log records"
            for r in p.logs:
                r.origin = origin
        p.rejected, p.why = flat.rejected, flat.error
        return p

    def _dead_letter(self, m: ConsumerRecord, stage: str, error: Exception) -> Outgoing:
        log.warning(
            "raw message to the dead-letter topic",
            topic=m.topic,
            partition=m.partition,
            offset=m.offset,
            stage=stage,
            error=repr(error)[:300],
        )
        return (self._ks.dlq_topic, m.key, m.value, dead_letter_headers(m, stage, error))
