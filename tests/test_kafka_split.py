"""The receiver's split of an OTLP request into raw Kafka messages: per trace id, within the
message size limit, every valid record exactly once, resource and scope kept."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.exporters.kafka.raw import RawMessage, split_request
from inferline.otlp.json_codec import decode_json
from tests.otlp_helpers import logs_json, new_span_id, new_trace_id

pytestmark = pytest.mark.unit


def _request(traces: list[str], per_trace: int, attr_bytes: int = 200) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for service in ("svc-a", "svc-b"):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = service
        for scope in ("scope-1", "scope-2"):
            ss = rs.scope_spans.add()
            ss.scope.name = scope
            for trace_id in traces:
                for _ in range(per_trace):
                    span = ss.spans.add()
                    span.trace_id = bytes.fromhex(trace_id)
                    span.span_id = bytes.fromhex(new_span_id())
                    span.name = f"{service}/{scope}"
                    span.attributes.add(key="pad").value.string_value = "x" * attr_bytes
    return request


def _spans(messages: list[RawMessage]) -> list[tuple[bytes | None, str, str, bytes]]:
    out = []
    for _, key, value in messages:
        part = ExportTraceServiceRequest.FromString(value)
        for rs in part.resource_spans:
            service = rs.resource.attributes[0].value.string_value
            for ss in rs.scope_spans:
                for s in ss.spans:
                    assert s.name == f"{service}/{ss.scope.name}"  # resource and scope kept
                    out.append((key, service, ss.scope.name, s.span_id))
    return out


def _trace_key(key: bytes | None) -> str:
    assert key is not None, "split by trace: every message is keyed"
    return key.decode()


def test_one_message_per_trace_keyed_by_trace_id() -> None:
    traces = [new_trace_id() for _ in range(3)]
    split = split_request(_request(traces, per_trace=2), by_trace=True, max_bytes=1_000_000)
    assert split.rejected == 0
    assert sorted(_trace_key(m.key) for m in split.messages) == sorted(traces)
    assert all(m.partition is None for m in split.messages)  # placed by the producer, by key
    for _, key, value in split.messages:
        part = ExportTraceServiceRequest.FromString(value)
        assert {
            s.trace_id.hex() for rs in part.resource_spans for ss in rs.scope_spans for s in ss.spans
        } == {_trace_key(key)}
    assert len(_spans(split.messages)) == 3 * 2 * 4


def test_large_requests_are_split_to_the_limit_and_nothing_is_lost() -> None:
    trace = new_trace_id()
    request = _request([trace], per_trace=50, attr_bytes=500)
    limit = 6_000
    assert request.ByteSize() > 10 * limit
    for by_trace in (True, False):
        split = split_request(request, by_trace=by_trace, max_bytes=limit)
        assert split.rejected == 0
        assert all(len(m.value) <= limit for m in split.messages)
        got = _spans(split.messages)
        original = [s.span_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert sorted(s[3] for s in got) == sorted(original)
        assert {k for k, *_ in got} == ({trace.encode()} if by_trace else {None})


def test_a_record_over_the_limit_is_truncated_and_invalid_ids_are_reported() -> None:
    request = _request([new_trace_id()], per_trace=1, attr_bytes=10)
    huge = request.resource_spans[0].scope_spans[0].spans.add()
    huge.trace_id = bytes.fromhex(new_trace_id())
    huge.span_id = bytes.fromhex(new_span_id())
    huge.name = "svc-a/scope-1"
    huge.attributes.add(key="pad").value.string_value = "x" * 50_000
    huge.attributes.add(key="gen_ai.request.model").value.string_value = "gpt-4o"
    bad = request.resource_spans[0].scope_spans[0].spans.add()
    bad.trace_id = bytes(16)
    bad.span_id = bytes.fromhex(new_span_id())
    split = split_request(request, by_trace=True, max_bytes=10_000)
    assert split.rejected == 1 and "trace_id" in split.error  # only the span that can never be stored
    assert len(_spans(split.messages)) == 5  # the four small spans and the huge one, cut to fit
    assert all(len(m.value) <= 10_000 for m in split.messages)
    [cut] = [
        s
        for _, _, value in split.messages
        for s in ExportTraceServiceRequest.FromString(value).resource_spans[0].scope_spans[0].spans
        if s.span_id == huge.span_id
    ]
    attributes = {kv.key: kv.value for kv in cut.attributes}
    assert attributes["inferline.truncated"].bool_value is True
    assert attributes["pad"].string_value.endswith("…[truncated by inferline]")
    assert attributes["gen_ai.request.model"].string_value == "gpt-4o"  # short values untouched


def test_a_log_body_over_the_limit_is_truncated() -> None:
    trace, span = new_trace_id(), new_span_id()
    request = decode_json(
        logs_json([{"traceId": trace, "spanId": span, "body": "y" * 40_000}]), ExportLogsServiceRequest
    )
    split = split_request(request, by_trace=True, max_bytes=5_000)
    assert split.rejected == 0
    [(_, _, value)] = split.messages
    record = ExportLogsServiceRequest.FromString(value).resource_logs[0].scope_logs[0].log_records[0]
    assert len(value) <= 5_000 and record.body.string_value.endswith("…[truncated by inferline]")


def test_logs_are_keyed_by_trace_id_and_uncorrelated_logs_have_no_key() -> None:
    trace, span = new_trace_id(), new_span_id()
    body = logs_json(
        [
            {"traceId": trace, "spanId": span, "body": "content"},
            {"traceId": "", "spanId": "", "body": "plain"},
        ]
    )
    request = decode_json(body, ExportLogsServiceRequest)
    split = split_request(request, by_trace=True, max_bytes=1_000_000)
    assert sorted((m.key or b"") for m in split.messages) == [b"", trace.encode()]
    for _, _, value in split.messages:
        assert len(ExportLogsServiceRequest.FromString(value).resource_logs[0].scope_logs[0].log_records) == 1


def test_log_records_with_an_all_zero_trace_id_go_with_those_without_one() -> None:
    """An all-zero trace id is stored as none: split into a message of its own, such a record got
    position 0 there, the position of a record alike but without a trace id in the other message,
    and the two collapsed into one row (counted stored twice). Kafka mode split them apart where
    embedded mode keeps one request's records together."""
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for trace_id in (b"", bytes(16)):
        record = records.add(trace_id=trace_id, time_unix_nano=1_796_000_000_000_000_000)
        record.body.string_value = "same text"
    (message,) = split_request(request, by_trace=True, max_bytes=1 << 20).messages
    _, key, value = message
    assert key is None
    assert len(ExportLogsServiceRequest.FromString(value).resource_logs[0].scope_logs[0].log_records) == 2


def _partition_of(trace_id: str, partitions: int) -> int:
    """Where a message keyed by the trace id went before (the producer's default partitioner:
    murmur2 of the key, as the Java client's), written out here as the reference."""
    return (murmur2(trace_id.encode()) & 0x7FFFFFFF) % partitions


def test_traces_bound_for_one_partition_share_a_message_and_land_where_their_key_would() -> None:
    traces = [new_trace_id() for _ in range(40)]
    request = _request(traces, per_trace=2)
    messages = split_request(request, by_trace=True, max_bytes=1_000_000, partitions=list(range(6))).messages
    assert len(messages) == len({_partition_of(t, 6) for t in traces}) < len(traces)
    seen = []
    for m in messages:
        assert m.key is None and m.partition is not None
        part = ExportTraceServiceRequest.FromString(m.value)
        spans = [(rs, ss, s) for rs in part.resource_spans for ss in rs.scope_spans for s in ss.spans]
        for rs, ss, s in spans:
            assert _partition_of(s.trace_id.hex(), 6) == m.partition
            assert s.name == f"{rs.resource.attributes[0].value.string_value}/{ss.scope.name}"
            seen.append(s.span_id)
    original = [s.span_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(seen) == sorted(original)  # every span once


def test_a_trace_s_logs_meet_its_spans_in_one_partition() -> None:
    trace, span = new_trace_id(), new_span_id()
    partitions = list(range(12))
    (span_message,) = split_request(
        _request([trace], per_trace=1), by_trace=True, max_bytes=1_000_000, partitions=partitions
    ).messages
    logs_request = decode_json(
        logs_json(
            [
                {"traceId": trace, "spanId": span, "body": "content"},
                {"traceId": "", "spanId": "", "body": "plain"},
            ]
        ),
        ExportLogsServiceRequest,
    )
    log_messages = split_request(
        logs_request, by_trace=True, max_bytes=1_000_000, partitions=partitions
    ).messages
    assert span_message.partition == _partition_of(trace, 12)
    assert sorted((m.partition is None, m.partition) for m in log_messages) == [
        (False, span_message.partition),
        (True, None),  # no trace id: the producer places it, as before
    ]


def test_messages_of_a_partition_stay_within_the_size_limit() -> None:
    traces = [new_trace_id() for _ in range(30)]
    request = _request(traces, per_trace=3, attr_bytes=100)
    limit = 8_000
    messages = split_request(request, by_trace=True, max_bytes=limit, partitions=[0, 1]).messages
    assert all(len(m.value) <= limit for m in messages)
    assert {m.partition for m in messages} == {0, 1} and len(messages) < len(traces)
    got = sorted(
        s.span_id
        for m in messages
        for rs in ExportTraceServiceRequest.FromString(m.value).resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    )
    assert got == sorted(
        s.span_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
    )
