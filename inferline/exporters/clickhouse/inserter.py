"""Inserts of a `Batch` into its tables as Native blocks, with replay-safe retries."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Iterator

import structlog
from clickhouse_connect.driver.client import Client

from inferline.core import metrics
from inferline.core.logging import error_summary
from inferline.core.memory import collections_paused
from inferline.core.records import Batch
from inferline.exporters.clickhouse.native import column_list, encode_block
from inferline.storage.rollups import recount_statements
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
    here; workers' rows arrive encoded). The dedup token makes a retried insert of the same
    blocks a no-op in ClickHouse (`non_replicated_deduplication_window`). A flush rebuilt after a
    crash is inserted again with its token when its rows read back the same (the Kafka writer),
    otherwise it goes through `insert_missing`."""

    def __init__(
        self,
        client: Client,
        database: str = "default",
        retries: int = 2,
        backoff_s: float = 0.2,
        recount_rollups_within_days: int | None = None,
    ):
        self._client = client
        self._database = database
        # After a rebuilt flush's inferences: recount the rollup buckets they fall in, within the
        # raw rows' retention (only where nothing else inserts meanwhile; see
        # `rollups.recount_statements`). None: never.
        self._recount_days = recount_rollups_within_days
        self._retries = retries
        self._backoff_s = backoff_s
        self._identities: dict[str, tuple[str, str] | None] = {}

    def insert(self, batch: Batch, token: str) -> None:
        for table, blocks, count in _blocks_by_table(batch):
            if table is LLM_INFERENCES and batch.already_stored:
                self._insert_leaving_out(blocks, count, f"{token}:{table.name}", batch.already_stored)
            else:
                self._insert_table(table, blocks, count, f"{token}:{table.name}")

    def insert_missing(self, batch: Batch, flush_id: str) -> None:
        """A flush rebuilt after a crash: inserts only the rows each table does not hold yet.

        A token cannot make that safe here. ClickHouse derives the deduplication id of an insert
        from its token *and* the number of blocks the insert arrived in, and a rebuilt flush comes
        in other blocks than the original (the log is re-read in other slices), so the token would
        store the whole flush a second time. Instead the rows go to a staging table, and from
        there into the table only where the table's row identity (its sorting key, and its version
        column) is not present yet: exactly what `FINAL` would collapse, checked before the
        rollups' views see the rows. A crash during this is harmless: the next start does it again."""
        for table, blocks, count in _blocks_by_table(batch):
            identity = self._identity(table)
            if identity is None:  # e.g. a Distributed table: its rows' identity is not known here
                log.warning("rebuilt flush inserted by its token only", table=table.name)
                self._insert_table(table, blocks, count, f"{flush_id}:{table.name}")
            else:
                self._insert_new_rows(table, blocks, count, flush_id, identity)

    def _insert_new_rows(
        self, table: Table, blocks: list[bytes], rows: int, flush_id: str, identity: tuple[str, str]
    ) -> None:
        target = f"`{self._database}`.`{table.name}`"
        key, partition = identity
        columns = column_list(table)
        started = time.perf_counter()
        with self._staged(table, blocks, flush_id) as staging:
            present = f"SELECT {key} FROM {target}"
            if partition:  # only the partitions the flush touches are read
                present += f" WHERE ({partition}) IN (SELECT DISTINCT {partition} FROM {staging})"
            summary = self._client.command(
                f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} "
                f"WHERE ({key}) NOT IN ({present}) LIMIT 1 BY {key}"
            )
            if table is LLM_INFERENCES and self._recount_days is not None:
                # The rows found in the table may be this flush's, written before a crash that
                # came before the rollups' views had them (an insert writes its table first):
                # only a recount of their buckets can tell.
                for statement in recount_statements(self._database, staging, self._recount_days):
                    self._client.command(statement, settings={"mutations_sync": 2})
                log.info("rollups recounted for a rebuilt flush", rows=rows)
        written = _observe_staged_insert(table, summary, rows, started)
        log.info("rebuilt flush stored", table=table.name, rows=rows, new_rows=written)

    def _insert_leaving_out(
        self, blocks: list[bytes], rows: int, token: str, already_stored: frozenset[str]
    ) -> None:
        """Encoded `llm_inferences` rows but those ClickHouse holds already (a sender's retry
        later than the join window; `new_inferences.py`): a Native block cannot be cut here, so
        the rows pass through a staging table and the insert selects the others, with the
        flush's token as any insert."""
        target = f"`{self._database}`.`{LLM_INFERENCES.name}`"
        columns = column_list(LLM_INFERENCES)
        started = time.perf_counter()
        with self._staged(LLM_INFERENCES, blocks, token) as staging:
            summary = self._client.command(
                f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} "
                "WHERE NOT has({stored:Array(String)}, "
                "concat(toString(inference_id), '/', toString(version)))",
                parameters={"stored": sorted(already_stored)},
                settings=_flush_insert_settings(token),
            )
        written = _observe_staged_insert(LLM_INFERENCES, summary, rows, started)
        log.info("inference rows already stored were left out", rows=rows, new_rows=written)

    @contextlib.contextmanager
    def _staged(self, table: Table, blocks: list[bytes], flush_id: str) -> Iterator[str]:
        """A Memory table holding `blocks`, dropped after use."""
        # One staging table per flush: writers of one database never share one.
        staging = (
            f"`{self._database}`.`_staging_{table.name}_{hashlib.sha1(flush_id.encode()).hexdigest()[:16]}`"
        )
        self._client.command(f"DROP TABLE IF EXISTS {staging}")
        self._client.command(f"CREATE TABLE {staging} AS `{self._database}`.`{table.name}` ENGINE = Memory")
        try:
            self._client.raw_insert(
                staging,
                [c.name for c in table.insert_columns],
                insert_block=(block for block in blocks),
                fmt="Native",
            )
            yield staging
        finally:
            self._client.command(f"DROP TABLE IF EXISTS {staging}")

    def _identity(self, table: Table) -> tuple[str, str] | None:
        """The table's row identity (its sorting key, plus the version column of a versioned
        ReplacingMergeTree) and partition key, as ClickHouse has them; None without a sorting
        key."""
        if table.name not in self._identities:
            sorting, partition, engine = self._client.query(
                "SELECT sorting_key, partition_key, engine_full FROM system.tables "
                "WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": self._database, "t": table.name},
            ).result_rows[0]
            key = f"{sorting}, {version}" if (version := _version_column(engine)) else sorting
            self._identities[table.name] = (key, partition) if sorting else None
        return self._identities[table.name]

    def _insert_table(self, table: Table, blocks: list[bytes], rows: int, token: str) -> None:
        for attempt in range(self._retries + 1):
            started = time.perf_counter()
            try:
                self._client.raw_insert(
                    f"`{self._database}`.`{table.name}`",
                    [c.name for c in table.insert_columns],
                    # The blocks one after another (Native blocks concatenate into one stream):
                    # joined, they were a second copy of the table's whole flush in memory.
                    insert_block=(block for block in blocks),
                    fmt="Native",
                    settings=_flush_insert_settings(token),
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


def _flush_insert_settings(token: str) -> dict[str, object]:
    """Settings of a flush's inserts. The token: a replayed block is dropped, and so is what it
    would add to the rollups. `optimize_on_insert` off: ClickHouse would otherwise run each
    block through its table's merge (collapsing rows with the same sorting key, as a
    ReplacingMergeTree merge does) before writing it: ~40% of the insert's CPU on the pipeline's
    rows (docs/performance.md, "2026-12-07, evening"), for copies that are rare within one flush
    (a sender's retry landing in the same flush, an inference's content row beside its span's).
    The reads a copy could change are `FINAL`, which collapses copies within a part as it does
    across parts (the others group by inference id), and background merges collapse them on
    disk."""
    return {
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        "optimize_on_insert": 0,
    }


def _observe_staged_insert(table: Table, summary: object, rows: int, started: float) -> int | None:
    """Counts an INSERT … SELECT from a staging table (the rows it wrote, where ClickHouse says);
    returns that number."""
    written = getattr(summary, "written_rows", None)
    metrics.observe_insert(
        table.name, int(written) if written is not None else rows, time.perf_counter() - started
    )
    return None if written is None else int(written)


def _blocks_by_table(batch: Batch) -> Iterator[tuple[Table, list[bytes], int]]:
    """Each table's Native blocks (rows given as dicts encoded here) and row count, in insert
    order."""
    for table, rows in (
        (OTEL_TRACES, batch.spans),
        (OTEL_LOGS, batch.logs),
        (LLM_INFERENCES, batch.inferences),
        (FEEDBACK, batch.feedback),
        (SCORES, batch.scores),
        # Last: a ledger row is stored only after the rows it counts.
        (INGEST_LEDGER, batch.ledger),
    ):
        blocks: list[bytes] = []
        if rows:
            # Without automatic collections: encoding makes a tuple per row and per column, and
            # the young collections walked them (and the rows) again and again, ~20% of the Kafka
            # writer's encoding (rows encoded in the workers are encoded there, under the same rule).
            # Nothing frozen or collected after: embedded mode's serving process encodes its
            # ledger rows here, and a collection of everything stops its senders' requests.
            with collections_paused():
                blocks.append(encode_block(table, rows))
        count = len(rows)
        for name, n, block in batch.encoded:
            if name == table.name:
                blocks.append(block)
                count += n
        if blocks:
            yield table, blocks, count


def _version_column(engine: str) -> str | None:
    """The version column of a (Replicated)ReplacingMergeTree: its first argument, after the
    ZooKeeper path and replica name of a replicated one."""
    m = re.match(r"\s*(Replicated)?ReplacingMergeTree\(([^)]*)\)", engine)
    if m is None:
        return None
    args = [a.strip() for a in m.group(2).split(",") if a.strip()]
    args = args[2:] if m.group(1) else args
    return args[0] if args and re.fullmatch(r"\w+", args[0]) else None
