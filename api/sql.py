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
from typing import Any, Protocol

from ingest.auth import PROJECT_ID
from storage.clickhouse import connect

# Table → the column holding the project id.
PROJECT_TABLES = {
    "llm_inferences": "project_id",
    "llm_inferences_by_minute": "project_id",
    "otel_traces": "ProjectId",
    "otel_logs": "ProjectId",
}
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
SAFE_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "values", "null"}
)

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
            raise SqlError(
                403,
                f"table {name} is not readable through this endpoint; "
                f"readable: {', '.join(sorted(PROJECT_TABLES))}",
            )
        expr = _TABLE_EXPRESSION.match(line)
        if expr and i + 1 < len(lines):
            function = _FUNCTION.match(lines[i + 1])
            if function and function.group(1) not in SAFE_TABLE_FUNCTIONS:
                raise SqlError(
                    403, f"table function {function.group(1)}() is not allowed through this endpoint"
                )


_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"b": "\b", "f": "\f", "r": "\r", "n": "\n", "t": "\t", "0": "\0", "a": "\a", "v": "\v"}


def unescape_param(value: str) -> str:
    """Query parameters arrive in ClickHouse's escaped text form (`param_x=it\\'s`)."""
    return _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), value)


class _Session(Protocol):
    def __call__(self, query: str, fmt: str, params: dict[str, str]) -> bytes: ...


class ReadOnlySql:
    """One read-only session per project, made on first use.

    chDB: a connection of the service's own engine (chDB allows several per process), bound to
    the project with SET before `readonly` seals it. ClickHouse server: a clickhouse-connect
    client whose every query carries the same settings.
    """

    def __init__(self, url: str, database: str) -> None:
        self._url = url
        self._database = database
        self._sessions: dict[str, tuple[_Session, threading.Lock]] = {}
        self._closers: list[Any] = []
        self._lock = threading.Lock()

    def _filters(self, project_id: str) -> str:
        if not PROJECT_ID.match(project_id):  # ids are validated at creation; never interpolate others
            raise SqlError(403, "invalid project id")
        pairs = ", ".join(
            f"'{self._database}.{table}': '{column} = \\'{project_id}\\''"
            for table, column in PROJECT_TABLES.items()
        )
        return "{" + pairs + "}"

    def _session(self, project_id: str) -> tuple[_Session, threading.Lock]:
        with self._lock:
            found = self._sessions.get(project_id)
            if found is None:
                found = (self._open(project_id), threading.Lock())
                self._sessions[project_id] = found
            return found

    def _open(self, project_id: str) -> _Session:
        filters = self._filters(project_id)
        if self._url.startswith("chdb:"):
            import chdb

            path = self._url.split("://", 1)[1] or ":memory:"
            conn = chdb.connect(path)
            self._closers.append(conn)
            conn.query(f"USE `{self._database}`")
            conn.query(f"SET additional_table_filters = {filters}")
            conn.query("SET readonly = 1")  # last: from here on no setting can change

            def run_chdb(query: str, fmt: str, params: dict[str, str]) -> bytes:
                return conn.query(query, fmt, params=params).bytes() or b""

            return run_chdb
        client = connect(self._url, self._database, {"additional_table_filters": filters, "readonly": "1"})
        self._closers.append(client)

        def run_http(query: str, fmt: str, params: dict[str, str]) -> bytes:
            return client.raw_query(query, parameters=params or None, fmt=fmt)

        return run_http

    def run(
        self, project_id: str, query: str, default_format: str | None, params: dict[str, str]
    ) -> tuple[bytes, str]:
        """Run one read query for a project; returns (body, format)."""
        query, fmt = split_format(query.strip())
        if not query:
            raise SqlError(400, "empty query")
        fmt = fmt or default_format or "TabSeparated"
        params = {k: unescape_param(v) for k, v in params.items()}
        session, lock = self._session(project_id)
        with lock:
            try:
                ast = session(f"EXPLAIN AST {query}", "TabSeparatedRaw", params)
                check_tables(ast.decode(errors="replace"), self._database)
                return session(query, fmt, params), fmt
            except SqlError:
                raise
            except Exception as e:
                message = _clickhouse_message(e)
                if "READONLY" in message:
                    raise SqlError(403, "this endpoint is read-only: " + message) from None
                raise SqlError(400, message) from None

    def close(self) -> None:
        for closer in self._closers:
            closer.close()


def _clickhouse_message(e: Exception) -> str:
    text = str(e)
    # clickhouse-connect wraps the engine's message; keep the part that says what is wrong.
    start = text.find("Code:")
    return (text[start:] if start >= 0 else text).strip()[:2000]
