"""Building OTLP payloads the way senders do: real OTel SDK spans, or hand-built OTLP/JSON."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from typing import Any

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

GENAI_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.request.max_tokens": 256,
    "gen_ai.request.stream": True,
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.response.time_to_first_chunk": 0.412,
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "gen_ai.usage.output_tokens": 85,
    "gen_ai.conversation.id": "conv_7f3a",
    "user.id": "u_123",
    "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text",'
    '"content":"What is the capital of France?"}]}]',
    "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"Paris."}],'
    '"finish_reason":"stop"}]',
}
# What GENAI_ATTRIBUTES cost: 176 × $0.15/M + 1024 × $0.075/M + 85 × $0.60/M
GENAI_COST = "0.0001542"


def sdk_spans(
    attributes: Mapping[str, Any] = GENAI_ATTRIBUTES,
    name: str = "chat gpt-4o-mini",
    service_name: str = "checkout-bot",
    duration_ns: int = 1_900_000_000,
    count: int = 1,
    error: bool = False,
) -> list[ReadableSpan]:
    """Spans made by the real SDK (ids, timestamps, resource), for handing to a real exporter."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name, "tenant.id": "acme"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for _ in range(count):
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes))
        start = span.start_time  # type: ignore[attr-defined]
        if error:
            span.set_attribute("error.type", "RateLimitError")
            span.set_status(Status(StatusCode.ERROR, "429 from provider"))
        span.end(end_time=start + duration_ns)
    provider.shutdown()
    return list(memory.get_finished_spans())


def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # OTLP/JSON writes int64 as a string
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": key_values(value)}}
    return {"stringValue": str(value)}


def key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": any_value(v)} for k, v in attributes.items()]


def new_trace_id() -> str:
    return f"{random.getrandbits(128):032x}"


def new_span_id() -> str:
    return f"{random.getrandbits(64):016x}"


def json_span(
    attributes: Mapping[str, Any],
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
    parent_span_id: str = "",
    name: str = "span",
    kind: int = 3,
    start_ns: int | None = None,
    end_ns: int | None = None,
    events: list[dict[str, Any]] | None = None,
    status_code: int = 0,
) -> dict[str, Any]:
    # Recent by default: rows older than the retention TTL are dropped by ClickHouse.
    start_ns = start_ns or time.time_ns() - 5_000_000_000
    end_ns = end_ns or start_ns + 1_900_000_000
    span: dict[str, Any] = {
        "traceId": trace_id or new_trace_id(),
        "spanId": span_id or new_span_id(),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": key_values(attributes),
        "status": {"code": status_code},
    }
    if parent_span_id:
        span["parentSpanId"] = parent_span_id
    if events:
        span["events"] = [
            {
                "name": e["name"],
                "timeUnixNano": str(e.get("timeUnixNano", start_ns)),
                "attributes": key_values(e.get("attributes", {})),
            }
            for e in events
        ]
    return span


def traces_json(
    spans: list[dict[str, Any]], resource: Mapping[str, Any] | None = None, scope: str = "test"
) -> bytes:
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": key_values(resource or {"service.name": "json-sender"})},
                    "scopeSpans": [{"scope": {"name": scope}, "spans": spans}],
                }
            ]
        }
    )


def logs_json(records: list[dict[str, Any]], resource: Mapping[str, Any] | None = None) -> bytes:
    out = []
    for r in records:
        record: dict[str, Any] = {
            "timeUnixNano": str(r.get("timeUnixNano", time.time_ns())),
            "traceId": r["traceId"],
            "spanId": r["spanId"],
            "attributes": key_values(r.get("attributes", {})),
            "body": any_value(r["body"]),
        }
        if "eventName" in r:
            record["eventName"] = r["eventName"]
        out.append(record)
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": key_values(resource or {"service.name": "json-sender"})},
                    "scopeLogs": [{"scope": {"name": "test"}, "logRecords": out}],
                }
            ]
        }
    )


def span_row(name: str, project_id: str = "p") -> dict[str, Any]:
    """An `otel_traces` row of a plain span named `name`, as the processors produce it."""
    from inferline.core.records import Span
    from inferline.processors.otel_rows import trace_rows

    now = time.time_ns()
    span = Span(
        project_id=project_id,
        trace_id=f"{random.getrandbits(128):032x}",
        span_id=f"{random.getrandbits(64):016x}",
        parent_span_id="",
        trace_state="",
        name=name,
        kind=3,
        start_ns=now,
        end_ns=now + 1000,
        status_code=0,
        status_message="",
        attributes={},
    )
    return trace_rows([span])[0]


def _nested_value(depth: int, kind: str) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(depth):
        if kind == "kvlist":
            value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
        else:
            value = {"arrayValue": {"values": [value]}}
    return value


def nested_span(depth: int, kind: str, span_id: str) -> dict[str, Any]:
    """An OTLP/JSON span whose attribute `deep` nests `depth` levels of `kind` (kvlist or array)
    around the string "leaf"."""
    now = time.time_ns()
    return {
        "traceId": new_trace_id(),
        "spanId": span_id,
        "name": f"nested {kind} {depth}",
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 1000),
        "attributes": [{"key": "deep", "value": _nested_value(depth, kind)}],
    }


def nested_request(*spans: dict[str, Any]) -> bytes:
    # The standard library: orjson refuses to write nesting this deep.
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}).encode()
