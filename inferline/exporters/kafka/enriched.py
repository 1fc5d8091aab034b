"""The enriched topics' messages (docs/kafka-topics.md), built where the rows are made (in a worker
process of the processor role), so the role's own process only groups bytes and hands them to Kafka.

Two formats (`KafkaSettings.enriched_format`):

- `ndjson` (schema version 2, the default): many records of one kind and project per message, one
  JSON object per line, each message holding the records of one partition. A record's partition
  is chosen from its trace id (`partition_of`), so a trace's records still share a partition (and
  a writer) and keep their order. Per record, the cost of a Kafka message (a produce future,
  headers, a consumer record) was most of what a hop through Kafka cost in Python; per message it
  is shared by hundreds of records.
- `json` (schema version 1): one message per record, keyed by trace id.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog

from inferline.core import metrics
from inferline.core.config import KafkaSettings
from inferline.core.records import Batch, Row
from inferline.kafka.clients import (
    H_CALLS_REMEMBERED_SINCE,
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
    NDJSON,
    SCHEMA_VERSION,
    SCHEMA_VERSION_NDJSON,
    encode_row,
)
from inferline.storage.schema import INGEST_LEDGER, LLM_INFERENCES, OTEL_LOGS, OTEL_TRACES, SCORES

log = structlog.get_logger()

NO_KEY = -1  # `EnrichedLines.lines`: a record without a trace id (any partition will do)


class Message(NamedTuple):
    """A record to produce; `partition` None lets the producer choose (by key)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int | None = None


class EnrichedLines(NamedTuple):
    """Schema version 2 before it is cut into messages: the JSON lines of one topic and project,
    each with the hash its partition is chosen by (`NO_KEY`: none). The processor role cuts them
    into messages (`ndjson_messages`) once it knows the topic's partition count."""

    topic: str
    kind: bytes
    project: str
    lines: list[tuple[int, bytes]]
    # Inference lines: when their normaliser's memory of calls is complete from (`-inf`: unknown).
    calls_remembered_since: float = float("-inf")


# What a worker hands the processor role: version 1 messages, or version 2 lines to cut.
Enriched = list[Message] | list[EnrichedLines]


def partition_of(trace_id: str | None) -> int:
    """The hash a record's partition is chosen by (modulo the partition count): CRC-32 of the
    trace id, computed in C (the producer's murmur2 is pure Python, ~20 µs a key)."""
    return zlib.crc32(trace_id.encode()) if trace_id else NO_KEY


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
    ndjson: bool = True

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
            ks.enriched_format == "ndjson",
        )

    def _tables(self, batch: Batch) -> Iterator[tuple[str, bytes, str, list[Row], str, str]]:
        """Per kind: topic, record-kind, table, rows, trace id column ("" if none), project column."""
        yield (
            self.inferences_topic,
            KIND_INFERENCE,
            LLM_INFERENCES.name,
            batch.inferences,
            "trace_id",
            "project_id",
        )
        yield self.spans_topic, KIND_SPAN, OTEL_TRACES.name, batch.spans, "TraceId", "ProjectId"
        yield self.logs_topic, KIND_LOG, OTEL_LOGS.name, batch.logs, "TraceId", "ProjectId"
        yield self.scores_topic, KIND_SCORE, SCORES.name, batch.scores, "trace_id", "project_id"
        yield self.ledger_topic, KIND_LEDGER, INGEST_LEDGER.name, batch.ledger, "", "project_id"

    def __call__(self, batch: Batch) -> Enriched:
        return self._lines(batch) if self.ndjson else self._messages(batch)

    def _lines(self, batch: Batch) -> list[EnrichedLines]:
        out: list[EnrichedLines] = []
        for topic, kind, table, rows, trace_col, project_col in self._tables(batch):
            by_project: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
            for row in rows:
                key = partition_of(row[trace_col]) if trace_col else NO_KEY
                by_project[row[project_col]].append((key, fit_row(row, self.max_value_bytes, table)))
            since = batch.calls_remembered_since if kind == KIND_INFERENCE else float("-inf")
            out += [EnrichedLines(topic, kind, p, lines, since) for p, lines in by_project.items()]
        return out

    def _messages(self, batch: Batch) -> list[Message]:
        messages: list[Message] = []
        for topic, kind, table, rows, trace_col, project_col in self._tables(batch):
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


def without_vouching(message: Message) -> Message:
    """The message without `H_CALLS_REMEMBERED_SINCE`: what the processor sends again after Kafka
    failed to acknowledge it (the first send may have been stored all the same, and its copy is
    no longer a call no row was made of)."""
    headers = [(k, v) for k, v in message.headers if k != H_CALLS_REMEMBERED_SINCE]
    return message if len(headers) == len(message.headers) else message._replace(headers=headers)


def ndjson_messages(
    group: EnrichedLines, partitions: int, spread: int, project_header: str, max_value_bytes: int
) -> list[Message]:
    """Schema version 2 messages of `group`: its lines by partition (`hash % partitions`; lines
    without a key all go to partition `spread % partitions`), cut so that no value exceeds
    `max_value_bytes` (a single line never does: `fit_row`)."""
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for key, line in group.lines:
        by_partition[(spread if key == NO_KEY else key) % partitions].append(line)
    headers = [
        (H_SCHEMA, SCHEMA_VERSION_NDJSON),
        (H_KIND, group.kind),
        (H_CONTENT_TYPE, NDJSON),
        (project_header, group.project.encode()),
    ]
    if math.isfinite(group.calls_remembered_since):
        headers.append((H_CALLS_REMEMBERED_SINCE, repr(group.calls_remembered_since).encode()))
    messages = []
    for partition, lines in by_partition.items():
        start, size = 0, 0
        for i, line in enumerate(lines):
            if size and size + len(line) + 1 > max_value_bytes:
                messages.append(Message(group.topic, None, b"\n".join(lines[start:i]), headers, partition))
                start, size = i, 0
            size += len(line) + 1
        messages.append(Message(group.topic, None, b"\n".join(lines[start:]), headers, partition))
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
    """The row's JSON, with its longest strings cut while it exceeds the message limit: the record
    (ids, model, tokens, cost, every attribute key) still reaches the writer, only oversized text
    is cut (`_cut_longest_strings`). orjson escapes newlines inside strings, so the JSON is always
    a single NDJSON line."""
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
    value = _cut_longest_strings(copy.deepcopy(row), value, limit)
    log.warning("enriched record truncated to fit the Kafka message limit", table=table, limit=limit)
    return value


TRUNCATED = "…[truncated by inferline]"  # what ends a cut string, as the receiver cuts
_Leaf = tuple[int, Any, Any, str]  # (length, container, key, column)
_MARK = "inferline.truncated"
_ATTRIBUTE_MAPS = frozenset({"SpanAttributes", "LogAttributes", "ResourceAttributes", "ScopeAttributes"})


def _cut_longest_strings(row: Row, value: bytes, limit: int) -> bytes:
    """Cuts the longest strings of `row` (wherever they are: a column, an attribute value, a
    message's content), longest first, by as much as the row is over the limit, until its JSON
    fits; an attribute map holding a cut value gets `inferline.truncated` = "true". (Until
    2026-12-05 the largest column was emptied whole: a span's every attribute gone for one big
    value.) A row too big without long strings (twelve thousand short attributes) has its
    largest columns emptied after all: it must fit, or the processor could never publish it.
    Returns the JSON."""
    for _ in range(3):  # one pass usually does it; markers and escapes may need another
        over = len(value) - limit
        leaves: list[_Leaf] = []
        for column, v in row.items():
            _string_leaves(row, column, v, column, leaves)
        leaves.sort(key=lambda leaf: leaf[0], reverse=True)
        marker = len(TRUNCATED.encode()) + len(_MARK) + 16  # the cut's end, a map's mark
        for length, container, key, column in leaves:
            if over <= 0:
                break
            # Characters, not bytes: every character is at least one byte of JSON, so cutting
            # `over` of them (and room for the markers) takes off at least `over` bytes.
            keep = max(0, length - over - marker)
            container[key] = container[key][:keep] + TRUNCATED
            over -= length - keep - marker
            attributes = row[column]
            if column in _ATTRIBUTE_MAPS and isinstance(attributes, dict):
                attributes[_MARK] = "true"
        value = encode_row(row)
        if len(value) <= limit or not leaves:
            break
    if len(value) > limit:
        sizes = sorted(((len(encode_row({k: v})), k) for k, v in row.items()), reverse=True)
        for _, column in sizes:
            v = row[column]
            row[column] = {} if isinstance(v, dict) else [] if isinstance(v, list) else TRUNCATED
            value = encode_row(row)
            if len(value) <= limit:
                break
    return value


def _string_leaves(
    container: Any, key: Any, v: Any, column: str, out: list[tuple[int, Any, Any, str]]
) -> None:
    if isinstance(v, str):
        if len(v) > 64:  # ids and names are never what makes a row too big
            out.append((len(v), container, key, column))
    elif isinstance(v, dict):
        for k, item in v.items():
            _string_leaves(v, k, item, column, out)
    elif isinstance(v, list):
        for i, item in enumerate(v):
            _string_leaves(v, i, item, column, out)
