"""OpenInference (Arize / Phoenix): flattened `llm.*` attributes with indexed message lists."""

from __future__ import annotations

from typing import Any

from inferline.processors.conventions.messages import (
    Message,
    flatten_content,
    norm_role,
    to_messages,
    tool_call,
)
from inferline.processors.conventions.otel_genai import normalise_provider
from inferline.processors.conventions.values import as_json, as_json_dict, as_str

SPAN_KIND = "openinference.span.kind"
FIRST_TOKEN_EVENT = "First Token Stream Event"

# Indexed prefixes gathered by the normaliser's single pass over the attribute keys.
INPUT_PREFIX = "llm.input_messages."
OUTPUT_PREFIX = "llm.output_messages."
PROMPTS_PREFIX = "llm.prompts."
CHOICES_PREFIX = "llm.choices."

_KIND_OPERATION = {"LLM": "chat", "EMBEDDING": "embeddings"}

Indexed = dict[int, dict[str, Any]]


def operation(kind: Any) -> str | None:
    """Only LLM and EMBEDDING spans are model calls; CHAIN/AGENT/TOOL/... repeat a child's data."""
    s = as_str(kind)
    return _KIND_OPERATION.get(s.upper()) if s else None


def provider(a: dict[str, Any]) -> str | None:
    """`llm.provider` is the host, `llm.system` the model family: azure + openai is Azure OpenAI."""
    host = as_str(a.get("llm.provider"))
    family = as_str(a.get("llm.system"))
    if host:
        h = host.lower()
        if h == "azure":
            return "azure.ai.openai" if (family or "").lower() == "openai" else "azure.ai.inference"
        return normalise_provider(h)
    return normalise_provider(family) if family else None


def _message(sub: dict[str, Any]) -> Message:
    role = norm_role(sub.get("message.role"))
    content = sub.get("message.content")
    if content is None:
        parts: dict[int, dict[str, Any]] = {}
        for k, v in sub.items():
            if k.startswith("message.contents."):
                idx, _, rest = k[17:].partition(".")
                if idx.isdigit():
                    parts.setdefault(int(idx), {})[rest] = v
        texts = []
        for j in sorted(parts):
            p = parts[j]
            if p.get("message_content.type", "text") == "text":
                t = p.get("message_content.text")
                if type(t) is str:
                    texts.append(t)
        content = "\n".join(texts) if texts else None
    elif type(content) is not str:
        content = flatten_content(content)[0]
    msg: Message = {"role": role, "content": content}
    calls: dict[int, dict[str, Any]] = {}
    for k, v in sub.items():
        if k.startswith("message.tool_calls."):
            idx, _, rest = k[19:].partition(".")
            if idx.isdigit():
                calls.setdefault(int(idx), {})[rest] = v
    if calls:
        msg["tool_calls"] = [
            tool_call(
                c.get("tool_call.id"), c.get("tool_call.function.name"), c.get("tool_call.function.arguments")
            )
            for _, c in sorted(calls.items())
        ]
    tcid = as_str(sub.get("message.tool_call_id"))
    if tcid:
        msg["tool_call_id"] = tcid
    name = as_str(sub.get("message.name"))
    if name:
        msg["name"] = name
    return msg


def messages(indexed: Indexed) -> list[Message]:
    return [_message(indexed[i]) for i in sorted(indexed)]


def legacy_texts(indexed: Indexed, key: str, role: str) -> list[Message]:
    """`llm.prompts.<i>.prompt.text` / `llm.choices.<i>.completion.text` (completions API)."""
    out: list[Message] = []
    for i in sorted(indexed):
        t = indexed[i].get(key)
        if type(t) is str:
            out.append({"role": role, "content": t})
    return out


def io_messages(a: dict[str, Any], key: str, role: str) -> list[Message]:
    """`input.value` / `output.value`: the raw request/response; a fallback only."""
    v = a.get(key)
    if v is None:
        return []
    parsed = as_json(v)
    if parsed is None:
        s = as_str(v)
        return [{"role": role, "content": s}] if s else []
    return to_messages(parsed, role)


def invocation_parameters(a: dict[str, Any]) -> dict[str, Any] | None:
    v = a.get("llm.invocation_parameters")
    return as_json_dict(v) if v is not None else None


def metadata(a: dict[str, Any]) -> dict[str, Any] | None:
    v = a.get("metadata")
    return as_json_dict(v) if v is not None else None
