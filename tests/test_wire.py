"""The wire reader (`inferline.otlp.wire`) against upb's parse flattened (`inferline.otlp.flatten`):
the same records for every request it reads, and upb's path (with its rejections and errors) for
every request it does not read exactly."""

from __future__ import annotations

import math
import random
import secrets
import struct

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from bench.payloads import as_logged, build_template
from inferline.otlp import wire
from inferline.otlp.flatten import flatten_log_bytes, flatten_logs, flatten_span_bytes, flatten_spans
from inferline.otlp.protobuf import parse
from inferline.otlp.wire_format import NotPlain
from tests.otlp_random import enum_value, random_log_request, random_trace_request

pytestmark = pytest.mark.unit


def _by_upb_spans(payload: bytes) -> list[object]:
    return flatten_spans(parse(payload, ExportTraceServiceRequest), "p").records


def _by_upb_logs(payload: bytes) -> list[object]:
    return flatten_logs(parse(payload, ExportLogsServiceRequest), "p").records


def _same_spans(payload: bytes) -> None:
    assert wire.read_spans(payload, "p") == _by_upb_spans(payload)


def _same_logs(payload: bytes) -> None:
    assert wire.read_logs(payload, "p") == _by_upb_logs(payload)


# -- requests as senders write them ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["genai", "plain"])
def test_the_benchmarks_requests_read_as_upb_reads_them(kind: str) -> None:
    template = build_template(kind, "grpc", 200, random.Random(3), secrets.token_bytes(8))
    for i in range(3):
        traces, logs = template.stamp(i << 16)
        logged_traces, logged_logs = as_logged(traces, logs)
        _same_spans(logged_traces)
        if logged_logs:
            _same_logs(logged_logs)
        # as sent, with the records a receiver refuses: upb's path, its rejections
        _same_or_upbs(traces, "spans")


def test_the_otel_sdks_encoding_reads_as_upb_reads_it() -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link as SdkLink
    from opentelemetry.trace import SpanKind, StatusCode

    resource = Resource.create({"service.name": "wire-test", "deployment.environment": "ci"})
    spans = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("wire.scope", "1.2.3")
    with (
        tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent,
        tracer.start_as_current_span(
            "chat gpt-4o",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.request.temperature": 0.25,
                "gen_ai.request.stop_sequences": ["\n", "ÆØÅ"],
                "flag": True,
            },
            links=[SdkLink(parent.get_span_context(), {"why": "follows"})],
        ) as child,
    ):
        child.add_event("gen_ai.user.message", {"content": "héllo 👋", "n": -3})
        child.set_status(StatusCode.ERROR, "rate limited")
    request = encode_spans(spans.get_finished_spans())
    _same_spans(request.SerializeToString())

    logs = InMemoryLogExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    import logging

    from opentelemetry.sdk._logs import LoggingHandler

    py_logger = logging.getLogger("wire-test")
    py_logger.propagate = False
    py_logger.addHandler(LoggingHandler(logger_provider=logger_provider))
    py_logger.warning("the answer was %s", "made up", extra={"user.id": "u-1"})
    payload = encode_logs(logs.get_finished_logs()).SerializeToString()
    assert wire.read_logs(payload, "p")  # read by the wire reader, not handed back
    _same_logs(payload)


# -- every kind of value, at random --------------------------------------------------------------


def _same_or_upbs(payload: bytes, signal: str) -> None:
    """Where the wire reader reads the request, the records are upb's; where it does not, the
    bytes path still gives upb's result (records and rejections)."""
    if signal == "spans":
        by_upb = flatten_spans(parse(payload, ExportTraceServiceRequest), "p")
        got = flatten_span_bytes(payload, "p")
    else:
        by_upb = flatten_logs(parse(payload, ExportLogsServiceRequest), "p")
        got = flatten_log_bytes(payload, "p")
    # repr where == fails: a NaN (a mutated double) is not equal to itself
    assert got.records == by_upb.records or repr(got.records) == repr(by_upb.records)
    assert (got.rejected, got.error) == (by_upb.rejected, by_upb.error)


def test_random_requests_read_as_upb_reads_them() -> None:
    rng = random.Random(20261207)
    read = 0
    for _ in range(400):
        traces = random_trace_request(rng).SerializeToString()
        _same_or_upbs(traces, "spans")
        logs = random_log_request(rng).SerializeToString()
        _same_or_upbs(logs, "logs")
        try:
            wire.read_spans(traces, "p")
            wire.read_logs(logs, "p")
            read += 1
        except NotPlain:
            pass
    assert read > 100  # most valid requests are read from the wire, not handed to upb


# -- what the wire reader leaves to upb ----------------------------------------------------------


def _one_span_request(span: PbSpan) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    return request


def _good_span() -> PbSpan:
    return PbSpan(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat", start_time_unix_nano=5, end_time_unix_nano=9
    )


def _field(number: int, wire_type: int, body: bytes) -> bytes:
    tag = (
        bytes([number << 3 | wire_type])
        if number < 16
        else bytes([(number << 3 | wire_type) & 0x7F | 0x80, number >> 4])
    )
    if wire_type == 2:
        return tag + bytes([len(body)]) + body
    return tag + body


def test_unknown_fields_are_skipped_at_every_level() -> None:
    span = _good_span()
    unknown = (
        _field(30, 0, b"\x96\x01") + _field(31, 1, bytes(8)) + _field(29, 2, b"xyz") + _field(28, 5, bytes(4))
    )
    span_bytes = span.SerializeToString() + unknown
    request = _one_span_request(PbSpan.FromString(span_bytes)).SerializeToString() + unknown
    assert PbSpan.FromString(span_bytes).name == "chat"
    assert len(wire.read_spans(request, "p")) == 1
    _same_spans(request)


@pytest.mark.parametrize(
    "span",
    [
        PbSpan(trace_id=bytes(16), span_id=b"\x02" * 8),  # all-zero trace id
        PbSpan(trace_id=b"\x01" * 15, span_id=b"\x02" * 8),
        PbSpan(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x03" * 7),
        PbSpan(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, start_time_unix_nano=2**63),
    ],
)
def test_a_span_the_rules_refuse_is_left_to_upbs_path_and_rejected_with_its_reason(span: PbSpan) -> None:
    request = _one_span_request(span)
    request.resource_spans[0].scope_spans[0].spans.append(_good_span())
    payload = request.SerializeToString()
    with pytest.raises(NotPlain):
        wire.read_spans(payload, "p")
    flat = flatten_span_bytes(payload, "p")
    assert flat.rejected == 1 and flat.error
    assert [s.span_id for s in flat.records] == ["02" * 8]


def test_a_status_sent_twice_merges_as_protobuf_merges_it() -> None:
    span_bytes = _good_span().SerializeToString()
    twice = (
        span_bytes
        + _field(15, 2, Status(code=enum_value(2)).SerializeToString())
        + _field(15, 2, Status(message="m").SerializeToString())
    )
    request = _one_span_request(PbSpan.FromString(twice)).SerializeToString()
    # the request re-serialised by protobuf has one merged Status; build the raw one by hand too
    raw = _field(1, 2, _field(2, 2, _field(2, 2, twice)))
    for payload in (request, raw):
        (span,) = wire.read_spans(payload, "p")
        assert (span.status_code, span.status_message) == (2, "m")
        _same_spans(payload)


def test_a_value_or_resource_sent_twice_goes_to_upb_which_merges_them() -> None:
    kv = KeyValue(key="k", value=AnyValue(string_value="a")).SerializeToString()
    kv_twice = kv + _field(2, 2, AnyValue(int_value=3).SerializeToString())
    span = _good_span().SerializeToString() + _field(9, 2, kv_twice)
    resource = _field(1, 2, kv)
    rs = _field(1, 2, resource) + _field(1, 2, resource) + _field(2, 2, _field(2, 2, span))
    payload = _field(1, 2, rs)
    with pytest.raises(NotPlain):
        wire.read_spans(payload, "p")
    by_upb = _by_upb_spans(payload)
    assert flatten_span_bytes(payload, "p").records == by_upb
    assert by_upb[0].attributes == {"k": 3}  # type: ignore[attr-defined]
    assert by_upb[0].resource == {"k": "a"}  # type: ignore[attr-defined]


def _long(number: int, body: bytes) -> bytes:
    """A length-delimited field of any length (`_field` writes one-byte lengths)."""
    size, n = b"", len(body)
    while True:
        size += bytes([n & 0x7F | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            break
    return bytes([number << 3 | 2]) + size + body


def test_values_nested_past_the_readers_depth_go_to_upb() -> None:
    # built by hand: protobuf's Python API refuses to copy a value this deep
    v = AnyValue(string_value="leaf").SerializeToString()
    for _ in range(wire.MAX_NESTING + 2):  # AnyValue{kvlist_value: {values: [{key: "k", value: v}]}}
        v = _long(6, _long(1, _field(1, 2, b"k") + _long(2, v)))
    span = _good_span().SerializeToString() + _long(9, _field(1, 2, b"deep") + _long(2, v))
    payload = _long(1, _long(2, _long(2, span)))
    with pytest.raises(NotPlain):
        wire.read_spans(payload, "p")
    assert flatten_span_bytes(payload, "p").records == _by_upb_spans(payload)


def test_malformed_bytes_raise_upbs_decode_error() -> None:
    good = _one_span_request(_good_span()).SerializeToString()
    bad_utf8 = _field(
        1, 2, _field(2, 2, _field(2, 2, _good_span().SerializeToString() + _field(5, 2, b"\xff\xfe")))
    )
    field_zero = _field(1, 2, _field(2, 2, _field(2, 2, _good_span().SerializeToString() + b"\x00\x00")))
    huge_field_number = good + b"\x80\x80\x80\x80\x10\x00"  # field 2**29: past protobuf's last
    overlong_varint = b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
    for payload in (good[:-3], bad_utf8, overlong_varint, b"\x00\x00", field_zero, huge_field_number):
        with pytest.raises(NotPlain):
            wire.read_spans(payload, "p")
        with pytest.raises(DecodeError):
            flatten_span_bytes(payload, "p")
        with pytest.raises(DecodeError):
            flatten_log_bytes(payload, "p")
    group = b"\x0b\x0c"  # an empty group where field 1 is: upb keeps it as an unknown field
    with pytest.raises(NotPlain):
        wire.read_spans(group, "p")
    _same_or_upbs(group, "spans")


def test_numbers_at_their_limits_read_as_protobuf_reads_them() -> None:
    span = _good_span()
    span.kind = enum_value(-2)  # an enum is an int32: ten bytes on the wire, read back negative
    span.start_time_unix_nano = 2**63 - 1
    span.end_time_unix_nano = 2**63 - 1
    for key, value in [("min", AnyValue(int_value=-(2**63))), ("max", AnyValue(int_value=2**63 - 1))]:
        span.attributes.add(key=key, value=value)
    span.attributes.add(
        key="d", value=AnyValue(double_value=struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf0\x7f")[0])
    )
    payload = _one_span_request(span).SerializeToString()
    (read,) = wire.read_spans(payload, "p")
    assert read.kind == -2 and read.attributes["min"] == -(2**63) and read.attributes["max"] == 2**63 - 1
    assert math.isnan(read.attributes["d"])
    (by_upb,) = _by_upb_spans(payload)
    assert read.start_ns == by_upb.start_ns  # type: ignore[attr-defined]


def test_mutated_bytes_get_upbs_answer() -> None:
    """Flipped, dropped and inserted bytes of valid requests: whatever the wire reader makes of
    them, the bytes path answers as upb's path does (the same records, or DecodeError)."""
    rng = random.Random(7)
    seeds = [random_trace_request(rng).SerializeToString() for _ in range(30)]
    log_seeds = [random_log_request(rng).SerializeToString() for _ in range(30)]
    for signal, pool in (("spans", seeds), ("logs", log_seeds)):
        for _ in range(1500):
            data = bytearray(rng.choice(pool))
            for _ in range(rng.randint(1, 3)):
                if not data:
                    break
                i = rng.randrange(len(data))
                action = rng.random()
                if action < 0.5:
                    data[i] = rng.randrange(256)
                elif action < 0.75:
                    del data[i]
                else:
                    data.insert(i, rng.randrange(256))
            payload = bytes(data)
            try:
                _same_or_upbs(payload, signal)
            except DecodeError:  # upb refuses it: so must the bytes path
                with pytest.raises(DecodeError):
                    (flatten_span_bytes if signal == "spans" else flatten_log_bytes)(payload, "p")
