"""Column-oriented inserts of a `Batch` into its three tables, with replay-safe retries."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson
import structlog
from clickhouse_connect.driver.client import Client

from pipeline import metrics
from pipeline.logging import error_summary
from pipeline.records import Batch, Row
from storage.schema import JSON_COLUMNS, LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, Column, Table

log = structlog.get_logger()


def to_columns(table: Table, rows: list[Row]) -> tuple[list[str], list[list[Any]]]:
    names, data = [], []
    for col in table.insert_columns:
        name, empty = col.name, col.empty
        values = [row.get(name, empty) for row in rows]
        if name in JSON_COLUMNS:
            values = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in values]
        elif empty is not None:  # NULL is only legal in Nullable columns
            values = [empty if v is None else v for v in values]
        limits = col.limits
        if limits is not None and values:
            values = _fit(table.name, col, values, limits)
        names.append(name)
        data.append(values)
    return names, data


def _fit(table: str, col: Column, values: list[Any], limits: tuple[Any, Any]) -> list[Any]:
    """Values the column cannot hold (a token count of 1e25, a severity of 300) become the empty
    value, counted in a metric: one absurd value must not fail the insert of everyone's batch.
    The common case, everything in range, costs a min() and a max() at C speed."""
    lo, hi = limits
    nested = col.type.startswith("Array(")
    try:
        flat = [v for vs in values for v in vs] if nested else values
        present = [v for v in flat if v is not None] if col.type.startswith("Nullable(") else flat
        if not present or (lo <= min(present) and max(present) <= hi):
            return values
    except TypeError:
        pass  # a value of the wrong type: checked one by one below
    empty = col.empty if not nested else 0

    def ok(v: Any) -> bool:
        return isinstance(v, (int, Decimal)) and not isinstance(v, bool) and lo <= v <= hi

    if nested:
        fitted = [[v if ok(v) else empty for v in vs] for vs in values]
    else:
        fitted = [v if v is None or ok(v) else empty for v in values]
    metrics.VALUES_OUT_OF_RANGE.labels(table, col.name).inc()
    log.warning("values out of the column's range were emptied", table=table, column=col.name)
    return fitted


class Inserter:
    """Inserts each table's rows in one block. The dedup token makes a retried or replayed
    insert of the same block a no-op in ClickHouse (`non_replicated_deduplication_window`)."""

    def __init__(self, client: Client, database: str = "default", retries: int = 2, backoff_s: float = 0.2):
        self._client = client
        self._database = database
        self._retries = retries
        self._backoff_s = backoff_s

    def insert(self, batch: Batch, token: str) -> None:
        for table, rows in (
            (OTEL_TRACES, batch.spans),
            (OTEL_LOGS, batch.logs),
            (LLM_INFERENCES, batch.inferences),
        ):
            if rows:
                self._insert_table(table, rows, f"{token}:{table.name}")

    def _insert_table(self, table: Table, rows: list[Row], token: str) -> None:
        names, data = to_columns(table, rows)
        for attempt in range(self._retries + 1):
            started = time.perf_counter()
            try:
                self._client.insert(
                    f"`{self._database}`.`{table.name}`",
                    data,
                    column_names=names,
                    column_oriented=True,
                    # A replayed block is dropped, and so is what it would add to the rollup.
                    settings={
                        "insert_deduplication_token": token,
                        "deduplicate_blocks_in_dependent_materialized_views": 1,
                    },
                )
                metrics.observe_insert(table.name, len(rows), time.perf_counter() - started)
                return
            except Exception as e:
                if attempt == self._retries:
                    metrics.INSERT_ERRORS.labels(table.name).inc()
                    raise
                log.warning(
                    "insert failed, retrying", table=table.name, attempt=attempt + 1, error=error_summary(e)
                )
                time.sleep(self._backoff_s * (2**attempt))
