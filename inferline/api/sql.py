"""A read-only, project-scoped subset of ClickHouse's HTTP interface over the embedded store.

chDB lets one process own a data directory, so analysts reach the running service's store here:
`clickhouse_connect.get_client(host=..., port=8080, password=KEY)` or
`curl -H 'Authorization: Bearer KEY' 'http://localhost:8080/?query=SELECT+1'`.

Fences, each stopping a different thing:
1. every query runs in a session that is `readonly = 1` (no writes, no DDL, no changing settings,
   these included) with limits on time, memory and result size, so one query cannot take the
   engine (and with it ingest) down;
2. `additional_table_filters` on that session limits each data table to the key's project;
3. before it runs, `inferline.api.sql_guard` checks the query is one SELECT or DESCRIBE that names only
   readable tables and harmless functions (nothing reads around the filters or touches files).
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import orjson

from inferline.api.sql_guard import PROJECT_TABLES, SqlError, check_ast, check_single_statement, split_format
from inferline.storage.clickhouse import connect
from inferline.storage.keys import PROJECT_ID

_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"b": "\b", "f": "\f", "r": "\r", "n": "\n", "t": "\t", "0": "\0", "a": "\a", "v": "\v"}


def unescape_param(value: str) -> str:
    """Query parameters arrive in ClickHouse's escaped text form (`param_x=it\\'s`)."""
    return _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), value)


class _Session(Protocol):
    def __call__(self, query: str, fmt: str, params: dict[str, str]) -> bytes: ...


class _Pool:
    """The sessions of one project and purpose, each lent to one query at a time, opened on
    demand up to `size`."""

    def __init__(self, open_session: Callable[[], _Session], size: int) -> None:
        self._open = open_session
        self._size = size
        self._opened = 0
        self._free: queue.LifoQueue[_Session] = queue.LifoQueue()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self) -> Iterator[_Session]:
        try:
            session = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._opened < self._size
                self._opened += grow
            if grow:
                try:
                    session = self._open()
                except BaseException:
                    with self._lock:
                        self._opened -= 1
                    raise
            else:
                session = self._free.get()
        try:
            yield session
        finally:
            self._free.put(session)


# Sessions per project: the API's own queries may run side by side (a dashboard page's figures
# are asked for at once); analysts' SQL keeps one, so one key's queries queue behind each other.
_POOL_SIZES = {"api": 4, "sql": 1}


class ReadOnlySql:
    """One read-only session per project, made on first use.

    chDB: a connection of the service's own engine (chDB allows several per process), bound to
    the project with SET before `readonly` seals it. ClickHouse server: a clickhouse-connect
    client whose every query carries the same settings.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        max_execution_s: int = 30,
        max_memory_bytes: int = 2 << 30,
        max_result_bytes: int = 256 << 20,
    ) -> None:
        self._url = url
        self._database = database
        self._max_result_bytes = max_result_bytes
        self._limits = {
            "max_execution_time": str(max_execution_s),
            "max_memory_usage": str(max_memory_bytes),
            "max_result_bytes": str(max_result_bytes),
            "result_overflow_mode": "throw",
        }
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._table_names: frozenset[str] = frozenset()
        self._tables_at = -_TABLES_TTL_S
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

    def _session(self, project_id: str, purpose: str = "sql") -> contextlib.AbstractContextManager[_Session]:
        """A session of the project to run one query in. Analysts' SQL and the API's own queries
        get separate sessions: an API page never waits behind a long analyst query, and the API's
        output settings stay its own."""
        with self._lock:
            pool = self._pools.get((project_id, purpose))
            if pool is None:
                extra = _API_SETTINGS if purpose == "api" else {}
                cap = self._max_result_bytes if purpose == "sql" else None  # the API's queries are ours
                pool = _Pool(lambda: self._open(project_id, extra, cap), _POOL_SIZES[purpose])
                self._pools[(project_id, purpose)] = pool
        return pool.lend()

    def _settings(self, project_id: str, extra: dict[str, str]) -> dict[str, str]:
        return {"additional_table_filters": self._filters(project_id), **self._limits, **extra}

    def _chdb_connection(self, project_id: str, extra: dict[str, str]) -> Any:
        import chdb

        conn = chdb.connect(self._url.split("://", 1)[1] or ":memory:")
        conn.query(f"USE `{self._database}`")
        for name, value in self._settings(project_id, extra).items():
            quoted = value if name == "additional_table_filters" else f"'{value}'"
            conn.query(f"SET {name} = {quoted}")
        conn.query("SET readonly = 1")  # last: from here on no setting can change
        return conn

    def _open(self, project_id: str, extra: dict[str, str], cap: int | None) -> _Session:
        """A session; with `cap`, a result past that many bytes is refused (`_at_most`)."""
        if self._url.startswith("chdb:"):
            conn = self._chdb_connection(project_id, extra)
            self._closers.append(conn)

            def run_chdb(query: str, fmt: str, params: dict[str, str]) -> bytes:
                params = _chdb_params(params)
                if cap is None:
                    return conn.query(query, fmt, params=params).bytes() or b""
                try:
                    result = conn.send_query(query, fmt, params=params)
                except Exception as e:
                    if _NOT_STREAMABLE not in str(e):
                        raise
                    return _at_most(cap, [conn.query(query, fmt, params=params).bytes()])  # EXPLAIN, DESCRIBE
                try:
                    chunks = _at_most_chunks(cap, (chunk.bytes() for chunk in result))
                finally:
                    result.cancel()  # a no-op once read to the end; frees a result cut short
                if fmt in _CONCATENABLE or len(chunks) == 1:
                    return b"".join(chunks)
                # chDB writes each chunk of a format with a header or a footer (JSON, CSVWithNames,
                # Parquet, Pretty) as a document of its own, and none for no rows: the whole
                # document (`{"data": []}` for none), known to fit unless the query answers
                # differently the second time (`randConstant()`): then refused all the same.
                return _at_most(cap, [conn.query(query, fmt, params=params).bytes() or b""])

            return run_chdb
        settings = {**self._settings(project_id, extra), "readonly": "1"}
        client = connect(self._url, self._database, settings)
        self._closers.append(client)

        def run_http(query: str, fmt: str, params: dict[str, str]) -> bytes:
            if cap is None:
                return client.raw_query(query, parameters=params or None, fmt=fmt)
            with client.raw_stream(query, parameters=params or None, fmt=fmt) as chunks:
                return _at_most(cap, chunks)

        return run_http

    def rows(self, project_id: str, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of one of the API's own (trusted, parameterised) queries, in the project's
        read-only session: the server confines every table to the project whatever the query."""
        text_params = {k: _param_text(v) for k, v in (params or {}).items()}
        with self._session(project_id, "api") as session:
            try:
                body = session(query, "JSON", text_params)
            except Exception as e:
                raise SqlError(400, _clickhouse_message(e)) from None
        return orjson.loads(body)["data"] if body else []

    def stream(
        self, project_id: str, query: str, fmt: str, params: dict[str, Any] | None = None
    ) -> Iterator[bytes]:
        """The result of a trusted query in chunks as the engine produces them (exports): a
        connection of its own, so a long export holds no other request up."""
        text_params = {k: _param_text(v) for k, v in (params or {}).items()}
        if self._url.startswith("chdb:"):
            conn = self._chdb_connection(project_id, _API_SETTINGS)
            try:
                result = conn.send_query(query, fmt, params=_chdb_params(text_params))
                for chunk in result:
                    data = chunk.bytes()
                    if data:
                        yield data
            finally:
                conn.close()
            return
        settings = {**self._settings(project_id, _API_SETTINGS), "readonly": "1"}
        client = connect(self._url, self._database, settings)
        try:
            with client.raw_stream(query, parameters=text_params or None, fmt=fmt) as chunks:
                yield from chunks
        finally:
            client.close()

    def run(
        self, project_id: str, query: str, default_format: str | None, params: dict[str, str]
    ) -> tuple[bytes, str]:
        """Run one read query for a project; returns (body, format)."""
        check_single_statement(query)
        query, fmt = split_format(query.strip())
        if not query:
            raise SqlError(400, "empty query")
        fmt = fmt or default_format or "TabSeparated"
        params = {k: unescape_param(v) for k, v in params.items()}
        with self._session(project_id) as session:
            try:
                ast = session(f"EXPLAIN AST {query}", "TabSeparatedRaw", params)
                check_ast(ast.decode(errors="replace"), self._database, self._tables(session))
                return session(query, fmt, params), fmt
            except SqlError:
                raise
            except Exception as e:
                message = _clickhouse_message(e)
                if "READONLY" in message:
                    raise SqlError(403, "this endpoint is read-only: " + message) from None
                raise SqlError(400, message) from None

    def _tables(self, session: _Session) -> frozenset[str]:
        """The database's tables (what a bare name in a query can mean), looked up at most every
        `_TABLES_TTL_S`."""
        now = time.monotonic()
        if now - self._tables_at > _TABLES_TTL_S:
            listed = session(
                "SELECT name FROM system.tables WHERE database = currentDatabase()", "TabSeparatedRaw", {}
            )
            self._table_names = frozenset(listed.decode().split())
            self._tables_at = now
        return self._table_names

    def close(self) -> None:
        for closer in self._closers:
            closer.close()


# The API's JSON: numbers as numbers (ClickHouse quotes 64-bit integers by default); CSV exports
# leave a NULL empty (ClickHouse writes \N), as spreadsheets expect.
_API_SETTINGS = {
    "output_format_json_quote_64bit_integers": "0",
    "output_format_json_quote_decimals": "0",
    "format_csv_null_representation": "",
}


_TABLES_TTL_S = 30.0  # a table created since (a migration, a writer's staging table) is known within this
_NOT_STREAMABLE = "Streaming query is not supported"  # chDB's answer to a statement that is no query
# Formats whose chunks, as chDB streams them, join into the whole result (no header, no footer).
_CONCATENABLE = frozenset(
    {
        "TabSeparated", "TabSeparatedRaw", "TSV", "TSVRaw", "CSV", "JSONEachRow", "JSONLines", "NDJSON",
        "JSONCompactEachRow", "JSONStringsEachRow", "Native", "RowBinary", "LineAsString", "Raw",
    }
)  # fmt: skip


def _at_most_chunks(limit: int, chunks: Iterable[bytes]) -> list[bytes]:
    """The result's chunks, refused once they pass `limit` bytes. The engine's own
    `max_result_bytes` counts blocks in memory, where a constant or LowCardinality column is one
    value however many rows it has: `SELECT repeat('x', 100) FROM numbers(2e7)` passed it and
    built 2 GB of output in the service's memory. Counted here as the output is read, and cut
    short past it."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise SqlError(
                400,
                f"the result is over {limit:,} bytes (INFERLINE_SQL__MAX_RESULT_BYTES): "
                "aggregate, add a LIMIT or narrow the range",
            )
        parts.append(chunk)
    return parts


def _at_most(limit: int, chunks: Iterable[bytes]) -> bytes:
    return b"".join(_at_most_chunks(limit, chunks))


def _param_text(value: Any) -> str:
    """A query parameter in the text form ClickHouse parses for its declared type."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        quoted = ("'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for v in value)
        return "[" + ",".join(quoted) + "]"
    return str(value)


_PARAM_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _chdb_params(params: dict[str, str]) -> dict[str, str]:
    """chDB parses parameters in ClickHouse's escaped text form (a backslash starts an escape, a
    raw tab or newline ends the value); clickhouse-connect escapes them itself over HTTP."""
    return {k: v.translate(_PARAM_ESCAPES) for k, v in params.items()}


def _clickhouse_message(e: Exception) -> str:
    text = str(e)
    # clickhouse-connect wraps the engine's message; keep the part that says what is wrong.
    start = text.find("Code:")
    return (text[start:] if start >= 0 else text).strip()[:2000]
