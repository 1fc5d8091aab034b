"""Prometheus metrics, served on the API port at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("inferline_records_received_total", "OTLP records accepted", ["signal"])
REJECTED = Counter("inferline_records_rejected_total", "OTLP records rejected individually", ["signal"])
REFUSED = Counter("inferline_requests_refused_total", "requests refused with a retryable status", ["reason"])
INFERENCES = Counter("inferline_inferences_total", "inference rows produced", ["price_status"])
ROWS_WRITTEN = Counter("inferline_rows_written_total", "rows committed to ClickHouse", ["table"])
FLUSHES = Counter("inferline_flushes_total", "batch flushes", ["outcome"])
FLUSH_SECONDS = Histogram("inferline_flush_seconds", "time to insert one batch")
PENDING_ROWS = Gauge("inferline_pending_rows", "rows waiting for storage")
VALUES_OUT_OF_RANGE = Counter(
    "inferline_values_out_of_range_total",
    "inserts where values beyond a column's range were emptied",
    ["table", "column"],
)
