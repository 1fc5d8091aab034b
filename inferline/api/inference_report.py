"""One inference's detail view, assembled from its row, its span and the averages around it."""

from __future__ import annotations

from typing import Any

import orjson

from inferline.api.inference_models import InferenceDetail

_MESSAGE_EXTRAS = ("tool_calls", "tool_call_id", "name", "reasoning")


def detail_from_rows(
    row: dict[str, Any],
    span: dict[str, Any] | None,
    averages: dict[str, Any],
    window_from: str,
    window_to: str,
    scores: list[dict[str, Any]] | None = None,
) -> InferenceDetail:
    span = span or {}
    latency = float(row["latency_ms"])
    ttft = row["ttft_ms"]
    total_cost = row["total_cost_usd"]
    tokens_per_second = row["output_tokens"] / (latency / 1000) if latency > 0 else None
    cost_per_token = (
        total_cost / row["total_tokens"] if total_cost is not None and row["total_tokens"] else None
    )
    timeline = [{"event": "request", "at_ms": 0.0}]
    if ttft is not None:
        timeline.append({"event": "first_token", "at_ms": ttft})
    timeline.append({"event": "response_complete", "at_ms": latency})
    return InferenceDetail.model_validate(
        {
            "overview": {
                "inference_id": row["inference_id_text"],
                "project_id": row["project_id"],
                "trace_id": row["trace_id"],
                "span_id": row["span_id"],
                "parent_span_id": row["parent_span_id"],
                "response_id": row["response_id"],
                "span_name": span.get("SpanName", ""),
                "start_time": row["start_time_iso"],
                "end_time": row["end_time_iso"],
                "model": row["model"],
                "request_model": row["request_model"],
                "provider": row["provider"],
                "operation": row["operation"],
                "endpoint": row["server_address"],
                "source": {
                    "service_name": row["service_name"],
                    "convention": row["convention"],
                    "instrumentation": span.get("ScopeName", ""),
                    "instrumentation_version": span.get("ScopeVersion", ""),
                    "environment": row["environment"],
                    "agent_name": row["agent_name"],
                    "agent_id": row["agent_id"],
                },
                "is_success": row["success"],
                "error_type": row["error_type"],
                "status_message": row["status_message"],
                "streaming": row["streaming"],
                "finish_reasons": row["finish_reasons"],
                "temperature": row["temperature"],
                "top_p": row["top_p"],
                "max_tokens": row["max_tokens"],
                "request_parameters": row["request_parameters"],
                "user_id": row["user_id"],
                "session_id": row["session_id"],
                "tenant_id": row["tenant_id"],
                "price_status": row["price_status"],
            },
            "messages": [
                *_messages(row["prompt_messages"], "prompt", row["input_tokens"]),
                *_messages(row["response_messages"], "response", row["output_tokens"]),
            ],
            "performance": {
                "latency_ms": latency,
                "ttft_ms": ttft,
                "tokens_per_second": tokens_per_second,
                "cost_per_token": cost_per_token,
                "tokens": {
                    "input": row["input_tokens"],
                    "output": row["output_tokens"],
                    "total": row["total_tokens"],
                    "cache_read": row["cache_read_tokens"],
                    "cache_write": row["cache_write_tokens"],
                    "reasoning": row["reasoning_tokens"],
                    "details": row["usage_details"],
                },
                "cost": {
                    "input": row["input_cost_usd"],
                    "output": row["output_cost_usd"],
                    "total": total_cost,
                    "provided": row["provided_cost_usd"],
                },
                "timeline": timeline,
                "comparison": {
                    "window_from": window_from,
                    "window_to": window_to,
                    "project": _averages(averages, "", latency),
                    "model": _averages(averages, "model_", latency),
                },
            },
            "raw": {
                "span_attributes": span.get("SpanAttributes", {}),
                "resource_attributes": span.get("ResourceAttributes", {}),
                "tags": row["tags"],
                "labels": row["labels"],
                "pii_found": row["pii_found"],
                "sentiment": {
                    "prompt": row["prompt_sentiment"],
                    "prompt_label": row["prompt_sentiment_label"],
                    "response": row["response_sentiment"],
                    "response_label": row["response_sentiment_label"],
                },
            },
            "scores": scores or [],
        }
    )


def _messages(text: str, part: str, side_tokens: int) -> list[dict[str, Any]]:
    """Canonical messages ({role, content, tool_calls?, …}) of one side. Per-message token counts
    are not recorded; a side with a single message has them all."""
    try:
        parsed = orjson.loads(text) if text else []
    except orjson.JSONDecodeError:
        parsed = [{"role": "unknown", "content": text}]
    if not isinstance(parsed, list):
        parsed = [parsed]
    messages = [m for m in parsed if isinstance(m, dict)]
    out = []
    for m in messages:
        content = m.get("content")
        message: dict[str, Any] = {
            "role": str(m.get("role", "unknown")),
            "content": content
            if content is None or isinstance(content, str)
            else orjson.dumps(content).decode(),
            "part": part,
            "tokens": side_tokens if len(messages) == 1 and side_tokens else None,
        }
        message.update({k: m[k] for k in _MESSAGE_EXTRAS if k in m})
        out.append(message)
    return out


def _averages(row: dict[str, Any], prefix: str, latency: float) -> dict[str, Any]:
    avg_latency = row[f"{prefix}avg_latency_ms"]
    return {
        "calls": row[f"{prefix}calls"],
        "avg_latency_ms": avg_latency,
        "avg_ttft_ms": row[f"{prefix}avg_ttft_ms"],
        "avg_tokens_per_second": row[f"{prefix}avg_tokens_per_second"],
        "avg_cost_per_token": row[f"{prefix}avg_cost_per_token"],
        "latency_vs_avg_pct": (latency - avg_latency) / avg_latency * 100 if avg_latency else None,
    }
