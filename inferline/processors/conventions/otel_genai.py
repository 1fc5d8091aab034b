"""OpenTelemetry GenAI semantic conventions, every generation (v1.26 .. v1.41+).

Attribute names shared by most families live here (OpenLLMetry, OpenLIT, LangSmith and the Vercel
AI SDK all mirror some `gen_ai.*` names), plus the content *events*: the >=1.37
`gen_ai.client.inference.operation.details` event (content in attributes) and the v1.28-v1.36
per-message events (content in the log body), which arrive as log records or as span events.
"""

from __future__ import annotations

from typing import Any, Final

from inferline.processors.conventions import openlit
from inferline.processors.conventions.messages import (
    Message,
    finish_reasons,
    message_from_dict,
    norm_finish_reason,
    output_finish_reasons,
    system_message,
    to_messages,
)
from inferline.processors.conventions.values import as_int, as_json, as_str, host_of

OPERATION_NAME: Final = "gen_ai.operation.name"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"

# Event names carrying content. Old per-message events hold it in the body (or, as span events,
# in attributes); the >=1.37 details event holds it in attributes.
DETAILS_EVENT: Final = "gen_ai.client.inference.operation.details"
MESSAGE_EVENTS: Final = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CHOICE_EVENT: Final = "gen_ai.choice"
CONTENT_EVENTS: Final = frozenset((DETAILS_EVENT, CHOICE_EVENT, *MESSAGE_EVENTS))
PROMPT_EVENT: Final = "gen_ai.content.prompt"  # v1.26 / OpenLIT / Semantic Kernel
COMPLETION_EVENT: Final = "gen_ai.content.completion"

# Provider vocabulary: OTel names map to themselves; deprecated and foreign spellings map to them.
_PROVIDERS: Final = {
    "openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws.bedrock",
    "azure.ai.inference": "azure.ai.inference",
    "azure.ai.openai": "azure.ai.openai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "gcp.gemini": "gcp.gemini",
    "gcp.gen_ai": "gcp.gen_ai",
    "gcp.vertex_ai": "gcp.vertex_ai",
    "groq": "groq",
    "ibm.watsonx.ai": "ibm.watsonx.ai",
    "mistral_ai": "mistral_ai",
    "perplexity": "perplexity",
    "x_ai": "x_ai",
    # deprecated OTel values and other families' spellings
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "azure-openai": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "vertex": "gcp.vertex_ai",
    "google": "gcp.vertex_ai",
    "google.vertex": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "google.generative-ai": "gcp.gemini",
    "google_genai": "gcp.gen_ai",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "aws": "aws.bedrock",
    "amazon": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "amazon-bedrock": "aws.bedrock",
    "ibm.watson.ai": "ibm.watsonx.ai",
    "watsonx": "ibm.watsonx.ai",
    "together": "together_ai",
    "huggingface": "hugging_face",
}


def normalise_provider(v: Any, api_qualified: bool = False) -> str | None:
    """OTel provider name for any family's spelling.

    `api_qualified` marks Vercel AI SDK strings (`anthropic.messages`, `google.vertex.chat`) whose
    suffix after the provider is the API flavour, not part of the provider name.
    """
    s = as_str(v)
    if not s:
        return None
    low = s.strip().lower()
    hit = _PROVIDERS.get(low)
    if hit:
        return hit
    if "." in low:
        # Vercel: `google.vertex.chat`, `google.generative-ai`, `azure-openai.chat`, `openai.responses`
        for prefix in ("google.vertex", "google.generative-ai"):
            if low.startswith(prefix):
                return _PROVIDERS[prefix]
        if api_qualified:
            head = low.split(".", 1)[0]
            return _PROVIDERS.get(head, head)
    return low


def provider_from_host(host: str | None) -> str | None:
    """A provider guessed from the endpoint, for spans that name none."""
    if not host:
        return None
    h = host.lower()
    if h.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    if h.endswith((".services.ai.azure.com", ".inference.ai.azure.com", ".models.ai.azure.com")):
        return "azure.ai.inference"
    if h == "api.openai.com":
        return "openai"
    if h == "api.anthropic.com":
        return "anthropic"
    if h == "generativelanguage.googleapis.com":
        return "gcp.gemini"
    if h.endswith("aiplatform.googleapis.com"):
        return "gcp.vertex_ai"
    if h.startswith("bedrock-runtime.") or h.startswith("bedrock."):
        return "aws.bedrock"
    for needle, prov in (
        ("mistral.ai", "mistral_ai"),
        ("groq.com", "groq"),
        ("cohere", "cohere"),
        ("deepseek.com", "deepseek"),
        ("x.ai", "x_ai"),
        ("perplexity.ai", "perplexity"),
    ):
        if needle in h:
            return prov
    return None


def server_address(a: dict[str, Any]) -> str | None:
    return as_str(a.get("server.address")) or host_of(a.get("gen_ai.openai.api_base"))


def input_messages(src: dict[str, Any]) -> list[Message]:
    """System instructions first, then `gen_ai.input.messages` (span attributes or details event)."""
    msgs = []
    if INPUT_MESSAGES in src:
        parsed = as_json(src[INPUT_MESSAGES])  # must be structured: text that fails to parse is absent
        if parsed is not None:
            msgs = to_messages(parsed)
    if SYSTEM_INSTRUCTIONS in src:
        sysmsg = system_message(src[SYSTEM_INSTRUCTIONS])
        if sysmsg is not None and not (msgs and msgs[0] == sysmsg):
            msgs.insert(0, sysmsg)
    return msgs


def output_messages(src: dict[str, Any]) -> tuple[list[Message], list[str]]:
    raw = src.get(OUTPUT_MESSAGES)
    if raw is None:
        return [], []
    parsed = as_json(raw)  # must be structured: anything else is absent
    if parsed is None:
        return [], []
    return to_messages(parsed, "assistant"), output_finish_reasons(parsed)


def legacy_content_messages(v: Any, default_role: str) -> list[Message]:
    """`gen_ai.prompt` / `gen_ai.completion` as one value (attribute or content event).

    The name collides across families, so dispatch on shape: structured or JSON (OTel v1.26 OpenAI
    messages, LangSmith run inputs/outputs) -> messages; plain text -> OpenLIT's `role: content` text.
    """
    if v is None:
        return []
    parsed = as_json(v)
    if parsed is not None:
        return to_messages(parsed, default_role)
    s = as_str(v)
    if not s:
        return []
    if default_role == "user":
        return openlit.parse_flat_prompt(s)
    return [{"role": default_role, "content": s}]


class EventContent:
    """Content gathered from GenAI events for one span (log records and span events alike)."""

    __slots__ = ("choices", "details_fr", "details_in", "details_out", "prompt", "seq")

    def __init__(self) -> None:
        self.details_in: list[Message] = []
        self.details_out: list[Message] = []
        self.details_fr: list[str] = []
        self.prompt: list[Message] = []
        self.choices: list[tuple[int, int, list[Message], str | None]] = []
        self.seq = 0

    def __bool__(self) -> bool:
        return bool(self.details_in or self.details_out or self.prompt or self.choices)

    def add(self, name: str, body: Any, attrs: dict[str, Any]) -> bool:
        """Add one event; False when the name is not a content event."""
        if name == DETAILS_EVENT:
            ins = input_messages(attrs)
            outs, frs = output_messages(attrs)
            if ins:
                self.details_in = ins
            if outs:
                self.details_out = outs
            if FINISH_REASONS in attrs:
                frs = finish_reasons(attrs[FINISH_REASONS]) or frs
            if frs:
                self.details_fr = frs
            return True
        role = MESSAGE_EVENTS.get(name)
        if role is not None:
            self.prompt.extend(_event_messages(body, attrs, role))
            return True
        if name == CHOICE_EVENT:
            self._add_choice(body if type(body) is dict else _body_from_attrs(attrs))
            return True
        return False

    def _add_choice(self, body: dict[str, Any]) -> None:
        msg = body.get("message")
        msg = dict(msg) if type(msg) is dict else {}
        if "tool_calls" in body and "tool_calls" not in msg:
            msg["tool_calls"] = body["tool_calls"]
        msgs = message_from_dict(msg, "assistant")
        index = as_int(body.get("index"))
        fr = body.get("finish_reason")
        self.seq += 1
        self.choices.append(
            (
                index if index is not None else 0,
                self.seq,
                msgs,
                norm_finish_reason(fr) if type(fr) is str and fr else None,
            )
        )

    def merge(self, other: EventContent) -> None:
        if other.details_in:
            self.details_in = other.details_in
        if other.details_out:
            self.details_out = other.details_out
        if other.details_fr:
            self.details_fr = other.details_fr
        self.prompt.extend(other.prompt)
        for index, _seq, msgs, fr in other.choices:
            self.seq += 1
            self.choices.append((index, self.seq, msgs, fr))

    def prompt_messages(self) -> list[Message]:
        return self.details_in or self.prompt

    def response_messages(self) -> list[Message]:
        if self.details_out:
            return self.details_out
        out: list[Message] = []
        for _index, _seq, msgs, _fr in sorted(self.choices, key=lambda c: (c[0], c[1])):
            out.extend(msgs)
        return out

    def finish_reasons(self) -> list[str]:
        if self.details_fr:
            return self.details_fr
        return [fr for _i, _s, _m, fr in sorted(self.choices, key=lambda c: (c[0], c[1])) if fr]


_EVENT_META_KEYS: Final = frozenset(("gen_ai.system", "gen_ai.provider.name", "event.name"))


def _body_from_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Span-event flavour of the message events: the body fields are attributes."""
    return {k: v for k, v in attrs.items() if k not in _EVENT_META_KEYS}


def _event_messages(body: Any, attrs: dict[str, Any], role: str) -> list[Message]:
    if body is None or body == {}:
        body = _body_from_attrs(attrs)
    if type(body) is str:
        parsed = as_json(body)
        body = parsed if type(parsed) is dict else {"content": body}
    if type(body) is not dict:
        return []
    content = body.get("content")
    if type(content) is str and content[:2] in ("[{", '{"'):
        parsed = as_json(content)  # Strands Agents: content as a JSON list of {"text": ...}
        if parsed is not None:
            body = dict(body)
            body["content"] = parsed
    if role == "assistant" and "tool_calls" in body:
        calls = body["tool_calls"]
        if type(calls) is str:
            calls = as_json(calls)
        if type(calls) is list:
            body = dict(body)
            body["tool_calls"] = [c if type(c) is dict else {} for c in calls]
    return message_from_dict(body, role)


__all__ = [
    "CONTENT_EVENTS",
    "EventContent",
    "input_messages",
    "legacy_content_messages",
    "normalise_provider",
    "output_messages",
    "provider_from_host",
    "server_address",
]
