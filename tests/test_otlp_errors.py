"""Every error path of the OTLP receivers, as the OTLP specification words them."""

from __future__ import annotations

import gzip
import http.client
import time

import grpc
import httpx
import orjson
import pytest
import zstandard
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from inferline.otlp.json_codec import decode_json
from tests.conftest import Service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json

pytestmark = pytest.mark.e2e

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def post(
    service: Service, body: bytes, content_type: str = "application/json", **headers: str
) -> httpx.Response:
    h = {"authorization": f"Bearer {service.key}", "content-type": content_type, **headers}
    return httpx.post(f"{service.http_url}/v1/traces", content=body, headers=h, timeout=30)


def grpc_export(service: Service, body: bytes, metadata: tuple = ()) -> bytes:
    with grpc.insecure_channel(
        service.grpc_target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary(TRACE_EXPORT, request_serializer=None, response_deserializer=None)
        return call(body, metadata=metadata, timeout=30)


def auth(service: Service) -> tuple:
    return (("authorization", f"Bearer {service.key}"),)


def test_missing_and_unknown_keys_are_401(service: Service) -> None:
    body = traces_json([json_span(GENAI_ATTRIBUTES)])
    r = httpx.post(
        f"{service.http_url}/v1/traces", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 401 and "API key" in r.json()["message"]
    r = post(service, body, authorization="Bearer il_not_a_key")
    assert r.status_code == 401
    r = httpx.post(
        f"{service.http_url}/v1/traces", content=b"", headers={"content-type": "application/x-protobuf"}
    )
    assert r.status_code == 401
    assert "API key" in status_pb2.Status.FromString(r.content).message


def test_grpc_missing_key_is_unauthenticated(service: Service) -> None:
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(service, b"")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(service, b"", (("x-api-key", "il_wrong"),))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unsupported_content_type_and_encoding_are_415(service: Service) -> None:
    r = post(service, b"hello", content_type="text/plain")
    assert r.status_code == 415 and "Content-Type" in r.json()["message"]
    r = post(service, b"{}", **{"content-encoding": "br"})
    assert r.status_code == 415 and "br" in r.json()["message"]


def test_malformed_payloads_are_400_with_a_reason(service: Service) -> None:
    r = post(service, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "x"}]}]}]}')
    assert r.status_code == 400
    assert "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano" in r.json()["message"]
    r = post(service, b"\x0a\xff\xff\xff", content_type="application/x-protobuf")
    assert r.status_code == 400
    assert "invalid protobuf" in status_pb2.Status.FromString(r.content).message
    r = post(service, b"not gzip", **{"content-encoding": "gzip"})
    assert r.status_code == 400


def test_grpc_malformed_payload_is_invalid_argument(service: Service) -> None:
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(service, b"\x0a\xff\xff\xff", auth(service))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed OTLP payload" in e.value.details()


def test_body_over_the_limit_is_413_and_resource_exhausted(service: Service) -> None:
    too_big = b"x" * (16 * 1024 * 1024 + 1)
    r = post(service, too_big)
    assert r.status_code == 413
    # A small compressed body that inflates past the limit is refused without inflating it all.
    bomb = gzip.compress(b"\0" * (17 * 1024 * 1024))
    assert len(bomb) < 100_000
    r = post(service, bomb, **{"content-encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json()["message"]
    with pytest.raises(grpc.RpcError) as e:
        grpc_export(service, too_big, auth(service))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_partial_success_counts_rejected_spans_and_keeps_the_rest(service: Service) -> None:
    good = json_span(GENAI_ATTRIBUTES, name="good")
    bad = json_span(GENAI_ATTRIBUTES, name="bad")
    bad["spanId"] = "nothex!!"
    r = post(service, traces_json([good, bad]))
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "span_id" in r.json()["partialSuccess"]["errorMessage"]
    assert service.sql(f"SELECT count() FROM otel_traces WHERE TraceId = '{good['traceId']}'") == "1\n"

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(16), b"\x01" * 8, "zero trace id"
    response = ExportTraceServiceResponse.FromString(
        grpc_export(service, request.SerializeToString(), auth(service))
    )
    assert response.partial_success.rejected_spans == 1


def test_empty_requests_succeed(service: Service) -> None:
    assert post(service, b"", content_type="application/x-protobuf").status_code == 200
    r = post(service, b"{}")
    assert r.status_code == 200 and r.json() == {}
    assert ExportTraceServiceResponse.FromString(grpc_export(service, b"", auth(service))).ByteSize() == 0


def test_zstd_and_chunked_bodies_are_accepted(service: Service) -> None:
    span = json_span(GENAI_ATTRIBUTES, name="zstd")
    r = post(
        service, zstandard.ZstdCompressor().compress(traces_json([span])), **{"content-encoding": "zstd"}
    )
    assert r.status_code == 200, r.text

    chunked = json_span(GENAI_ATTRIBUTES, name="chunked")
    payload = traces_json([chunked])

    def chunks():  # no Content-Length: httpx sends Transfer-Encoding: chunked
        for i in range(0, len(payload), 100):
            yield payload[i : i + 100]

    r = httpx.post(
        f"{service.http_url}/v1/traces",
        content=chunks(),
        headers={"authorization": f"Bearer {service.key}", "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    counts = service.sql(
        f"SELECT count() FROM llm_inferences WHERE trace_id IN ('{span['traceId']}', '{chunked['traceId']}')"
    )
    assert counts == "2\n"


def test_every_member_of_a_compressed_body_is_read_and_a_cut_one_is_refused(service: Service) -> None:
    """gzip and zstd allow members (frames) back to back, and protobuf messages back to back are
    one message: such a body was answered 200 with only its first member stored. A body cut
    inside its compressed data was stored as far as it went, also answered 200."""

    def request(name: str) -> tuple[dict[str, object], bytes]:
        span = json_span(GENAI_ATTRIBUTES, name=name)
        return span, decode_json(traces_json([span]), ExportTraceServiceRequest).SerializeToString()

    protobuf = "application/x-protobuf"
    first, first_body = request("member one")
    second, second_body = request("member two")
    gzipped = gzip.compress(first_body) + gzip.compress(second_body)
    r = post(service, gzipped, content_type=protobuf, **{"content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    third, third_body = request("frame one")
    fourth, fourth_body = request("frame two")
    zstd = zstandard.ZstdCompressor()
    framed = zstd.compress(third_body) + zstd.compress(fourth_body)
    r = post(service, framed, content_type=protobuf, **{"content-encoding": "zstd"})
    assert r.status_code == 200, r.text
    ids = ", ".join(f"'{s['traceId']}'" for s in (first, second, third, fourth))
    assert service.sql(f"SELECT count() FROM llm_inferences WHERE trace_id IN ({ids})") == "4\n"

    for encoding, cut in (("gzip", gzipped[:-10]), ("zstd", framed[:-5])):
        r = post(service, cut, content_type=protobuf, **{"content-encoding": encoding})
        assert r.status_code == 400 and "truncated" in r.text, (encoding, r.status_code, r.text)


def test_metrics_are_declined_clearly(service: Service) -> None:
    r = httpx.post(
        f"{service.http_url}/v1/metrics",
        content=b"{}",
        headers={"authorization": f"Bearer {service.key}", "content-type": "application/json"},
    )
    assert r.status_code == 501
    assert "metrics are not stored" in orjson.loads(r.content)["message"]
    with grpc.insecure_channel(service.grpc_target) as channel:
        call = channel.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        with pytest.raises(grpc.RpcError) as e:
            call(b"", metadata=auth(service), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_an_idle_keep_alive_connection_outlives_the_clients_pool_expiry(service: Service) -> None:
    """A connection left idle for longer than httpx's pool keeps it (5 s) is still open: a server
    that closed it first would race a client's next request on it (a reset, not a retryable status)."""
    host, port = service.http_url.removeprefix("http://").rsplit(":", 1)
    headers = {"x-api-key": service.key, "content-type": "application/json"}
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for idle in (0, 6):
            time.sleep(idle)
            conn.request("POST", "/v1/traces", body=traces_json([json_span({})]), headers=headers)
            r = conn.getresponse()  # RemoteDisconnected if the server had closed it
            assert (r.status, r.read()) == (200, b"{}")
    finally:
        conn.close()
