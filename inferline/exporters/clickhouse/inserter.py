"""Inserts of a `Batch` into its tables as Native blocks, with replay-safe retries."""

from __future__ import annotations

import time

import structlog
from clickhouse_connect.driver.client import Client

from inferline.core import metrics
from inferline.core.logging import error_summary
from inferline.core.records import Batch
from inferline.exporters.clickhouse.native import encode_block
from inferline.storage.schema import (
    FEEDBACK,
    INGEST_LEDGER,
    LLM_INFERENCES,
    OTEL_LOGS,
    OTEL_TRACES,
    SCORES,
    Table,
)

log = structlog.get_logger()


class Inserter:
    """Inserts each table's rows in one insert of Native blocks (rows given as dicts are encoded
    here; workers' rows arrive encoded). The dedup token makes a retried or replayed insert of
    the same blocks a no-op in ClickHouse (`non_replicated_deduplication_window`)."""

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
            (FEEDBACK, batch.feedback),
            (SCORES, batch.scores),
            # Last: a ledger row is stored only after the rows it counts.
            (INGEST_LEDGER, batch.ledger),
        ):
            blocks = [encode_block(table, rows)] if rows else []
            count = len(rows)
            for name, n, block in batch.encoded:
                if name == table.name:
                    blocks.append(block)
                    count += n
            if blocks:
                self._insert_table(table, blocks, count, f"{token}:{table.name}")

    def _insert_table(self, table: Table, blocks: list[bytes], rows: int, token: str) -> None:
        data = blocks[0] if len(blocks) == 1 else b"".join(blocks)
        for attempt in range(self._retries + 1):
            started = time.perf_counter()
            try:
                self._client.raw_insert(
                    f"`{self._database}`.`{table.name}`",
                    [c.name for c in table.insert_columns],
                    insert_block=data,
                    fmt="Native",
                    # A replayed block is dropped, and so is what it would add to the rollup.
                    settings={
                        "insert_deduplication_token": token,
                        "deduplicate_blocks_in_dependent_materialized_views": 1,
                    },
                )
                metrics.observe_insert(table.name, rows, time.perf_counter() - started)
                return
            except Exception as e:
                if attempt == self._retries:
                    metrics.INSERT_ERRORS.labels(table.name).inc()
                    raise
                log.warning(
                    "insert failed, retrying", table=table.name, attempt=attempt + 1, error=error_summary(e)
                )
                time.sleep(self._backoff_s * (2**attempt))
