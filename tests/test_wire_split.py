"""The receiving process prepares a request for the local log from its bytes (`wire_split`): the
same parts, record counts, rejections and reasons as `prepare` of upb's parse, for every kind of
request; what it does not read exactly is prepared from the parse."""

from __future__ import annotations

import random
import secrets
from typing import Any

import orjson
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from bench.payloads import build_template
from inferline.core.records import SPANS
from inferline.exporters.kafka.raw import RawMessage, RawSplit, split_received, split_request
from inferline.otlp import prepared, validate, wire, wire_split
from inferline.otlp.flatten import flatten_logs, flatten_spans
from inferline.otlp.json_codec import encode_json
from inferline.otlp.prepared import prepare, prepare_received
from inferline.otlp.protobuf import parse
from inferline.otlp.validate import TimeWindow
from inferline.otlp.wire_format import NotPlain
from tests.otlp_random import random_log_request, random_trace_request

pytestmark = pytest.mark.unit

NOW = 1_700_000_100_000_000_000  # a little after the random requests' times
WINDOWS = [None, TimeWindow(30, 30, 400), TimeWindow(100_000, 100_000, 100_000)]


@pytest.fixture(autouse=True)
def _fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    # `prepare` reads the clock itself (the window's retention, a log's stamp): one time for both.
    monkeypatch.setattr(validate.time, "time_ns", lambda: NOW)


def _records(part: bytes, cls: Any) -> list[Any]:
    """What a worker reads from a part. The two paths may lay a part out differently (`prepare`
    writes a resource group per scope group, the bytes path keeps a resource's scopes together
    and the groups' unknown fields), never what it holds."""
    if cls is ExportTraceServiceRequest:
        return flatten_spans(parse(part, cls), "p").records
    return flatten_logs(parse(part, cls), "p").records


def _split(body: bytes, cls: Any, partitions: int, window: TimeWindow | None) -> wire_split.Split:
    split = wire_split.split_spans if cls is ExportTraceServiceRequest else wire_split.split_logs
    return split(body, partitions, window, NOW)


def _same_as_prepare(body: bytes, cls: Any, partitions: int, window: TimeWindow | None) -> wire_split.Split:
    got = _split(body, cls, partitions, window)
    want = prepare(parse(body, cls), partitions, window)
    assert got.records == want.records
    assert got.rejected == want.rejected
    assert sorted(got.parts) == sorted(want.parts)
    for k, part in got.parts.items():
        records, wanted = _records(part, cls), _records(want.parts[k], cls)
        assert records == wanted or repr(records) == repr(wanted)  # repr: a NaN is not equal to itself
    return got


@pytest.mark.parametrize("kind", ["genai", "plain"])
@pytest.mark.parametrize("partitions", [1, 2, 3])
def test_the_benchmarks_requests_split_as_prepare_splits_them(kind: str, partitions: int) -> None:
    # As sent: the load generator's requests hold a few spans the rules refuse.
    template = build_template(kind, "grpc", 200, random.Random(5), secrets.token_bytes(8))
    rejected = 0
    for i in range(4):
        traces, logs = template.stamp(i << 16)
        for window in WINDOWS:
            got = _same_as_prepare(traces, ExportTraceServiceRequest, partitions, window)
            rejected += got.rejected.count
            for part in got.parts.values():
                wire.read_spans(part, "p")  # the workers read the parts from the wire (no NotPlain)
            if logs:
                for part in _same_as_prepare(
                    logs, ExportLogsServiceRequest, partitions, window
                ).parts.values():
                    wire.read_logs(part, "p")
    assert rejected  # the generator's invalid spans, refused with their reasons


def test_random_requests_split_as_prepare_splits_them() -> None:
    rng = random.Random(20261207)
    split = rejected = stamped = 0
    for n in range(300):
        cls, request = (
            (ExportTraceServiceRequest, random_trace_request(rng))
            if n % 2
            else (ExportLogsServiceRequest, random_log_request(rng))
        )
        body = request.SerializeToString()
        for partitions in (1, 2, 4):
            for window in WINDOWS:
                got = _same_as_prepare(body, cls, partitions, window)
                split += len(got.parts) > 1
                rejected += got.rejected.count > 0
                stamped += bool(got.rejected.corrected)
    assert split > 100 and rejected > 100 and stamped > 20  # every path was taken, many times


def test_a_request_that_passes_whole_to_one_partition_is_appended_as_received() -> None:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(3):
        trace_id = bytes(15) + bytes([4 * i + 1])  # partitions of 2: all odd, all partition 1
        scope.spans.append(PbSpan(trace_id=trace_id, span_id=b"\x01" * 8, name="a", start_time_unix_nano=NOW))
    body = request.SerializeToString()
    got = _split(body, ExportTraceServiceRequest, 2, WINDOWS[1])
    assert got.parts == {1: body} and got.parts[1] is body
    assert got.records == 3 and got.rejected.count == 0


def test_an_untimed_log_record_is_stamped_with_the_time_it_arrived() -> None:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.log_records.append(PbLogRecord(severity_text="INFO"))
    scope.log_records.append(PbLogRecord(time_unix_nano=NOW - 5))
    got = _split(request.SerializeToString(), ExportLogsServiceRequest, 1, WINDOWS[1])
    (part,) = got.parts.values()
    records = ExportLogsServiceRequest.FromString(part).resource_logs[0].scope_logs[0].log_records
    assert [(r.time_unix_nano, r.observed_time_unix_nano) for r in records] == [(0, NOW), (NOW - 5, 0)]
    assert got.rejected.corrected == {validate.UNTIMED_LOG_STAMPED: 1}


def test_what_the_splitter_does_not_read_exactly_is_prepared_from_the_parse() -> None:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "a"
    resource_spans.scope_spans.add().spans.append(
        PbSpan(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="s", start_time_unix_nano=NOW)
    )
    # A resource sent twice (protobuf merges the two): the splitter leaves it to `prepare`.
    body = request.SerializeToString()
    twice = body[:2] + b"\x0a\x00" + body[2:]  # an empty second `resource` inside the group
    twice = bytes([twice[0], twice[1] + 2]) + twice[2:]
    assert parse(twice, ExportTraceServiceRequest) == request
    with pytest.raises(NotPlain):
        _split(twice, ExportTraceServiceRequest, 2, None)
    got = prepare_received(twice, parse(twice, ExportTraceServiceRequest), 2, None)
    want = prepare(parse(twice, ExportTraceServiceRequest), 2, None)
    assert got == want
    if prepared.SPLIT_COMPILED:  # the usual request takes the bytes path, with `prepare`'s answer
        got = prepare_received(body, request, 1, None)
        assert got.parts[0] is body
        assert (got.kind, got.records, got.rejected) == (SPANS, 1, prepare(request, 1, None).rejected)


def test_mutated_requests_upb_accepts_split_as_prepare_splits_them() -> None:
    """Flipped, dropped and inserted bytes: where upb still parses the request, the splitter
    either prepares it as `prepare` does or leaves it to `prepare`."""
    rng = random.Random(11)
    pool = [(ExportTraceServiceRequest, random_trace_request(rng).SerializeToString()) for _ in range(20)] + [
        (ExportLogsServiceRequest, random_log_request(rng).SerializeToString()) for _ in range(20)
    ]
    compared = 0
    for _ in range(2000):
        cls, body = rng.choice(pool)
        data = bytearray(body)
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(data))
            if rng.random() < 0.6:
                data[i] = rng.randrange(256)
            else:
                del data[i]
        mutated = bytes(data)
        try:
            parse(mutated, cls)
        except DecodeError:
            continue  # the receiver answers 400 before preparing anything
        try:
            _same_as_prepare(mutated, cls, 2, WINDOWS[1])
            compared += 1
        except NotPlain:
            pass
    assert compared > 200


def test_the_accepted_times_are_the_times_the_window_finds_nothing_wrong_with() -> None:
    day = 86_400 * 10**9
    for window in (TimeWindow(30, 30, 400), TimeWindow(100_000, 100_000, 100_000)):
        low, high = window.accepted_times(window.spans_days, NOW)
        for t in (0, low - 1, low, low + 1, NOW, high - 1, high, high + 1, validate.MAX_STORABLE_NS, 2**63):
            accepted = not window.span_start_problem("s", t, NOW)
            assert accepted == (low <= t < high), (window, t)
        assert high - low > day


def _same_as_split_request(
    body: bytes, cls: Any, partitions: list[int], window: TimeWindow | None, max_bytes: int = 1 << 20
) -> RawSplit | None:
    """The Kafka receiver's split from the bytes against its split through upb's objects: the same
    records in the same partitions (None: unkeyed), the same rejections and corrections."""
    got = split_received(body, parse(body, cls), max_bytes, window, partitions)
    want = split_request(parse(body, cls), True, max_bytes, window, partitions)
    if got is None:
        return None
    assert (got.tally.reasons, got.tally.corrected) == (want.tally.reasons, want.tally.corrected)
    assert all(m.key is None for m in got.messages)  # placed by partition, no key to hash again

    def by_partition(messages: list[RawMessage]) -> dict[int | None, str]:
        found: dict[int | None, list[Any]] = {}
        for m in messages:
            found.setdefault(m.partition, []).extend(_records(m.value, cls))
        return {k: repr(sorted(v, key=repr)) for k, v in found.items()}

    assert by_partition(got.messages) == by_partition(want.messages)
    return got


@pytest.mark.parametrize("partitions", [[0], [0, 1, 2], list(range(12)), [3, 7]])
def test_the_kafka_receivers_split_from_the_bytes_places_records_as_through_upb(
    partitions: list[int],
) -> None:
    rng = random.Random(len(partitions))
    template = build_template("genai", "grpc", 200, random.Random(5), secrets.token_bytes(8))
    bodies: list[tuple[Any, bytes]] = [
        (ExportTraceServiceRequest, template.stamp(i << 16)[0]) for i in range(2)
    ]
    bodies += [(ExportLogsServiceRequest, logs) for i in range(2) if (logs := template.stamp(i << 16)[1])]
    for n in range(120):
        request = random_trace_request(rng) if n % 2 else random_log_request(rng)
        bodies.append((type(request), request.SerializeToString()))
    unkeyed = mixed = 0
    for cls, body in bodies:
        for window in WINDOWS:
            got = _same_as_split_request(body, cls, partitions, window)
            assert got is not None
            unkeyed += any(m.partition is None for m in got.messages)
            mixed += len(got.messages) > 1
    assert unkeyed > 10 and (mixed > 10 or len(partitions) == 1)


def test_a_request_whose_part_exceeds_the_message_size_is_left_to_the_upb_split() -> None:
    template = build_template("genai", "grpc", 200, random.Random(5), secrets.token_bytes(8))
    body = template.stamp(0)[0]
    assert (
        _same_as_split_request(body, ExportTraceServiceRequest, [0, 1], None, max_bytes=len(body) // 8)
        is None
    )
    assert (
        _same_as_split_request(body, ExportTraceServiceRequest, [0, 1], None, max_bytes=len(body)) is not None
    )


def test_otlp_json_written_by_the_json_codec_splits_from_its_bytes_as_from_its_parse() -> None:
    """OTLP/JSON reaches the log and Kafka as the bytes `json_codec` writes: they take the splitter's
    path (no `NotPlain`), fields set to their defaults included (SDKs' JSON writes `"kind": 0`,
    empty trace states, zero counts), with the parts and rejections of `prepare`."""
    template = build_template("genai", "http-json", 200, random.Random(9), secrets.token_bytes(8))
    traces, logs = template.stamp(1 << 16, now_ns=NOW)
    assert logs is not None
    defaults = orjson.loads(traces)
    for resource in defaults["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                span.update(kind=0, traceState="", flags=0, droppedAttributesCount=0, droppedEventsCount=0)
    bodies: list[tuple[Any, bytes]] = [
        (ExportTraceServiceRequest, encode_json(orjson.loads(traces), ExportTraceServiceRequest)),
        (ExportTraceServiceRequest, encode_json(defaults, ExportTraceServiceRequest)),
        (ExportLogsServiceRequest, encode_json(orjson.loads(logs), ExportLogsServiceRequest)),
    ]
    for cls, body in bodies:
        for window in WINDOWS:
            got = _same_as_prepare(body, cls, 2, window)
            assert got.parts or window is not None  # (a window may refuse every record)
            assert _same_as_split_request(body, cls, [0, 1, 2], window) is not None
