"""The distributed receiver's sink: each accepted OTLP request goes to the raw topics in the
OpenTelemetry Collector kafka exporter's `otlp_proto` encoding (a serialized
ExportTraceServiceRequest / ExportLogsServiceRequest per message), so a stock Collector can feed
or read these topics.

By default (`raw_messages: partition`) a request is split into one message per partition: each
trace goes to the partition a message keyed by its trace id would go to, and the traces bound for
one partition share a message (a Kafka message costs the receiver and the processor about as much
as the records in it). With `raw_messages: trace` it is one message per trace id (the exporter's
`partition_traces_by_id`; key = trace id hex). Either is split further by resource, scope and
record list wherever a message would exceed the broker's max message size. The sender is
acknowledged only once Kafka acknowledged every message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import structlog
from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from inferline.core import metrics
from inferline.core.config import KafkaSettings
from inferline.core.consumer import ExportResult
from inferline.core.errors import Overloaded, Unavailable
from inferline.core.ledger import HEADER as LEDGER_HEADER
from inferline.core.ledger import LOGS_SIGNAL, SPANS_SIGNAL, ReceiverTally
from inferline.core.records import LOGS, SPANS
from inferline.kafka.clients import MESSAGE_OVERHEAD, BrokerWatch, make_producer, start_client, stop_client
from inferline.kafka.partitioner import partition_of
from inferline.otlp import wire_split
from inferline.otlp.prepared import SPLIT_COMPILED
from inferline.otlp.protobuf import copy_into
from inferline.otlp.validate import (
    UNTIMED_LOG_STAMPED,
    ZERO_TRACE_ID,
    Rejected,
    TimeWindow,
    accepted_span_problem,
    log_problem,
    stamp_untimed_logs,
)
from inferline.otlp.wire_format import NotPlain
from inferline.otlp.wire_split import UNKEYED

log = structlog.get_logger()

_PENDING = metrics.QUEUE_DEPTH.labels("kafka_pending_bytes")

# (resource list, scope list, record list) field names of the two request types.
_TRACES = ("resource_spans", "scope_spans", "spans")
_LOGS = ("resource_logs", "scope_logs", "log_records")


class RawMessage(NamedTuple):
    """A message for a raw topic. `partition` None: the producer's partitioner places it (by its
    key, or anywhere when it has none)."""

    partition: int | None
    key: bytes | None
    value: bytes


class RawSplit:
    """Messages of one request, the records that could not be published, and those published
    with a correction (the ingest ledger's tally)."""

    __slots__ = ("messages", "tally")

    def __init__(self) -> None:
        self.messages: list[RawMessage] = []
        self.tally = Rejected()

    @property
    def rejected(self) -> int:
        return self.tally.count

    @property
    def error(self) -> str:
        return self.tally.message

    def reject(self, n: int, why: str) -> None:
        self.tally.add(n, why)


def trace_partition(trace_id: bytes, partitions: Sequence[int]) -> int:
    """The partition (of the topic's `partitions`) a message keyed by the trace id's hex goes to."""
    return partitions[partition_of(trace_id.hex().encode(), len(partitions))]


def split_request(
    request: Message,
    by_trace: bool,
    max_bytes: int,
    window: TimeWindow | None = None,
    partitions: Sequence[int] | None = None,
) -> RawSplit:
    """One request per trace id (or one in all when not `by_trace`), each keeping its records'
    resource and scope, then split to fit `max_bytes`. With `partitions` (the topic's partition
    ids; `by_trace` only), one request per partition instead, holding the traces a message keyed
    by their trace id would have put there (murmur2 of the key, as aiokafka's and the Java
    client's default partitioners place keyed messages), so a trace's spans and logs still meet in
    one partition number; records without a trace id stay apart, unkeyed. Records that break the
    rules of `inferline.otlp.validate` (with `window`: also the times the tables cannot keep) are
    left out and counted as rejected."""
    kind = _TRACES if isinstance(request, ExportTraceServiceRequest) else _LOGS
    res_field, scope_field, rec_field = kind
    out = RawSplit()
    problem: Callable[[Any], str] = accepted_span_problem if kind is _TRACES else log_problem
    if window is not None:
        now = time.time_ns()
        if kind is _LOGS:
            out.tally.correct(stamp_untimed_logs(request, now), UNTIMED_LOG_STAMPED)
        timed = window.span_problem if kind is _TRACES else window.log_problem

        def problem(record: Any) -> str:
            return timed(record, now)

    # A record's group: its trace id, or the trace's partition (worked out once per trace).
    partition_by_trace: dict[bytes, int] = {}
    placed = partitions is not None and by_trace
    groups: dict[bytes | int, list[Any]] = {}  # group -> [request, index of the resource last added]
    for ri, rs in enumerate(getattr(request, res_field)):
        for ss in getattr(rs, scope_field):
            buckets: dict[bytes | int, list[Any]] = {}
            for rec in getattr(ss, rec_field):
                why = problem(rec)
                if why:
                    out.reject(1, why)
                    continue
                # An all-zero trace id is none (as stored): with the records without one, in one
                # message, where their positions (RecordIndex) tell them apart.
                key: bytes | int = rec.trace_id if by_trace and rec.trace_id != ZERO_TRACE_ID else b""
                if placed and key:
                    partition = partition_by_trace.get(rec.trace_id)
                    if partition is None:
                        assert partitions is not None
                        partition = partition_by_trace[rec.trace_id] = trace_partition(
                            rec.trace_id, partitions
                        )
                    key = partition
                buckets.setdefault(key, []).append(rec)
            for bucket, recs in buckets.items():
                group = groups.get(bucket)
                if group is None:
                    group = groups[bucket] = [type(request)(), -1]
                part = group[0]
                if group[1] != ri:
                    new_rs = getattr(part, res_field).add()
                    new_rs.resource.CopyFrom(rs.resource)
                    new_rs.schema_url = rs.schema_url
                    group[1] = ri
                else:
                    new_rs = getattr(part, res_field)[-1]
                new_ss = getattr(new_rs, scope_field).add()
                new_ss.scope.CopyFrom(ss.scope)
                new_ss.schema_url = ss.schema_url
                copy_into(getattr(new_ss, rec_field), recs)
    for bucket, (part, _) in groups.items():
        placed_in = bucket if isinstance(bucket, int) else None
        trace_key = bucket.hex().encode() if isinstance(bucket, bytes) and bucket else None
        for piece in _fit(part, kind, max_bytes, out):
            out.messages.append(RawMessage(placed_in, trace_key, piece))
    return out


def split_received(
    body: bytes,
    request: ExportTraceServiceRequest | ExportLogsServiceRequest,
    max_bytes: int,
    window: TimeWindow | None,
    partitions: Sequence[int],
) -> RawSplit | None:
    """`split_request`'s messages per partition for a request parsed from `body` and not changed
    since, from the bytes (`wire_split`: ~4x cheaper than through upb's objects); None where the
    splitter does not read the request exactly, or a message would exceed `max_bytes` (those are
    cut by `split_request`)."""
    kind = SPANS if isinstance(request, ExportTraceServiceRequest) else LOGS

    def place(trace_id: bytes) -> int:
        return trace_partition(trace_id, partitions)

    try:
        split = wire_split.split_for_kafka(body, kind, place, window, time.time_ns())
    except NotPlain:
        return None
    if any(len(part) > max_bytes for part in split.parts.values()):
        return None
    out = RawSplit()
    out.tally = split.rejected
    out.messages = [
        RawMessage(None if partition == UNKEYED else partition, None, part)
        for partition, part in split.parts.items()
    ]
    return out


_TRUNCATED = "…[truncated by inferline]"
TRUNCATED = "truncated_to_fit"  # the ledger's reason for a record cut to fit a Kafka message


def _string_values(value: AnyValue, found: list[AnyValue]) -> None:
    which = value.WhichOneof("value")
    if which == "string_value":
        found.append(value)
    elif which == "array_value":
        for item in value.array_value.values:
            _string_values(item, found)
    elif which == "kvlist_value":
        for kv in value.kvlist_value.values:
            _string_values(kv.value, found)


def _truncate(request: Message, kind: tuple[str, str, str], max_bytes: int) -> bool:
    """Cut the longest string values of a one-record request (attributes, span event attributes, a
    log body) until it fits, and mark the record. False if it still cannot fit."""
    res_field, scope_field, rec_field = kind
    rs = getattr(request, res_field)[0]
    record = getattr(getattr(rs, scope_field)[0], rec_field)[0]
    record.attributes.add(key="inferline.truncated").value.bool_value = True
    strings: list[AnyValue] = []
    for kv in (*rs.resource.attributes, *record.attributes):
        _string_values(kv.value, strings)
    for event in getattr(record, "events", ()):
        for kv in event.attributes:
            _string_values(kv.value, strings)
    if rec_field == "log_records":
        _string_values(record.body, strings)
    while (excess := request.ByteSize() - max_bytes) > 0:
        longest = max(strings, key=lambda v: len(v.string_value), default=None)
        if longest is None or len(longest.string_value) <= 1024:
            return False
        keep = max(len(longest.string_value) - excess - len(_TRUNCATED) - 64, 512)
        longest.string_value = longest.string_value[:keep] + _TRUNCATED
    return True


def _halves(items: list[Any]) -> tuple[list[Any], list[Any]]:
    mid = len(items) // 2
    return items[:mid], items[mid:]


def _fit(request: Message, kind: tuple[str, str, str], max_bytes: int, out: RawSplit) -> list[bytes]:
    """Serialized pieces of `request`, each at most `max_bytes`: halves of the resources, else
    of the scopes, else of the records. A single record over the limit has its longest string
    values cut (and is marked `inferline.truncated`); one that still cannot fit is reported to the
    sender as rejected (partial success), never dropped silently."""
    if request.ByteSize() <= max_bytes:
        return [request.SerializeToString()]
    res_field, scope_field, rec_field = kind
    resources = list(getattr(request, res_field))
    pieces: list[Message] = []
    if len(resources) > 1:
        for half in _halves(resources):
            piece = type(request)()
            copy_into(getattr(piece, res_field), half)
            pieces.append(piece)
    else:
        rs = resources[0]
        scopes = list(getattr(rs, scope_field))
        if len(scopes) > 1:
            for half in _halves(scopes):
                piece = type(request)()
                new_rs = getattr(piece, res_field).add()
                new_rs.resource.CopyFrom(rs.resource)
                new_rs.schema_url = rs.schema_url
                copy_into(getattr(new_rs, scope_field), half)
                pieces.append(piece)
        else:
            ss = scopes[0]
            records = list(getattr(ss, rec_field))
            if len(records) <= 1:
                size = request.ByteSize()
                if records and _truncate(request, kind, max_bytes):
                    out.tally.correct(1, TRUNCATED)
                    return [request.SerializeToString()]
                out.reject(len(records), f"a record of {size} bytes exceeds the Kafka message size limit")
                return []
            for half in _halves(records):
                piece = type(request)()
                new_rs = getattr(piece, res_field).add()
                new_rs.resource.CopyFrom(rs.resource)
                new_rs.schema_url = rs.schema_url
                new_ss = getattr(new_rs, scope_field).add()
                new_ss.scope.CopyFrom(ss.scope)
                new_ss.schema_url = ss.schema_url
                copy_into(getattr(new_ss, rec_field), half)
                pieces.append(piece)
    return [b for p in pieces for b in _fit(p, kind, max_bytes, out)]


class KafkaRawExporter:
    """`inferline.core.consumer.Sink` over the raw topics. Connects in the background, so the
    receiver starts (and answers UNAVAILABLE / 503, not ready) while Kafka is not reachable yet;
    ready only while the cluster answers."""

    def __init__(self, ks: KafkaSettings, bootstrap: str, window: TimeWindow | None = None) -> None:
        self._ks = ks
        self._window = window
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._pending_bytes = 0
        self._by_trace = ks.partition_key == "trace_id"
        self._by_partition = self._by_trace and ks.raw_messages == "partition"
        self._max_value = ks.max_message_bytes - MESSAGE_OVERHEAD
        self._broker = BrokerWatch()

    @property
    def ready(self) -> bool:
        return self._producer is not None and self._broker.reachable

    def start(self) -> None:
        self._connect_task = asyncio.create_task(self._connect(), name="kafka-connect")

    async def _connect(self) -> None:
        self._producer = await start_client(lambda: make_producer(self._ks, self._bootstrap))
        self._broker.start(self._producer)
        log.info("kafka producer connected", bootstrap=self._bootstrap)

    async def export_spans(
        self, request: ExportTraceServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult:
        return await self._export(self._ks.raw_spans_topic, request, project_id, body)

    async def export_logs(
        self, request: ExportLogsServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult:
        return await self._export(self._ks.raw_logs_topic, request, project_id, body)

    async def _export(
        self, topic: str, request: Message, project_id: str, body: bytes | None
    ) -> ExportResult:
        producer = self._producer
        if producer is None:
            raise Unavailable("Kafka is not reachable")
        partitions = await self._partitions(producer, topic) if self._by_partition else None
        split = None
        if body is not None and partitions is not None and SPLIT_COMPILED:
            split = split_received(body, request, self._max_value, self._window, partitions)
        if split is None:
            split = split_request(request, self._by_trace, self._max_value, self._window, partitions)
        size = sum(len(m.value) for m in split.messages)
        if self._pending_bytes and self._pending_bytes + size > self._ks.max_pending_bytes:
            # The Kafka counterpart of the writer's pending rows: data waiting for the durable point.
            raise Overloaded(
                f"{self._pending_bytes} bytes are waiting for Kafka acknowledgements", reason="pending_rows"
            )
        headers = [(self._ks.project_header, project_id.encode())]
        first_headers = headers
        tally = ReceiverTally(SPANS_SIGNAL if topic == self._ks.raw_spans_topic else LOGS_SIGNAL)
        tally.rejected, tally.corrected = split.tally.reasons, split.tally.corrected
        if tally:
            # The processor counts them in the ledger (on the first message); a request left with
            # no record still sends an empty one to carry them (a valid OTLP request: stock
            # consumers see no records).
            first_headers = [*headers, (LEDGER_HEADER, tally.encode())]
        self._pending_bytes += size
        _PENDING.set(self._pending_bytes)
        try:
            # Bounded: a broker outage must become a retryable answer, not a hung sender.
            async with asyncio.timeout(self._ks.delivery_timeout_s):
                messages = split.messages
                if not messages and tally:
                    messages = [RawMessage(None, None, type(request)().SerializeToString())]
                acks = [
                    await producer.send(
                        topic,
                        m.value,
                        key=m.key,
                        partition=m.partition,
                        headers=first_headers if i == 0 else headers,
                    )
                    for i, m in enumerate(messages)
                ]
                await asyncio.gather(*acks)
            self._broker.succeeded()
        except Exception as e:  # KafkaError, TimeoutError: nothing is acknowledged to the sender
            log.warning("kafka did not acknowledge", topic=topic, error=repr(e)[:200])
            raise Unavailable("Kafka did not acknowledge the request") from e
        finally:
            self._pending_bytes -= size
            _PENDING.set(self._pending_bytes)
        return ExportResult(split.rejected, split.error)

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        """The topic's partition ids: from the producer's metadata, else asked of the cluster
        (bounded: a broker outage must become a retryable answer, not a hung sender)."""
        known = producer.client.cluster.partitions_for_topic(topic)
        if known:
            return sorted(known)
        try:
            async with asyncio.timeout(self._ks.delivery_timeout_s):
                return sorted(await producer.partitions_for(topic))
        except Exception as e:  # KafkaError, TimeoutError
            log.warning("kafka topic metadata unavailable", topic=topic, error=repr(e)[:200])
            raise Unavailable("Kafka did not answer for the topic's partitions") from e

    async def close(self) -> None:
        self._broker.stop()
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        if self._producer is not None:
            await stop_client(self._producer, self._ks.delivery_timeout_s)
