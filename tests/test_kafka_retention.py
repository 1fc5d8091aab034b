"""Records Kafka deleted before a consumer group read them (retention, while the group lagged) are
never skipped silently: the consumer continues at the earliest record still there, and says how
many it lost. librdkafka's mock broker keeps at most 5 MiB per partition and deletes the oldest
records past it, as a real broker's retention would."""

from __future__ import annotations

import asyncio
import os

import confluent_kafka
import pytest
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from inferline.core.config import KafkaSettings
from inferline.kafka.clients import make_consumer, poll
from tests.kafka_helpers import mock_cluster

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

TOPIC, GROUP = "retention", "retention-group"


def _expired() -> float:
    sample = REGISTRY.get_sample_value(
        "inferline_kafka_records_expired_total", {"group": GROUP, "topic": TOPIC}
    )
    return sample or 0.0


def test_records_deleted_before_they_were_read_are_counted_not_skipped_silently() -> None:
    owner, bootstrap = mock_cluster({TOPIC: 1})
    tp = confluent_kafka.TopicPartition(TOPIC, 0, 0)
    # The group has read nothing yet: its position is offset 0.
    committer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    committer.commit(offsets=[tp], asynchronous=False)
    committer.close()
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "compression.type": "none"})
    for _ in range(80):  # 8 MiB of incompressible values: more than the mock keeps per partition
        producer.produce(TOPIC, os.urandom(100 << 10), partition=0)
        producer.poll(0)
    producer.flush(30)
    low, high = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "peek"}
    ).get_watermark_offsets(tp, timeout=10)
    assert low > 0, "the broker kept everything; the test cannot show a loss"
    before = _expired()

    async def read_all() -> list[int]:
        consumer = make_consumer(KafkaSettings(), bootstrap, GROUP)
        await consumer.start()
        consumer.assign([TopicPartition(TOPIC, 0)])
        offsets: list[int] = []
        try:
            for _ in range(100):
                polled = await poll(consumer, GROUP, 200, 1000)
                offsets += [m.offset for records in polled.values() for m in records]
                if offsets and offsets[-1] == high - 1:
                    break
        finally:
            await consumer.stop()
        return offsets

    offsets = asyncio.run(read_all())
    assert offsets == list(range(low, high))  # continued at the earliest record still there
    assert _expired() - before == low  # and counted what it could never read
    del owner
