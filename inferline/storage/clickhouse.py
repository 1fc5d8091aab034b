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
