"""Two Kafka clusters feed one ClickHouse database through writers with the same group name (a
second region, a cluster rebuilt beside the old one, a staging copy). Their offsets overlap, so a
writer that took the other cluster's flush plans for its own would insert its new records under
the other cluster's tokens, and ClickHouse would drop them as replays. Real writer roles, real
mock clusters (librdkafka's), one real chDB store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from clickhouse_connect.driver.client import Client

from inferline.core.config import BatchSettings, KafkaSettings, Settings
from inferline.kafka.clients import encode_row
from inferline.service.writer_role import WriterRole
from tests.kafka_helpers import mock_cluster
from tests.otlp_helpers import span_row

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.timeout(240)]

GROUP = "inferline-writer"  # the default group name, on both clusters


@pytest.fixture
def client(store: Client) -> Client:
    return store


def _produce(bootstrap: str, names: list[str]) -> None:
    """Span rows as the processor role publishes them, all on partition 0 (overlapping offsets)."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    ks = KafkaSettings()
    for name in names:
        producer.produce(ks.spans_topic, encode_row(span_row(name)), partition=0)
    assert producer.flush(30) == 0


def _count(client: Client, prefix: str) -> int:
    return int(str(client.command(f"SELECT count() FROM otel_traces WHERE SpanName LIKE '{prefix}%'")))


def _write_until(bootstrap: str, client: Client, done: Callable[[], bool], tmp: Path) -> None:
    """Runs a writer role on `bootstrap` until `done()`, then stops it (a clean stop commits)."""
    settings = Settings(
        data_dir=tmp,
        kafka=KafkaSettings(writer_group=GROUP),
        batch=BatchSettings(max_rows=10_000, min_delay_s=0.05, max_delay_s=0.2),
    )

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(WriterRole(settings, bootstrap, client).run(stop))
        deadline = time.monotonic() + 90
        while not done() and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 60)

    asyncio.run(run())


def test_two_clusters_with_one_writer_group_lose_nothing(client: Client, tmp_path: Path) -> None:
    owners: list[Any] = []
    one_owner, one = mock_cluster()
    two_owner, two = mock_cluster()
    owners += [one_owner, two_owner]

    _produce(one, [f"one {i}" for i in range(30)])
    _write_until(one, client, lambda: _count(client, "one ") >= 30, tmp_path)
    _produce(two, [f"two {i}" for i in range(10)])
    _write_until(two, client, lambda: _count(client, "two ") >= 10, tmp_path)

    # Cluster two's writer restarts at its committed offset 10, below the end of cluster one's
    # plan for the same group, topic and partition; its next 20 records are new data.
    _produce(two, [f"two {i}" for i in range(10, 30)])
    _write_until(two, client, lambda: _count(client, "two ") >= 30, tmp_path)
    assert _count(client, "two ") == 30, "records of cluster two were dropped as replays of cluster one"
    _produce(one, [f"one {i}" for i in range(30, 40)])
    _write_until(one, client, lambda: _count(client, "one ") >= 40, tmp_path)

    names = client.query("SELECT SpanName, count() FROM otel_traces GROUP BY SpanName").result_rows
    expected = [f"one {i}" for i in range(40)] + [f"two {i}" for i in range(30)]
    assert sorted(n for n, _ in names) == sorted(expected)
    assert all(c == 1 for _, c in names), "a span was stored twice"
