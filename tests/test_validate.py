"""The one set of OTLP record rules every receiver applies before answering."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.otlp.flatten import flatten_spans
from inferline.otlp.validate import remove_invalid

pytestmark = pytest.mark.unit

GOOD_TRACE, GOOD_SPAN = bytes(range(1, 17)), bytes(range(1, 9))


def _spans(*specs: tuple[str, bytes, int]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for name, trace_id, start in specs:
        scope = request.resource_spans.add().scope_spans.add()
        span = scope.spans.add(name=name, trace_id=trace_id, span_id=GOOD_SPAN)
        span.start_time_unix_nano = start
        span.end_time_unix_nano = start
    return request


def test_invalid_spans_are_removed_and_counted_with_the_first_reason() -> None:
    request = _spans(
        ("ok", GOOD_TRACE, 1_700_000_000_000_000_000),
        ("zero trace", bytes(16), 1_700_000_000_000_000_000),
        ("far future", GOOD_TRACE, 1 << 63),
    )
    rejected = remove_invalid(request)
    assert rejected.count == 2
    assert "'zero trace'" in rejected.message and "trace_id" in rejected.message
    # What is left is exactly the valid span; the emptied resources are gone.
    assert [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans] == ["ok"]
    assert len(request.resource_spans) == 1
    # flatten, applying the same rules, now has nothing to refuse.
    assert flatten_spans(request, "p").rejected == 0


def test_valid_requests_are_left_as_they_are() -> None:
    request = _spans(("a", GOOD_TRACE, 1), ("b", GOOD_TRACE, 2))
    before = request.SerializeToString()
    assert remove_invalid(request).count == 0
    assert request.SerializeToString() == before


def test_log_records_with_bad_ids_are_removed() -> None:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(trace_id=b"short").body.string_value = "bad"
    records.add().body.string_value = "uncorrelated is fine"
    rejected = remove_invalid(request)
    assert rejected.count == 1 and "trace_id must be 16 bytes" in rejected.message
    assert [r.body.string_value for r in request.resource_logs[0].scope_logs[0].log_records] == [
        "uncorrelated is fine"
    ]
