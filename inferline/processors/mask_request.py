"""Masking at the receiver: PII is masked in the OTLP request itself, before the sink sees it.

For deployments where unmasked content must never reach Kafka (`INFERLINE_MASK_AT_RECEIVER=true`):
the raw topics then hold masked content only. The processor's PII stage still runs; masking an
already masked value changes nothing. Masked: every string value of span, event, link, resource
and log attributes except the never-masked keys (or only the configured ones, with
`mask_all_attributes: false`), log bodies (strings, and the string values of structured bodies),
and with `mask_all_attributes` the names applications give their records (span names, span
events' names, log records' `event_name`) and span status messages.
A record that had PII carries its counts in the attribute `inferline.pii_found`, which the PII
stage adds to the `pii_found` / `PiiFound` columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from inferline.core.consumer import ExportResult, Sink
from inferline.processors.pii import CARRIED_COUNTS, PiiMasker

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

    # A message's repeated `attributes` field.
    KeyValues: TypeAlias = RepeatedCompositeFieldContainer[KeyValue]


def _mask_any(value: AnyValue, masker: PiiMasker, counts: dict[str, int]) -> None:
    which = value.WhichOneof("value")
    if which == "string_value":
        masked = masker.mask_value(value.string_value, counts)
        if masked is not value.string_value:
            value.string_value = masked
    elif which == "array_value":
        for item in value.array_value.values:
            _mask_any(item, masker, counts)
    elif which == "kvlist_value":
        for kv in value.kvlist_value.values:
            _mask_any(kv.value, masker, counts)


def _mask_attributes(kvs: KeyValues, masker: PiiMasker, counts: dict[str, int]) -> None:
    for kv in kvs:
        if masker.key_masked(kv.key):
            _mask_any(kv.value, masker, counts)


def _mask_field(message: Any, field: str, masker: PiiMasker, counts: dict[str, int]) -> None:
    """Masks a protobuf message's string field in place (a span's name, a log's event name, a
    schema URL)."""
    value = getattr(message, field)
    masked = masker.mask_value(value, counts) if value else value
    if masked is not value:
        setattr(message, field, str(masked))


def _note(kvs: KeyValues, counts: dict[str, int]) -> None:
    """What was masked travels with the record, so the PII stage can still count it."""
    if counts:
        kvs.add(key=CARRIED_COUNTS).value.string_value = orjson.dumps(counts).decode()


def mask_spans_request(request: ExportTraceServiceRequest, masker: PiiMasker) -> dict[str, int]:
    total: dict[str, int] = {}
    mask_all = masker.config.mask_all_attributes
    for rs in request.resource_spans:
        # The resource's values are stored on every span's row: each row counts them.
        resource_counts: dict[str, int] = {}
        if mask_all:
            _mask_attributes(rs.resource.attributes, masker, resource_counts)
        for ss in rs.scope_spans:
            # Not stored with spans, but the raw topics carry them: masked as the logs' are.
            scope_counts = dict(resource_counts)
            if mask_all:
                _mask_attributes(ss.scope.attributes, masker, scope_counts)
            for span in ss.spans:
                counts = dict(scope_counts)
                _mask_attributes(span.attributes, masker, counts)
                for event in span.events:
                    _mask_attributes(event.attributes, masker, counts)
                    if mask_all:
                        _mask_field(event, "name", masker, counts)
                if mask_all:
                    for link in span.links:
                        _mask_attributes(link.attributes, masker, counts)
                    _mask_field(span.status, "message", masker, counts)
                    _mask_field(span, "name", masker, counts)
                _note(span.attributes, counts)
                _add_counts(total, counts)
    return total


def mask_logs_request(request: ExportLogsServiceRequest, masker: PiiMasker) -> dict[str, int]:
    total: dict[str, int] = {}
    mask_all = masker.config.mask_all_attributes
    for rl in request.resource_logs:
        resource_counts: dict[str, int] = {}
        if mask_all:
            _mask_attributes(rl.resource.attributes, masker, resource_counts)
            _mask_field(rl, "schema_url", masker, resource_counts)  # otel_logs.ResourceSchemaUrl
        for sl in rl.scope_logs:
            # The scope's attributes are stored on every record's row (otel_logs.ScopeAttributes).
            scope_counts = dict(resource_counts)
            if mask_all:
                _mask_attributes(sl.scope.attributes, masker, scope_counts)
                _mask_field(sl, "schema_url", masker, scope_counts)
            for record in sl.log_records:
                counts = dict(scope_counts)
                if masker.config.mask_log_body:
                    _mask_any(record.body, masker, counts)
                _mask_attributes(record.attributes, masker, counts)
                if mask_all:
                    _mask_field(record, "event_name", masker, counts)
                _note(record.attributes, counts)
                _add_counts(total, counts)
    return total


def _add_counts(total: dict[str, int], counts: dict[str, int]) -> None:
    for kind, n in counts.items():
        total[kind] = total.get(kind, 0) + n


class MaskingSink:
    """A Sink in front of another: masks, then hands on."""

    def __init__(self, inner: Sink, masker: PiiMasker) -> None:
        self._inner = inner
        self._masker = masker

    # The request is masked in place: the bytes it came as are not passed on.
    async def export_spans(
        self, request: ExportTraceServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult:
        mask_spans_request(request, self._masker)
        return await self._inner.export_spans(request, project_id)

    async def export_logs(
        self, request: ExportLogsServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult:
        mask_logs_request(request, self._masker)
        return await self._inner.export_logs(request, project_id)
