"""A read-only, project-scoped subset of ClickHouse's HTTP interface over the embedded store.

chDB lets one process own a data directory, so analysts reach the running service's store here:
`clickhouse_connect.get_client(host=..., port=8080, password=KEY)` or
`curl -H 'Authorization: Bearer KEY' 'http://localhost:8080/?query=SELECT+1'`.

Three fences, each enough to stop a different thing:
1. every query runs on a client whose session is `readonly=1` (no writes, no DDL, no table
   functions that touch files or the network, no changing settings, including these);
2. `additional_table_filters` on that session limits each data table to the key's project;
3. the query's AST (`EXPLAIN AST`) may name only the data tables, a few harmless system tables
   and generator table functions, so nothing (e.g. `merge()`) reads around the filters.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from clickhouse_connect.driver.client import Client

from storage.clickhouse import connect

# Table → the column holding the project id.
PROJECT_TABLES = {"llm_inferences": "project_id", "otel_traces": "ProjectId", "otel_logs": "ProjectId"}
SAFE_SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "settings",
        "functions",
        "table_functions",
        "formats",
        "data_type_families",
        "time_zones",
        "build_options",
        "aggregate_function_combinators",
        "collations",
        "contributors",
    }
)
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "values", "null"})

_FORMAT_CLAUSE = re.compile(r"\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_TABLE_IDENTIFIER = re.compile(r"^\s*TableIdentifier (\S+)")
_TABLE_EXPRESSION = re.compile(r"^(\s*)TableExpression")
_FUNCTION = re.compile(r"^\s*Function (\w+)")


class SqlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def split_format(query: str) -> tuple[str, str | None]:
    """`SELECT 1 FORMAT JSON` → (`SELECT 1`, `JSON`)."""
    match = _FORMAT_CLAUSE.search(query)
    if match:
        return query[: match.start()], match.group(1)
    return query.rstrip().rstrip(";"), None


def check_tables(ast: str, database: str) -> None:
    """Raise SqlError(403) when the AST reads anything outside the allowed set."""
    lines = ast.splitlines()
    for i, line in enumerate(lines):
        ident = _TABLE_IDENTIFIER.match(line)
        if ident:
            name = ident.group(1)
            db, _, table = name.rpartition(".")
            if db in ("", database) and table in PROJECT_TABLES:
                continue
            if db == "system" and table in SAFE_SYSTEM_TABLES:
                continue
            raise SqlError(403, f"table {name} is not readable through this endpoint; "
                                f"readable: {', '.join(sorted(PROJECT_TABLES))}")
        expr = _TABLE_EXPRESSION.match(line)
        if expr and i + 1 < len(lines):
            function = _FUNCTION.match(lines[i + 1])
            if function and function.group(1) not in SAFE_TABLE_FUNCTIONS:
                raise SqlError(403, f"table function {function.group(1)}() is not allowed through this endpoint")


class ReadOnlySql:
    """One read-only client per project, made on first use."""

    def __init__(self, url: str, database: str) -> None:
        self._url = url
        self._database = database
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def _client(self, project_id: str) -> Client:
        with self._lock:
            client = self._clients.get(project_id)
            if client is None:
                filters = ", ".join(
                    f"'{self._database}.{table}': '{column} = \\'{project_id}\\''"
                    for table, column in PROJECT_TABLES.items()
                )
                # Order matters: the filter must be set before readonly forbids setting anything.
                settings = {"additional_table_filters": "{" + filters + "}", "readonly": "1"}
                client = connect(self._url, self._database, settings)
                self._clients[project_id] = client
            return client

    def run(self, project_id: str, query: str, default_format: str | None, params: dict[str, Any]) -> tuple[bytes, str]:
        """Run one read query for a project; returns (body, format)."""
        query, fmt = split_format(query.strip())
        if not query:
            raise SqlError(400, "empty query")
        fmt = fmt or default_format or "TabSeparated"
        client = self._client(project_id)
        try:
            ast = client.raw_query(f"EXPLAIN AST {query}", parameters=params or None, fmt="TabSeparatedRaw")
        except Exception as e:
            raise SqlError(400, _clickhouse_message(e)) from None
        check_tables(ast.decode(errors="replace"), self._database)
        try:
            return client.raw_query(query, parameters=params or None, fmt=fmt), fmt
        except Exception as e:
            message = _clickhouse_message(e)
            status = 403 if "READONLY" in message or "readonly" in message else 400
            if status == 403:
                message = "this endpoint is read-only: " + message
            raise SqlError(status, message) from None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _clickhouse_message(e: Exception) -> str:
    text = str(e)
    # clickhouse-connect wraps the engine's message; keep the part that says what is wrong.
    start = text.find("Code:")
    return (text[start:] if start >= 0 else text).strip()[:2000]
