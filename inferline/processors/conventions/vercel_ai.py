"""Vercel AI SDK: legacy `ai.*` spans (v3-v7) and the new `@ai-sdk/otel` integration.

Legacy root spans (`ai.generateText`, `ai.streamText`, ...) carry the totals of their
`*.doGenerate` / `*.doStream` children, so only the children are model calls.
"""

from __future__ import annotations

from typing import Any, Final

from inferline.processors.conventions.messages import Message, to_messages, tool_call
from inferline.processors.conventions.values import as_count, as_json, as_json_dict, as_str, loads, stringify

OPERATION_ID: Final = "ai.operationId"
EMBED_VALUES: Final = "ai.values"
METADATA_PREFIX: Final = "ai.telemetry.metadata."
FIRST_CHUNK_EVENT: Final = "ai.stream.firstChunk"

_CALL_OPERATIONS: Final = {
    "ai.generateText.doGenerate": "chat",
    "ai.streamText.doStream": "chat",
    "ai.generateObject.doGenerate": "chat",
    "ai.streamObject.doStream": "chat",
    "ai.embed.doEmbed": "embeddings",
    "ai.embedMany.doEmbed": "embeddings",
}


def operation(operation_id: str) -> str | None:
    """The model-call operation of a legacy span, None for roots, tool calls and anything else."""
    return _CALL_OPERATIONS.get(operation_id)


def is_vercel(a: dict[str, Any], scope_name: str) -> bool:
    return (
        scope_name == "ai"
        or scope_name.startswith("@ai-sdk")
        or OPERATION_ID in a
        or "ai.model.provider" in a
    )


def prompt_messages(a: dict[str, Any]) -> list[Message]:
    v = a.get("ai.prompt.messages")
    if v is not None:
        return to_messages(v)
    v = a.get(EMBED_VALUES)
    if v is not None:
        return embedded_values(v)
    return []


def embedded_values(v: Any) -> list[Message]:
    """`ai.values` of `ai.embed.doEmbed` / `ai.embedMany.doEmbed` spans: a string array, each item
    the JSON of one value embedded (`JSON.stringify(value)`). One user message per value."""
    items = v if type(v) is list else as_json(v)
    if type(items) is not list:
        return []
    out: list[Message] = []
    for item in items:
        value = loads(item) if type(item) is str else item  # `"\"text\""` -> `text`
        if value is None:
            value = item  # not JSON: the value as it is
        text = value if type(value) is str else stringify(value)
        if text:
            out.append({"role": "user", "content": text})
    return out


def root_prompt_messages(a: dict[str, Any]) -> list[Message]:
    """`ai.prompt` (`{system, prompt, messages}`), normally only on root spans; a fallback."""
    p = as_json_dict(a.get("ai.prompt"))
    if p is None:
        return []
    out: list[Message] = []
    system = as_str(p.get("system"))
    if system:
        out.append({"role": "system", "content": system})
    if p.get("messages") is not None:
        out.extend(to_messages(p["messages"]))
    prompt = p.get("prompt")
    if type(prompt) is str and prompt:
        out.append({"role": "user", "content": prompt})
    elif prompt is not None:
        out.extend(to_messages(prompt))
    return out


def response_messages(a: dict[str, Any]) -> list[Message]:
    text = a.get("ai.response.text")
    if type(text) is not str:
        obj = a.get("ai.response.object")
        text = obj if type(obj) is str else None
    calls_raw = a.get("ai.response.toolCalls")
    calls = []
    if calls_raw is not None:
        parsed = as_json(calls_raw)
        if type(parsed) is list:
            for c in parsed:
                if type(c) is dict:
                    args = c.get("input") if "input" in c else c.get("args")
                    calls.append(tool_call(c.get("toolCallId"), c.get("toolName"), args))
    if text is None and not calls:
        return []
    msg: Message = {"role": "assistant", "content": text}
    if calls:
        msg["tool_calls"] = calls
    reasoning = a.get("ai.response.reasoning")
    if type(reasoning) is str and reasoning:
        msg["reasoning"] = reasoning
    return [msg]


def provider_metadata(a: dict[str, Any]) -> dict[str, Any] | None:
    v = a.get("ai.response.providerMetadata")
    return as_json_dict(v) if v is not None else None


def _dig(d: dict[str, Any], *path: str) -> Any:
    v: Any = d
    for p in path:
        if type(v) is not dict:
            return None
        v = v.get(p)
    return v


def metadata_cache_read(pm: dict[str, Any]) -> int | None:
    for path in (
        ("openai", "cachedPromptTokens"),
        ("anthropic", "usage", "cache_read_input_tokens"),
        ("anthropic", "cacheReadInputTokens"),
        ("bedrock", "usage", "cacheReadInputTokens"),
    ):
        n = as_count(_dig(pm, *path))
        if n is not None:
            return n
    return None


def metadata_cache_write(pm: dict[str, Any]) -> int | None:
    for path in (
        ("anthropic", "cacheCreationInputTokens"),
        ("anthropic", "usage", "cache_creation_input_tokens"),
        ("bedrock", "usage", "cacheWriteInputTokens"),
    ):
        n = as_count(_dig(pm, *path))
        if n is not None:
            return n
    return None


def metadata_reasoning(pm: dict[str, Any]) -> int | None:
    return as_count(_dig(pm, "openai", "reasoningTokens"))
