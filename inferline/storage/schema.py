"""Table definitions and versioned, idempotent migrations.

Column lists live here once: the DDL is generated from them and the writer uses them for column
order and for the value a row leaves out. `otel_traces` / `otel_logs` keep the OTel Collector
ClickHouse exporter's column names and types (plus `ProjectId`, `PiiFound`, `EventName`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog

from inferline.storage.alert_tables import alert_statements
from inferline.storage.rollups import (
    LEGACY_BY_MINUTE_GROUP_BY,
    LEGACY_BY_MINUTE_SELECT,
    ROLLUPS_9,
    rollup_statements,
)

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    codec: str = ""
    default_expr: str = ""  # DEFAULT expression: the writer never sends such a column

    @property
    def empty(self) -> Any:
        """The value a row that lacks this column gets."""
        t = self.type
        if t.startswith("Nullable"):
            return None
        if t.startswith("Map"):
            return {}
        if t.startswith("Array"):
            return []
        if t == "Bool":
            return False
        if "String" in t:
            return ""
        return 0

    @property
    def limits(self) -> tuple[Any, Any] | None:
        """(lowest, highest) value the column can hold, for the types a bad input can overflow."""
        t = self.type.removeprefix("Nullable(").removeprefix("Array(")
        if t.startswith("Map("):  # the values' type: "Map(LowCardinality(String), UInt64)"
            t = t.rsplit(", ", 1)[-1]
        if t.startswith("DateTime64(9"):
            return 0, (1 << 63) - 1  # unix ns; the type ends in 2262
        if t.startswith("Decimal(18, 12)"):
            return -_DECIMAL_18_12, _DECIMAL_18_12
        return _UINT_LIMITS.get(t.rstrip(")"))


def _row_types(table: Table) -> tuple[tuple[str, tuple[type, ...], frozenset[type]], ...]:
    """Per insert column: its name, the types its values may have, and those types as a set."""
    found = _ROW_TYPES.get(table.name)
    if found is None:
        typed = (
            (c.name, (str, list, dict) if c.name in JSON_COLUMNS else _python_type(c.type))
            for c in table.insert_columns
        )
        found = _ROW_TYPES[table.name] = tuple((name, types, frozenset(types)) for name, types in typed)
    return found


# String columns whose rows carry structured values, stored as JSON text.
JSON_COLUMNS = frozenset({"prompt_messages", "response_messages"})
_ROW_TYPES: dict[str, tuple[tuple[str, tuple[type, ...], frozenset[type]], ...]] = {}
_DECIMAL_18_12 = Decimal("999999.999999999999")
_UINT_LIMITS = {
    "UInt8": (0, 255),
    "UInt16": (0, 65535),
    "UInt32": (0, (1 << 32) - 1),
    "UInt64": (0, (1 << 64) - 1),
}


def _python_type(ch_type: str) -> tuple[type, ...]:
    """The Python values clickhouse-connect inserts into a column of this type."""
    t = ch_type.removeprefix("LowCardinality(")
    if t.startswith("Nullable("):
        return (type(None), *_python_type(t[len("Nullable(") : -1]))
    if t.startswith("Map("):
        return (dict,)
    if t.startswith("Array("):
        return (list, tuple)
    if t.startswith(("String", "UUID")):
        return (str,)
    if t.startswith("Bool"):
        return (bool,)
    if t.startswith("Decimal"):
        return (Decimal,)
    if t.startswith("Float"):
        return (int, float)
    return (int,)  # (U)Int*, DateTime64 as unix ns


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    engine: str
    indexes: tuple[str, ...] = ()

    def problem(self, row: dict[str, Any]) -> str | None:
        """Why ClickHouse could not take this row (a value of the wrong type), or None. For rows
        from outside the process (enriched topics), so one bad record cannot fail a batch."""
        for name, types, classes in _row_types(self):
            value = row.get(name)
            # The usual value is of one of the types exactly: a set look-up instead of isinstance
            # and a tuple comparison per column (the Kafka writer checks every row it reads: 7.6
            # → 5.1 µs per inference row); subclasses, and bools, take the full check.
            if value is None or value.__class__ in classes:
                continue
            if not isinstance(value, types) or (types == (int,) and value is True):
                return f"{self.name}.{name}: {type(value).__name__} is not a valid value"
        return None

    def problems(self, rows: list[dict[str, Any]]) -> dict[int, str]:
        """`problem` of each row that has one, by position. Rows of one producer share their
        shape (the same keys in the same order, values of the same types: 1-7 shapes in a
        message of ~1,000 rows), so each shape is checked once; a shape holding a type that needs
        the full check (a subclass, a bool, a wrong type) sends its rows to `problem`. Row by row,
        the check was ~1.5x dearer (the Kafka writer checks every row it reads; both are bound by
        reading the rows' dicts, docs/performance.md)."""
        ok: dict[tuple[tuple[str, ...], tuple[type, ...]], bool] = {}
        found: dict[int, str] = {}
        for i, row in enumerate(rows):
            shape = (tuple(row), tuple(map(type, row.values())))
            fine = ok.get(shape)
            if fine is None:
                fine = ok[shape] = self._plain_shape(dict(zip(*shape, strict=True)))
            if not fine and (why := self.problem(row)):
                found[i] = why
        return found

    def _plain_shape(self, types: dict[str, type]) -> bool:
        """Whether rows with values of these exact types pass `problem` without looking further."""
        for name, _, classes in _row_types(self):
            found = types.get(name)
            if found is not None and found is not type(None) and found not in classes:
                return False
        return True

    @property
    def insert_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.default_expr)

    def ddl(self, database: str, retention_days: int) -> str:
        cols = []
        for c in self.columns:
            line = f"    `{c.name}` {c.type}"
            if c.default_expr:
                line += f" DEFAULT {c.default_expr}"
            if c.codec:
                line += f" CODEC({c.codec})"
            cols.append(line)
        body = ",\n".join(cols + [f"    INDEX {ix}" for ix in self.indexes])
        engine = self.engine.format(retention_days=retention_days)
        return f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.name}`\n(\n{body}\n)\n{engine}"


Z = "ZSTD(1)"
_ATTR_MAP = "Map(LowCardinality(String), String)"
# Merges of tables whose rows carry content: one column at a time (vertical), reading 2,048 rows
# of each part at once. The default (all columns, 8,192 rows of each of 6-8 parts) took 150-435 MB
# per merge of ~3 KB rows under the bench's load, the main process's largest peaks; these took
# ≤ ~110 MB for the same CPU (docs/performance.md, "memory of merges").
_MERGE_SETTINGS = (
    "vertical_merge_algorithm_min_rows_to_activate = 1, "
    "vertical_merge_algorithm_min_columns_to_activate = 1, merge_max_block_size = 2048"
)
# Replays of one batch (a retried insert, a writer restarted before its Kafka commit) carry the
# same insert_deduplication_token; this window makes plain MergeTree drop them.
_SETTINGS = (
    "SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, "
    "non_replicated_deduplication_window = 10000, " + _MERGE_SETTINGS
)

OTEL_TRACES = Table(
    "otel_traces",
    (
        Column("Timestamp", "DateTime64(9)", "Delta, ZSTD(1)"),
        Column("TraceId", "String", Z),
        Column("SpanId", "String", Z),
        Column("ParentSpanId", "String", Z),
        Column("TraceState", "String", Z),
        Column("SpanName", "LowCardinality(String)", Z),
        Column("SpanKind", "LowCardinality(String)", Z),
        Column("ServiceName", "LowCardinality(String)", Z),
        Column("ResourceAttributes", _ATTR_MAP, Z),
        Column("ScopeName", "String", Z),
        Column("ScopeVersion", "String", Z),
        Column("SpanAttributes", _ATTR_MAP, Z),
        Column("Duration", "UInt64", Z),
        Column("StatusCode", "LowCardinality(String)", Z),
        Column("StatusMessage", "String", Z),
        Column("Events.Timestamp", "Array(DateTime64(9))", Z),
        Column("Events.Name", "Array(LowCardinality(String))", Z),
        Column("Events.Attributes", f"Array({_ATTR_MAP})", Z),
        Column("Links.TraceId", "Array(String)", Z),
        Column("Links.SpanId", "Array(String)", Z),
        Column("Links.TraceState", "Array(String)", Z),
        Column("Links.Attributes", f"Array({_ATTR_MAP})", Z),
        Column("ProjectId", "LowCardinality(String)", Z),
        Column("PiiFound", "Map(LowCardinality(String), UInt32)", Z),
    ),
    # Replacing, keyed to the span: a replay (a sender retrying after a partly failed batch, a
    # processor restarted before its commit) collapses on merge and is exact under FINAL. The
    # primary index stays the exporter's; the ids only extend the sort order.
    "ENGINE = ReplacingMergeTree\nPARTITION BY toDate(Timestamp)\n"
    "PRIMARY KEY (ProjectId, ServiceName, SpanName, toDateTime(Timestamp))\n"
    "ORDER BY (ProjectId, ServiceName, SpanName, toDateTime(Timestamp), TraceId, SpanId)\n"
    "TTL toDateTime(Timestamp) + toIntervalDay({retention_days})\n" + _SETTINGS,
    (
        "idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
        "idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "idx_duration Duration TYPE minmax GRANULARITY 1",
    ),
)

_OTEL_LOGS_V1_COLUMNS = (
    Column("Timestamp", "DateTime64(9)", "Delta(8), ZSTD(1)"),
    Column("TimestampTime", "DateTime", default_expr="toDateTime(Timestamp)"),
    Column("TraceId", "String", Z),
    Column("SpanId", "String", Z),
    Column("TraceFlags", "UInt8"),
    Column("SeverityText", "LowCardinality(String)", Z),
    Column("SeverityNumber", "UInt8"),
    Column("ServiceName", "LowCardinality(String)", Z),
    Column("Body", "String", Z),
    Column("ResourceSchemaUrl", "LowCardinality(String)", Z),
    Column("ResourceAttributes", _ATTR_MAP, Z),
    Column("ScopeSchemaUrl", "LowCardinality(String)", Z),
    Column("ScopeName", "String", Z),
    Column("ScopeVersion", "LowCardinality(String)", Z),
    Column("ScopeAttributes", _ATTR_MAP, Z),
    Column("LogAttributes", _ATTR_MAP, Z),
    Column("EventName", "String", Z),
    Column("ProjectId", "LowCardinality(String)", Z),
    Column("PiiFound", "Map(LowCardinality(String), UInt32)", Z),
)
_OTEL_LOGS_KEY_V1 = (
    "ProjectId, ServiceName, TimestampTime, Timestamp, TraceId, SpanId, SeverityNumber, cityHash64(Body)"
)
# Migration 11. Log records have no id: until then the same time, span, severity and body made the
# same record, and distinct records sharing them (several untimed records of one request, stamped
# with the same time; two events differing only in name or attributes) collapsed into one row as
# they were inserted. The record's position in the request it arrived in tells them apart, and a
# replay of that request (a restart reading the log or a raw topic again, a sender's retry) still
# gives the same rows.
_OTEL_LOGS_ADDED_11 = (Column("RecordIndex", "UInt32"),)
_OTEL_LOGS_KEY_11 = _OTEL_LOGS_KEY_V1 + ", RecordIndex"
# Migration 12. The position in a request does not tell apart records of different requests: two
# records with the same second-precision time, body and severity, each first in its request (one
# record per request, as a simple log processor sends), collapsed into one row although their
# attributes differed. When the record was observed (set by the SDK or collector that read it, to
# the nanosecond) does, and a replay or a sender's retry of the same request still carries it.
_OTEL_LOGS_ADDED_12 = (Column("ObservedTimestamp", "DateTime64(9)", "Delta(8), ZSTD(1)"),)
_OTEL_LOGS_KEY_12 = _OTEL_LOGS_KEY_11 + ", ObservedTimestamp"
_OTEL_LOGS_INDEXES = (
    "idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
    "idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
)


def _otel_logs_engine(key: str) -> str:
    return (
        "ENGINE = ReplacingMergeTree\nPARTITION BY toDate(TimestampTime)\n"
        "PRIMARY KEY (ProjectId, ServiceName, TimestampTime)\n"
        f"ORDER BY ({key})\n"
        "TTL TimestampTime + toIntervalDay({retention_days})\n" + _SETTINGS
    )


OTEL_LOGS = Table(
    "otel_logs",
    _OTEL_LOGS_V1_COLUMNS + _OTEL_LOGS_ADDED_11 + _OTEL_LOGS_ADDED_12,
    _otel_logs_engine(_OTEL_LOGS_KEY_12),
    _OTEL_LOGS_INDEXES,
)
_OTEL_LOGS_V1 = Table(
    "otel_logs", _OTEL_LOGS_V1_COLUMNS, _otel_logs_engine(_OTEL_LOGS_KEY_V1), _OTEL_LOGS_INDEXES
)

_DEC = "Nullable(Decimal(18, 12))"
# llm_inferences as migration 1 created it; later migrations add the columns after it.
_LLM_INFERENCES_V1_COLUMNS = (
    Column("project_id", "LowCardinality(String)"),
    Column("inference_id", "UUID"),
    Column("trace_id", "String", Z),
    Column("span_id", "String", Z),
    Column("parent_span_id", "String", Z),
    Column("start_time", "DateTime64(9, 'UTC')", "Delta, ZSTD(1)"),
    Column("end_time", "DateTime64(9, 'UTC')", "Delta, ZSTD(1)"),
    Column("latency_ms", "Float64"),
    Column("ttft_ms", "Nullable(Float64)"),
    Column("provider", "LowCardinality(String)"),
    Column("model", "LowCardinality(String)"),
    Column("request_model", "LowCardinality(String)"),
    Column("response_id", "String", Z),
    Column("operation", "LowCardinality(String)"),
    Column("convention", "LowCardinality(String)"),
    Column("success", "Bool"),
    Column("error_type", "LowCardinality(String)"),
    Column("status_message", "String", Z),
    Column("input_tokens", "UInt64"),
    Column("output_tokens", "UInt64"),
    Column("cache_read_tokens", "UInt64"),
    Column("cache_write_tokens", "UInt64"),
    Column("reasoning_tokens", "UInt64"),
    Column("total_tokens", "UInt64"),
    Column("input_cost_usd", _DEC),
    Column("output_cost_usd", _DEC),
    Column("total_cost_usd", _DEC),
    Column("price_status", "LowCardinality(String)"),
    Column("prompt_messages", "String", "ZSTD(3)"),
    Column("response_messages", "String", "ZSTD(3)"),
    Column("streaming", "Bool"),
    Column("finish_reasons", "Array(LowCardinality(String))"),
    Column("temperature", "Nullable(Float64)"),
    Column("top_p", "Nullable(Float64)"),
    Column("max_tokens", "Nullable(UInt32)"),
    Column("user_id", "String", Z),
    Column("session_id", "String", Z),
    Column("tenant_id", "LowCardinality(String)"),
    Column("service_name", "LowCardinality(String)"),
    Column("environment", "LowCardinality(String)"),
    Column("server_address", "LowCardinality(String)"),
    Column("agent_name", "LowCardinality(String)"),
    Column("tags", _ATTR_MAP, Z),
    Column("labels", "Array(String)", Z),
    Column("pii_found", "Map(LowCardinality(String), UInt32)"),
    Column("prompt_sentiment", "Nullable(Float32)"),
    Column("prompt_sentiment_label", "LowCardinality(String)"),
    Column("response_sentiment", "Nullable(Float32)"),
    Column("response_sentiment_label", "LowCardinality(String)"),
    Column("version", "UInt64"),
    Column("ingested_at", "DateTime64(3, 'UTC')", default_expr="now64(3)"),
)
# Migration 5 (issue #15): token counts by modality, the instrumentation's own cost beside the
# price table's, the request parameters without a column, the agent's id.
_LLM_INFERENCES_ADDED_5 = (
    Column("usage_details", "Map(LowCardinality(String), UInt64)"),
    Column("provided_cost_usd", _DEC),
    Column("request_parameters", _ATTR_MAP, Z),
    Column("agent_id", "LowCardinality(String)"),
)
_LLM_INFERENCES_ENGINE = (
    # ReplacingMergeTree(version): a replayed row, or a later row carrying content that arrived
    # in log records after the span, replaces the earlier one for the same inference_id.
    "ENGINE = ReplacingMergeTree(version)\nPARTITION BY toDate(start_time)\n"
    "ORDER BY (project_id, toStartOfHour(start_time), model, inference_id)\n"
    "TTL toDateTime(start_time) + toIntervalDay({retention_days})\n" + _SETTINGS
)
_LLM_INFERENCES_INDEXES = (
    "idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1",
    "idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 4",
    "idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 4",
    "idx_latency latency_ms TYPE minmax GRANULARITY 1",
)
LLM_INFERENCES = Table(
    "llm_inferences",
    _LLM_INFERENCES_V1_COLUMNS + _LLM_INFERENCES_ADDED_5,
    _LLM_INFERENCES_ENGINE,
    _LLM_INFERENCES_INDEXES,
)
_LLM_INFERENCES_V1 = Table(
    "llm_inferences", _LLM_INFERENCES_V1_COLUMNS, _LLM_INFERENCES_ENGINE, _LLM_INFERENCES_INDEXES
)

API_KEYS = Table(
    "api_keys",
    (
        Column("key_sha256", "String"),
        Column("project_id", "LowCardinality(String)"),
        Column("name", "String"),
        Column("created_at", "DateTime64(3, 'UTC')", default_expr="now64(3)"),
        Column("revoked", "Bool"),
    ),
    "ENGINE = ReplacingMergeTree(created_at)\nORDER BY key_sha256",
)

TABLES: dict[str, Table] = {t.name: t for t in (OTEL_TRACES, OTEL_LOGS, LLM_INFERENCES, API_KEYS)}
# What migration 1 created (it must not change once released).
_TABLES_V1 = (OTEL_TRACES, _OTEL_LOGS_V1, _LLM_INFERENCES_V1, API_KEYS)

# Migration 4; not in TABLES, which is migration 1's list.
FEEDBACK = Table(
    "feedback",
    (
        Column("project_id", "LowCardinality(String)"),
        Column("inference_id", "UUID"),
        Column("feedback_id", "UUID"),
        Column("inference_time", "DateTime64(9, 'UTC')"),  # the inference's start_time
        Column("created_at", "DateTime64(9, 'UTC')"),
        Column("thumbs_up", "Nullable(Bool)"),
        Column("rating", "Nullable(UInt8)"),
        Column("comment", "String", Z),
        Column("comment_sentiment", "Nullable(Float32)"),
        Column("comment_sentiment_label", "LowCardinality(String)"),
        Column("demonstration", "String", "ZSTD(3)"),
        Column("pii_found", "Map(LowCardinality(String), UInt32)"),
        Column("key_id", "String"),  # digest naming the API key that sent it
    ),
    # Keyed to the feedback id (the client's Idempotency-Key when it sent one): a retried POST
    # replaces its first row. Partitioned by the inference's month, which a retry shares.
    "ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(inference_time)\n"
    "ORDER BY (project_id, inference_id, feedback_id)\n"
    "TTL toDateTime(created_at) + toIntervalDay({retention_days})\n" + _SETTINGS,
)

# Migration 6: the ingest ledger (`inferline.core.ledger`): one row per durable entry (its source
# position) and outcome. A replayed entry's rows replace the first ones: read with FINAL, sum().
INGEST_LEDGER = Table(
    "ingest_ledger",
    (
        Column("project_id", "LowCardinality(String)"),
        Column("minute", "DateTime('UTC')"),  # when the receiver accepted the records
        Column("signal", "LowCardinality(String)"),  # spans | logs
        # accepted | rejected | corrected | stored | dead_lettered
        Column("outcome", "LowCardinality(String)"),
        Column("reason", "LowCardinality(String)"),
        Column("source", "String"),  # topic/partition/offset of the entry counted
        Column("records", "UInt64"),
    ),
    "ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(minute)\n"
    "ORDER BY (project_id, minute, signal, outcome, reason, source)\n"
    "TTL minute + toIntervalDay({retention_days})\n"
    "SETTINGS non_replicated_deduplication_window = 10000",
)


# Migration 7 (issue #15): evaluation results (OTel `gen_ai.evaluation.result` events, OpenInference
# annotations and evaluations), one row per result, keyed to what it judges: a span (the inference's
# trace and span; `inference_id` is then the inference's id), a response id (events sent without a
# span context: matched to `llm_inferences.response_id` when read), a whole trace or a session.
SCORES = Table(
    "scores",
    (
        Column("project_id", "LowCardinality(String)"),
        Column("timestamp", "DateTime64(9, 'UTC')", "Delta, ZSTD(1)"),
        Column("scope", "LowCardinality(String)"),  # span | trace | session
        Column("trace_id", "String", Z),
        Column("span_id", "String", Z),
        # uuid5 of project/trace/span for span scope (as `llm_inferences.inference_id`), else nil
        Column("inference_id", "UUID"),
        Column("response_id", "String", Z),
        Column("session_id", "String", Z),
        Column("name", "LowCardinality(String)"),
        Column("value", "Nullable(Float64)"),
        Column("label", "LowCardinality(String)"),
        Column("explanation", "String", "ZSTD(3)"),
        Column("evaluator", "LowCardinality(String)"),  # OpenInference annotator_kind: HUMAN, LLM, CODE
        Column("identifier", "String", Z),
        Column("metadata", "String", Z),  # JSON object, as sent
        Column("source", "LowCardinality(String)"),  # otel_genai | openinference
        Column("carrier_span_id", "String", Z),  # the span (or log record's span) that carried it
        Column("pii_found", "Map(LowCardinality(String), UInt32)"),
    ),
    # One result per target, name, judge and identifier: a replay collapses, and a later result
    # (a re-run evaluation) replaces the earlier one (the newest `timestamp` wins).
    "ENGINE = ReplacingMergeTree(timestamp)\nPARTITION BY toYYYYMM(timestamp)\n"
    "ORDER BY (project_id, name, trace_id, span_id, response_id, session_id, scope, source, evaluator,"
    " identifier)\n"
    "TTL toDateTime(timestamp) + toIntervalDay({retention_days})\n" + _SETTINGS,
    (
        "idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1",
        "idx_response_id response_id TYPE bloom_filter(0.001) GRANULARITY 1",
        "idx_inference_id inference_id TYPE bloom_filter(0.001) GRANULARITY 1",
    ),
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def migrations(database: str, retention_days: int) -> list[Migration]:
    """Every schema change ever made, in order. Append; never edit a released one."""
    return [
        Migration(
            1,
            "otel_traces, otel_logs, llm_inferences, api_keys",
            tuple(t.ddl(database, retention_days) for t in _TABLES_V1),
        ),
        Migration(2, "llm_inferences_by_minute rollup", _rollup_statements(database, retention_days)),
        Migration(3, "projects; api_keys.issued_at", _projects_statements(database)),
        Migration(
            4,
            "feedback; analytics rollups by minute, hour and day",
            (
                FEEDBACK.ddl(database, retention_days),
                *rollup_statements(database, retention_days),
                # Opening one inference by id (detail, feedback) reads a few granules, not the project.
                f"ALTER TABLE `{database}`.llm_inferences ADD INDEX IF NOT EXISTS idx_inference_id "
                "inference_id TYPE bloom_filter(0.001) GRANULARITY 1",
                f"ALTER TABLE `{database}`.llm_inferences MATERIALIZE INDEX idx_inference_id",
            ),
        ),
        Migration(
            5,
            "llm_inferences: usage_details, provided_cost_usd, request_parameters, agent_id",
            tuple(
                f"ALTER TABLE `{database}`.llm_inferences ADD COLUMN IF NOT EXISTS `{c.name}` {c.type}"
                + (f" CODEC({c.codec})" if c.codec else "")
                for c in _LLM_INFERENCES_ADDED_5
            ),
        ),
        Migration(6, "ingest_ledger", (INGEST_LEDGER.ddl(database, retention_days),)),
        Migration(7, "scores", (SCORES.ddl(database, retention_days),)),
        Migration(
            8,
            "alert_rules, alert_state, alert_events, webhooks, webhook_deliveries",
            alert_statements(database, retention_days),
        ),
        Migration(
            9,
            "inference_attribution_by_hour rollup (tenant, feature)",
            rollup_statements(database, retention_days, ROLLUPS_9),
        ),
        Migration(
            10,
            "merges of the tables with content: vertical, 2,048-row blocks (memory)",
            tuple(
                f"ALTER TABLE `{database}`.{t.name} MODIFY SETTING {_MERGE_SETTINGS}"
                for t in (OTEL_TRACES, OTEL_LOGS, LLM_INFERENCES, FEEDBACK, SCORES)
            ),
        ),
        Migration(
            11,
            "otel_logs: RecordIndex in the sorting key (distinct records no longer collapse)",
            (
                # One statement: a sorting key may only grow by columns added in the same ALTER.
                f"ALTER TABLE `{database}`.otel_logs ADD COLUMN IF NOT EXISTS RecordIndex UInt32, "
                f"MODIFY ORDER BY ({_OTEL_LOGS_KEY_11})",
            ),
        ),
        Migration(
            12,
            "otel_logs: ObservedTimestamp, in the sorting key (records of different requests no "
            "longer collapse)",
            (
                f"ALTER TABLE `{database}`.otel_logs ADD COLUMN IF NOT EXISTS ObservedTimestamp "
                f"DateTime64(9) CODEC(Delta(8), ZSTD(1)), MODIFY ORDER BY ({_OTEL_LOGS_KEY_12})",
            ),
        ),
    ]


def _rollup_statements(database: str, retention_days: int) -> tuple[str, ...]:
    """Per-minute aggregates by project, model and provider, kept by a materialized view, so
    dashboards read thousands of rows instead of millions. Only `version = 1` rows feed it: later
    versions of an inference only add content that arrived in log records, and counting them
    would count the call twice."""
    db = f"`{database}`"
    return (
        f"""CREATE TABLE IF NOT EXISTS {db}.llm_inferences_by_minute
(
    `project_id` LowCardinality(String),
    `minute` DateTime('UTC'),
    `model` LowCardinality(String),
    `provider` LowCardinality(String),
    `calls` SimpleAggregateFunction(sum, UInt64),
    `errors` SimpleAggregateFunction(sum, UInt64),
    `unpriced_calls` SimpleAggregateFunction(sum, UInt64),
    `input_tokens` SimpleAggregateFunction(sum, UInt64),
    `output_tokens` SimpleAggregateFunction(sum, UInt64),
    `cache_read_tokens` SimpleAggregateFunction(sum, UInt64),
    `cost_usd` SimpleAggregateFunction(sum, Decimal(38, 12)),
    `latency_ms` AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    `ttft_ms` AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (project_id, minute, model, provider)
TTL minute + toIntervalDay({retention_days})
SETTINGS non_replicated_deduplication_window = 10000""",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.llm_inferences_by_minute_mv\n"
        f"TO {db}.llm_inferences_by_minute AS\n{LEGACY_BY_MINUTE_SELECT}\nFROM {db}.llm_inferences\n"
        f"WHERE version = 1\nGROUP BY {LEGACY_BY_MINUTE_GROUP_BY}",
    )


def _projects_statements(database: str) -> tuple[str, ...]:
    """The projects the admin API manages (every project that had a key becomes one), and
    `api_keys.issued_at`, which keeps a key's creation time once its revocation row replaces it."""
    db = f"`{database}`"
    return (
        f"""CREATE TABLE IF NOT EXISTS {db}.projects
(
    `project_id` String,
    `name` String,
    `created_at` DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY project_id""",
        f"ALTER TABLE {db}.api_keys ADD COLUMN IF NOT EXISTS `issued_at` DateTime64(3, 'UTC') "
        "DEFAULT created_at",
        f"INSERT INTO {db}.projects (project_id, name, created_at) "
        f"SELECT project_id, '', min(issued_at) FROM {db}.api_keys "
        f"WHERE project_id NOT IN (SELECT project_id FROM {db}.projects) GROUP BY project_id",
    )


def migrate(client: Any, database: str = "default", retention_days: int = 180) -> list[int]:
    """Apply the migrations not yet recorded in `schema_migrations`. Safe to run concurrently-ish
    and repeatedly: every statement is idempotent, and the record is written after it ran."""
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(
        f"CREATE TABLE IF NOT EXISTS `{database}`.schema_migrations "
        "(version UInt32, description String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {r[0] for r in client.query(f"SELECT version FROM `{database}`.schema_migrations").result_rows}
    applied = []
    for m in migrations(database, retention_days):
        if m.version in done:
            continue
        for statement in m.statements:
            client.command(statement)
        client.insert(
            f"`{database}`.schema_migrations",
            [[m.version, m.description]],
            column_names=["version", "description"],
        )
        log.info("schema migrated", version=m.version, description=m.description)
        applied.append(m.version)
    return applied
