"""The processor role: raw topics (otlp_proto) → the same processing as embedded mode (flatten,
`ProcessorChain`, in the same worker processes: `inferline.service.workers`) → one JSON message
per record, or many records per message (`inferline.exporters.kafka.enriched`), on the enriched
topic of its kind.

A raw partition always goes to the same worker (partition mod workers), and the receiver keys
both raw topics by trace id, so a trace's spans and log records meet in one worker's join.

At-least-once: offsets are committed only after every enriched (and dead-letter) record of a
polled batch was acknowledged by Kafka, and never past a record whose content a worker's join
still held in memory when the batch was processed (log content waiting for its span, a row
waiting for late content): each partition's commit stops at the lowest such offset, so a restart
or a rebalance replays those records (about a join window's worth) instead of losing the join. A
worker that dies loses that memory: all workers start afresh and every partition is read again
from its committed offset.

Batches are pipelined: while Kafka acknowledges one batch's records, the workers process the next
(at most `_MAX_IN_FLIGHT` batches unacknowledged); they are settled, and committed, in order.

A raw message that cannot be decoded or processed goes to the dead-letter topic with the error and
its source coordinates; the rest of the batch goes on. So does a message holding records that
cannot be stored (the rules of `inferline.otlp.validate`: a raw topic can be filled by a stock
Collector that never applied them): its valid records are processed, and the message itself,
unchanged, goes to the dead-letter topic (stage `decode`) with how many records were refused and
why. No record leaves the processor unaccounted for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from typing import Any, NamedTuple

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition

from inferline.core import metrics
from inferline.core.config import Settings
from inferline.core.ledger import HEADER as LEDGER_HEADER
from inferline.core.records import LEDGER, LOGS, SPANS, SourceEntry
from inferline.exporters.kafka.enriched import (
    Enriched,
    EnrichedLines,
    EnrichedMessages,
    Message,
    ndjson_messages,
    without_vouching,
)
from inferline.kafka.clients import (
    BrokerWatch,
    PollSize,
    dead_letter_headers,
    header,
    make_consumer,
    make_producer,
    poll,
    start_client,
    stop_client,
)
from inferline.kafka.consumer_lag import ConsumerLag
from inferline.processors.chain import ProcessorChain
from inferline.service.processing import DECODE, Held
from inferline.service.workers import InThread, WorkerDied, WorkerProcesses
from inferline.storage.keys import PROJECT_ID

log = structlog.get_logger()

_MAX_IN_FLIGHT = 4  # polled batches processed and sent, their acknowledgements still pending


class _InFlight(NamedTuple):
    """A processed batch whose records Kafka has not acknowledged yet."""

    ends: dict[TopicPartition, int]  # per partition, the offset after the batch's last record
    held: Held  # what the joins held right after processing it: its commit stops there
    messages: list[Message]  # kept to send again if the acknowledgement fails
    acks: asyncio.Future[Any]


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


class ProcessorRole:
    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self._ks = ks = settings.kafka
        encoder = EnrichedMessages.for_topics(ks)
        self._max_value_bytes = encoder.max_value_bytes
        self._spread = 0  # where this batch's records without a trace id go (round robin)
        self._processing: InThread[Enriched] | WorkerProcesses[Enriched]
        if settings.resolved_workers:
            self._processing = WorkerProcesses(
                settings.processors, settings.resolved_workers, encoder, settings.log_level
            )
        else:
            self._processing = InThread(ProcessorChain(settings.processors), encoder)
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer
        self._producer: AIOKafkaProducer
        self._lock = asyncio.Lock()
        # Per partition: the offset after the last processed record, and the last offset committed.
        self._position: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._held: dict[int, Held] = {}  # per worker: what its join holds
        self._in_flight: deque[_InFlight] = deque()
        self._stop = asyncio.Event()
        self._lag = ConsumerLag(ks.processor_group, [ks.raw_spans_topic, ks.raw_logs_topic])
        self._running = False
        self._broker = BrokerWatch()
        self._poll_size = PollSize(ks.max_poll_records, ks.max_poll_bytes)
        # When partitions last came to this consumer: its workers' memory of calls lacks what the
        # partitions' previous owner made rows of (replayed from the commit), so their inference
        # rows are vouched for only from then (`H_CALLS_REMEMBERED_SINCE`).
        self._assigned_at = time.time()

    def reclaim(self) -> None:
        """Blocking, from any thread: the worker processes hand their free heap back to the OS."""
        if isinstance(self._processing, WorkerProcesses):
            self._processing.reclaim()

    @property
    def ready(self) -> bool:
        """Consuming, with partitions assigned, and the cluster answering."""
        return self._running and bool(self._consumer.assignment()) and self._broker.reachable

    async def run(self, stop: asyncio.Event) -> None:
        ks = self._ks
        self._stop = stop
        await self._processing.start()
        try:
            producer = await start_client(lambda: make_producer(ks, self._bootstrap), stop)
            if producer is None:
                return
            consumer = await start_client(
                lambda: make_consumer(ks, self._bootstrap, ks.processor_group), stop
            )
            if consumer is None:
                await stop_client(producer)
                return
            self._producer, self._consumer = producer, consumer
            await self._consume(stop)
        finally:
            self._processing.close()

    async def _consume(self, stop: asyncio.Event) -> None:
        ks = self._ks
        self._consumer.subscribe(
            [ks.raw_spans_topic, ks.raw_logs_topic],
            listener=LockingListener(self._lock, on_assigned=self._assigned, on_revoked=self._revoked),
        )
        self._running = True
        self._broker.start(self._consumer)
        log.info(
            "processor started",
            topics=[ks.raw_spans_topic, ks.raw_logs_topic],
            group=ks.processor_group,
            workers=self._processing.count,
        )
        try:
            while not stop.is_set():
                polled = await poll(self._consumer, ks.processor_group, 500, self._poll_size.records())
                self._poll_size.observe(polled)
                try:
                    if polled:
                        async with self._lock:
                            await self._handle(polled, stop)
                    elif self._in_flight:
                        async with self._lock:
                            await self._settle(stop)
                    elif self._behind():
                        # Idle: let the joins expire what outlived their window, and commit past it.
                        async with self._lock:
                            for worker in range(self._processing.count):
                                self._held[worker] = await self._processing.expire(worker)
                            await self._commit()
                except WorkerDied as e:
                    async with self._lock:
                        await self._replay_from_committed(e)
                await self._lag.update(self._consumer)
        finally:
            self._running = False
            with contextlib.suppress(Exception):  # commit what Kafka took (given up at a failure)
                async with self._lock:
                    await self._settle(stop)
            self._broker.stop()
            self._lag.clear()
            await stop_client(self._consumer)
            await stop_client(self._producer)

    async def _handle(self, polled: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        outgoing: list[Message] = []
        runs: dict[int, list[tuple[ConsumerRecord, SourceEntry]]] = defaultdict(list)
        count = self._processing.count
        for tp, records in polled.items():
            for m in records:
                try:
                    runs[tp.partition % count] += [(m, entry) for entry in self._entries(m)]
                except ValueError as e:
                    outgoing.append(self._dead_letter(m, DECODE, e))
        results = await asyncio.gather(
            *(self._processing.process(w, [entry for _, entry in run]) for w, run in runs.items())
        )
        self._spread += 1
        for (worker, run), processed in zip(runs.items(), results, strict=True):
            for item in processed.output:
                if isinstance(item, EnrichedLines):
                    if item.calls_remembered_since < self._assigned_at:
                        item = item._replace(calls_remembered_since=self._assigned_at)
                    partitions = len(await self._producer.partitions_for(item.topic))
                    outgoing += ndjson_messages(
                        item, partitions, self._spread, self._ks.project_header, self._max_value_bytes
                    )
                else:
                    outgoing.append(item)
            self._held[worker] = processed.held
            for failure in processed.failed:
                outgoing.append(
                    self._dead_letter(run[failure.entry][0], failure.stage, ValueError(failure.reason))
                )
        ends = {tp: records[-1].offset + 1 for tp, records in polled.items()}
        self._in_flight.append(_InFlight(ends, self._lowest_held(), outgoing, await self._send(outgoing)))
        if len(self._in_flight) >= _MAX_IN_FLIGHT:
            await self._settle(stop, keep=_MAX_IN_FLIGHT - 1)

    async def _send(self, messages: list[Message]) -> asyncio.Future[Any]:
        """Hands the records to the producer; the future completes once Kafka acknowledged all."""
        loop = asyncio.get_running_loop()
        try:
            send = self._producer.send
            acks = [
                await send(m.topic, m.value, key=m.key, headers=m.headers, partition=m.partition)
                for m in messages
            ]
        except Exception as e:  # settled (and sent again) like a failed acknowledgement
            failed: asyncio.Future[Any] = loop.create_future()
            failed.set_exception(e)
            return failed
        return asyncio.gather(*acks)

    async def _settle(self, stop: asyncio.Event, keep: int = 0) -> None:
        """Waits for the oldest batches' acknowledgements until `keep` are in flight, committing
        each in turn. A batch Kafka failed to take is sent again until it is (duplicates are
        possible, loss is not); while stopping, the unsettled rest is left uncommitted (replayed
        at the next start)."""
        while len(self._in_flight) > keep:
            batch = self._in_flight[0]
            delay = 0.5
            while True:
                try:
                    await batch.acks
                    break
                except Exception as e:
                    log.error("producing enriched records failed, retrying", error=repr(e)[:200])
                    if stop.is_set():
                        self._in_flight.clear()
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    messages = [without_vouching(m) for m in batch.messages]
                    batch = batch._replace(messages=messages, acks=await self._send(messages))
                    self._in_flight[0] = batch
            self._in_flight.popleft()
            self._position.update(batch.ends)
            await self._commit(held=batch.held)

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        self._assigned_at = time.time()

    def _entries(self, m: ConsumerRecord) -> list[SourceEntry]:
        """The message's request and, if the receiver attached one, its ledger tally."""
        ks = self._ks
        raw_project = header(m.headers, ks.project_header)
        project = raw_project.decode() if raw_project else ks.default_project
        if not PROJECT_ID.match(project):
            raise ValueError(f"invalid project id in header {ks.project_header!r}")
        if m.value is None:
            raise ValueError("message has no value")
        kind = SPANS if m.topic == ks.raw_spans_topic else LOGS
        received_at = m.timestamp / 1000 if m.timestamp and m.timestamp > 0 else 0.0
        entries = [SourceEntry(m.topic, m.partition, m.offset, kind, project, m.value, received_at)]
        tally = header(m.headers, LEDGER_HEADER)
        if tally is not None:
            entries.append(SourceEntry(m.topic, m.partition, m.offset, LEDGER, project, tally, received_at))
        return entries

    def _dead_letter(self, m: ConsumerRecord, stage: str, error: Exception) -> Message:
        log.warning(
            "raw message to the dead-letter topic",
            topic=m.topic,
            partition=m.partition,
            offset=m.offset,
            stage=stage,
            error=repr(error)[:300],
        )
        metrics.DLQ_RECORDS.labels("processor", stage).inc()
        return Message(self._ks.dlq_topic, m.key, m.value, dead_letter_headers(m, stage, error))

    def _behind(self) -> bool:
        """Some partition has processed records that are not committed yet."""
        committed = self._committed
        return any(committed.get(tp, -1) < pos for tp, pos in self._position.items())

    def _lowest_held(self) -> Held:
        lowest: Held = {}
        for held in self._held.values():
            for source, offset in held.items():
                if offset < lowest.get(source, offset + 1):
                    lowest[source] = offset
        return lowest

    async def _commit(self, partitions: list[TopicPartition] | None = None, held: Held | None = None) -> None:
        """Commit each partition up to its acknowledged position, but not past the lowest offset a
        join holds (now, or when the batch being settled was processed: `held`), and never
        backwards. Call with the lock held."""
        held = self._lowest_held() if held is None else held
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
        """Before partitions go: commit what can be, then drop what the joins hold from them (their
        next owner, maybe this consumer again, replays it from the commit; kept, it would be merged
        twice)."""
        if not revoked:
            return
        await self._settle(self._stop)
        await self._commit(revoked)
        sources = [(tp.topic, tp.partition) for tp in revoked]
        try:
            for worker in range(self._processing.count):
                self._held[worker] = await self._processing.forget(worker, sources)
        except WorkerDied as e:
            await self._replay_from_committed(e)
        for tp in revoked:
            self._position.pop(tp, None)
            self._committed.pop(tp, None)

    async def _replay_from_committed(self, cause: WorkerDied) -> None:
        """A worker died, and with it what its join held: every worker starts afresh and every
        assigned partition is read again from its committed offset (what was processed since is
        published again; the writer stores it once)."""
        log.error(
            "a worker died; restarting workers and replaying from the committed offsets", error=str(cause)
        )
        await self._processing.restart()
        self._held.clear()
        self._in_flight.clear()  # not committed: read again below
        for tp in self._consumer.assignment():
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)
            self._position.pop(tp, None)
            self._committed.pop(tp, None)
