"""The one set of OTLP record rules every receiver applies before answering."""

from __future__ import annotations

import base64

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.otlp.flatten import flatten_logs, flatten_spans
from inferline.otlp.json_codec import decode_json
from inferline.otlp.validate import (
    TIME_AFTER_2106,
    TimeWindow,
    accepted_span_problem,
    reason_code,
    remove_invalid,
)

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


def test_a_span_with_an_unreadable_link_id_is_rejected_saying_ids_are_hex() -> None:
    """A link's trace id "abc" (not hex) was stored as "ff"; base64 ids, as protobuf's own JSON
    writes them, were refused with "must be 16 bytes" although they held 16 bytes."""
    request = decode_json(
        orjson.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    {
                                        "traceId": GOOD_TRACE.hex(),
                                        "spanId": GOOD_SPAN.hex(),
                                        "name": "linked",
                                        "startTimeUnixNano": "1",
                                        "links": [{"traceId": "abc", "spanId": GOOD_SPAN.hex()}],
                                    },
                                    {
                                        "traceId": base64.b64encode(GOOD_TRACE).decode(),
                                        "spanId": GOOD_SPAN.hex(),
                                        "name": "base64",
                                        "startTimeUnixNano": "1",
                                    },
                                ]
                            }
                        ]
                    }
                ]
            }
        ),
        ExportTraceServiceRequest,
    )
    spans = request.resource_spans[0].scope_spans[0].spans
    assert "links[0] trace_id must be 16 bytes" in accepted_span_problem(spans[0])
    assert "32 hex characters in OTLP/JSON" in accepted_span_problem(spans[1])
    # A replay of what a receiver accepted before this rule is not refused: the link is kept
    # without the ids it could not read.
    (replayed,) = flatten_spans(_with_one_span(request), "p").records
    assert [(link.trace_id, link.span_id) for link in replayed.links] == [("", GOOD_SPAN.hex())]
    assert remove_invalid(request).reasons == {"invalid_id": 2}


def _with_one_span(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """The request's first span alone."""
    one = ExportTraceServiceRequest()
    one.CopyFrom(request)
    del one.resource_spans[0].scope_spans[0].spans[1:]
    return one


def test_a_log_records_all_zero_ids_are_stored_as_none() -> None:
    """All-zero ids are OTLP's "none"; they were stored as strings of zeros, so the record read
    as belonging to a trace "000…" and no query for uncorrelated records found it."""
    request = ExportLogsServiceRequest()
    record = (
        request.resource_logs.add()
        .scope_logs.add()
        .log_records.add(trace_id=bytes(16), span_id=bytes(8), time_unix_nano=1)
    )
    record.body.string_value = "uncorrelated"
    (flat,) = flatten_logs(request, "p").records
    assert (flat.trace_id, flat.span_id) == ("", "")


NOW_NS = 1_796_000_000_000_000_000  # 2026-11-30
WINDOW = TimeWindow(spans_days=180, logs_days=30)


@pytest.mark.parametrize(
    ("start_ns", "why"),
    [
        (0, "older than the retention window (180 days)"),
        (1, "older than the retention window (180 days)"),
        (946_684_800_000_000_000, "2000-01-01T00:00:00Z is older than the retention window"),
        (4_354_819_200_000_000_000, "after 2106-02-07"),  # 2108
        ((1 << 63) - 1, "after 2106-02-07"),
        (1 << 63, "beyond the year 2262"),
    ],
)
def test_times_the_tables_cannot_keep_are_rejected_naming_the_field(start_ns: int, why: str) -> None:
    request = _spans(("edge", GOOD_TRACE, start_ns))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    problem = WINDOW.span_problem(span, NOW_NS)
    assert why in problem
    assert "start_time_unix_nano" in problem or "2262" in problem


def test_a_time_whose_expiry_the_tables_cannot_hold_is_rejected() -> None:
    """A span of 2105-12-01 was acknowledged and counted stored, then deleted at once: its TTL,
    the time plus 180 days, wrapped past 2106-02-07 to 1970. The latest time accepted leaves room
    for the longest retention of any table the record lands in (the rollups' included)."""
    december_2105 = 4_289_155_200_000_000_000
    span = _spans(("late", GOOD_TRACE, december_2105)).resource_spans[0].scope_spans[0].spans[0]
    problem = WINDOW.span_problem(span, NOW_NS)
    assert "would expire after 2106-02-07" in problem and "kept 180 days" in problem
    assert reason_code(problem) == TIME_AFTER_2106
    june_2105 = december_2105 - 180 * 86_400 * 10**9
    span.start_time_unix_nano = june_2105
    assert WINDOW.span_problem(span, NOW_NS) == ""
    assert "kept 400 days" in TimeWindow(180, 30, longest_days=400).span_problem(span, NOW_NS)


def test_times_within_the_window_pass() -> None:
    for start_ns in (NOW_NS, NOW_NS - 179 * 86_400 * 10**9, NOW_NS + 86_400 * 10**9):
        span = _spans(("ok", GOOD_TRACE, start_ns)).resource_spans[0].scope_spans[0].spans[0]
        assert WINDOW.span_problem(span, NOW_NS) == ""
    # End before start is stored (latency 0), not rejected.
    late = _spans(("backwards", GOOD_TRACE, NOW_NS)).resource_spans[0].scope_spans[0].spans[0]
    late.end_time_unix_nano = NOW_NS - 10**9
    assert WINDOW.span_problem(late, NOW_NS) == ""


def test_log_records_use_their_time_or_else_when_they_were_observed() -> None:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    old = records.add(time_unix_nano=NOW_NS - 40 * 86_400 * 10**9)
    observed_only = records.add(observed_time_unix_nano=NOW_NS)
    timeless = records.add()
    assert "log record: time_unix_nano" in WINDOW.log_problem(old, NOW_NS)
    assert "30 days" in WINDOW.log_problem(old, NOW_NS)
    assert WINDOW.log_problem(observed_only, NOW_NS) == ""
    assert WINDOW.log_problem(timeless, NOW_NS) == ""
    # ...and the receiver stamps it with the time it received it (not 1970, which expires at once).
    assert remove_invalid(request, WINDOW).count == 1
    kept = request.resource_logs[0].scope_logs[0].log_records
    assert len(kept) == 2 and kept[1].observed_time_unix_nano > 0
