"""One way to get a clickhouse-connect client: `chdb://PATH` (in-process engine) or `http(s)://`."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client


def connect(url: str, database: str = "default", settings: dict[str, Any] | None = None) -> Client:
    if url.startswith("chdb:"):
        client = clickhouse_connect.get_client(dsn=url, settings=settings or {})
        if database != "default":
            client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            client.database = database
        return client
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"CLICKHOUSE_URL must start with chdb://, http:// or https://, got {url[:20]!r}")
    return clickhouse_connect.get_client(dsn=url, database=database, settings=settings or {})


def release_engine_memory(client: Client, url: str) -> None:
    """Hands the in-process engine's freed memory back to the OS now. chDB's allocator (jemalloc)
    keeps freed pages for ~5 s before it returns them, and under steady inserts there is always
    another insert's worth held (~90-140 MB after a flush of ~10k GenAI spans, measured). A
    ClickHouse server's memory is not this process's: nothing to do there."""
    if url.startswith("chdb:"):
        client.command("SYSTEM JEMALLOC PURGE")
