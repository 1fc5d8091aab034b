"""Retention: per-table TTLs from the configuration, applied at start, changed by a restart, and
enforced by ClickHouse; ClickHouse's own log tables bounded too."""

from __future__ import annotations

import contextlib
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferline.storage.clickhouse import connect
from inferline.storage.retention import apply_retention, kind_of, unbounded_system_logs
from inferline.storage.schema import migrate
from tests.conftest import ROOT, make_service

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SYSTEM_LOG_CONFIG = ROOT / "deploy" / "clickhouse" / "config.d" / "system_log_ttl.xml"
_TTL_DAYS = re.compile(r"\nTTL .+ \+ toIntervalDay\((\d+)\)\n")


def show_create(client: Any, table: str) -> str:
    return client.query(f"SHOW CREATE TABLE `{table}`").result_rows[0][0]


def ttl_days(client: Any, table: str) -> int | None:
    match = _TTL_DAYS.search(show_create(client, table))
    return int(match[1]) if match else None


def managed_tables(client: Any) -> dict[str, str]:
    names = client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows
    return {name: kind for (name,) in names if (kind := kind_of(name)) and not name.endswith("_mv")}


@contextlib.contextmanager
def read_store(data_dir: Path) -> Iterator[Any]:
    """The stopped service's store, opened in this process."""
    client = connect(f"chdb://{data_dir / 'clickhouse'}")
    try:
        yield client
    finally:
        client.close()  # chDB holds one path per process: let the next test open its own


def test_start_applies_configured_days_and_a_restart_changes_them(tmp_path: Path) -> None:
    configured = {
        "INFERLINE_RETENTION_DAYS": "90",
        "INFERLINE_RETENTION__SPANS_DAYS": "7",
        "INFERLINE_RETENTION__LOGS_DAYS": "14",
        "INFERLINE_RETENTION__INFERENCES_DAYS": "30",
        "INFERLINE_RETENTION__FEEDBACK_DAYS": "60",
        "INFERLINE_RETENTION__ROLLUPS_DAYS": "400",
    }
    expected = {"spans": 7, "logs": 14, "inferences": 30, "feedback": 60, "rollups": 400}
    svc = make_service(tmp_path, **configured)
    svc.start()
    assert svc.stop() == 0
    with read_store(svc.data_dir) as client:
        tables = managed_tables(client)
        assert {"otel_traces", "otel_logs", "llm_inferences", "llm_inferences_by_minute"} <= set(tables)
        assert {t: ttl_days(client, t) for t in tables} == {t: expected[k] for t, k in tables.items()}

    # Spans shortened, inferences back to the general INFERLINE_RETENTION_DAYS.
    del configured["INFERLINE_RETENTION__INFERENCES_DAYS"]
    svc2 = make_service(tmp_path, **{**configured, "INFERLINE_RETENTION__SPANS_DAYS": "3"})
    svc2.start()
    assert svc2.stop() == 0
    expected |= {"spans": 3, "inferences": 90}
    with read_store(svc2.data_dir) as client:
        tables = managed_tables(client)
        assert {t: ttl_days(client, t) for t in tables} == {t: expected[k] for t, k in tables.items()}
    records = [json.loads(line) for line in svc2.logs().splitlines() if line.startswith("{")]
    changed = {r["table"] for r in records if r.get("event") == "retention changed"}
    assert changed == {"otel_traces", "llm_inferences"}  # the others already had their days
    assert (svc2.data_dir / "clickhouse" / "data").exists()
    assert not (svc2.data_dir / "clickhouse" / "data" / "system").exists()  # chDB keeps no log tables


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    client = connect(f"chdb://{tmp_path / 'clickhouse'}")
    migrate(client, "default", 180)
    yield client
    client.close()


def _insert_old_and_new(client: Any) -> None:
    for age, tag in (("40 DAY", "old"), ("0 DAY", "new")):
        when = f"now64(9) - INTERVAL {age}"
        client.command(
            f"INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, ProjectId) "
            f"VALUES ({when}, '{tag}', '{tag}', 'chat', 'p')"
        )
        client.command(f"INSERT INTO otel_logs (Timestamp, Body, ProjectId) VALUES ({when}, '{tag}', 'p')")
        client.command(
            "INSERT INTO llm_inferences (project_id, inference_id, trace_id, start_time, end_time, model, "
            f"success, version, total_cost_usd) VALUES ('p', generateUUIDv4(), '{tag}', {when}, {when}, "
            "'gpt-4o-mini', true, 1, 0.001)"
        )


def _counts(client: Any) -> dict[str, int]:
    queries = {
        "otel_traces": "SELECT count() FROM otel_traces",
        "otel_logs": "SELECT count() FROM otel_logs",
        "llm_inferences": "SELECT count() FROM llm_inferences",
        "llm_inferences_by_minute": "SELECT sum(calls) FROM llm_inferences_by_minute",
    }
    return {t: int(client.query(q).result_rows[0][0]) for t, q in queries.items()}


def _wait_for_mutations(client: Any) -> None:
    deadline = time.monotonic() + 30
    while client.query("SELECT count() FROM system.mutations WHERE NOT is_done").result_rows[0][0]:
        assert time.monotonic() < deadline, "TTL mutations did not finish"
        time.sleep(0.05)


TABLES = ("otel_traces", "otel_logs", "llm_inferences", "llm_inferences_by_minute")
THIRTY_DAYS = dict.fromkeys(("spans", "logs", "inferences", "feedback", "rollups"), 30)


def test_rows_older_than_the_ttl_disappear_after_optimize_final(store: Any) -> None:
    _insert_old_and_new(store)
    assert _counts(store) == dict.fromkeys(TABLES, 2)  # 180 days: both kept

    changes = apply_retention(store, "default", THIRTY_DAYS)
    assert {c.table for c in changes} >= set(TABLES)
    assert all(c.old_days == 180 and c.new_days == 30 for c in changes)
    _wait_for_mutations(store)
    for table in TABLES:
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    assert _counts(store) == dict.fromkeys(TABLES, 1)
    assert store.query("SELECT TraceId FROM otel_traces").result_rows == [("new",)]


def test_without_materialize_old_parts_expire_once_the_ttl_is_materialized(store: Any) -> None:
    """materialize = false leaves written parts with the expiry they had; the operator's
    `ALTER TABLE … MATERIALIZE TTL` (docs/schema.md#retention) then applies the new one."""
    _insert_old_and_new(store)
    assert apply_retention(store, "default", THIRTY_DAYS, materialize=False)
    for table in TABLES:
        assert ttl_days(store, table) == 30
        store.command(f"ALTER TABLE {table} MATERIALIZE TTL", settings={"mutations_sync": 1})
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    assert _counts(store) == dict.fromkeys(TABLES, 1)


def test_unchanged_settings_change_nothing(store: Any) -> None:
    days = {"spans": 7, "logs": 14, "inferences": 30, "feedback": 60, "rollups": 400}
    assert apply_retention(store, "default", days)
    before = {t: show_create(store, t) for t in managed_tables(store)}
    mutations = store.query("SELECT count() FROM system.mutations").result_rows
    assert apply_retention(store, "default", days) == []
    assert {t: show_create(store, t) for t in managed_tables(store)} == before
    assert store.query("SELECT count() FROM system.mutations").result_rows == mutations


def test_tables_without_a_ttl_get_one_on_their_time_column(store: Any) -> None:
    store.command("DROP TABLE IF EXISTS feedback")  # as an older install might have made it
    store.command(
        "CREATE TABLE feedback (project_id String, created_at DateTime64(3, 'UTC'), score Int8) "
        "ENGINE = ReplacingMergeTree ORDER BY (project_id, created_at)"
    )
    store.command(
        "CREATE TABLE llm_cost_by_day (day Date, model String, usd Float64) "
        "ENGINE = SummingMergeTree ORDER BY (day, model)"
    )
    days = {"spans": 180, "logs": 180, "inferences": 180, "feedback": 365, "rollups": 730}
    changes = {c.table: (c.old_days, c.new_days) for c in apply_retention(store, "default", days)}
    assert changes.pop("feedback") == (None, 365)
    assert changes.pop("scores") == (180, 365)  # evaluation results are kept as long as feedback
    assert changes.pop("llm_cost_by_day") == (None, 730)
    assert "llm_inferences_by_minute" in changes
    assert all(kind_of(t) == "rollups" and change == (180, 730) for t, change in changes.items())
    assert "TTL toDateTime(created_at) + toIntervalDay(365)" in show_create(store, "feedback")
    assert "TTL day + toIntervalDay(730)" in show_create(store, "llm_cost_by_day")


def test_a_ttl_set_by_hand_is_left_alone(store: Any) -> None:
    hand_made = (
        "toDateTime(Timestamp) + toIntervalDay(30), "
        "toDateTime(Timestamp) + toIntervalDay(7) DELETE WHERE SpanName = 'noise'"
    )
    store.command(f"ALTER TABLE otel_traces MODIFY TTL {hand_made}")
    days = dict.fromkeys(("spans", "logs", "inferences", "feedback", "rollups"), 180)
    assert apply_retention(store, "default", days) == []
    assert "WHERE SpanName = 'noise'" in show_create(store, "otel_traces")


def test_the_embedded_engine_keeps_no_system_log_tables(store: Any) -> None:
    """chDB has no query_log, part_log, trace_log…: even asked to log queries, nothing is written
    under `system`, so there is nothing to bound (a ClickHouse server is bounded by the config.d
    file below)."""
    for _ in range(3):
        store.query("SELECT count() FROM otel_traces", settings={"log_queries": 1, "log_query_threads": 1})
    _insert_old_and_new(store)
    store.command("SYSTEM FLUSH LOGS")
    logs = store.query(
        "SELECT name FROM system.tables WHERE database = 'system' AND name LIKE '%\\_log%' "
        "AND engine LIKE '%MergeTree%' AND engine NOT LIKE 'System%'"
    ).result_rows
    assert logs == []
    assert unbounded_system_logs(store) == []


# Log tables a ClickHouse server writes by default that grow with load (crash_log stays tiny;
# opentelemetry_span_log is empty unless queries carry trace context, and its default <engine>
# cannot take a <ttl>).
GROWING_LOGS = {
    "query_log",
    "query_thread_log",
    "query_views_log",
    "part_log",
    "trace_log",
    "text_log",
    "metric_log",
    "asynchronous_metric_log",
    "processors_profile_log",
    "error_log",
}


def test_server_config_bounds_every_growing_system_log(store: Any) -> None:
    root = ET.parse(SYSTEM_LOG_CONFIG).getroot()
    assert root.tag == "clickhouse"
    ttls = {el.tag: el.findtext("ttl") for el in root}
    assert set(ttls) >= GROWING_LOGS, GROWING_LOGS - set(ttls)
    for table, ttl in ttls.items():
        assert ttl and re.fullmatch(r"\w+ \+ INTERVAL \d+ DAY DELETE", ttl.strip()), (table, ttl)
        # The expression is valid ClickHouse on the columns those tables have.
        store.command(
            f"CREATE TABLE ttl_check_{table} (event_date Date, finish_date Date) "
            f"ENGINE = MergeTree ORDER BY event_date TTL {ttl.strip()}"
        )
