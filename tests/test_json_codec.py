"""OTLP/JSON decoding rules (hex ids, int64 as strings, enums as ints, unknown fields)."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.otlp.errors import OtlpDecodeError
from inferline.otlp.flatten import flatten_logs, flatten_spans
from inferline.otlp.json_codec import decode_json

pytestmark = pytest.mark.unit

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


def span_json(**span_fields: object) -> bytes:
    span = {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1755684000000000000",
        "endTimeUnixNano": 1755684001900000000,
        "attributes": [
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1200"}},
            {"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.2}},
            {"key": "gen_ai.request.stream", "value": {"boolValue": True}},
            {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 2}]}}},
            {
                "key": "meta",
                "value": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}},
            },
            {"key": "raw", "value": {"bytesValue": "aGVsbG8="}},
        ],
        "status": {"code": 2, "message": "boom"},
        **span_fields,
    }
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                    "scopeSpans": [{"scope": {"name": "test", "version": "1"}, "spans": [span]}],
                }
            ]
        }
    )


def test_json_walk_decodes_otlp_rules() -> None:
    request = decode_json(span_json(), ExportTraceServiceRequest)
    [span] = flatten_spans(request, "p1").records
    assert span.trace_id == TRACE_ID and span.span_id == SPAN_ID
    assert span.start_ns == 1755684000000000000 and span.end_ns == 1755684001900000000
    assert span.kind == 3 and span.status_code == 2 and span.status_message == "boom"
    assert span.attributes["gen_ai.usage.input_tokens"] == 1200
    assert span.attributes["gen_ai.request.temperature"] == 0.2
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["tags"] == ["a", 2]
    assert span.attributes["meta"] == {"k": "v"}
    assert span.attributes["raw"] == b"hello"
    assert span.resource == {"service.name": "svc"} and span.scope_name == "test"
    assert span.project_id == "p1"


def test_unknown_fields_are_ignored_and_snake_case_accepted() -> None:
    body = span_json(futureField={"x": 1}, trace_state="a=b")
    [span] = flatten_spans(decode_json(body, ExportTraceServiceRequest), "p").records
    assert span.trace_state == "a=b"


def test_enum_names_are_accepted() -> None:
    body = span_json(kind="SPAN_KIND_SERVER")
    [span] = flatten_spans(decode_json(body, ExportTraceServiceRequest), "p").records
    assert span.kind == 2


def test_empty_body_and_empty_object_are_empty_requests() -> None:
    assert len(decode_json(b"", ExportTraceServiceRequest).resource_spans) == 0
    assert len(decode_json(b"{}", ExportTraceServiceRequest).resource_spans) == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected an array"),
        (span_json(startTimeUnixNano="soon"), "startTimeUnixNano: 'soon' is not an integer"),
        (span_json(kind="SPAN_KIND_NOPE"), "is not a valid SpanKind"),
        (span_json(name=5), "name: expected a string"),
        # Values past their field's type: named with the path and the type (it was "invalid value:
        # Value out of range: -1", neither)
        (span_json(startTimeUnixNano="-1"), r"spans\[0\]\.startTimeUnixNano: -1 is out of range for fixed64"),
        (span_json(kind=2**40), r"spans\[0\]\.kind: 1099511627776 is out of range for SpanKind"),
        (span_json(droppedAttributesCount=-1), r"droppedAttributesCount: -1 is out of range for uint32"),
        (span_json(flags=2**33), r"flags: 8589934592 is out of range for fixed32"),
        (
            span_json(attributes=[{"key": "k", "value": {"intValue": str(2**63)}}]),
            r"attributes\[0\]\.value\.intValue: 9223372036854775808 is out of range for int64",
        ),
    ],
)
def test_malformed_json_names_the_problem(body: bytes, says: str) -> None:
    with pytest.raises(OtlpDecodeError, match=says):
        decode_json(body, ExportTraceServiceRequest)


def test_bad_ids_reject_only_their_record() -> None:
    good = orjson.loads(span_json())
    spans = good["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "spanId": "zz-not-hex"})
    spans.append({**spans[0], "traceId": "abcd"})
    flat = flatten_spans(decode_json(orjson.dumps(good), ExportTraceServiceRequest), "p")
    assert len(flat.records) == 1
    assert flat.rejected == 2
    assert "span_id must be 8 bytes" in flat.error


def test_log_records_keep_event_name_and_body() -> None:
    body = orjson.dumps(
        {
            "resourceLogs": [
                {
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {
                                    "timeUnixNano": "1755684000000000000",
                                    "traceId": TRACE_ID,
                                    "spanId": SPAN_ID,
                                    "eventName": "gen_ai.user.message",
                                    "severityNumber": 9,
                                    "body": {
                                        "kvlistValue": {
                                            "values": [{"key": "content", "value": {"stringValue": "hi"}}]
                                        }
                                    },
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    )
    [record] = flatten_logs(decode_json(body, ExportLogsServiceRequest), "p").records
    assert record.event_name == "gen_ai.user.message"
    assert record.body == {"content": "hi"}
    assert record.severity_number == 9 and record.trace_id == TRACE_ID


@pytest.mark.parametrize(
    ("value", "read_as"),
    [
        ({"stringValue": "a"}, "a"),
        ({"string_value": "a"}, "a"),
        ({"stringValue": ""}, ""),
        ({"stringValue": "a", "comment": 1}, "a"),  # unknown keys beside the value are ignored
        ({"intValue": "3", "stringValue": "a"}, 3),  # the first value key read wins
        ({"comment": 1}, None),
        ({}, None),
        # proto3 JSON: null is the default, as if absent (it refused the whole request before)
        ({"stringValue": None}, None),
        ({"arrayValue": None}, None),
        ({"stringValue": None, "intValue": "3"}, 3),
        # base64 in either alphabet, padded or not, as proto3 JSON reads it
        ({"bytesValue": "aGVsbG8="}, b"hello"),
        ({"bytesValue": "aGVsbG8"}, b"hello"),
        ({"bytesValue": "-_8="}, b"\xfb\xff"),
    ],
)
def test_attribute_values_read_by_their_first_known_key(value: dict[str, object], read_as: object) -> None:
    body = span_json(attributes=[{"key": "k", "value": value}])
    [span] = flatten_spans(decode_json(body, ExportTraceServiceRequest), "p").records
    assert span.attributes["k"] == read_as


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"stringValue": 5}, r"attributes\[0\]\.value\.stringValue: expected a string, got int"),
        ("text", r"attributes\[0\]\.value: expected a JSON object, got str"),
        # Characters outside base64's alphabets were dropped: "!!!!AAEC" was stored as 3 bytes.
        ({"bytesValue": "!!!!AAEC"}, r"attributes\[0\]\.value\.bytesValue: invalid base64"),
    ],
)
def test_an_attribute_value_of_the_wrong_type_refuses_the_request(value: object, says: str) -> None:
    with pytest.raises(OtlpDecodeError, match=says):
        decode_json(span_json(attributes=[{"key": "k", "value": value}]), ExportTraceServiceRequest)
