"""Recounting rollup buckets from the raw rows (`rollups.recount_statements`), what embedded mode
does after a rebuilt flush, against the real engine: a bucket is counted again from its raw rows,
each call once whatever merges kept of its versions, and a bucket older than the raw rows'
retention is left alone (rollups may be kept longer than raw rows)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.storage.rollups import USAGE_BY_DAY, recount_statements
from tests.genai_examples import chat_inference_rows
from tests.rollup_helpers import views_detached

pytestmark = pytest.mark.integration

DAY_NS = 86_400 * 10**9


def _store(store: Client, count: int, days_ago: int) -> list[dict[str, Any]]:
    """`count` inferences that started `days_ago` days ago, inserted as the service does (the
    rollups' views count them)."""
    rows = chat_inference_rows(count, time.time_ns() - days_ago * DAY_NS, seed=f"{count}-{days_ago}-")
    Inserter(store).insert(Batch(inferences=[dict(r) for r in rows]), f"flush-{days_ago}-{count}")
    return rows


def _day_calls(store: Client) -> int:
    return int(str(store.command(f"SELECT sum(requests) FROM {USAGE_BY_DAY.table}")))


def _recount(store: Client, raw_days: int) -> None:
    """Recounts the buckets of the rows in `touched` (as a rebuilt flush's staging table)."""
    for statement in recount_statements("default", "touched", raw_days):
        store.command(statement, settings={"mutations_sync": 2})


def _touched(store: Client, rows: list[dict[str, Any]]) -> None:
    """The rebuilt flush's rows, as its staging table holds them."""
    ids = ", ".join(f"'{r['inference_id']}'" for r in rows)
    store.command(
        "CREATE TABLE touched ENGINE = Memory AS SELECT project_id, start_time, version "
        f"FROM llm_inferences WHERE inference_id IN ({ids})"
    )


def test_a_recount_counts_the_raw_rows_of_its_buckets(store: Client) -> None:
    """The views missed a flush's rows (a kill between table and views): a recount of their
    buckets counts them, and the calls of an earlier flush in the same buckets, once. Another
    project's bucket is not touched."""
    _store(store, 2, days_ago=0)
    with views_detached(store):
        rows = _store(store, 3, days_ago=0)
    other = [dict(rows[0], project_id="another", inference_id=str(uuid.uuid4()))]
    Inserter(store).insert(Batch(inferences=other), "another-project")
    assert _day_calls(store) == 2 + 1
    _touched(store, rows)

    _recount(store, raw_days=180)
    assert _day_calls(store) == 2 + 3 + 1
    assert int(str(store.command("SELECT sum(calls) FROM llm_inferences_by_minute"))) == 2 + 3 + 1
    another = f"SELECT sum(requests) FROM {USAGE_BY_DAY.table} WHERE project_id = 'another'"
    assert int(str(store.command(another))) == 1


def test_a_recount_counts_an_inference_whose_first_version_was_merged_away(store: Client) -> None:
    """Content that arrived later made a second version of a call; a merge kept only that one.
    The views counted the call once (its first version); so does the recount."""
    with views_detached(store):
        rows = _store(store, 3, days_ago=0)
    Inserter(store).insert(Batch(inferences=[dict(rows[0], version=2)]), "content-arrived")
    store.command("OPTIMIZE TABLE llm_inferences FINAL")
    assert int(str(store.command("SELECT countIf(version = 1) FROM llm_inferences"))) == 2
    _touched(store, rows)

    _recount(store, raw_days=180)
    assert _day_calls(store) == 3


def test_a_recount_leaves_buckets_older_than_the_raw_rows_alone(store: Client) -> None:
    """Raw rows kept 1 day, rollups longer: the day three days ago has expired raw rows but its
    calls are still in the rollup, and a recount must not drop them."""
    rows = _store(store, 2, days_ago=3)
    _touched(store, rows)
    store.command("ALTER TABLE llm_inferences DELETE WHERE 1", settings={"mutations_sync": 2})  # expired
    assert _day_calls(store) == 2

    _recount(store, raw_days=1)
    assert _day_calls(store) == 2
    _recount(store, raw_days=30)  # what a recount past the raw rows' retention would do
    assert _day_calls(store) == 0
