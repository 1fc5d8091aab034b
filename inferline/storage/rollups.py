"""The analytics rollups (migrations 4 and 9): materialized views from `llm_inferences` into
AggregatingMergeTree tables, so overviews, time series and breakdowns read a few thousand rows
instead of billions.

Every rollup keeps the same partial aggregates (`AGGREGATES`), so the API can read any mix of
rollups and raw rows with one outer query: a rollup row and a group of raw rows aggregated with
`Aggregate.state` have the same columns and types, and `Aggregate.merge` combines either.

Like `llm_inferences_by_minute`, only `version = 1` rows feed them: later versions of an inference
only add content that arrived in log records, and counting them would count the call twice.
Replayed inserts are dropped before they reach a view (deduplication token; the exporter also
leaves out rows already stored: `exporters/clickhouse/new_inferences.py`), and a flush rebuilt
after a crash leaves them neither short nor counted twice (`recount_statements`), see
docs/architecture.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

QUANTILES = (0.5, 0.9, 0.95, 0.99)
_Q = ", ".join(str(q) for q in QUANTILES)
# The tag key whose value is the `feature` dimension of the usage rollup (cost per feature).
FEATURE_TAG = "feature"


@dataclass(frozen=True, slots=True)
class Aggregate:
    name: str
    type: str  # the column type in a rollup table
    state: str  # the partial aggregate, over llm_inferences rows
    merge: str  # the aggregate function that combines partials (rollup rows or raw groups)


def _sum(name: str, expression: str, type_: str = "UInt64") -> Aggregate:
    return Aggregate(name, f"SimpleAggregateFunction(sum, {type_})", expression, "sum")


def _cost(name: str, column: str) -> Aggregate:
    # Unpriced calls add 0 (they are counted in `unpriced`); Decimal(38, 12) cannot overflow.
    return _sum(name, f"toDecimal128(sum(ifNull({column}, 0)), 12)", "Decimal(38, 12)")


def _digest(name: str, state: str) -> Aggregate:
    return Aggregate(
        name, f"AggregateFunction(quantilesTDigest({_Q}), Float64)", state, f"quantilesTDigestMerge({_Q})"
    )


# Names differ from llm_inferences' columns: in the views' SELECT an alias equal to a column
# name would shadow the column for every other aggregate.
# Tokens per second of one call: output tokens over its latency, for calls that have both.
_RATED = "output_tokens > 0 AND latency_ms > 0"
AGGREGATES: tuple[Aggregate, ...] = (
    _sum("requests", "count()"),
    _sum("successes", "countIf(success)"),
    _sum("unpriced", "countIf(total_cost_usd IS NULL)"),
    _sum("tokens_in", "sum(input_tokens)"),
    _sum("tokens_out", "sum(output_tokens)"),
    _sum("tokens_total", "sum(total_tokens)"),
    _cost("cost_in_usd", "input_cost_usd"),
    _cost("cost_out_usd", "output_cost_usd"),
    _cost("cost_usd", "total_cost_usd"),
    _sum("latency_sum_ms", "sum(latency_ms)", "Float64"),
    Aggregate("latency_min_ms", "SimpleAggregateFunction(min, Float64)", "min(latency_ms)", "min"),
    Aggregate("latency_max_ms", "SimpleAggregateFunction(max, Float64)", "max(latency_ms)", "max"),
    _digest("latency_digest", f"quantilesTDigestState({_Q})(latency_ms)"),
    _sum("ttft_requests", "countIf(ttft_ms IS NOT NULL)"),
    _digest("ttft_digest", f"quantilesTDigestStateIf({_Q})(ifNull(ttft_ms, 0), ttft_ms IS NOT NULL)"),
    _sum("rate_sum", f"sumIf(output_tokens / (latency_ms / 1000), {_RATED})", "Float64"),
    _sum("rated_requests", f"countIf({_RATED})"),
)


def named(names: Iterable[str]) -> tuple[Aggregate, ...]:
    """The aggregates of these names and `requests` (a raw segment's HAVING and every ratio need
    it), in AGGREGATES' order. A table showing a few figures asks for those only: merging the
    t-digests, or summing Decimal128 costs over every user of a week, is most of a query's time."""
    wanted = {"requests", *names}
    return tuple(a for a in AGGREGATES if a.name in wanted)


@dataclass(frozen=True, slots=True)
class Rollup:
    table: str
    bucket: str  # the time bucket column
    bucket_type: str
    bucket_expr: str  # over llm_inferences
    seconds: int  # bucket width
    # (column, type, expression over llm_inferences): what a query can group or filter by here.
    dimensions: tuple[tuple[str, str, str], ...]

    @property
    def dimension_names(self) -> frozenset[str]:
        return frozenset(d[0] for d in self.dimensions)

    def select(self) -> str:
        """The aggregation of llm_inferences rows into this rollup's rows (without FROM/WHERE)."""
        columns = [
            "project_id",
            f"{self.bucket_expr} AS {self.bucket}",
            *(f"{expr} AS {name}" for name, _, expr in self.dimensions),
            *(f"{a.state} AS {a.name}" for a in AGGREGATES),
        ]
        return "SELECT\n    " + ",\n    ".join(columns)

    @property
    def group_by(self) -> str:
        return ", ".join(["project_id", self.bucket, *(d[0] for d in self.dimensions)])

    def statements(self, database: str, retention_days: int) -> tuple[str, ...]:
        db = f"`{database}`"
        columns = [
            "    `project_id` LowCardinality(String)",
            f"    `{self.bucket}` {self.bucket_type}",
            *(f"    `{name}` {type_}" for name, type_, _ in self.dimensions),
            *(f"    `{a.name}` {a.type}" for a in AGGREGATES),
        ]
        table = (
            f"CREATE TABLE IF NOT EXISTS {db}.`{self.table}`\n(\n"
            + ",\n".join(columns)
            + "\n)\nENGINE = AggregatingMergeTree\n"
            f"PARTITION BY toYYYYMM({self.bucket})\n"
            f"ORDER BY ({self.group_by})\n"
            f"TTL {self.bucket} + toIntervalDay({retention_days})\n"
            "SETTINGS non_replicated_deduplication_window = 10000"
        )
        view = (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.`{self.table}_mv`\nTO {db}.`{self.table}` AS\n"
            f"{self.select()}\nFROM {db}.llm_inferences\nWHERE version = 1\nGROUP BY {self.group_by}"
        )
        # Rows stored before the view existed. The view sees every insert from its creation on;
        # an insert racing with the migration could be counted twice, so the service migrates
        # before it takes traffic (distributed: the writer, before it consumes).
        backfill = (
            f"INSERT INTO {db}.`{self.table}`\n{self.select()}\nFROM {db}.llm_inferences\n"
            f"WHERE version = 1 AND ingested_at < now64(3)\nGROUP BY {self.group_by}"
        )
        return table, view, backfill


# request_model too: the API's model filter matches the response model or the requested one.
_MODEL_DIMENSIONS = (
    ("model", "LowCardinality(String)", "model"),
    ("request_model", "LowCardinality(String)", "request_model"),
    ("provider", "LowCardinality(String)", "provider"),
)
BY_MINUTE = Rollup(
    "inference_stats_by_minute",
    "minute",
    "DateTime('UTC')",
    "toStartOfMinute(start_time)",
    60,
    _MODEL_DIMENSIONS,
)
BY_HOUR = Rollup(
    "inference_stats_by_hour", "hour", "DateTime('UTC')", "toStartOfHour(start_time)", 3600, _MODEL_DIMENSIONS
)
# Cost attribution: per day, tenant, user and feature (and model, so spend per model per tenant
# needs no raw scan either).
USAGE_BY_DAY = Rollup(
    "inference_usage_by_day",
    "day",
    "Date",
    "toDate(start_time)",
    86400,
    (
        ("tenant_id", "LowCardinality(String)", "tenant_id"),
        ("user_id", "String", "user_id"),
        ("feature", "LowCardinality(String)", f"tags['{FEATURE_TAG}']"),
        *_MODEL_DIMENSIONS,
    ),
)
# Migration 9: cost attribution per hour by tenant and feature, without users. Per user and hour
# the usage rollup would hold about a row per call; without them an hour is a few dozen rows, so
# tenant and feature questions read no raw rows but the partial hours at a range's edges.
ATTRIBUTION_BY_HOUR = Rollup(
    "inference_attribution_by_hour",
    "hour",
    "DateTime('UTC')",
    "toStartOfHour(start_time)",
    3600,
    (
        ("tenant_id", "LowCardinality(String)", "tenant_id"),
        ("feature", "LowCardinality(String)", f"tags['{FEATURE_TAG}']"),
        *_MODEL_DIMENSIONS,
    ),
)
ROLLUPS = (BY_MINUTE, BY_HOUR, USAGE_BY_DAY)  # migration 4's: never changes
ROLLUPS_9 = (ATTRIBUTION_BY_HOUR,)

# Migration 2's rollup, older than the others and with columns of its own: its view's SELECT
# (without FROM/WHERE), bucket and grouping.
LEGACY_BY_MINUTE_TABLE = "llm_inferences_by_minute"
LEGACY_BY_MINUTE_SELECT = """SELECT
    project_id,
    toStartOfMinute(start_time) AS minute,
    model,
    provider,
    count() AS calls,
    countIf(NOT success) AS errors,
    countIf(total_cost_usd IS NULL) AS unpriced_calls,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    toDecimal128(sum(ifNull(total_cost_usd, 0)), 12) AS cost_usd,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(latency_ms) AS latency_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(ifNull(ttft_ms, 0), ttft_ms IS NOT NULL) AS ttft_ms"""
LEGACY_BY_MINUTE_GROUP_BY = "project_id, minute, model, provider"


def recount_statements(database: str, touched: str, raw_days: int) -> list[str]:
    """Statements that recount, from `llm_inferences`, every rollup bucket (project and time
    bucket) that a version-1 row of `touched` (a table with `project_id`, `start_time` and
    `version` columns) falls in: the bucket's rows are deleted, then aggregated again from the
    raw rows as `FINAL` reads them, each inference once. Not `version = 1` as the views read
    inserts: a merge keeps only an inference's latest version. So a recounted call is counted
    with its latest version's values (the views keep the first version's: attribution that
    arrived later may differ); `FINAL` merges sorted parts as it reads, without holding a day's
    ids in memory.

    For a flush rebuilt after a crash, which may have reached the table but not the views: the
    views count what is inserted, and an insert writes its table first. Only when nothing else
    inserts meanwhile (embedded mode rebuilds before it stores anything new). Buckets that begin
    before the raw rows' retention (`raw_days`) are left alone: rollups may be kept longer than
    raw rows, and a recount would drop the calls whose rows have expired."""
    db = f"`{database}`"
    # A literal, not now(): a mutation's condition must be deterministic (replicated tables refuse
    # one that is not).
    since = int(time.time()) - int(raw_days) * 86_400
    rollups = [
        (LEGACY_BY_MINUTE_TABLE, "minute", "toStartOfMinute(start_time)", LEGACY_BY_MINUTE_SELECT,
         LEGACY_BY_MINUTE_GROUP_BY),
        *((r.table, r.bucket, r.bucket_expr, r.select(), r.group_by) for r in (*ROLLUPS, *ROLLUPS_9)),
    ]  # fmt: skip
    statements = []
    for table, bucket, bucket_expr, select, group_by in rollups:
        buckets = (
            f"SELECT DISTINCT project_id, {bucket_expr} FROM {touched} WHERE version = 1 "
            f"AND {bucket_expr} >= toDateTime({since}, 'UTC')"
        )
        statements.append(f"ALTER TABLE {db}.`{table}` DELETE WHERE (project_id, {bucket}) IN ({buckets})")
        statements.append(
            f"INSERT INTO {db}.`{table}`\n{select}\nFROM {db}.llm_inferences FINAL\n"
            f"WHERE (project_id, {bucket_expr}) IN ({buckets})\nGROUP BY {group_by}"
        )
    return statements


def rollup_statements(
    database: str, retention_days: int, rollups: tuple[Rollup, ...] = ROLLUPS
) -> tuple[str, ...]:
    return tuple(s for r in rollups for s in r.statements(database, retention_days))
