"""Helpers for tests of the rollups' materialized views."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from clickhouse_connect.driver.client import Client


@contextlib.contextmanager
def views_detached(client: Client) -> Iterator[None]:
    """The rollups' views miss what is inserted meanwhile: the state a process killed between an
    insert's table and its views leaves (ClickHouse writes the table's part first)."""
    views = [
        str(name)
        for (name,) in client.query(
            "SELECT name FROM system.tables WHERE database = 'default' AND engine = 'MaterializedView'"
        ).result_rows
    ]
    assert "llm_inferences_by_minute_mv" in views
    for view in views:
        client.command(f"DETACH TABLE `{view}`")
    try:
        yield
    finally:
        for view in views:
            client.command(f"ATTACH TABLE `{view}`")
