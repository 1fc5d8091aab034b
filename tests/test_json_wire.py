"""OTLP/JSON written straight to protobuf bytes (`json_codec`) reads back as protobuf's own JSON
parser reads the same request: the oracle is `json_format`, given the ids in base64 (proto3 JSON's
rule; OTLP/JSON writes them in hex)."""

from __future__ import annotations

import base64
import math
import random
import secrets
from typing import Any

import orjson
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import CONVENTIONS, build_template
from inferline.otlp.errors import OtlpDecodeError
from inferline.otlp.json_codec import decode_json, encode_json, read_back_json
from inferline.otlp.protobuf import MAX_VALUE_DEPTH, TooDeep, parse
from tests.otlp_helpers import nested_request, nested_span, new_span_id, new_trace_id

pytestmark = pytest.mark.unit

_IDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def _ids_in_base64(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in _IDS and isinstance(v, str)
            else _ids_in_base64(v)
            for k, v in tree.items()
        }
    if isinstance(tree, list):
        return [_ids_in_base64(v) for v in tree]
    return tree


def oracle(body: bytes, message_type: type[Message]) -> Message:
    tree = _ids_in_base64(orjson.loads(body))
    return json_format.ParseDict(tree, message_type(), ignore_unknown_fields=True)


def value(**kinds: Any) -> dict[str, Any]:
    return {"key": "k", "value": kinds}


def span(**fields: Any) -> dict[str, Any]:
    return {
        "traceId": new_trace_id(),
        "spanId": new_span_id(),
        "name": "chat gpt-4o",
        "startTimeUnixNano": "1755684000000000000",
        "endTimeUnixNano": 1755684001900000000,
        **fields,
    }


def traces(*spans: dict[str, Any], **resource_spans: Any) -> bytes:
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                    "scopeSpans": [{"scope": {"name": "s", "version": "1"}, "spans": list(spans)}],
                    **resource_spans,
                }
            ]
        }
    )


def logs(*records: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"resourceLogs": [{"scopeLogs": [{"scope": {"name": "s"}, "logRecords": list(records)}]}]}
    )


SPANS = {
    "strings of every script": span(
        attributes=[
            {"key": "gen_ai.prompt", "value": {"stringValue": "Grüße, 東京 🙂 ñ " + "x" * 300}},
            {"key": "empty", "value": {"stringValue": ""}},
            {"key": "", "value": {"stringValue": "a value with no key"}},
        ]
    ),
    "integers, as numbers and strings, at their bounds": span(
        attributes=[
            {"key": "a", "value": {"intValue": "-5"}},
            {"key": "b", "value": {"intValue": -(2**63)}},
            {"key": "c", "value": {"intValue": str(2**63 - 1)}},
            {"key": "d", "value": {"intValue": 127}},
            {"key": "e", "value": {"intValue": 128}},
            {"key": "f", "value": {"intValue": 0}},
        ],
        droppedAttributesCount=4294967295,
        flags=4294967295,
    ),
    "doubles and booleans": span(
        attributes=[
            {"key": "t", "value": {"doubleValue": 0.2}},
            {"key": "big", "value": {"doubleValue": 1e308}},
            {"key": "neg", "value": {"doubleValue": -0.0}},
            {"key": "inf", "value": {"doubleValue": "-Infinity"}},
            {"key": "whole", "value": {"doubleValue": 3}},
            {"key": "yes", "value": {"boolValue": True}},
            {"key": "no", "value": {"boolValue": False}},
        ]
    ),
    "nested arrays and key-value lists, empty ones too": span(
        attributes=[
            {
                "key": "nested",
                "value": {
                    "arrayValue": {
                        "values": [
                            {"stringValue": "a"},
                            {"intValue": 2},
                            {"arrayValue": {"values": [{"boolValue": True}, {"arrayValue": {}}]}},
                            {"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": 1.5}}]}},
                            {},
                        ]
                    }
                },
            },
            {"key": "empty list", "value": {"kvlistValue": {}}},
            {"key": "bytes", "value": {"bytesValue": "aGVsbG8="}},
            {"key": "no value"},
            {"key": "an empty value", "value": {}},
        ]
    ),
    "enums by name, snake_case keys, unknown keys": span(
        kind="SPAN_KIND_SERVER",
        status={"code": "STATUS_CODE_ERROR", "message": "boom", "future": 1},
        trace_state="k=v",
        parent_span_id=new_span_id(),
        somethingNew={"a": [1, 2]},
    ),
    "events and links": span(
        events=[
            {
                "timeUnixNano": "1755684000500000000",
                "name": "gen_ai.choice",
                "attributes": [value(stringValue="v")],
            },
            {"name": "no time", "droppedAttributesCount": 1},
        ],
        links=[
            {
                "traceId": new_trace_id(),
                "spanId": new_span_id(),
                "traceState": "a=b",
                "attributes": [value(intValue=1)],
                "flags": 256,
            }
        ],
        droppedEventsCount=2,
        droppedLinksCount=3,
    ),
}


@pytest.mark.parametrize("case", list(SPANS))
def test_spans_read_back_as_protobufs_json_parser_reads_them(case: str) -> None:
    body = traces(SPANS[case], schemaUrl="https://opentelemetry.io/schemas/1.26.0")
    assert decode_json(body, ExportTraceServiceRequest) == oracle(body, ExportTraceServiceRequest)


@pytest.mark.parametrize(
    "body",
    [
        {"stringValue": "plain text"},
        {"kvlistValue": {"values": [{"key": "content", "value": {"stringValue": "hi"}}]}},
        {"arrayValue": {"values": [{"stringValue": "a"}]}},
        {"stringValue": ""},
        {},
    ],
)
def test_log_records_read_back_as_protobufs_json_parser_reads_them(body: dict[str, Any]) -> None:
    record = {
        "timeUnixNano": "1755684000000000000",
        "observedTimeUnixNano": 1755684000000000001,
        "severityNumber": "SEVERITY_NUMBER_INFO",
        "severityText": "INFO",
        "eventName": "gen_ai.user.message",
        "traceId": new_trace_id(),
        "spanId": new_span_id(),
        "flags": 1,
        "attributes": [value(stringValue="v")],
        "body": body,
    }
    request = logs(record)
    assert decode_json(request, ExportLogsServiceRequest) == oracle(request, ExportLogsServiceRequest)


@pytest.mark.parametrize("kind", ["genai", "plain"])
def test_the_bench_requests_of_every_convention_read_back_the_same(kind: str) -> None:
    template = build_template(kind, "http-json", 300, random.Random(5), secrets.token_bytes(8))
    traces_body, logs_body = template.stamp(1 << 16)
    decoded = decode_json(traces_body, ExportTraceServiceRequest)
    assert decoded == oracle(traces_body, ExportTraceServiceRequest)
    if kind == "genai":
        scopes = {s.scope.name for r in decoded.resource_spans for s in r.scope_spans}
        assert len(scopes) >= len(CONVENTIONS) // 2  # many conventions' shapes, not one
        assert logs_body is not None
        assert decode_json(logs_body, ExportLogsServiceRequest) == oracle(logs_body, ExportLogsServiceRequest)


def test_the_bytes_are_what_the_message_serialises_to_when_read_back() -> None:
    body = traces(*SPANS.values())
    encoded, message = read_back_json(body, ExportTraceServiceRequest)
    assert ExportTraceServiceRequest.FromString(encoded) == message == oracle(body, ExportTraceServiceRequest)


def test_not_a_number_reads_back_as_nan() -> None:
    body = traces(span(attributes=[value(doubleValue="NaN")]))
    [kv] = decode_json(body, ExportTraceServiceRequest).resource_spans[0].scope_spans[0].spans[0].attributes
    assert kv.value.WhichOneof("value") == "double_value" and math.isnan(kv.value.double_value)


def test_a_field_in_both_spellings_is_the_last_one_not_both() -> None:
    """As a dict built from the object would hold it: a second message is not merged into the
    first, a second list not appended to it."""
    first, last = span(name="first"), span(name="last")
    body = orjson.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": [first]}], "scope_spans": [{"spans": [last]}]}]}
    )
    [[scope]] = [r.scope_spans for r in decode_json(body, ExportTraceServiceRequest).resource_spans]
    assert [s.name for s in scope.spans] == ["last"]
    trace_id = new_trace_id()
    body = traces(span(traceId=new_trace_id(), trace_id=trace_id, status={"code": 1}, Status=None))
    [decoded] = decode_json(body, ExportTraceServiceRequest).resource_spans[0].scope_spans[0].spans
    assert decoded.trace_id.hex() == trace_id and decoded.status.code == 1


def test_an_attribute_value_is_read_by_its_first_known_key() -> None:
    body = traces(span(attributes=[value(comment="x", intValue="3", stringValue="a")]))
    [kv] = decode_json(body, ExportTraceServiceRequest).resource_spans[0].scope_spans[0].spans[0].attributes
    assert kv.value.WhichOneof("value") == "int_value" and kv.value.int_value == 3


def test_encoding_without_the_read_back_keeps_what_protobuf_would_refuse() -> None:
    """`encode_json` writes what it is given; the read-back (`read_back_json`) is the depth check."""
    body = nested_request(nested_span(MAX_VALUE_DEPTH + 1, "kvlist", new_span_id()))
    encoded = encode_json(orjson.loads(body), ExportTraceServiceRequest)
    with pytest.raises(TooDeep):
        parse(encoded, ExportTraceServiceRequest)
    with pytest.raises(OtlpDecodeError, match="nested too deeply"):
        read_back_json(body, ExportTraceServiceRequest)


def _scalars_type() -> type[Message]:
    """A message with the scalar encodings OTLP's traces and logs do not use (zigzag, float,
    signed fixed) and repeated scalars, built for this test."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="inferline_json_wire_test.proto", package="inferline.test", syntax="proto3"
    )
    message = proto.message_type.add(name="Scalars")
    for number, (name, kind) in enumerate(
        [
            ("small_signed", field.TYPE_SINT32),
            ("big_signed", field.TYPE_SINT64),
            ("ratio", field.TYPE_FLOAT),
            ("fixed_signed", field.TYPE_SFIXED32),
            ("fixed_signed64", field.TYPE_SFIXED64),
            ("unsigned64", field.TYPE_UINT64),
            ("counts", field.TYPE_INT32),
            ("bounds", field.TYPE_DOUBLE),
        ],
        1,
    ):
        label = field.LABEL_REPEATED if name in ("counts", "bounds") else field.LABEL_OPTIONAL
        message.field.add(name=name, number=number, type=kind, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inferline.test.Scalars"))


@pytest.mark.parametrize(
    "tree",
    [
        {"smallSigned": -5, "bigSigned": "-3", "ratio": 0.1, "fixedSigned": -1, "fixedSigned64": "-7"},
        {
            "small_signed": -(2**31),
            "bigSigned": str(-(2**63)),
            "ratio": -3.5,
            "fixedSigned": 2**31 - 1,
            "fixedSigned64": -(2**63),
            "unsigned64": str(2**64 - 1),
        },
        {"smallSigned": 2**31 - 1, "bigSigned": 2**63 - 1, "counts": [1, -2, 300], "bounds": [0.5, -1e300]},
    ],
)
def test_every_scalar_encoding_reads_back_as_protobufs_json_parser_reads_it(tree: dict[str, Any]) -> None:
    scalars = _scalars_type()
    assert scalars.FromString(encode_json(tree, scalars)) == json_format.ParseDict(tree, scalars())
