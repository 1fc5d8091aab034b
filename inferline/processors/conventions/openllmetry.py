"""OpenLLMetry / Traceloop: indexed `gen_ai.prompt.<i>.*` content (<=0.54), association properties.

The >=0.55 generation writes OTel `gen_ai.input.messages` / `gen_ai.output.messages` and is read by
the OTel code; this module only adds what is OpenLLMetry's own.
"""

from __future__ import annotations

from typing import Any, Final

from inferline.processors.conventions.messages import (
    Message,
    flatten_content,
    norm_finish_reason,
    norm_role,
    tool_call,
)
from inferline.processors.conventions.values import as_json, as_str, key_index

PROMPT_PREFIX: Final = "gen_ai.prompt."
COMPLETION_PREFIX: Final = "gen_ai.completion."
ASSOCIATION_PREFIX: Final = "traceloop.association.properties."
CHUNK_EVENTS: Final = frozenset(("gen_ai.content.completion.chunk", "llm.content.completion.chunk"))
SPAN_KIND: Final = "traceloop.span.kind"

_REQUEST_TYPE_OPERATION: Final = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}
_MARKERS: Final = frozenset(
    (
        "llm.request.type",
        "traceloop.span.kind",
        "traceloop.workflow.name",
        "traceloop.entity.name",
        "llm.is_streaming",
        "gen_ai.is_streaming",
        "llm.usage.total_tokens",
    )
)

Indexed = dict[int, dict[str, Any]]


def operation(request_type: Any) -> str | None:
    s = as_str(request_type)
    return _REQUEST_TYPE_OPERATION.get(s.lower()) if s else None


def is_openllmetry(a: dict[str, Any], has_indexed: bool, has_association: bool) -> bool:
    # one C-level pass over the keys, not a generator over the markers
    return has_indexed or has_association or not _MARKERS.isdisjoint(a)


def _content(v: Any) -> str | None:
    """Content is a string; multimodal lists were JSON-dumped into it."""
    if type(v) is str:
        if v[:2] == "[{":
            parsed = as_json(v)
            if type(parsed) is list:
                return flatten_content(parsed)[0]
        return v
    if v is None:
        return None
    return flatten_content(v)[0]


def _message(sub: dict[str, Any], default_role: str) -> Message:
    msg: Message = {"role": norm_role(sub.get("role"), default_role), "content": _content(sub.get("content"))}
    calls: dict[int, dict[str, Any]] = {}
    for k, v in sub.items():
        if k.startswith("tool_calls."):
            idx, _, rest = k[11:].partition(".")
            index = key_index(idx)
            if index is not None:
                calls.setdefault(index, {})[rest] = v
    if calls:
        msg["tool_calls"] = [
            tool_call(c.get("id"), c.get("name"), c.get("arguments")) for _, c in sorted(calls.items())
        ]
    tcid = as_str(sub.get("tool_call_id"))
    if tcid:
        msg["tool_call_id"] = tcid
    return msg


def prompt_messages(indexed: Indexed) -> list[Message]:
    return [_message(indexed[i], "user") for i in sorted(indexed)]


def completion_messages(indexed: Indexed) -> tuple[list[Message], list[str]]:
    msgs: list[Message] = []
    frs: list[str] = []
    for i in sorted(indexed):
        sub = indexed[i]
        msgs.append(_message(sub, "assistant"))
        fr = as_str(sub.get("finish_reason"))
        if fr:
            frs.append(norm_finish_reason(fr))
    return msgs, frs
