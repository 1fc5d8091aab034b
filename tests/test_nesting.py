"""Attribute values nested deeply: up to the documented depth (64 levels of key-value lists, 97 of
arrays) they are stored; deeper is refused with 400 and the reason, on OTLP/JSON and protobuf
alike — never a 500, never accepted and then unreadable."""

from __future__ import annotations

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.otlp.json_codec import decode_json, encode_json
from inferline.otlp.protobuf import MAX_VALUE_DEPTH
from tests.conftest import Service
from tests.otlp_helpers import nested_request, nested_span, new_span_id

pytestmark = pytest.mark.e2e


def _post(service: Service, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        f"{service.http_url}/v1/traces",
        content=body,
        headers={"x-api-key": service.key, "content-type": content_type},
        timeout=30,
    )


@pytest.mark.parametrize(("depth", "kind"), [(32, "kvlist"), (MAX_VALUE_DEPTH, "kvlist"), (97, "array")])
def test_nesting_up_to_the_documented_depth_is_stored(service: Service, depth: int, kind: str) -> None:
    """Deeper than protobuf's own parser reads (~31 levels of key-value lists), on JSON and
    protobuf alike, and the innermost value is kept."""
    for content_type in ("application/json", "application/x-protobuf"):
        span_id = new_span_id()
        body = nested_request(nested_span(depth, kind, span_id))
        if content_type == "application/x-protobuf":
            body = decode_json(body, ExportTraceServiceRequest).SerializeToString()
        r = _post(service, body, content_type)
        assert r.status_code == 200, r.text
        stored = service.sql(
            f"SELECT count(), countIf(position(SpanAttributes['deep'], 'leaf') > 0) FROM otel_traces "
            f"WHERE SpanId = '{span_id}'"
        )
        assert stored == "1\t1\n", (content_type, stored)


def test_deep_values_of_many_traces_are_stored(service: Service) -> None:
    """A request with several traces is split by trace id on its way to the log: each part keeps
    its deep values."""
    spans = [nested_span(MAX_VALUE_DEPTH, "kvlist", new_span_id()) for _ in range(8)]
    as_protobuf = decode_json(nested_request(*spans), ExportTraceServiceRequest).SerializeToString()
    assert _post(service, as_protobuf, "application/x-protobuf").status_code == 200
    ids = ", ".join(f"'{s['spanId']}'" for s in spans)
    stored = service.sql(f"SELECT count() FROM otel_traces WHERE SpanId IN ({ids})")
    assert stored == "8\n"


@pytest.mark.parametrize(("depth", "kind"), [(MAX_VALUE_DEPTH + 1, "kvlist"), (100, "array"), (300, "array")])
def test_deeper_nesting_is_refused_with_the_reason_on_every_encoding(
    service: Service, depth: int, kind: str
) -> None:
    body = nested_request(nested_span(depth, kind, new_span_id()))
    as_json = _post(service, body, "application/json")
    assert as_json.status_code == 400, as_json.text
    assert "nested too deeply" in as_json.text
    # The same request as protobuf (written by the JSON codec, without its read-back check).
    as_protobuf = _post(
        service, encode_json(orjson.loads(body), ExportTraceServiceRequest), "application/x-protobuf"
    )
    assert as_protobuf.status_code == 400, as_protobuf.text
