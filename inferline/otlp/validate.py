"""The one set of rules for what an OTLP record must be to be stored, applied at every receiver
before the sender is answered: a record that breaks one is reported in the OTLP partial success
(`rejected_spans` / `rejected_log_records`, with the first reason), and removed from the request
so that every stage after the durable point can rely on the rest.

`flatten` applies the same functions, so a record that somehow reaches it unchecked (a raw topic
filled by a stock Collector) is still refused the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

# DateTime64(9) ends in 2262: a later time is malformed, rejected as its own record.
MAX_TIME_NS = (1 << 63) - 1

_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)


def span_problem(s: Any) -> str:
    """Why the span cannot be stored, or ""."""
    if len(s.trace_id) != 16 or s.trace_id == _ZERO_TRACE:
        return f"span {s.name!r}: trace_id must be 16 bytes, not all zero"
    if len(s.span_id) != 8 or s.span_id == _ZERO_SPAN:
        return f"span {s.name!r}: span_id must be 8 bytes, not all zero"
    if s.parent_span_id and len(s.parent_span_id) != 8:
        return f"span {s.name!r}: parent_span_id must be 8 bytes"
    if s.start_time_unix_nano > MAX_TIME_NS or s.end_time_unix_nano > MAX_TIME_NS:
        return f"span {s.name!r}: timestamp beyond the year 2262"
    return ""


def log_problem(r: Any) -> str:
    """Why the log record cannot be stored, or ""."""
    if r.trace_id and len(r.trace_id) != 16:
        return "log record: trace_id must be 16 bytes when set"
    if r.span_id and len(r.span_id) != 8:
        return "log record: span_id must be 8 bytes when set"
    if r.time_unix_nano > MAX_TIME_NS or r.observed_time_unix_nano > MAX_TIME_NS:
        return "log record: timestamp beyond the year 2262"
    return ""


@dataclass(slots=True)
class Rejected:
    """Records removed from a request, and the first reason (the OTLP partial success)."""

    count: int = 0
    message: str = ""

    def add(self, n: int, why: str) -> None:
        self.count += n
        if not self.message:
            self.message = why


def remove_invalid(request: ExportTraceServiceRequest | ExportLogsServiceRequest) -> Rejected:
    """Removes, in place, every record that breaks a rule; scopes and resources left empty go too."""
    if isinstance(request, ExportTraceServiceRequest):
        return _remove(request.resource_spans, "scope_spans", "spans", span_problem)
    return _remove(request.resource_logs, "scope_logs", "log_records", log_problem)


def _remove(resources: Any, scopes_field: str, records_field: str, problem: Any) -> Rejected:
    rejected = Rejected()
    for resource in resources:
        for scope in getattr(resource, scopes_field):
            records = getattr(scope, records_field)
            bad = []
            for i, record in enumerate(records):
                why = problem(record)
                if why:
                    rejected.add(1, why)
                    bad.append(i)
            for i in reversed(bad):
                del records[i]
    if rejected.count:
        for resource in resources:
            scopes = getattr(resource, scopes_field)
            for i in reversed(range(len(scopes))):
                if not getattr(scopes[i], records_field):
                    del scopes[i]
        for i in reversed(range(len(resources))):
            if not getattr(resources[i], scopes_field):
                del resources[i]
    return rejected
