"""OTLP protobuf requests → flat `Span` / `LogRecord` objects stamped with the project id.

Records that cannot be stored (the rules of `inferline.otlp.validate`, which receivers apply
before answering) are counted and described; the rest go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from inferline.core.records import Event, Link, LogRecord, Span
from inferline.otlp import wire
from inferline.otlp.protobuf import parse
from inferline.otlp.validate import ZERO_SPAN_ID, ZERO_TRACE_ID, log_problem, span_problem
from inferline.otlp.wire import read_logs, read_spans
from inferline.otlp.wire_format import NotPlain

# The wire reader pays only compiled: interpreted (`make pure`, no C compiler) it takes ~2x what
# upb's parse and flattening take, so there requests are read with upb.
WIRE_COMPILED: Final = not (wire.__file__ or "").endswith(".py")


def any_value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    if which == "bool_value":
        return v.bool_value
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value
    return None


def attributes(kvs: Any) -> dict[str, Any]:
    # Most values are non-empty strings: one field read each, without a call (an unset
    # `string_value` reads "", and `any_value` then tells an empty string from another type).
    return {kv.key: v.string_value or any_value(v) for kv in kvs for v in (kv.value,)}


@dataclass(slots=True)
class Flattened:
    records: list[Any]
    rejected: int = 0
    error: str = ""  # one description of why records were rejected

    def reject(self, why: str) -> None:
        self.rejected += 1
        if not self.error:
            self.error = why


def flatten_spans(request: ExportTraceServiceRequest, project_id: str) -> Flattened:
    out = Flattened([])
    append = out.records.append
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope
            scope_attrs = attributes(scope.attributes)
            for s in ss.spans:
                why = span_problem(s)
                if why:
                    out.reject(why)
                    continue
                # Most spans have neither: no comprehension (a call) to build an empty list.
                events = s.events
                links = s.links
                status = s.status  # one message wrapper, not two
                start = s.start_time_unix_nano
                # Positional: a call with 19 keyword arguments costs ~2.5x as much (the fields in
                # the order `Span` declares them).
                append(
                    Span(
                        project_id,
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                        s.trace_state,
                        s.name,
                        s.kind,
                        start,
                        s.end_time_unix_nano or start,
                        status.code,
                        status.message,
                        attributes(s.attributes),
                        [Event(e.time_unix_nano, e.name, attributes(e.attributes)) for e in events]
                        if events
                        else [],
                        [
                            Link(
                                lk.trace_id.hex() if len(lk.trace_id) == 16 else "",
                                lk.span_id.hex() if len(lk.span_id) == 8 else "",
                                lk.trace_state,
                                attributes(lk.attributes),
                            )
                            for lk in links
                        ]
                        if links
                        else [],
                        resource,
                        rs.schema_url,
                        scope.name,
                        scope.version,
                        scope_attrs,
                    )
                )
    return out


def flatten_logs(request: ExportLogsServiceRequest, project_id: str) -> Flattened:
    out = Flattened([])
    append = out.records.append
    index = -1  # the record's position in the request (`LogRecord.index`)
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = sl.scope
            scope_attrs = attributes(scope.attributes)
            for r in sl.log_records:
                index += 1
                why = log_problem(r)
                if why:
                    out.reject(why)
                    continue
                observed = r.observed_time_unix_nano
                severity = r.severity_number
                # All-zero ids are the OTLP way of saying "none": stored as none, not as zeros.
                trace_id, span_id = r.trace_id, r.span_id
                append(
                    LogRecord(  # positional, as `Span` above
                        project_id,
                        r.time_unix_nano or observed,
                        observed,
                        trace_id.hex() if trace_id != ZERO_TRACE_ID else "",
                        span_id.hex() if span_id != ZERO_SPAN_ID else "",
                        r.flags & 0xFF,
                        r.severity_text,
                        severity if 0 <= severity <= 24 else 0,
                        any_value(r.body),
                        attributes(r.attributes),
                        r.event_name,
                        resource,
                        rl.schema_url,
                        scope.name,
                        scope.version,
                        scope_attrs,
                        sl.schema_url,
                        index=index,
                    )
                )
    return out


def flatten_span_bytes(payload: bytes, project_id: str) -> Flattened:
    """`flatten_spans` of a serialised request: read from the wire where `inferline.otlp.wire`
    reads it exactly (what senders write) and is compiled, else parsed by upb. Raises DecodeError
    as `parse`."""
    if WIRE_COMPILED:
        try:
            return Flattened(read_spans(payload, project_id))
        except NotPlain:
            pass
    return flatten_spans(parse(payload, ExportTraceServiceRequest), project_id)


def flatten_log_bytes(payload: bytes, project_id: str) -> Flattened:
    """`flatten_logs` of a serialised request, as `flatten_span_bytes`."""
    if WIRE_COMPILED:
        try:
            return Flattened(read_logs(payload, project_id))
        except NotPlain:
            pass
    return flatten_logs(parse(payload, ExportLogsServiceRequest), project_id)


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def count_logs(request: ExportLogsServiceRequest) -> int:
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def count_records(request: ExportTraceServiceRequest | ExportLogsServiceRequest) -> int:
    """Spans or log records in an export request."""
    if isinstance(request, ExportTraceServiceRequest):
        return count_spans(request)
    return count_logs(request)


__all__ = [
    "Flattened",
    "any_value",
    "attributes",
    "flatten_log_bytes",
    "flatten_logs",
    "flatten_span_bytes",
    "flatten_spans",
]
