"""Retention: each table's TTL brought to its configured days at every start.

Migrations create tables with `retention_days`; after them, `apply_retention` compares every
managed table's TTL with the days configured for its kind and runs `ALTER TABLE … MODIFY TTL`
only where they differ, so a restart with unchanged settings changes nothing. Kinds: spans
(`otel_traces`), logs (`otel_logs`), inferences (`llm_inferences`), feedback (`feedback`, `scores`) and
rollups (any table named `*_by_minute`, `*_by_hour`, `*_by_day`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from inferline.core.config import Settings

log = structlog.get_logger()

KIND_BY_TABLE = {
    "otel_traces": "spans",
    "otel_logs": "logs",
    "llm_inferences": "inferences",
    "feedback": "feedback",
    "scores": "feedback",  # evaluation results are judgements of calls, as feedback is
}
ROLLUP_SUFFIXES = ("_by_minute", "_by_hour", "_by_day")

# The table-level TTL clause of system.tables.create_table_query (one line), and the one shape
# this module writes and so can rewrite: `<time expression> + toIntervalDay(<days>)`.
_TTL_CLAUSE = re.compile(r" TTL (?P<clause>.+?)(?= SETTINGS | COMMENT |$)")
_DAYS_TTL = re.compile(r"(?P<expr>[^,]+?) \+ toIntervalDay\((?P<days>\d+)\)(?: DELETE)?")


@dataclass(frozen=True, slots=True)
class TtlChange:
    table: str
    old_days: int | None  # None: the table had no TTL
    new_days: int


def kind_of(table: str) -> str | None:
    """The retention kind of a table, or None for tables whose TTL is not managed here."""
    if table in KIND_BY_TABLE:
        return KIND_BY_TABLE[table]
    if table.endswith(ROLLUP_SUFFIXES):
        return "rollups"
    return None


def apply_configured_retention(client: Any, settings: Settings) -> list[TtlChange]:
    """What every start runs right after the migrations."""
    return apply_retention(
        client,
        settings.clickhouse_database,
        settings.retention.days(settings.retention_days),
        settings.retention.materialize,
    )


def apply_retention(
    client: Any, database: str, days: Mapping[str, int], materialize: bool = True
) -> list[TtlChange]:
    """Set each managed table's TTL to `days[kind]` where it differs. `materialize` recalculates
    the expiry of parts already written (reading only the time column); without it old parts
    keep the expiry they were written with until a merge rewrites them."""
    rows = client.query(
        "SELECT name, create_table_query FROM system.tables "
        "WHERE database = {db:String} AND engine LIKE '%MergeTree%' ORDER BY name",
        parameters={"db": database},
    ).result_rows
    changes = []
    for table, create in rows:
        kind = kind_of(table)
        if kind is None or kind not in days:
            continue
        change = _reconcile(client, database, table, create, days[kind], materialize)
        if change is not None:
            changes.append(change)
    for name in unbounded_system_logs(client):
        log.warning(
            "system log table has no TTL and grows without bound",
            table=f"system.{name}",
            fix="put a <ttl> for it in the server's config.d (deploy/clickhouse/config.d/system_log_ttl.xml)",
        )
    return changes


def _reconcile(
    client: Any, database: str, table: str, create: str, days: int, materialize: bool
) -> TtlChange | None:
    target = f"`{database}`.`{table}`"
    engine_part = create[create.find(" ENGINE = ") :]  # column TTLs come before the engine
    clause = _TTL_CLAUSE.search(engine_part)
    if clause is None:
        old_days, expr = None, _time_expression(client, database, table)
        if expr is None:
            log.warning("retention: no time column to put a TTL on; left without", table=table)
            return None
    else:
        shape = _DAYS_TTL.fullmatch(clause["clause"])
        if shape is None:  # moves to volumes, several rules: somebody manages it by hand
            log.warning("retention: TTL set by hand, left alone", table=table, ttl=clause["clause"][:200])
            return None
        old_days, expr = int(shape["days"]), shape["expr"]
        if old_days == days:
            return None
    if materialize:
        # MATERIALIZE TTL then only recalculates each part's expiry (reads the time column) and
        # drops the parts that expired, instead of rewriting every column of every part.
        client.command(f"ALTER TABLE {target} MODIFY SETTING materialize_ttl_recalculate_only = 1")
    client.command(
        f"ALTER TABLE {target} MODIFY TTL {expr} + toIntervalDay({days})",
        settings={"materialize_ttl_after_modify": 1 if materialize else 0},
    )
    log.info("retention changed", table=table, old_days=old_days, days=days, materialize=materialize)
    return TtlChange(table, old_days, days)


def _time_expression(client: Any, database: str, table: str) -> str | None:
    """For a table without TTL: its first date or time column in the sort key (else anywhere)."""
    columns = client.query(
        "SELECT name, type, is_in_sorting_key FROM system.columns "
        "WHERE database = {db:String} AND table = {t:String} ORDER BY is_in_sorting_key DESC, position",
        parameters={"db": database, "t": table},
    ).result_rows
    for name, type_, _ in columns:
        base = type_.removeprefix("LowCardinality(").removeprefix("Nullable(")
        if base.startswith("DateTime64"):
            return f"toDateTime(`{name}`)"
        if base.startswith(("DateTime", "Date")):
            return f"`{name}`"
    return None


def unbounded_system_logs(client: Any) -> list[str]:
    """ClickHouse's own log tables (query_log, part_log, …) without a TTL. A server creates them
    from its config; the embedded engine (chDB) has none at all."""
    rows = client.query(
        "SELECT name, create_table_query FROM system.tables "
        "WHERE database = 'system' AND engine LIKE '%MergeTree%' AND name LIKE '%\\_log%'"
    ).result_rows
    return [name for name, create in rows if " TTL " not in create[create.find(" ENGINE = ") :]]
