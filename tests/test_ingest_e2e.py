"""A running service, real OTel SDK exporters (gRPC and HTTP/protobuf) and hand-built OTLP/JSON:
what a sender sends becomes rows in otel_traces, otel_logs and llm_inferences."""

from __future__ import annotations

from decimal import Decimal

import clickhouse_connect
import httpx
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.conftest import Service
from tests.otlp_helpers import (
    GENAI_ATTRIBUTES,
    GENAI_COST,
    json_span,
    logs_json,
    new_span_id,
    new_trace_id,
    sdk_spans,
    traces_json,
)

pytestmark = pytest.mark.e2e


def sql_client(service: Service, key: str | None = None) -> Client:
    service.settle()
    return clickhouse_connect.get_client(host="127.0.0.1", port=service.api_port, password=key or service.key)


def inference_for(service: Service, trace_id: str) -> dict:
    client = sql_client(service)
    result = client.query(
        "SELECT * FROM llm_inferences FINAL WHERE trace_id = {t:String}", parameters={"t": trace_id}
    )
    rows = [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]
    assert len(rows) == 1, rows
    return rows[0]


def test_http_protobuf_from_the_sdk_becomes_a_priced_inference(service: Service) -> None:
    [span] = sdk_spans()
    exporter = HttpSpanExporter(
        endpoint=f"{service.http_url}/v1/traces", headers={"authorization": f"Bearer {service.key}"}
    )
    assert exporter.export([span]) == SpanExportResult.SUCCESS
    trace_id = f"{span.context.trace_id:032x}"

    row = inference_for(service, trace_id)
    assert row["project_id"] == "default"
    assert row["span_id"] == f"{span.context.span_id:016x}"
    assert row["model"] == "gpt-4o-mini-2024-07-18" and row["request_model"] == "gpt-4o-mini"
    assert row["provider"] == "openai" and row["operation"] == "chat"
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["total_tokens"]) == (
        1200,
        1024,
        85,
        1285,
    )
    assert row["total_cost_usd"] == Decimal(GENAI_COST)
    assert row["price_status"] == "priced"
    assert row["latency_ms"] == 1900.0 and row["ttft_ms"] == 412.0
    assert row["streaming"] is True and row["success"] is True
    assert row["session_id"] == "conv_7f3a" and row["user_id"] == "u_123"
    assert row["tenant_id"] == "acme" and row["service_name"] == "checkout-bot"
    assert orjson.loads(row["response_messages"])[0]["content"] == "Paris."

    traces = (
        sql_client(service)
        .query(
            "SELECT SpanKind, ServiceName, ProjectId, SpanAttributes['gen_ai.usage.input_tokens'], Duration "
            "FROM otel_traces WHERE TraceId = {t:String}",
            parameters={"t": trace_id},
        )
        .result_rows
    )
    assert traces == [("Client", "checkout-bot", "default", "1200", 1_900_000_000)]


def test_grpc_from_the_sdk_with_gzip(service: Service) -> None:
    spans = sdk_spans(count=3, service_name="grpc-bot")
    exporter = GrpcSpanExporter(
        endpoint=service.grpc_target,
        insecure=True,
        headers={"authorization": f"Bearer {service.key}"},
        compression=__import__("grpc").Compression.Gzip,
    )
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    trace_ids = [f"{s.context.trace_id:032x}" for s in spans]
    rows = (
        sql_client(service)
        .query(
            "SELECT count(), sum(total_cost_usd) FROM llm_inferences WHERE trace_id IN {t:Array(String)}",
            parameters={"t": trace_ids},
        )
        .result_rows
    )
    assert rows == [(3, Decimal(GENAI_COST) * 3)]


def test_http_gzip_compression_and_error_spans(service: Service) -> None:
    [span] = sdk_spans(error=True, service_name="gzip-bot")
    exporter = HttpSpanExporter(
        endpoint=f"{service.http_url}/v1/traces",
        headers={"x-api-key": service.key},
        compression=Compression.Gzip,
    )
    assert exporter.export([span]) == SpanExportResult.SUCCESS
    row = inference_for(service, f"{span.context.trace_id:032x}")
    assert row["success"] is False
    assert row["error_type"] == "RateLimitError"
    assert row["status_message"] == "429 from provider"


def test_hand_built_json_with_log_events_joins_content(service: Service) -> None:
    """OTel GenAI <= 1.36: usage on the span, content in separate log records."""
    trace_id, span_id = new_trace_id(), new_span_id()
    span = json_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet-20241022",
            "gen_ai.response.model": "claude-3-5-sonnet-20241022",
            "gen_ai.response.finish_reasons": ["end_turn"],
            "gen_ai.usage.input_tokens": 52,
            "gen_ai.usage.output_tokens": 47,
        },
        trace_id=trace_id,
        span_id=span_id,
        name="chat claude-3-5-sonnet-20241022",
    )
    logs = logs_json(
        [
            {
                "traceId": trace_id,
                "spanId": span_id,
                "eventName": "gen_ai.system.message",
                "body": {"content": "You are a helpful bot"},
            },
            {
                "traceId": trace_id,
                "spanId": span_id,
                "attributes": {"event.name": "gen_ai.user.message"},
                "body": {"content": "Tell me a joke about OpenTelemetry"},
            },
            {
                "traceId": trace_id,
                "spanId": span_id,
                "eventName": "gen_ai.choice",
                "body": {
                    "index": 0,
                    "finish_reason": "end_turn",
                    "message": {"content": "Why did the span cross the road?"},
                },
            },
        ]
    )
    headers = {"authorization": f"Bearer {service.key}", "content-type": "application/json"}
    r = httpx.post(f"{service.http_url}/v1/logs", content=logs, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = httpx.post(f"{service.http_url}/v1/traces", content=traces_json([span]), headers=headers)
    assert r.status_code == 200, r.text

    row = inference_for(service, trace_id)
    assert row["provider"] == "anthropic" and (row["input_tokens"], row["output_tokens"]) == (52, 47)
    # 52 × $3/M + 47 × $15/M
    assert row["total_cost_usd"] == Decimal("0.000861")
    assert row["finish_reasons"] == ["stop"]
    prompt = orjson.loads(row["prompt_messages"])
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert prompt[1]["content"] == "Tell me a joke about OpenTelemetry"
    assert orjson.loads(row["response_messages"])[0]["content"] == "Why did the span cross the road?"

    logs_rows = (
        sql_client(service)
        .query(
            "SELECT EventName, Body FROM otel_logs WHERE TraceId = {t:String} ORDER BY Timestamp, EventName",
            parameters={"t": trace_id},
        )
        .result_rows
    )
    assert sorted(e for e, _ in logs_rows) == [
        "gen_ai.choice",
        "gen_ai.system.message",
        "gen_ai.user.message",
    ]
    assert any("Tell me a joke" in body for _, body in logs_rows)


def test_p95_latency_by_model_in_sql(service: Service) -> None:
    spans = sdk_spans(count=20, duration_ns=100_000_000, service_name="p95-bot")
    spans += sdk_spans(count=1, duration_ns=5_000_000_000, service_name="p95-bot")
    exporter = HttpSpanExporter(
        endpoint=f"{service.http_url}/v1/traces", headers={"authorization": f"Bearer {service.key}"}
    )
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    rows = (
        sql_client(service)
        .query(
            "SELECT model, count(), quantileExact(0.95)(latency_ms), max(latency_ms) FROM llm_inferences "
            "WHERE service_name = 'p95-bot' GROUP BY model"
        )
        .result_rows
    )
    assert rows == [("gpt-4o-mini-2024-07-18", 21, 100.0, 5000.0)]


def test_a_usage_count_past_uint64_neither_stalls_storage_nor_loses_the_call(service: Service) -> None:
    """`gen_ai.usage.audio.input_tokens` = 1e30 once made every batch holding it fail to encode,
    replayed forever: that span and everything after it in its partition was acknowledged and
    never stored. Now the count is left out of `usage_details`, and a span sent after it lands."""
    exporter = HttpSpanExporter(
        endpoint=f"{service.http_url}/v1/traces", headers={"authorization": f"Bearer {service.key}"}
    )
    [odd] = sdk_spans({**GENAI_ATTRIBUTES, "gen_ai.usage.audio.input_tokens": 1e30})
    [after] = sdk_spans()
    assert exporter.export([odd]) == SpanExportResult.SUCCESS
    assert exporter.export([after]) == SpanExportResult.SUCCESS
    for span in (odd, after):
        row = inference_for(service, f"{span.context.trace_id:032x}")
        assert row["input_tokens"] == GENAI_ATTRIBUTES["gen_ai.usage.input_tokens"]
        assert "input.audio" not in row["usage_details"]
