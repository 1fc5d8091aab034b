"""Which spans are model calls (doc section 9.1), and which family produced them.

Agent, workflow, chain and SDK root spans repeat the usage of the model-call span beneath them,
so they must not produce an inference row; neither must HTTP, DB or any other non-GenAI span.
"""

from __future__ import annotations

from typing import Any, Final

from inferline.core.records import Span
from inferline.processors.conventions import (
    langfuse,
    langsmith,
    openinference,
    openlit,
    openllmetry,
    vercel_ai,
)
from inferline.processors.conventions.values import as_str

_MODEL_OPERATIONS: Final = {
    "chat": "chat",
    "text_completion": "text_completion",
    "completion": "text_completion",
    "generate_content": "generate_content",
    "generate": "generate",
    "embeddings": "embeddings",
    "embedding": "embeddings",
}


def _gen_ai_operation(a: dict[str, Any]) -> tuple[bool, str | None]:
    """(present, model-call operation): present with None means a non-model operation."""
    v = a.get("gen_ai.operation.name")
    s = as_str(v) if v is not None else None
    if not s:
        return False, None
    return True, _MODEL_OPERATIONS.get(s.strip().lower())


def model_call_operation(span: Span) -> str | None:
    """The canonical operation when `span` is a model call, else None."""
    a = span.attributes
    ls_llm = False
    v = a.get(langsmith.SPAN_KIND)
    if v is not None:
        if not langsmith.is_model_call(v):
            return None
        ls_llm = True
    v = a.get(openinference.SPAN_KIND)
    if v is not None:
        return openinference.operation(v)
    v = a.get(langfuse.OBSERVATION_TYPE)
    if v is not None:
        op = langfuse.operation(v)
        if op is None:
            return None
        return _gen_ai_operation(a)[1] or op
    v = a.get(vercel_ai.OPERATION_ID)
    if type(v) is str:
        return vercel_ai.operation(v)
    if span.scope_name == "ai" and span.name.startswith("ai."):
        return vercel_ai.operation(span.name)
    present, op = _gen_ai_operation(a)
    if present:
        return op
    v = a.get("llm.request.type")
    if v is not None:
        return openllmetry.operation(v)
    if ls_llm:
        return "chat"
    if openllmetry.SPAN_KIND in a:  # workflow / task / agent / tool without LLM markers
        return None
    # Pre-1.27 OTel spans had no operation name: a provider plus a model is a model call. An MCP
    # span (semconv 1.39: `mcp.method.name`) is a tool call or protocol message, never one.
    if "mcp.method.name" in a:
        return None
    if ("gen_ai.system" in a or "gen_ai.provider.name" in a) and (
        "gen_ai.request.model" in a or "gen_ai.response.model" in a
    ):
        return "chat"
    return None


def convention(span: Span, has_indexed_ll: bool, has_association: bool) -> str:
    """The family that produced a model-call span (most specific marker wins)."""
    a = span.attributes
    scope = span.scope_name
    if langfuse.is_langfuse(a, scope):
        return "langfuse"
    if openinference.SPAN_KIND in a:
        return "openinference"
    if vercel_ai.is_vercel(a, scope):
        return "vercel_ai"
    if langsmith.is_langsmith(a):
        return "langsmith"
    if openlit.is_openlit(a, span.resource, scope):
        return "openlit"
    if openllmetry.is_openllmetry(a, has_indexed_ll, has_association):
        return "openllmetry"
    return "otel_genai"
