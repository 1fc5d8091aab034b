"""`Span` / `LogRecord` → rows of `otel_traces` / `otel_logs`, the OTel Collector ClickHouse
exporter's tables: same column names and value conventions (attribute values as strings, span
kind as "Client", status as "Error"), so tools that read those tables work unchanged."""

from __future__ import annotations

import base64
from typing import Any, Final

import orjson

from inferline.core.records import LogRecord, Row, Span

_SPAN_KINDS: Final = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS_CODES: Final = ("Unset", "Ok", "Error")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError


def as_string(value: Any) -> str:
    """The exporter's AsString(): scalars printed plainly, bytes base64, arrays and maps as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None:
        return ""
    return orjson.dumps(value, default=_json_default).decode()


def string_map(attrs: dict[str, Any]) -> dict[str, str]:
    # Most values are strings already: no call for those.
    return {k: v if v.__class__ is str else as_string(v) for k, v in attrs.items()}


def trace_rows(spans: list[Span]) -> list[Row]:
    """Rows of many spans; spans of one OTLP resource share its attribute dict, converted once
    (no stage changes ResourceAttributes, so the rows may share the result too)."""
    resources: dict[int, dict[str, str]] = {}
    rows = []
    for span in spans:
        converted = resources.get(id(span.resource))
        if converted is None:
            converted = resources[id(span.resource)] = string_map(span.resource)
        rows.append(trace_row(span, converted))
    return rows


def trace_row(span: Span, resource_strings: dict[str, str] | None = None) -> Row:
    resource = span.resource
    return {
        "ProjectId": span.project_id,
        "Timestamp": span.start_ns,
        "TraceId": span.trace_id,
        "SpanId": span.span_id,
        "ParentSpanId": span.parent_span_id,
        "TraceState": span.trace_state,
        "SpanName": span.name,
        "SpanKind": _SPAN_KINDS[span.kind] if 0 <= span.kind < len(_SPAN_KINDS) else "Unspecified",
        "ServiceName": as_string(resource.get("service.name", "")),
        "ResourceAttributes": string_map(resource) if resource_strings is None else resource_strings,
        "ScopeName": span.scope_name,
        "ScopeVersion": span.scope_version,
        "SpanAttributes": string_map(span.attributes),
        "Duration": max(span.end_ns - span.start_ns, 0),
        "StatusCode": _STATUS_CODES[span.status_code] if 0 <= span.status_code < 3 else "Unset",
        "StatusMessage": span.status_message,
        "Events.Timestamp": [e.time_ns for e in span.events],
        "Events.Name": [e.name for e in span.events],
        "Events.Attributes": [string_map(e.attributes) for e in span.events],
        "Links.TraceId": [lk.trace_id for lk in span.links],
        "Links.SpanId": [lk.span_id for lk in span.links],
        "Links.TraceState": [lk.trace_state for lk in span.links],
        "Links.Attributes": [string_map(lk.attributes) for lk in span.links],
        "PiiFound": {},
    }


def log_row(log: LogRecord) -> Row:
    resource = log.resource
    return {
        "ProjectId": log.project_id,
        "Timestamp": log.time_ns,
        "TraceId": log.trace_id,
        "SpanId": log.span_id,
        "TraceFlags": log.flags,
        "SeverityText": log.severity_text,
        "SeverityNumber": log.severity_number,
        "ServiceName": as_string(resource.get("service.name", "")),
        "Body": as_string(log.body),
        "ResourceSchemaUrl": log.resource_schema_url,
        "ResourceAttributes": string_map(resource),
        "ScopeSchemaUrl": log.scope_schema_url,
        "ScopeName": log.scope_name,
        "ScopeVersion": log.scope_version,
        "ScopeAttributes": string_map(log.scope_attributes),
        "LogAttributes": string_map(log.attributes),
        "EventName": log.event_name or as_string(log.attributes.get("event.name", "")),
        "PiiFound": {},
        "RecordIndex": log.index,
        "ObservedTimestamp": log.observed_time_ns,
    }
