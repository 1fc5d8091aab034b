"""Tables whose rows carry content merge one column at a time in small blocks, in a fresh store
and in one made before migration 10 (the default merge took 150-435 MB per merge under the
bench's load; docs/performance.md, "memory of merges")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate
from tests.migration_helpers import migrate_before

pytestmark = pytest.mark.integration

CONTENT_TABLES = ("otel_traces", "otel_logs", "llm_inferences", "feedback", "scores")
MERGE_SETTINGS = (
    "vertical_merge_algorithm_min_rows_to_activate = 1",
    "vertical_merge_algorithm_min_columns_to_activate = 1",
    "merge_max_block_size = 2048",
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(f"chdb://{tmp_path / 'clickhouse'}")
    yield c
    c.close()


def _engines(client: Client) -> dict[str, str]:
    result = client.query(
        "SELECT name, engine_full FROM system.tables "
        "WHERE database = 'default' AND name IN {names:Array(String)}",
        parameters={"names": list(CONTENT_TABLES)},
    )
    return {name: engine for name, engine in result.result_rows}


def test_a_fresh_store_merges_content_tables_column_by_column(client: Client) -> None:
    migrate(client)
    engines = _engines(client)
    assert sorted(engines) == sorted(CONTENT_TABLES)
    for table, engine in engines.items():
        assert all(s in engine for s in MERGE_SETTINGS), (table, engine)


def test_a_store_made_before_migration_10_gets_the_merge_settings(client: Client) -> None:
    migrate_before(client, 10)
    names = ", ".join(s.split(" = ")[0] for s in MERGE_SETTINGS)
    for table in CONTENT_TABLES:  # as the tables of those migrations were made before it
        client.command(f"ALTER TABLE {table} RESET SETTING {names}")
    assert not any("merge_max_block_size" in e for e in _engines(client).values())

    assert 10 in migrate(client)
    for table, engine in _engines(client).items():
        assert all(s in engine for s in MERGE_SETTINGS), (table, engine)
    assert migrate(client) == []  # once
