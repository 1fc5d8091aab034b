"""The Kafka bus of distributed mode: client factories, header names, the enriched JSON encoding.

Wire formats are documented in docs/kafka-topics.md; change them only with a schema version bump.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, codec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from aiokafka.structs import ConsumerRecord, TopicPartition

from inferline.core import metrics
from inferline.core.config import KafkaSettings

log = structlog.get_logger()

Client = TypeVar("Client", AIOKafkaProducer, AIOKafkaConsumer)

SCHEMA_VERSION = b"1"  # one JSON record per message (`enriched_format: json`)
SCHEMA_VERSION_NDJSON = b"2"  # many records per message, one JSON object a line (`ndjson`)
H_SCHEMA = "schema-version"
H_KIND = "record-kind"
H_CONTENT_TYPE = "content-type"
KIND_INFERENCE, KIND_SPAN, KIND_LOG, KIND_LEDGER = b"inference", b"span", b"log", b"ledger"
# On enriched inference messages (schema version 2): unix seconds from which the processor that
# made them remembers every call it made a row of (`GenAINormaliser.calls_remembered_since`), so
# the writer need not look up rows of calls that started later (`NewInferences`).
H_CALLS_REMEMBERED_SINCE = "inferline-calls-remembered-since"
KIND_SCORE = b"score"
JSON = b"application/json"
NDJSON = b"application/x-ndjson"
# Dead-letter headers (Kafka Connect style: the original value and headers are kept as they were).
H_DLQ_ERROR = "inferline-dlq-error"
H_DLQ_STAGE = "inferline-dlq-stage"
H_DLQ_TOPIC = "inferline-dlq-source-topic"
H_DLQ_PARTITION = "inferline-dlq-source-partition"
H_DLQ_OFFSET = "inferline-dlq-source-offset"
H_DLQ_LINE = "inferline-dlq-source-line"  # a schema version 2 record: its line in the message, from 0

# Producer request overhead on top of the value (record batch header, key, headers): the value
# budget is max_message_bytes minus this, so a split message never trips the broker limit.
MESSAGE_OVERHEAD = 1024


def _json_default(value: Any) -> Any:
    # Decimal as a string: exact, and what JSON consumers of money amounts expect.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def encode_row(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, default=_json_default)


def dead_letter_headers(
    m: ConsumerRecord[Any, Any], stage: str, error: BaseException
) -> list[tuple[str, bytes]]:
    """The message's own headers (Kafka Connect style: kept as they were), then why and where from."""
    return [
        *list(m.headers or ()),
        (H_DLQ_ERROR, f"{type(error).__name__}: {error}"[:2000].encode()),
        (H_DLQ_STAGE, stage.encode()),
        (H_DLQ_TOPIC, m.topic.encode()),
        (H_DLQ_PARTITION, str(m.partition).encode()),
        (H_DLQ_OFFSET, str(m.offset).encode()),
    ]


def header(headers: Any, name: str) -> bytes | None:
    for k, v in headers or ():
        if k == name:
            return v
    return None


def _common(ks: KafkaSettings, bootstrap: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": ks.client_id,
        "security_protocol": ks.security_protocol,
    }
    if ks.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=ks.sasl_mechanism,
            sasl_plain_username=ks.sasl_username,
            sasl_plain_password=ks.sasl_password,
        )
    if ks.security_protocol.endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=ks.ssl_cafile or None)
    return options


def _compression(name: str) -> str | None:
    if name == "none":
        return None
    available = {"zstd": codec.has_zstd, "lz4": codec.has_lz4, "snappy": codec.has_snappy}.get(name)
    if available is not None and not available():
        # aiokafka needs the optional `cramjam` package for these codecs.
        log.warning("compression codec not installed (pip install cramjam); using gzip", codec=name)
        return "gzip"
    return name


def make_producer(ks: KafkaSettings, bootstrap: str) -> AIOKafkaProducer:
    """acks=all + idempotence: an acknowledged message is on every in-sync replica, and the
    producer's own retries do not duplicate it."""
    return AIOKafkaProducer(
        **_common(ks, bootstrap),
        acks="all",
        enable_idempotence=True,
        compression_type=_compression(ks.compression),
        max_request_size=ks.max_message_bytes + MESSAGE_OVERHEAD,
        # One record batch per partition and request, up to the largest request (aiokafka's
        # default, 16 KiB, is ~3 raw messages of a GenAI trace: a batch, its compression frame,
        # its CRC and its delivery future per handful of messages). Not past `max_message_bytes`:
        # the broker limits a whole batch (uncompressed, when compression is off) to its
        # `message.max.bytes`; a record's value is kept `MESSAGE_OVERHEAD` below it, so one record
        # and its batch header always fit.
        max_batch_size=ks.max_message_bytes,
        linger_ms=ks.linger_ms,
        request_timeout_ms=int(ks.delivery_timeout_s * 1000),
    )


def make_consumer(ks: KafkaSettings, bootstrap: str, group_id: str) -> AIOKafkaConsumer:
    """Manual commits only. The range assignor gives one member the same partition numbers of
    every subscribed topic: with equal partition counts and trace-id keys, the spans and logs of a
    trace meet in one processor (the normaliser joins them in memory)."""
    return AIOKafkaConsumer(
        **_common(ks, bootstrap),
        group_id=group_id,
        enable_auto_commit=False,
        # "none": a position Kafka no longer has raises instead of jumping silently (see poll).
        auto_offset_reset="none",
        partition_assignment_strategy=(RangePartitionAssignor,),
        max_partition_fetch_bytes=max(ks.max_message_bytes + MESSAGE_OVERHEAD, 1048576),
        isolation_level="read_committed",
    )


def make_reader(ks: KafkaSettings, bootstrap: str) -> AIOKafkaConsumer:
    """A consumer of no group, for reading given offset ranges (assign and seek): it commits
    nothing and takes no partition from anyone. Reads as `make_consumer`'s consumers do."""
    return AIOKafkaConsumer(
        **_common(ks, bootstrap),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        max_partition_fetch_bytes=max(ks.max_message_bytes + MESSAGE_OVERHEAD, 1048576),
        isolation_level="read_committed",
    )


async def ensure_topics(ks: KafkaSettings, bootstrap: str, topics: dict[str, int]) -> None:
    """Creates missing topics with the configured partition counts. Best effort: a broker that
    does not allow it (ACLs, librdkafka's mock cluster) auto-creates them on first use instead."""
    if not ks.create_topics:
        return
    admin = AIOKafkaAdminClient(**_common(ks, bootstrap), request_timeout_ms=10_000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, ks.replication_factor)
            for name, partitions in topics.items()
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
            log.info("kafka topics created", topics=[t.name for t in missing])
    except Exception as e:
        log.warning("could not create kafka topics; relying on broker auto-creation", error=repr(e)[:200])
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def cluster_id(ks: KafkaSettings, bootstrap: str) -> str:
    """The id of the cluster behind `bootstrap` (Metadata v2+): what tells a new cluster, or
    another one, from the one whose offsets were recorded. Raises while it is unreachable."""
    admin = AIOKafkaAdminClient(**_common(ks, bootstrap), request_timeout_ms=10_000)
    try:
        await admin.start()
        described = await admin.describe_cluster()
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    found = described.get("cluster_id")
    if not found:
        raise RuntimeError("the cluster reports no id (Kafka < 0.10.1?)")
    return str(found)


async def stop_client(client: AIOKafkaProducer | AIOKafkaConsumer, timeout_s: float = 10.0) -> None:
    """Stops a client, bounded: with the cluster gone, a producer would retry what it still holds
    forever. Whatever it held was never acknowledged to anyone, so nothing acknowledged is lost."""
    try:
        await asyncio.wait_for(client.stop(), timeout_s)
    except Exception as e:  # TimeoutError included
        log.warning("kafka client did not stop cleanly", client=type(client).__name__, error=repr(e)[:200])


async def start_client(factory: Callable[[], Client], stop: asyncio.Event | None = None) -> Client | None:
    """A started client, retrying (a fresh one each time) while the cluster is not reachable, so
    roles can start before Kafka does. None if `stop` is set first."""
    delay = 0.5
    while True:
        client = factory()
        try:
            await client.start()
            return client
        except Exception as e:
            log.warning("kafka not reachable, retrying", error=repr(e)[:200], retry_in_s=delay)
            await stop_client(client, 1.0)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return None
            except TimeoutError:
                pass
        delay = min(delay * 2, 10.0)


class PollSize:
    """How many records to ask the next poll for: at most `max_records`, and about `max_bytes` of
    values in all, by the size of the records polled lately. A poll is one batch of the
    processor's workers, and the size of a message depends on its producer (one trace, or all the
    traces of a request bound for a partition, or a whole request): the memory a batch takes
    should not."""

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        # Until a poll says otherwise, records are assumed large: a first poll of `max_records`
        # messages of a megabyte each would be hundreds of megabytes in one batch.
        self._record_bytes = max(1.0, max_bytes / 16)

    def records(self) -> int:
        return max(1, min(self._max_records, int(self._max_bytes / self._record_bytes)))

    def observe(self, polled: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Learns from the records a poll returned (half the weight to the latest poll)."""
        count = sum(len(records) for records in polled.values())
        if count:
            size = sum(len(m.value or b"") for records in polled.values() for m in records)
            self._record_bytes = max(1.0, (self._record_bytes + size / count) / 2)


async def poll(
    consumer: AIOKafkaConsumer, group: str, timeout_ms: int, max_records: int
) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
    """`getmany`, with the two ways a position can be missing made explicit. A partition the group
    never committed starts at its earliest record. A committed position that Kafka no longer has
    (its retention deleted the records while this group lagged behind, or the topic was
    recreated) moves to the earliest record still there, and what was skipped is logged as an
    error and counted in `inferline_kafka_records_expired`: acknowledged data lost to retention is
    never skipped silently."""
    try:
        return await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    except NoOffsetForPartitionError as e:
        for tp in e.args:
            if isinstance(tp, TopicPartition):
                await consumer.seek_to_beginning(tp)
        return {}
    except OffsetOutOfRangeError as e:
        positions: dict[TopicPartition, int] = e.args[0] if e.args and isinstance(e.args[0], dict) else {}
        earliest = await consumer.beginning_offsets(list(positions))
        for tp, position in positions.items():
            first = earliest.get(tp, 0)
            skipped = max(0, first - position)
            log.error(
                "kafka no longer has records this group had not read; continuing at the earliest",
                topic=tp.topic,
                partition=tp.partition,
                position=position,
                earliest=first,
                skipped=skipped,
            )
            metrics.KAFKA_RECORDS_EXPIRED.labels(group, tp.topic).inc(skipped)
            consumer.seek(tp, first)
        return {}


class BrokerWatch:
    """Whether a client can reach the cluster now: its metadata is fetched every `interval_s`,
    and the cluster counts as unreachable once no fetch (and no delivery) succeeded for `grace_s`.
    Readiness follows it, so a load balancer stops routing to a role that can only refuse."""

    def __init__(self, interval_s: float = 1.0, grace_s: float = 3.0) -> None:
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._last_ok = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def reachable(self) -> bool:
        return self._last_ok > 0 and asyncio.get_running_loop().time() - self._last_ok <= self._grace_s

    def succeeded(self) -> None:
        """Something the cluster answered (a delivery, a fetch) proves it reachable too."""
        self._last_ok = asyncio.get_running_loop().time()

    def start(self, client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
        self._task = asyncio.create_task(self._watch(client), name="kafka-broker-watch")

    async def _watch(self, client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
        # The clients' own connection object: its metadata fetch is the cheapest round trip.
        connection = client.client if isinstance(client, AIOKafkaProducer) else client._client
        while True:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.fetch_all_metadata(), self._grace_s)
                self.succeeded()
            await asyncio.sleep(self._interval_s)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
