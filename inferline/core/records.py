"""The in-memory shapes that flow between stages.

`Span` and `LogRecord` are OTLP records flattened with their resource and scope, attribute
values already decoded from `AnyValue` into plain Python (str, bool, int, float, bytes, list,
dict). Stages after normalisation work on *rows*: plain dicts keyed by ClickHouse column name,
one dict per row of `otel_traces`, `otel_logs`, `llm_inferences` or `scores`. Rows are what the
enriched Kafka topics carry (as JSON) and what the writer inserts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

Attributes = dict[str, Any]
Row = dict[str, Any]

# SourceEntry.kind: the OTLP request type of the payload, or the receiver's ledger tally of a
# request (`inferline.core.ledger.ReceiverTally`, JSON).
SPANS, LOGS, LEDGER = 1, 2, 3


class SourceEntry(NamedTuple):
    """One serialized OTLP request (or a part of one) as a durable log holds it: an entry of the
    local log or a message of a raw Kafka topic. `(topic, partition, offset)` is where a consumer
    reads it again after a restart."""

    topic: str
    partition: int
    offset: int
    kind: int  # SPANS, LOGS or LEDGER
    project_id: str
    payload: bytes
    received_at: float = 0.0  # unix seconds: when the receiver accepted it (0: unknown)


@dataclass(slots=True)
class Event:
    time_ns: int
    name: str
    attributes: Attributes


@dataclass(slots=True)
class Link:
    trace_id: str
    span_id: str
    trace_state: str
    attributes: Attributes


@dataclass(slots=True)
class Span:
    project_id: str
    trace_id: str  # lowercase hex, 32 chars
    span_id: str  # lowercase hex, 16 chars
    parent_span_id: str  # "" for a root span
    trace_state: str
    name: str
    kind: int  # OTLP SpanKind enum value (3 = CLIENT)
    start_ns: int
    end_ns: int
    status_code: int  # OTLP StatusCode enum value (2 = ERROR)
    status_message: str
    attributes: Attributes
    events: list[Event] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    resource: Attributes = field(default_factory=dict)
    resource_schema_url: str = ""
    scope_name: str = ""
    scope_version: str = ""
    scope_attributes: Attributes = field(default_factory=dict)
    # (topic, partition, offset) of the `SourceEntry` the span came from.
    origin: tuple[str, int, int] | None = None


@dataclass(slots=True)
class LogRecord:
    project_id: str
    time_ns: int
    observed_time_ns: int
    trace_id: str  # "" when not correlated
    span_id: str
    flags: int
    severity_text: str
    severity_number: int
    body: Any  # decoded AnyValue
    attributes: Attributes
    event_name: str  # LogRecord.event_name, or "" (older SDKs put it in attributes["event.name"])
    resource: Attributes = field(default_factory=dict)
    resource_schema_url: str = ""
    scope_name: str = ""
    scope_version: str = ""
    scope_attributes: Attributes = field(default_factory=dict)
    scope_schema_url: str = ""
    # (topic, partition, offset) of the `SourceEntry` the record came from.
    origin: tuple[str, int, int] | None = None
    # Its position among the log records of the request it arrived in: what tells apart records
    # alike in everything else (log records have no id), the same for every replay of the request.
    index: int = 0


class ScoreCarrier(NamedTuple):
    """The record a score row came from: a span (`SPAN_CARRIER`) or a log record, by its position
    in the batch's spans or logs."""

    kind: str
    position: int


SPAN_CARRIER, LOG_CARRIER = "span", "log"


class LeftOut(NamedTuple):
    """A row of a batch that could not be encoded: its table, its index in the batch's list of
    that table's rows (`position`), and why."""

    table: str
    position: int
    reason: str


@dataclass(slots=True)
class Batch:
    """What one processor chain run works on: the rows from one request or one consumed batch."""

    inferences: list[Row] = field(default_factory=list)
    spans: list[Row] = field(default_factory=list)  # otel_traces rows
    logs: list[Row] = field(default_factory=list)  # otel_logs rows
    feedback: list[Row] = field(default_factory=list)  # feedback rows (from the API, not OTLP)
    scores: list[Row] = field(default_factory=list)  # evaluation results (`scores` rows)
    # Rows a worker process already encoded as Native blocks: (table, row count, block).
    encoded: list[tuple[str, int, bytes]] = field(default_factory=list)
    # What the metrics read of the encoded llm_inferences rows (metrics.OBSERVED_FIELDS).
    observed: list[Row] = field(default_factory=list)
    # Keys ("inference_id/version") of encoded llm_inferences rows ClickHouse holds already: the
    # insert leaves them out (`exporters/clickhouse/new_inferences.py`).
    already_stored: frozenset[str] = frozenset()
    # Unix time from which the normaliser that made `inferences` remembers every call it made a
    # row of (`GenAINormaliser.calls_remembered_since`); -inf: unknown.
    calls_remembered_since: float = float("-inf")
    # Rows of `ingest_ledger` (`inferline.core.ledger`): inserted last, after the rows they count.
    ledger: list[Row] = field(default_factory=list)
    # Rows the encoder could not encode and left out of its output (a value no column rule
    # foresaw): the processing counts them and keeps their entries as dead letters.
    left_out: list[LeftOut] = field(default_factory=list)
    # For each of `scores`, the record that carried it (which entry a left-out score is of).
    score_carriers: list[ScoreCarrier] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.inferences)
            + len(self.spans)
            + len(self.logs)
            + len(self.feedback)
            + len(self.scores)
            + sum(n for _, n, _ in self.encoded)
            + len(self.ledger)
        )

    def extend(self, other: Batch) -> None:
        offsets = {SPAN_CARRIER: len(self.spans), LOG_CARRIER: len(self.logs)}
        self.score_carriers.extend(
            ScoreCarrier(c.kind, offsets[c.kind] + c.position) for c in other.score_carriers
        )
        self.inferences.extend(other.inferences)
        self.spans.extend(other.spans)
        self.logs.extend(other.logs)
        self.feedback.extend(other.feedback)
        self.scores.extend(other.scores)
        self.encoded.extend(other.encoded)
        self.observed.extend(other.observed)
        self.already_stored |= other.already_stored
        self.calls_remembered_since = min(self.calls_remembered_since, other.calls_remembered_since)
        self.ledger.extend(other.ledger)
