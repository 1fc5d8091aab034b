"""Prometheus metrics, served on every role's API port at /metrics. The catalogue (names, labels,
meaning) is documented in docs/operations.md; dashboards and alert rules depend on these names.

Labels are bounded: never a user, session, trace or key. `project`, `model` and `provider` keep
their first `LABEL_VALUES_CAP` distinct values each; later ones are reported as "other".
Gauges carry `multiprocess_mode` so that the numbers stay meaningful if several processes ever
share one registry through prometheus-client's multiprocess mode (ignored otherwise).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from inferline.core.batch_histogram import BatchHistogram

LABEL_VALUES_CAP = 200
OTHER = "other"

# `*_created` series double the scrape and no dashboard or alert reads them.
disable_created_metrics()

# -- pipeline ------------------------------------------------------------------------------------

OTLP_REQUESTS = Counter(
    "inferline_otlp_requests",
    "OTLP export requests answered, by outcome",
    ["protocol", "signal", "outcome"],
)
RECORDS_ACCEPTED = Counter(
    "inferline_otlp_records_accepted",
    "OTLP records (spans, log records) acknowledged to senders",
    ["protocol", "signal"],
)
RECORDS_REJECTED = Counter(
    "inferline_otlp_records_rejected",
    "OTLP records refused individually (partial success)",
    ["protocol", "signal"],
)
REQUESTS_REFUSED = Counter(
    "inferline_requests_refused",
    "requests refused with a retryable status (429/503, RESOURCE_EXHAUSTED/UNAVAILABLE)",
    ["protocol", "reason"],
)
QUEUE_DEPTH = Gauge(
    "inferline_queue_depth",
    "what waits in a bounded queue: rows for storage, request bytes in flight, bytes for Kafka",
    ["queue"],
    multiprocess_mode="livesum",
)
BATCH_ROWS = Histogram(
    "inferline_batch_rows",
    "rows per ClickHouse insert",
    ["table"],
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000),
)
FLUSH_DURATION = Histogram(
    "inferline_flush_duration_seconds",
    "duration of one ClickHouse insert",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ROWS_WRITTEN = Counter("inferline_rows_written", "rows committed to ClickHouse", ["table"])
INSERT_ERRORS = Counter(
    "inferline_clickhouse_insert_errors", "ClickHouse inserts that failed (after retries)", ["table"]
)
KAFKA_CONSUMER_LAG = Gauge(
    "inferline_kafka_consumer_lag",
    "records not yet consumed: sum over the assigned partitions of high watermark - position",
    ["group", "topic"],
    multiprocess_mode="livesum",
)
DLQ_RECORDS = Counter("inferline_dlq_records", "records sent to the dead-letter topic", ["stage", "reason"])
LEDGER_RECORDS = Counter(
    "inferline_ledger_records",
    "ingest ledger counts stored in ClickHouse (accepted = stored + dead_lettered once processed)",
    ["signal", "outcome", "reason"],
)
KAFKA_RECORDS_EXPIRED = Counter(
    "inferline_kafka_records_expired",
    "records Kafka deleted (retention) before this consumer group read them",
    ["group", "topic"],
)
VALUES_OUT_OF_RANGE = Counter(
    "inferline_values_out_of_range",
    "inserts where values beyond a column's range were emptied",
    ["table", "column"],
)
STORED_ROW_LOOKUPS = Counter(
    "inferline_stored_row_lookups",
    "inference rows of flushes, before their insert: vouched for as new by their normaliser (not"
    " looked up), looked up in llm_inferences, found stored there (left out)",
    ["outcome"],
)
ROWS_NOT_STORED = Counter(
    "inferline_rows_not_stored",
    "rows left out because they could not be encoded for ClickHouse (a bug: the log says which)",
    ["table"],
)
GC_PAUSE = Histogram(
    "inferline_gc_pause_seconds",
    "pauses of Python's cyclic garbage collector in this process (it holds the GIL throughout)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
UP = Gauge("inferline_up", "1 while the process serves", multiprocess_mode="max")
BUILD_INFO = Gauge(
    "inferline_build_info", "the running version (value 1)", ["version"], multiprocess_mode="max"
)

# -- alert rules and webhooks (inferline.alerts) -------------------------------------------------

ALERT_EVALUATIONS = Counter(
    "inferline_alert_evaluations", "evaluations of a project's alert rules (one query each)", ["outcome"]
)
ALERT_TRANSITIONS = Counter("inferline_alert_transitions", "alert rules that fired or resolved", ["status"])
WEBHOOK_DELIVERIES = Counter(
    "inferline_webhook_deliveries",
    "webhook delivery outcomes: delivered, retried (an attempt failed), failed (given up), dropped",
    ["outcome"],
)

# -- LLM, from committed inference rows ----------------------------------------------------------

LLM_INFERENCES = Counter(
    "inferline_llm_inferences",
    "model calls committed to llm_inferences",
    ["project", "model", "provider", "status"],
)
LLM_TOKENS = Counter(
    "inferline_llm_tokens", "tokens of committed model calls", ["project", "model", "provider", "type"]
)
LLM_COST = Counter(
    "inferline_llm_cost_usd", "priced cost of committed model calls, USD", ["project", "model"]
)
PII_MASKED = Counter(
    "inferline_pii_masked",
    "values masked in committed llm_inferences rows, by PII type (pii_found)",
    ["project", "type"],
)
# Fed a batch of committed rows at a time (`observe_inferences`): see `BatchHistogram`.
LLM_LATENCY = BatchHistogram(
    "inferline_llm_latency_seconds",
    "model call duration",
    "model",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300),
)
LLM_TTFT = BatchHistogram(
    "inferline_llm_ttft_seconds",
    "time to first token of streamed model calls",
    "model",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)


class CappedLabel:
    """The first `cap` distinct values of one label pass; later ones become "other", so a sender
    inventing model names cannot grow the scrape without bound."""

    def __init__(self, cap: int = LABEL_VALUES_CAP) -> None:
        self._cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= self._cap:
                return OTHER
            self._seen.add(value)
            return value


project_label, model_label, provider_label = CappedLabel(), CappedLabel(), CappedLabel()


# The llm_inferences columns `observe_inferences` reads (worker processes send only these), and
# the row's identity, which the exporter looks up (`exporters/clickhouse/new_inferences.py`).
OBSERVED_FIELDS = (
    "inference_id",
    "start_time",
    "version",
    "pii_found",
    "project_id",
    "model",
    "provider",
    "success",
    "input_tokens",
    "output_tokens",
    "total_cost_usd",
    "latency_ms",
    "ttft_ms",
)


def observe_ledger(rows: Iterable[Mapping[str, Any]]) -> None:
    """Count ingest ledger rows just committed (`inferline.core.ledger`)."""
    for row in rows:
        LEDGER_RECORDS.labels(row["signal"], row["outcome"], row["reason"]).inc(row["records"])


def observe_inferences(rows: Iterable[Mapping[str, Any]]) -> None:
    """Record the LLM metrics of llm_inferences rows just committed. Only version 1 of an
    inference counts (later versions add content that arrived late, as the rollup view does),
    so a call is counted once however many times its row is rewritten.

    Sums are gathered per label set first and added once each: `.labels()` costs more than the
    rest of a row's bookkeeping, and a batch holds thousands of rows but a few label sets."""
    calls: dict[tuple[str, str, str, str], int] = {}
    tokens: dict[tuple[str, str, str, str], int] = {}
    cost: dict[tuple[str, str], float] = {}
    pii: dict[tuple[str, str], int] = {}
    latency: dict[str, list[float]] = {}
    ttft: dict[str, list[float]] = {}
    labels: dict[tuple[Any, Any, Any], tuple[str, str, str]] = {}
    for row in rows:
        if row.get("version", 1) != 1:
            continue
        raw = (row.get("project_id"), row.get("model"), row.get("provider"))
        named = labels.get(raw)
        if named is None:
            named = labels[raw] = (
                project_label(str(raw[0] or "")),
                model_label(str(raw[1] or "")),
                provider_label(str(raw[2] or "")),
            )
        project, model, provider = named
        key = (project, model, provider, "ok" if row.get("success", True) else "error")
        calls[key] = calls.get(key, 0) + 1
        for kind in ("input", "output"):
            n = row.get(f"{kind}_tokens") or 0
            if n > 0:
                key = (project, model, provider, kind)
                tokens[key] = tokens.get(key, 0) + n
        usd = row.get("total_cost_usd")
        if usd is not None and usd > 0:
            cost[(project, model)] = cost.get((project, model), 0.0) + float(usd)
        latency_ms = row.get("latency_ms")
        if latency_ms is not None and latency_ms >= 0:
            latency.setdefault(model, []).append(latency_ms / 1000)
        ttft_ms = row.get("ttft_ms")
        if ttft_ms is not None and ttft_ms >= 0:
            ttft.setdefault(model, []).append(ttft_ms / 1000)
        pii_found = row.get("pii_found")
        if pii_found:
            for pii_type, n in pii_found.items():
                if n > 0:
                    # Types are the built-in detectors and the configured custom patterns: bounded.
                    key2 = (project, str(pii_type))
                    pii[key2] = pii.get(key2, 0) + n
    for k4, n in calls.items():
        LLM_INFERENCES.labels(*k4).inc(n)
    for k4, n in tokens.items():
        LLM_TOKENS.labels(*k4).inc(n)
    for k2, usd_sum in cost.items():
        LLM_COST.labels(*k2).inc(usd_sum)
    for k2, n in pii.items():
        PII_MASKED.labels(*k2).inc(n)
    for histogram, by_model in ((LLM_LATENCY, latency), (LLM_TTFT, ttft)):
        for model, seconds in by_model.items():
            histogram.observe_many(model, seconds)


def observe_insert(table: str, rows: int, seconds: float) -> None:
    """One successful insert of `rows` rows into `table`."""
    BATCH_ROWS.labels(table).observe(rows)
    FLUSH_DURATION.labels(table).observe(seconds)
    ROWS_WRITTEN.labels(table).inc(rows)


def _version() -> str:
    try:
        return version("inferline")
    except PackageNotFoundError:
        return "unknown"


UP.set(1)
BUILD_INFO.labels(_version()).set(1)
