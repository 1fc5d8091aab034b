"""The Kafka writer's filter of inference rows already stored (`_NewInferences`), against the
real engine: a processor replay's copies are inserted once, at any flush size, and what a flush
left out is recorded so its rebuild leaves out the same."""

from __future__ import annotations

import time

import pytest
from clickhouse_connect.driver.client import Client

from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.service.writer_role import _NewInferences
from tests.genai_examples import chat_inference_rows

pytestmark = pytest.mark.integration


def test_a_flush_larger_than_one_query_can_name_still_finds_what_is_stored(store: Client) -> None:
    """12,000 inference ids do not fit in one query (ClickHouse's `max_query_size`, 256 KiB: a
    syntax error the writer retried forever, its flush never stored); the look-up goes in chunks
    and still finds the rows a replay would insert twice."""
    rows = chat_inference_rows(12_000, time.time_ns(), seed="s")  # within the tables' retention
    assert len({r["inference_id"] for r in rows}) == 12_000
    already = [rows[5], rows[6_000], rows[11_999]]  # stored by the flush before a crash
    Inserter(store).insert(Batch(inferences=[dict(r) for r in already]), "before-the-crash")
    kept, left_out = _NewInferences(store, "default").filter_new(Batch(inferences=[*rows, dict(rows[7])]))
    assert len(kept.inferences) == 12_000 - 3  # the three stored ones and the replayed copy of row 7 go
    assert {r["inference_id"] for r in already}.isdisjoint(r["inference_id"] for r in kept.inferences)
    assert sorted(left_out) == sorted(f"{r['inference_id']}/{r['version']}" for r in already)
