# ruff: noqa: E501  (the doc examples below are copied verbatim, long JSON lines included)
"""Test helpers: build `Span` / `LogRecord` objects from the flat JSON examples of
shared/research/genai-conventions.md section 10 (copied verbatim below, so the tests do not depend
on the research note's location).

Example shape: `attributes` is a flat map of decoded values; `events[].timeUnixNano`, `kind` names
(`"CLIENT"`), `status.code` names (`"STATUS_CODE_ERROR"`); 10.2 nests the span under `span` and
adds correlated `logs`. Missing times default to a fixed start and a one-second duration.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from inferline.core.records import Event, LogRecord, Span

PROJECT_ID = "proj-1"
DEFAULT_START_NS = 1755684000000000000
DEFAULT_DURATION_NS = 1_000_000_000
_KINDS = {"UNSPECIFIED": 0, "INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
    "UNSET": 0,
    "OK": 1,
    "ERROR": 2,
}

_DOC_EXAMPLES_JSON: dict[str, str] = {
    "10.1": r"""
{
  "resource": {"service.name": "checkout-bot", "tenant.id": "acme"},
  "scope": {"name": "opentelemetry.instrumentation.openai_v2"},
  "name": "chat gpt-4o-mini", "kind": "CLIENT",
  "startTimeUnixNano": 1755684000000000000, "endTimeUnixNano": 1755684001900000000,
  "status": {"code": "STATUS_CODE_UNSET"},
  "attributes": {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.request.max_tokens": 256,
    "gen_ai.request.top_p": 1.0,
    "gen_ai.request.stream": true,
    "gen_ai.response.id": "chatcmpl-A1b2C3d4",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.response.time_to_first_chunk": 0.412,
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "gen_ai.usage.output_tokens": 85,
    "gen_ai.conversation.id": "conv_7f3a",
    "user.id": "u_123",
    "server.address": "api.openai.com",
    "server.port": 443,
    "gen_ai.system_instructions": "[{\"type\":\"text\",\"content\":\"You are a concise assistant.\"}]",
    "gen_ai.input.messages": "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"What is the capital of France?\"}]}]",
    "gen_ai.output.messages": "[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"Paris.\"}],\"finish_reason\":\"stop\"}]"
  },
  "expected": {"model": "gpt-4o-mini-2024-07-18", "request_model": "gpt-4o-mini", "provider": "openai",
    "operation": "chat", "input_tokens": 1200, "cache_read_tokens": 1024, "output_tokens": 85,
    "total_tokens": 1285, "ttft_ms": 412, "streaming": true, "session_id": "conv_7f3a", "user_id": "u_123",
    "tenant_id": "acme", "finish_reasons": ["stop"], "status": "ok", "temperature": 0.2, "max_tokens": 256}
}
""",
    "10.2": r"""
{
  "span": {
    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
    "name": "chat claude-3-5-sonnet-20241022", "kind": "CLIENT",
    "attributes": {
      "gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
      "gen_ai.request.model": "claude-3-5-sonnet-20241022", "gen_ai.request.max_tokens": 200,
      "gen_ai.response.id": "msg_01XFDUDYJgAACzvnptvVoYEL", "gen_ai.response.model": "claude-3-5-sonnet-20241022",
      "gen_ai.response.finish_reasons": ["end_turn"],
      "gen_ai.usage.input_tokens": 52, "gen_ai.usage.output_tokens": 47
    }
  },
  "logs": [
    {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
     "eventName": "gen_ai.system.message", "attributes": {"gen_ai.system": "anthropic"},
     "body": {"content": "You are a helpful bot"}},
    {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
     "attributes": {"event.name": "gen_ai.user.message", "gen_ai.system": "anthropic"},
     "body": {"content": "Tell me a joke about OpenTelemetry"}},
    {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
     "eventName": "gen_ai.choice", "attributes": {"gen_ai.system": "anthropic"},
     "body": {"index": 0, "finish_reason": "end_turn",
              "message": {"content": "Why did the span cross the road? To get to the other service."}}}
  ],
  "expected": {"provider": "anthropic", "model": "claude-3-5-sonnet-20241022", "input_tokens": 52,
    "output_tokens": 47, "finish_reasons": ["stop"], "streaming": false,
    "prompt_messages": [{"role": "system", "content": "You are a helpful bot"},
                        {"role": "user", "content": "Tell me a joke about OpenTelemetry"}],
    "completion_messages": [{"role": "assistant", "content": "Why did the span cross the road? To get to the other service."}]}
}
""",
    "10.3": r"""
{
  "scope": {"name": "openinference.instrumentation.openai"},
  "name": "ChatCompletion", "kind": "INTERNAL",
  "startTimeUnixNano": 1755684100000000000, "endTimeUnixNano": 1755684101500000000,
  "attributes": {
    "openinference.span.kind": "LLM",
    "llm.system": "openai", "llm.provider": "azure",
    "llm.model_name": "gpt-4o-2024-08-06",
    "llm.invocation_parameters": "{\"temperature\": 0.0, \"max_tokens\": 512, \"stream\": true}",
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "You are a SQL expert.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.content": "Count orders per day.",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "SELECT date(created_at), count(*) FROM orders GROUP BY 1;",
    "llm.token_count.prompt": 320, "llm.token_count.completion": 41, "llm.token_count.total": 361,
    "llm.token_count.prompt_details.cache_read": 256,
    "input.mime_type": "application/json",
    "input.value": "{\"messages\": [{\"role\": \"system\", \"content\": \"You are a SQL expert.\"}, {\"role\": \"user\", \"content\": \"Count orders per day.\"}], \"model\": \"gpt-4o\", \"stream\": true}",
    "output.mime_type": "text/plain",
    "output.value": "SELECT date(created_at), count(*) FROM orders GROUP BY 1;",
    "session.id": "sess-42", "user.id": "u_9",
    "metadata": "{\"tenant_id\": \"acme\", \"env\": \"prod\"}",
    "tag.tags": ["sql", "beta"]
  },
  "events": [{"name": "First Token Stream Event", "timeUnixNano": 1755684100380000000}],
  "expected": {"provider": "azure.ai.openai", "model": "gpt-4o-2024-08-06", "input_tokens": 320,
    "output_tokens": 41, "total_tokens": 361, "cache_read_tokens": 256, "ttft_ms": 380, "streaming": true,
    "session_id": "sess-42", "user_id": "u_9", "tenant_id": "acme", "temperature": 0.0, "max_tokens": 512,
    "tags": ["sql", "beta"]}
}
""",
    "10.4": r"""
{
  "scope": {"name": "opentelemetry.instrumentation.openai.v1"},
  "name": "openai.chat", "kind": "CLIENT",
  "attributes": {
    "llm.request.type": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-9xYz",
    "gen_ai.request.temperature": 0.7,
    "gen_ai.request.max_tokens": 300,
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    "llm.is_streaming": false,
    "llm.user": "u_77",
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "You are a support agent.",
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": "Where is order 1234?",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.finish_reason": "tool_calls",
    "gen_ai.completion.0.tool_calls.0.id": "call_abc123",
    "gen_ai.completion.0.tool_calls.0.name": "lookup_order",
    "gen_ai.completion.0.tool_calls.0.arguments": "{\"order_id\": \"1234\"}",
    "gen_ai.usage.prompt_tokens": 210,
    "gen_ai.usage.completion_tokens": 24,
    "llm.usage.total_tokens": 234,
    "gen_ai.usage.cache_read_input_tokens": 128,
    "traceloop.workflow.name": "support_agent",
    "traceloop.association.properties.user_id": "u_77",
    "traceloop.association.properties.session_id": "s_1001",
    "traceloop.association.properties.tenant_id": "acme"
  },
  "expected": {"provider": "openai", "model": "gpt-4o-2024-08-06", "operation": "chat", "input_tokens": 210,
    "output_tokens": 24, "total_tokens": 234, "cache_read_tokens": 128, "streaming": false,
    "user_id": "u_77", "session_id": "s_1001", "tenant_id": "acme", "finish_reasons": ["tool_call"],
    "completion_messages": [{"role": "assistant", "content": null,
      "tool_calls": [{"id": "call_abc123", "name": "lookup_order", "arguments": "{\"order_id\": \"1234\"}"}]}]}
}
""",
    "10.5": r"""
{
  "scope": {"name": "ai"},
  "name": "ai.streamText.doStream", "kind": "INTERNAL",
  "startTimeUnixNano": 1755684200000000000, "endTimeUnixNano": 1755684202200000000,
  "attributes": {
    "operation.name": "ai.streamText.doStream support-chat",
    "ai.operationId": "ai.streamText.doStream",
    "ai.telemetry.functionId": "support-chat",
    "ai.model.id": "claude-sonnet-4-5",
    "ai.model.provider": "anthropic.messages",
    "ai.settings.maxRetries": 2,
    "ai.telemetry.metadata.userId": "u_5",
    "ai.telemetry.metadata.sessionId": "chat_88",
    "ai.telemetry.metadata.tenantId": "acme",
    "ai.prompt.messages": "[{\"role\":\"system\",\"content\":\"You are helpful.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Summarize my last order.\"}]}]",
    "ai.response.text": "Your last order (#1234) shipped yesterday.",
    "ai.response.finishReason": "stop",
    "ai.response.id": "msg_01AbCd",
    "ai.response.model": "claude-sonnet-4-5-20250929",
    "ai.response.timestamp": "2025-08-20T10:03:20.000Z",
    "ai.response.msToFirstChunk": 642.5,
    "ai.response.msToFinish": 2110.3,
    "ai.usage.inputTokens": 900,
    "ai.usage.outputTokens": 120,
    "ai.usage.totalTokens": 1020,
    "ai.usage.cachedInputTokens": 600,
    "gen_ai.system": "anthropic.messages",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.request.max_tokens": 1024,
    "gen_ai.request.temperature": 0.3,
    "gen_ai.response.model": "claude-sonnet-4-5-20250929",
    "gen_ai.response.id": "msg_01AbCd",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.usage.input_tokens": 900,
    "gen_ai.usage.output_tokens": 120
  },
  "events": [
    {"name": "ai.stream.firstChunk", "timeUnixNano": 1755684200642500000,
     "attributes": {"ai.response.msToFirstChunk": 642.5}},
    {"name": "ai.stream.finish", "timeUnixNano": 1755684202110300000}
  ],
  "expected": {"provider": "anthropic", "model": "claude-sonnet-4-5-20250929",
    "request_model": "claude-sonnet-4-5", "operation": "chat", "input_tokens": 900, "output_tokens": 120,
    "total_tokens": 1020, "cache_read_tokens": 600, "ttft_ms": 642.5, "streaming": true,
    "user_id": "u_5", "session_id": "chat_88", "tenant_id": "acme", "finish_reasons": ["stop"],
    "temperature": 0.3, "max_tokens": 1024}
}
""",
    "10.6": r"""
{
  "scope": {"name": "langfuse-sdk", "version": "3.8.0"},
  "name": "translate", "kind": "INTERNAL",
  "startTimeUnixNano": 1755684300000000000, "endTimeUnixNano": 1755684300900000000,
  "attributes": {
    "langfuse.observation.type": "generation",
    "langfuse.observation.model.name": "gpt-4.1-mini",
    "langfuse.observation.model.parameters": "{\"temperature\": 0.1, \"max_tokens\": 400}",
    "langfuse.observation.input": "[{\"role\": \"user\", \"content\": \"Translate 'hello' to German\"}]",
    "langfuse.observation.output": "{\"role\": \"assistant\", \"content\": \"Hallo\"}",
    "langfuse.observation.usage_details": "{\"input\": 14, \"input_cached_tokens\": 0, \"output\": 3, \"total\": 17}",
    "langfuse.observation.cost_details": "{\"total\": 0.0000104}",
    "langfuse.observation.completion_start_time": "\"2025-08-20T10:05:00.250000Z\"",
    "langfuse.observation.level": "DEFAULT",
    "user.id": "u_1",
    "session.id": "s_1",
    "langfuse.trace.tags": ["translation"],
    "langfuse.trace.metadata.tenant_id": "acme",
    "langfuse.environment": "production"
  },
  "expected": {"model": "gpt-4.1-mini", "operation": "chat", "input_tokens": 14, "output_tokens": 3,
    "total_tokens": 17, "cost_usd": 0.0000104, "ttft_ms": 250, "user_id": "u_1", "session_id": "s_1",
    "tenant_id": "acme", "temperature": 0.1, "max_tokens": 400, "status": "ok", "environment": "production"}
}
""",
    "10.7": r"""
{
  "scope": {"name": "openlit.otel.tracing"},
  "name": "chat gpt-4o-mini", "kind": "CLIENT",
  "attributes": {
    "telemetry.sdk.name": "openlit",
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.id": "chatcmpl-Qq9",
    "gen_ai.response.finish_reasons": ["stop"],
    "server.address": "api.openai.com", "server.port": 443,
    "gen_ai.request.is_stream": true,
    "gen_ai.request.user": "u_3",
    "gen_ai.usage.input_tokens": 45, "gen_ai.usage.output_tokens": 30, "gen_ai.usage.total_tokens": 75,
    "gen_ai.usage.cost": 0.00002475,
    "gen_ai.server.time_to_first_token": 0.318,
    "gen_ai.server.time_per_output_token": 0.021,
    "deployment.environment": "prod", "service.name": "support-api"
  },
  "events": [
    {"name": "gen_ai.content.prompt", "attributes": {"gen_ai.prompt": "user: What's your refund policy?"}},
    {"name": "gen_ai.content.completion", "attributes": {"gen_ai.completion": "You can request a refund within 30 days."}}
  ],
  "expected": {"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "input_tokens": 45,
    "output_tokens": 30, "total_tokens": 75, "cost_usd": 0.00002475, "ttft_ms": 318, "streaming": true,
    "user_id": "u_3", "environment": "prod",
    "prompt_messages": [{"role": "user", "content": "What's your refund policy?"}]}
}
""",
}


def example(key: str) -> dict[str, Any]:
    """A fresh copy of doc example `key` ("10.1" .. "10.7")."""
    return orjson.loads(_DOC_EXAMPLES_JSON[key])


EXAMPLE_KEYS = tuple(_DOC_EXAMPLES_JSON)


def _hex_id(seed: str, n: int) -> str:
    import hashlib

    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def make_span(
    ex: dict[str, Any],
    *,
    project_id: str = PROJECT_ID,
    trace_id: str | None = None,
    span_id: str | None = None,
    parent_span_id: str = "",
    seed: str = "span",
) -> Span:
    """A Span from a flat example (the example's own ids win over generated ones)."""
    if "span" in ex and "attributes" not in ex:
        ex = ex["span"]
    start = int(ex.get("startTimeUnixNano", DEFAULT_START_NS))
    end = int(ex.get("endTimeUnixNano", start + DEFAULT_DURATION_NS))
    status = ex.get("status") or {}
    code = status.get("code", 0)
    events = [
        Event(
            time_ns=int(e.get("timeUnixNano", start)),
            name=e["name"],
            attributes=copy.deepcopy(e.get("attributes", {})),
        )
        for e in ex.get("events", [])
    ]
    scope = ex.get("scope") or {}
    kind = ex.get("kind", "INTERNAL")
    return Span(
        project_id=project_id,
        trace_id=ex.get("traceId") or trace_id or _hex_id(seed + "/trace", 32),
        span_id=ex.get("spanId") or span_id or _hex_id(seed + "/span", 16),
        parent_span_id=ex.get("parentSpanId", parent_span_id),
        trace_state="",
        name=ex.get("name", ""),
        kind=_KINDS.get(kind, 1) if isinstance(kind, str) else int(kind),
        start_ns=start,
        end_ns=end,
        status_code=_STATUS.get(code, 0) if isinstance(code, str) else int(code),
        status_message=status.get("message", ""),
        attributes=copy.deepcopy(ex.get("attributes", {})),
        events=events,
        resource=copy.deepcopy(ex.get("resource", {})),
        scope_name=scope.get("name", ""),
        scope_version=scope.get("version", ""),
    )


def make_log(
    d: dict[str, Any],
    *,
    project_id: str = PROJECT_ID,
    trace_id: str = "",
    span_id: str = "",
    time_ns: int = DEFAULT_START_NS,
) -> LogRecord:
    """A LogRecord from a flat example log (`eventName`, `attributes`, `body`, ids)."""
    return LogRecord(
        project_id=project_id,
        time_ns=int(d.get("timeUnixNano", time_ns)),
        observed_time_ns=int(d.get("timeUnixNano", time_ns)),
        trace_id=d.get("traceId", trace_id),
        span_id=d.get("spanId", span_id),
        flags=1,
        severity_text="INFO",
        severity_number=9,
        body=copy.deepcopy(d.get("body")),
        attributes=copy.deepcopy(d.get("attributes", {})),
        event_name=d.get("eventName", ""),
    )


def make_logs(ex: dict[str, Any], *, project_id: str = PROJECT_ID) -> list[LogRecord]:
    return [make_log(d, project_id=project_id) for d in ex.get("logs", [])]


def flat_span(
    attributes: dict[str, Any],
    *,
    name: str = "span",
    scope: str = "",
    events: list[dict[str, Any]] | None = None,
    resource: dict[str, Any] | None = None,
    status: str = "STATUS_CODE_UNSET",
    status_message: str = "",
    seed: str | None = None,
    **times: int,
) -> Span:
    """A Span from a bare attribute map (for cases beyond the doc's examples)."""
    ex: dict[str, Any] = {
        "name": name,
        "scope": {"name": scope},
        "attributes": attributes,
        "events": events or [],
        "resource": resource or {},
        "status": {"code": status, "message": status_message},
    }
    if "start" in times:
        ex["startTimeUnixNano"] = times["start"]
    if "end" in times:
        ex["endTimeUnixNano"] = times["end"]
    return make_span(ex, seed=seed or name + orjson.dumps(attributes, default=str).decode())


_CHAT_ATTRIBUTES = {
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.operation.name": "chat",
}


def chat_inference_rows(count: int, start_ns: int, seed: str = "") -> list[dict[str, Any]]:
    """`count` llm_inferences rows (version 1) of OpenAI chat calls starting at `start_ns` + i, one
    second long; `seed` makes their ids differ from another call's."""
    from inferline.processors.normalise import GenAINormaliser

    spans = [
        flat_span(_CHAT_ATTRIBUTES, name="chat gpt-4o-mini", seed=f"{seed}{i}", start=start_ns + i,
                  end=start_ns + i + 10**9)
        for i in range(count)
    ]  # fmt: skip
    return [dict(r) for r in GenAINormaliser().normalise(spans, [])]
