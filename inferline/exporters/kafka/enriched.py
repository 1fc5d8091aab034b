"""The enriched topics' messages: one JSON message per row, keyed by trace id, with the headers
the writer and other consumers read (docs/kafka-topics.md). Built where the rows are made (in a
worker process of the processor role), so the role's own process only hands bytes to Kafka."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog

from inferline.core import metrics
from inferline.core.config import KafkaSettings
from inferline.core.records import Batch, Row
from inferline.kafka.clients import (
    H_CONTENT_TYPE,
    H_KIND,
    H_SCHEMA,
    JSON,
    KIND_INFERENCE,
    KIND_LEDGER,
    KIND_LOG,
    KIND_SCORE,
    KIND_SPAN,
    MESSAGE_OVERHEAD,
    SCHEMA_VERSION,
    encode_row,
)
from inferline.storage.schema import INGEST_LEDGER, LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, SCORES

log = structlog.get_logger()


class Message(NamedTuple):
    """A record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class EnrichedMessages:
    """Turns a processed batch into enriched-topic messages (picklable: it travels to workers)."""

    inferences_topic: str
    spans_topic: str
    logs_topic: str
    scores_topic: str
    ledger_topic: str
    project_header: str
    max_value_bytes: int

    @classmethod
    def for_topics(cls, ks: KafkaSettings) -> EnrichedMessages:
        return cls(
            ks.inferences_topic,
            ks.spans_topic,
            ks.logs_topic,
            ks.scores_topic,
            ks.ledger_topic,
            ks.project_header,
            ks.max_message_bytes - MESSAGE_OVERHEAD,
        )

    def __call__(self, batch: Batch) -> list[Message]:
        messages: list[Message] = []
        for topic, kind, table, rows, trace_col, project_col in (
            (
                self.inferences_topic,
                KIND_INFERENCE,
                LLM_INFERENCES.name,
                batch.inferences,
                "trace_id",
                "project_id",
            ),
            (self.spans_topic, KIND_SPAN, OTEL_TRACES.name, batch.spans, "TraceId", "ProjectId"),
            (self.logs_topic, KIND_LOG, OTEL_LOGS.name, batch.logs, "TraceId", "ProjectId"),
            (self.scores_topic, KIND_SCORE, SCORES.name, batch.scores, "trace_id", "project_id"),
            (self.ledger_topic, KIND_LEDGER, INGEST_LEDGER.name, batch.ledger, "", "project_id"),
        ):
            for row in rows:
                headers = [
                    (H_SCHEMA, SCHEMA_VERSION),
                    (H_KIND, kind),
                    (H_CONTENT_TYPE, JSON),
                    (self.project_header, row[project_col].encode()),
                ]
                trace_id = row[trace_col] if trace_col else None
                value = fit_row(row, self.max_value_bytes, table)
                messages.append(Message(topic, trace_id.encode() if trace_id else None, value, headers))
        return messages


# What a JSON number can carry here (orjson: int64 and uint64); no column holds more either.
_JSON_INT_MIN, _JSON_INT_MAX = -(1 << 63), (1 << 64) - 1


def _json_safe(value: Any, path: str, emptied: list[str]) -> Any:
    """`value` with the integers JSON cannot carry (a token count of 1e30 sent as a string or a
    double) emptied to null, as the writer empties values their column cannot hold."""
    if type(value) is int:
        if _JSON_INT_MIN <= value <= _JSON_INT_MAX:
            return value
        emptied.append(path)
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v, path or k, emptied) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, path, emptied) for v in value]
    return value


def fit_row(row: Row, limit: int, table: str) -> bytes:
    """The row's JSON, with its largest values emptied while it exceeds the message limit: the
    record (ids, tokens, cost) still reaches the writer, only oversized content is cut."""
    try:
        value = encode_row(row)
    except TypeError:  # orjson: "Integer exceeds 64-bit range"; anything else raises again below
        emptied: list[str] = []
        row = _json_safe(row, "", emptied)
        columns = sorted(set(emptied))
        for column in columns:
            metrics.VALUES_OUT_OF_RANGE.labels(table, column).inc()
        log.warning("values beyond 64-bit integers were emptied", table=table, columns=columns)
        value = encode_row(row)
    if len(value) <= limit:
        return value
    row = dict(row)
    sizes = sorted(((len(encode_row({k: v})), k) for k, v in row.items()), reverse=True)
    for _, k in sizes:
        v = row[k]
        row[k] = (
            {} if isinstance(v, dict) else [] if isinstance(v, list) else "[truncated: too large for Kafka]"
        )
        value = encode_row(row)
        if len(value) <= limit:
            break
    log.warning("enriched record truncated to fit the Kafka message limit", limit=limit)
    return value
