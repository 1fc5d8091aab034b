"""Tables whose rows carry content merge one column at a time in small blocks, in a fresh store
and in one made before migration 10 (the default merge took 150-435 MB per merge under the
bench's load; docs/performance.md, "memory of merges"); a flush writes each of them as one
compact part, a handful of files rather than a file per column (migration 13; "compact parts")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate
from tests.genai_examples import chat_inference_rows
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


def _flush_parts(client: Client, token: str = "one-flush") -> list[tuple[str, str, int, str]]:
    """Inserts a flush of inference rows holding ~13 MB of content (past ClickHouse's default
    10 MiB for a one-file part), returns (table, format, rows, path) of the parts."""
    rows = chat_inference_rows(400, time.time_ns(), seed="parts")
    for row in rows:
        row["prompt_messages"] = '[{"role":"user","content":"' + "lorem ipsum " * 2_700 + '"}]'
    Inserter(client).insert(Batch(inferences=rows), token)
    return client.query(
        "SELECT table, part_type, rows, path FROM system.parts "
        "WHERE active AND database = 'default' AND table = 'llm_inferences'"
    ).result_rows


def test_a_flush_is_stored_as_one_compact_part_not_a_file_per_column(client: Client) -> None:
    migrate(client)
    [(_, part_type, rows, path)] = _flush_parts(client)
    assert (part_type, rows) == ("Compact", 400)
    assert len(list(Path(path).iterdir())) < 20  # a Wide part of this table: ~230 files


def test_a_store_made_before_migration_13_gets_compact_parts(client: Client) -> None:
    migrate_before(client, 13)
    [(_, part_type, _, _)] = _flush_parts(client)
    assert part_type == "Wide"  # what the tables did before

    assert migrate(client) == [13]
    for table in ("otel_traces", "otel_logs", "llm_inferences"):
        assert "min_bytes_for_wide_part = 134217728" in _engines_of(client, table)
    client.command("TRUNCATE TABLE llm_inferences")
    [(_, part_type, _, _)] = _flush_parts(client, "a-flush-after-the-migration")
    assert part_type == "Compact"


def _engines_of(client: Client, table: str) -> str:
    return str(
        client.command(
            f"SELECT engine_full FROM system.tables WHERE database = 'default' AND name = '{table}'"
        )
    )
