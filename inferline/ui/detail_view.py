"""What the detail page shows beyond the API's detail as is: chat messages with their tool calls
spelled out, the timing bar's proportions and the comparisons with the averages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferline.api.inference_models import Averages, InferenceDetail, Message

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: Any


@dataclass(frozen=True)
class ChatMessage:
    role: str
    role_class: str  # one of ROLES, or "other" for roles the page has no colour for
    part: str
    content: str | None
    name: str
    tool_call_id: str
    reasoning: Any
    tool_calls: list[ToolCall]
    tokens: int | None


def chat(messages: list[Message]) -> list[ChatMessage]:
    out = []
    for m in messages:
        extra: dict[str, Any] = m.model_extra or {}
        calls = extra.get("tool_calls") or []
        out.append(
            ChatMessage(
                role=m.role,
                role_class=m.role if m.role in ROLES else "other",
                part=m.part,
                content=m.content,
                name=str(extra.get("name") or ""),
                tool_call_id=str(extra.get("tool_call_id") or ""),
                reasoning=extra.get("reasoning"),
                tool_calls=[_tool_call(c) for c in (calls if isinstance(calls, list) else [calls])],
                tokens=m.tokens,
            )
        )
    return out


def _tool_call(call: Any) -> ToolCall:
    if not isinstance(call, dict):
        return ToolCall("", "", call)
    function = call["function"] if isinstance(call.get("function"), dict) else {}
    return ToolCall(
        call_id=str(call.get("id") or ""),
        name=str(call.get("name") or function.get("name") or ""),
        arguments=call.get("arguments", function.get("arguments", "")),
    )


@dataclass(frozen=True)
class Timing:
    """The timing bar: waiting for the first token, then streaming, as fractions of the call."""

    latency_ms: float
    ttft_ms: float | None
    waiting: float
    streaming: float


def timing(detail: InferenceDetail) -> Timing:
    latency = detail.performance.latency_ms
    ttft = detail.performance.ttft_ms
    if ttft is None or latency <= 0:
        return Timing(latency, ttft, 1.0, 0.0)
    waiting = min(1.0, max(0.0, ttft / latency))
    return Timing(latency, ttft, waiting, 1.0 - waiting)


@dataclass(frozen=True)
class Comparison:
    label: str
    value: float | None
    project: float | None
    model: float | None
    unit: str  # "ms", "tok/s" or "usd"
    lower_is_better: bool

    def ratio(self, average: float | None) -> float | None:
        """This call's value over the average, for a <meter> (1 = average)."""
        if self.value is None or not average:
            return None
        return self.value / average


def comparisons(detail: InferenceDetail) -> list[Comparison]:
    perf = detail.performance
    project: Averages = perf.comparison.project
    model: Averages = perf.comparison.model
    return [
        Comparison("Latency", perf.latency_ms, project.avg_latency_ms, model.avg_latency_ms, "ms", True),
        Comparison("Time to first token", perf.ttft_ms, project.avg_ttft_ms, model.avg_ttft_ms, "ms", True),
        Comparison(
            "Tokens per second",
            perf.tokens_per_second,
            project.avg_tokens_per_second,
            model.avg_tokens_per_second,
            "tok/s",
            False,
        ),
        Comparison(
            "Cost per token",
            perf.cost_per_token,
            project.avg_cost_per_token,
            model.avg_cost_per_token,
            "usd",
            True,
        ),
    ]
