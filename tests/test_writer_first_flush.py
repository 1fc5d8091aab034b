"""A writer role killed (SIGKILL) during the first flush of its partitions, after the insert
reached the inferences' table and before it reached every rollup view. The group had committed no
offset of those partitions before, and the restarted writer must still find the flush's plan and
complete it: read as new data instead, its inferences are left out as already stored, and the
rollups never count them. Seen once in the kill -9 test of the three roles, where the writer is
killed about a second after it started. A real writer process, a real mock cluster (librdkafka's),
a real chDB store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from inferline.core.config import KafkaSettings
from inferline.kafka.clients import encode_row
from inferline.otlp.flatten import flatten_spans
from inferline.processors.normalise import GenAINormaliser
from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate
from tests.conftest import wait_for
from tests.kafka_helpers import Role, mock_cluster, role_env
from tests.otlp_helpers import sdk_spans
from tests.test_flush_plans import _stored_once

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(240)]

KEY = "il-first-flush-key"
PROJECT = "proj-first"
CALLS = 40
# Made to throw on every insert into `llm_inferences` while its flag table has a row: the
# inferences' part is written, the insert then fails in the views (in life: too many parts in a
# rollup, a full disk; or no failure at all, and a kill between the two).
FAILING_VIEW = (
    "CREATE MATERIALIZED VIEW aa_failing_mv ENGINE = Null AS SELECT "
    "throwIf((SELECT count() FROM fail_views) > 0, 'a view failed') AS failed FROM llm_inferences"
)


@contextlib.contextmanager
def _store(data_dir: Path) -> Iterator[Client]:
    """The writer's chDB store, migrated, while no writer holds it."""
    client = connect(f"chdb://{data_dir / 'clickhouse'}")
    try:
        migrate(client)
        yield client
    finally:
        client.close()


def _inference_rows(count: int) -> list[dict[str, Any]]:
    spans = flatten_spans(encode_spans(sdk_spans(count=count)), PROJECT).records
    return [dict(r) for r in GenAINormaliser().normalise(spans, [])]


def _produce(bootstrap: str, rows: list[dict[str, Any]]) -> None:
    """Inference rows as the processor role publishes them, all on partition 0."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for row in rows:
        producer.produce(KafkaSettings().inferences_topic, encode_row(row), partition=0)
    assert producer.flush(30) == 0


def _committed(bootstrap: str) -> int | None:
    """The writer group's committed offset of the inferences' partition 0."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "inferline-writer"})
    try:
        tp = confluent_kafka.TopicPartition(KafkaSettings().inferences_topic, 0)
        offset: int = consumer.committed([tp], timeout=10)[0].offset
        return offset if offset >= 0 else None
    finally:
        consumer.close()


def test_a_writer_killed_in_its_first_flush_completes_the_rollups_after_restart(tmp_path: Path) -> None:
    owner, bootstrap = mock_cluster()
    env = role_env(tmp_path, bootstrap, INFERLINE_API_KEYS=f"{KEY}={PROJECT}")
    data_dir = Path(env["INFERLINE_DATA_DIR"])
    with _store(data_dir) as client:
        client.command("CREATE TABLE fail_views (on UInt8) ENGINE = MergeTree ORDER BY tuple()")
        client.command("INSERT INTO fail_views VALUES (1)")
        client.command(FAILING_VIEW)
    _produce(bootstrap, _inference_rows(CALLS))

    writer = Role("writer", env, tmp_path).start()
    try:
        # The first flush reached the table and failed in the views; the writer retries it in place.
        raw = "SELECT count() FROM llm_inferences"
        assert wait_for(lambda: int(writer.sql(raw, KEY)) == CALLS and "flush failed" in writer.logs(), 60)
        assert _committed(bootstrap) == 0  # its start, committed before it was consumed
        assert writer.process is not None
        writer.process.kill()
        writer.wait_exit(10)

        with _store(data_dir) as client:
            client.command("DROP TABLE aa_failing_mv")
        writer.start()
        assert wait_for(lambda: _committed(bootstrap) == CALLS, 60, 0.5), writer.logs()[-3000:]
        assert "rebuilding recorded flushes" in writer.logs()
        writer.stop()
        with _store(data_dir) as client:
            _stored_once(client, CALLS, spans=0)  # each rollup counts each call once
    finally:
        writer.stop()
        del owner


def test_a_writer_restarted_with_records_waiting_stores_every_one(tmp_path: Path) -> None:
    """Its first poll begins before its partitions are assigned and returns the first records of
    them (aiokafka waits for the assignment inside the poll): they are the new assignment's, and
    are stored like the rest."""
    owner, bootstrap = mock_cluster()
    env = role_env(tmp_path, bootstrap, INFERLINE_API_KEYS=f"{KEY}={PROJECT}")
    rows = _inference_rows(2 * CALLS)
    _produce(bootstrap, rows[:CALLS])
    writer = Role("writer", env, tmp_path).start()
    try:
        assert wait_for(lambda: _committed(bootstrap) == CALLS, 60, 0.5), writer.logs()[-3000:]
        assert writer.process is not None
        writer.process.kill()  # the group waits for the dead member: the restart's first poll waits too
        writer.wait_exit(10)
        _produce(bootstrap, rows[CALLS:])
        writer.start()
        assert wait_for(lambda: _committed(bootstrap) == 2 * CALLS, 60, 0.5), writer.logs()[-3000:]
        calls = "SELECT count() FROM llm_inferences FINAL"
        assert int(writer.sql(calls, KEY)) == 2 * CALLS
        assert "polled across a rebalance: read again" in writer.logs()  # the path this test is for
    finally:
        writer.stop()
        del owner
