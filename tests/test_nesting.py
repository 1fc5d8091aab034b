"""Attribute values nested deeply: what protobuf can read back is stored; deeper is refused with
400 and the reason, on OTLP/JSON and protobuf alike — never a 500, never accepted and then
unreadable."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.otlp.json_codec import decode_json
from tests.conftest import Service
from tests.otlp_helpers import new_span_id, new_trace_id

pytestmark = pytest.mark.e2e


def _nested(depth: int, kind: str) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(depth):
        if kind == "kvlist":
            value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
        else:
            value = {"arrayValue": {"values": [value]}}
    return value


def _request(depth: int, kind: str, span_id: str) -> bytes:
    now = time.time_ns()
    span = {
        "traceId": new_trace_id(),
        "spanId": span_id,
        "name": f"nested {kind} {depth}",
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1000),
        "attributes": [{"key": "deep", "value": _nested(depth, kind)}],
    }
    # The standard library: orjson refuses to write nesting this deep.
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def _post(service: Service, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        f"{service.http_url}/v1/traces",
        content=body,
        headers={"x-api-key": service.key, "content-type": content_type},
        timeout=30,
    )


@pytest.mark.parametrize(("depth", "kind"), [(20, "kvlist"), (40, "array")])
def test_nesting_protobuf_can_hold_is_stored(service: Service, depth: int, kind: str) -> None:
    span_id = new_span_id()
    assert _post(service, _request(depth, kind, span_id), "application/json").status_code == 200
    stored = service.sql(f"SELECT count() FROM otel_traces WHERE SpanId = '{span_id}'")
    assert stored == "1\n"


@pytest.mark.parametrize(("depth", "kind"), [(40, "kvlist"), (100, "kvlist"), (100, "array")])
def test_deeper_nesting_is_refused_with_the_reason_on_every_encoding(
    service: Service, depth: int, kind: str
) -> None:
    body = _request(depth, kind, new_span_id())
    as_json = _post(service, body, "application/json")
    assert as_json.status_code == 400, as_json.text
    assert "nested too deeply" in as_json.text
    # The same request as protobuf (built without a parser in the way: by the JSON codec).
    as_protobuf = _post(
        service, decode_json(body, ExportTraceServiceRequest).SerializeToString(), "application/x-protobuf"
    )
    assert as_protobuf.status_code == 400, as_protobuf.text
