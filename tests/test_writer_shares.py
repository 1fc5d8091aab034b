"""The Kafka writer, after a crash and a rebalance, against librdkafka's mock cluster and a real
chDB store: a flush whose inferences reached their table but not the rollups' views (the writer
died in between) is split among the group's members by the rebalance; each member rebuilds the
whole flush (its own partitions' records and the rest read by offset), so the rollups count every
call once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import TopicPartition
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from inferline.core.config import KafkaSettings, Settings
from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.clickhouse.plans import ClickHousePlans
from inferline.exporters.kafka.enriched import EnrichedMessages, Message
from inferline.kafka.clients import cluster_id
from inferline.otlp.flatten import flatten_spans
from inferline.processors.normalise import GenAINormaliser
from inferline.service.writer_role import WriterRole
from inferline.storage.rollups import ROLLUPS, ROLLUPS_9
from tests.kafka_helpers import mock_cluster
from tests.otlp_helpers import sdk_spans
from tests.rollup_helpers import views_detached

pytestmark = [pytest.mark.kafka, pytest.mark.integration]

KS = KafkaSettings()
WRITER_TOPICS = (KS.inferences_topic, KS.spans_topic, KS.logs_topic, KS.scores_topic)


def _inferences(count: int) -> list[dict[str, Any]]:
    spans = flatten_spans(encode_spans(sdk_spans(count=count)), "p").records
    return [dict(r) for r in GenAINormaliser().normalise(spans, [])]


def _produce(bootstrap: str, rows: list[dict[str, Any]], partition: int) -> None:
    """The rows as a processor publishes them (schema version 1), to one partition."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
    encode = EnrichedMessages.for_topics(KS.model_copy(update={"enriched_format": "json"}))
    for m in encode(Batch(inferences=rows)):
        assert isinstance(m, Message)
        producer.produce(m.topic, m.value, m.key, partition, headers=list[Any](m.headers))
    assert producer.flush(10) == 0


def _commit_start(bootstrap: str, partitions: list[TopicPartition]) -> None:
    """The group committed these partitions at offset 0 earlier (a writer ran before)."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": KS.writer_group})
    consumer.commit(
        offsets=[confluent_kafka.TopicPartition(tp.topic, tp.partition, 0) for tp in partitions],
        asynchronous=False,
    )
    consumer.close()


def _calls_counted(client: Client) -> list[int]:
    counts = [int(str(client.command("SELECT sum(calls) FROM llm_inferences_by_minute")))]
    counts += [
        int(str(client.command(f"SELECT sum(requests) FROM `{r.table}`"))) for r in (*ROLLUPS, *ROLLUPS_9)
    ]
    return counts


def test_a_crashed_flush_split_by_a_rebalance_is_counted_once_by_the_rollups(
    store: Client, tmp_path: Path
) -> None:
    topics = dict.fromkeys(WRITER_TOPICS, 2) | {KS.ledger_topic: 1, KS.dlq_topic: 1}
    _cluster, bootstrap = mock_cluster(topics)
    rows = _inferences(6)
    _produce(bootstrap, rows[:3], 0)
    _produce(bootstrap, rows[3:], 1)
    p0, p1 = TopicPartition(KS.inferences_topic, 0), TopicPartition(KS.inferences_topic, 1)
    _commit_start(bootstrap, [p0, p1])

    # The writer that died: its flush of both partitions recorded and in the table, not in the
    # views, its offsets not committed.
    plans = ClickHousePlans(store, "default", KS.writer_group)
    plans.create()
    plans.use_cluster(asyncio.run(cluster_id(KS, bootstrap)))
    token = plans.record_flush({p0: (0, 3), p1: (0, 3)})
    with views_detached(store):
        Inserter(store).insert(Batch(inferences=[dict(r) for r in rows]), token)
    assert int(str(store.command("SELECT count() FROM llm_inferences"))) == 6
    assert _calls_counted(store) == [0] * (1 + len(ROLLUPS) + len(ROLLUPS_9))

    async def run() -> tuple[list[int], set[TopicPartition]]:
        # Another member of the group, there first: after the rebalance the restarted writer holds
        # one of the two partitions of the flush, and rebuilds its share.
        other = AIOKafkaConsumer(
            KS.inferences_topic,
            bootstrap_servers=bootstrap,
            group_id=KS.writer_group,
            enable_auto_commit=False,
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        await other.start()
        await other.getmany(timeout_ms=2000)
        stop = asyncio.Event()
        writer = WriterRole(Settings(data_dir=str(tmp_path / "data")), bootstrap, store)
        task = asyncio.create_task(writer.run(stop))
        held: set[TopicPartition] = set()
        counted: list[int] = []
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                await other.getmany(timeout_ms=200)  # a live member: it heartbeats and rejoins
                if writer.ready:
                    held = {tp for tp in writer._consumer.assignment() if tp.topic == KS.inferences_topic}
                counted = await asyncio.to_thread(_calls_counted, store)
                if len(held) == 1 and set(counted) == {6}:
                    break
        finally:
            stop.set()
            await task
            await other.stop()
        return counted, held

    counted, held = asyncio.run(run())
    assert len(held) == 1, held  # a share: the other partition stayed with the other member
    assert counted == [6] * (1 + len(ROLLUPS) + len(ROLLUPS_9))  # every call once, in every rollup
    assert int(str(store.command("SELECT count() FROM llm_inferences"))) == 6  # no FINAL: no copy
