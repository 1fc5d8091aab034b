"""Recounting rollup buckets from the raw rows (`rollups.recount_statements`), what embedded mode
does after a rebuilt flush, against the real engine: a bucket is counted again from its raw rows,
each inference once, and a bucket older than the raw rows' retention is left alone (rollups may
be kept longer than raw rows)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.processors.normalise import GenAINormaliser
from inferline.storage.rollups import USAGE_BY_DAY, recount_statements
from tests.genai_examples import flat_span

pytestmark = pytest.mark.integration

DAY_NS = 86_400 * 10**9
ATTRIBUTES = {
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.operation.name": "chat",
}


def _store(store: Client, count: int, days_ago: int) -> list[dict[str, Any]]:
    """`count` inferences that started `days_ago` days ago, inserted as the service does (the
    rollups' views count them)."""
    start = time.time_ns() - days_ago * DAY_NS
    spans = [
        flat_span(ATTRIBUTES, name="chat", seed=f"d{days_ago}-{i}", start=start + i, end=start + i + 10**9)
        for i in range(count)
    ]
    rows = [dict(r) for r in GenAINormaliser().normalise(spans, [])]
    Inserter(store).insert(Batch(inferences=[dict(r) for r in rows]), f"flush-{days_ago}-{count}")
    return rows


def _day_calls(store: Client) -> int:
    return int(str(store.command(f"SELECT sum(requests) FROM {USAGE_BY_DAY.table}")))


def _recount(store: Client, raw_days: int) -> None:
    """Recounts the buckets of the rows in `touched` (as a rebuilt flush's staging table)."""
    for statement in recount_statements("default", "touched", raw_days):
        store.command(statement, settings={"mutations_sync": 2})


def test_a_recount_counts_each_inference_of_its_buckets_once(store: Client) -> None:
    rows = _store(store, 3, days_ago=0)
    store.command(
        "CREATE TABLE touched ENGINE = Memory AS SELECT project_id, start_time, version FROM llm_inferences"
    )
    # The views missed the rows (a kill between table and views), and a copy of one row is
    # stored again (a sender's retry).
    store.command(f"ALTER TABLE {USAGE_BY_DAY.table} DELETE WHERE 1", settings={"mutations_sync": 2})
    Inserter(store).insert(Batch(inferences=[dict(rows[0])]), "a-retry")
    assert _day_calls(store) == 1

    _recount(store, raw_days=180)
    assert _day_calls(store) == 3
    assert int(str(store.command("SELECT sum(calls) FROM llm_inferences_by_minute"))) == 3


def test_a_recount_leaves_buckets_older_than_the_raw_rows_alone(store: Client) -> None:
    """Raw rows kept 1 day, rollups longer: the day three days ago has expired raw rows but its
    calls are still in the rollup, and a recount must not drop them."""
    _store(store, 2, days_ago=3)
    store.command(
        "CREATE TABLE touched ENGINE = Memory AS SELECT project_id, start_time, version FROM llm_inferences"
    )
    store.command("ALTER TABLE llm_inferences DELETE WHERE 1", settings={"mutations_sync": 2})  # expired
    assert _day_calls(store) == 2

    _recount(store, raw_days=1)
    assert _day_calls(store) == 2
    _recount(store, raw_days=30)  # what a recount past the raw rows' retention would do
    assert _day_calls(store) == 0
