"""Priority chains: which attributes feed a row field, in the order they are tried (doc section 9).

The first non-empty source wins. A span from one convention family rarely holds another family's keys,
so each convention gets the chains filtered to the keys it can carry (`Chains.for_convention`); spans
whose prefixed metadata shows mixed families use the full chains.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from inferline.processors.conventions.values import as_count, as_str, unquote

DEFAULT_TENANT_KEYS: Final[tuple[str, ...]] = (
    "tenant.id",
    "tenant_id",
    "langfuse.trace.metadata.tenant_id",
    "langfuse.observation.metadata.tenant_id",
    "traceloop.association.properties.tenant_id",
    "traceloop.association.properties.customer_id",
    "ai.telemetry.metadata.tenantId",
    "ai.telemetry.metadata.tenant_id",
    "langsmith.metadata.tenant_id",
)

MODEL: Final = (
    "langfuse.observation.model.name",
    "gen_ai.response.model",
    "llm.response.model_name",
    "ai.response.model",
    "llm.model_name",
    "gen_ai.request.model",
    "ai.model.id",
    "embedding.model_name",
)
REQUEST_MODEL: Final = (
    "gen_ai.request.model",
    "llm.request.model_name",
    "ai.model.id",
    "llm.model_name",
    "langfuse.observation.model.name",
    "embedding.model_name",
)
RESPONSE_ID: Final = ("gen_ai.response.id", "ai.response.id")
INPUT: Final = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "ai.usage.inputTokens",
    "ai.usage.promptTokens",
)
OUTPUT: Final = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
)
TOTAL: Final = (
    "llm.usage.total_tokens",
    "gen_ai.usage.total_tokens",
    "llm.token_count.total",
    "ai.usage.totalTokens",
)
CACHE_READ: Final = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "llm.token_count.prompt_details.cache_input",
    "ai.usage.cachedInputTokens",
    "gen_ai.usage.prompt_tokens_details.cached_tokens",
)
CACHE_WRITE: Final = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.prompt_tokens_details.cache_creation_tokens",
)
REASONING: Final = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "ai.usage.reasoningTokens",
    "gen_ai.usage.completion_tokens_details.reasoning_tokens",
    "gen_ai.usage.completion_tokens_details.reasoning",
)
STREAM: Final = (
    "gen_ai.request.stream",
    "gen_ai.request.is_stream",
    "gen_ai.is_streaming",
    "llm.is_streaming",
    "langsmith.request.streaming",
)
FINISH: Final = (
    "llm.finish_reason",
    "ai.response.finishReason",
    "gen_ai.response.finish_reason",
    "llm.response.finish_reason",
    "llm.response.stop_reason",
)
USER: Final = (
    "langfuse.user.id",
    "user.id",
    "enduser.id",
    "traceloop.association.properties.user_id",
    "ai.telemetry.metadata.userId",
    "langfuse.observation.metadata.langfuse_user_id",
    "langfuse.trace.metadata.langfuse_user_id",
    "gen_ai.user",
    "llm.user",
    "gen_ai.request.user",
    "langsmith.metadata.user_id",
)
SESSION: Final = (
    "langfuse.session.id",
    "session.id",
    "traceloop.association.properties.session_id",
    "ai.telemetry.metadata.sessionId",
    "langfuse.observation.metadata.langfuse_session_id",
    "langfuse.trace.metadata.langfuse_session_id",
    "langsmith.metadata.session_id",
    "langsmith.metadata.thread_id",
    "langsmith.metadata.conversation_id",
)
AGENT: Final = (
    "gen_ai.agent.name",
    "traceloop.workflow.name",
    "gen_ai.workflow.name",
    "ai.telemetry.functionId",
    "agent.name",
)

# Read whatever the convention (never filtered per family), but cut to a layout's keys like the
# chains above: most spans carry none of these, and an empty tuple costs no lookups.
PROVIDER: Final = ("gen_ai.provider.name", "gen_ai.system")
SERVER_ADDRESS: Final = ("server.address",)
ENVIRONMENT: Final = (
    "langfuse.environment",
    "deployment.environment.name",
    "deployment.environment",
    "gen_ai.environment",
)
SERVICE: Final = ("service.name", "gen_ai.application_name")
CONVERSATION: Final = ("gen_ai.conversation.id",)
AGENT_ID: Final = ("gen_ai.agent.id",)
LABELS: Final = ("tag.tags", "ai.telemetry.metadata.tags", "langsmith.span.tags")
# Attributes kept as tags under their own names: content uploaded elsewhere (the contrib upload hook
# leaves a reference), and the agent's description and version (OTel GenAI agent attributes).
KEPT_AS_TAGS: Final = (
    "gen_ai.input.messages.ref",
    "gen_ai.output.messages.ref",
    "gen_ai.agent.description",
    "gen_ai.agent.version",
)
TTFT_S: Final = ("gen_ai.response.time_to_first_chunk", "gen_ai.client.operation.time_to_first_chunk")

# `llm.*` keys that OpenLLMetry writes; the rest of `llm.*` is OpenInference.
_LL_LLM_KEYS: Final = frozenset(
    (
        "llm.usage.total_tokens",
        "llm.usage.reasoning_tokens",
        "llm.is_streaming",
        "llm.user",
        "llm.response.finish_reason",
        "llm.response.stop_reason",
    )
)
# Key families each convention can carry; a convention not listed (Langfuse) uses the full chains.
_ALLOWED_FAMILIES: Final = {
    "otel_genai": ("common", "openllmetry"),
    "openllmetry": ("common", "openllmetry"),
    "openlit": ("common",),
    "langsmith": ("common", "langsmith"),
    "openinference": ("common", "openinference"),
    "vercel_ai": ("common", "vercel_ai"),
}


def _key_family(k: str) -> str:
    if k.startswith("ai."):
        return "vercel_ai"
    if k.startswith("llm.") or k == "embedding.model_name":
        return "openllmetry" if k in _LL_LLM_KEYS else "openinference"
    if k.startswith("langfuse."):
        return "langfuse"
    if k.startswith("langsmith."):
        return "langsmith"
    if k.startswith("traceloop."):
        return "openllmetry"
    return "common"


# Chains' attributes (mypyc's compiled classes cannot read `Chains.__slots__`).
_CHAIN_NAMES: Final = (
    "agent",
    "agent_id",
    "cache_read",
    "cache_write",
    "conversation",
    "environment",
    "finish",
    "input",
    "kept_as_tags",
    "labels",
    "model",
    "output",
    "provider",
    "reasoning",
    "request_model",
    "response_id",
    "server_address",
    "service",
    "session",
    "stream",
    "tenant",
    "total",
    "ttft_s",
    "user",
)


class Chains:
    """The priority chains, filtered to the keys of some key families (all keys when None)."""

    __slots__ = _CHAIN_NAMES

    def __init__(self, families: tuple[str, ...] | None, tenant_keys: tuple[str, ...]) -> None:
        def keep(keys: tuple[str, ...]) -> tuple[str, ...]:
            if families is None:
                return keys
            return tuple(k for k in keys if _key_family(k) in families)

        self.model = keep(MODEL)
        self.request_model = keep(REQUEST_MODEL)
        self.response_id = keep(RESPONSE_ID)
        self.input = keep(INPUT)
        self.output = keep(OUTPUT)
        self.total = keep(TOTAL)
        self.cache_read = keep(CACHE_READ)
        self.cache_write = keep(CACHE_WRITE)
        self.reasoning = keep(REASONING)
        self.stream = keep(STREAM)
        self.finish = keep(FINISH)
        self.user = keep(USER)
        self.session = keep(SESSION)
        self.agent = keep(AGENT)
        self.tenant = keep(tenant_keys)
        # Typed as the chains above are (a tuple of any length): `only` sets shorter ones.
        self.provider: tuple[str, ...] = PROVIDER
        self.server_address: tuple[str, ...] = SERVER_ADDRESS
        self.environment: tuple[str, ...] = ENVIRONMENT
        self.service: tuple[str, ...] = SERVICE
        self.conversation: tuple[str, ...] = CONVERSATION
        self.agent_id: tuple[str, ...] = AGENT_ID
        self.labels: tuple[str, ...] = LABELS
        self.kept_as_tags: tuple[str, ...] = KEPT_AS_TAGS
        self.ttft_s: tuple[str, ...] = TTFT_S

    def only(self, keys: Collection[str]) -> Chains:
        """These chains without the keys not in `keys` (for spans whose keys are all in `keys`: the
        same first values, with fewer lookups)."""
        cut = Chains(None, ())
        for name in _CHAIN_NAMES:
            setattr(cut, name, tuple(k for k in getattr(self, name) if k in keys))
        return cut

    @classmethod
    def for_convention(cls, convention: str, tenant_keys: tuple[str, ...]) -> Chains:
        return cls(_ALLOWED_FAMILIES.get(convention), tenant_keys)


def first_str(a: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = a.get(k)
        if v is not None:
            s = as_str(v)
            if s:
                return s
    return None


def first_id(a: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """Like first_str, unwrapping Langfuse's JSON-quoted metadata values (only those: an id that
    a sender put between quotes anywhere else is that id, quotes and all)."""
    for k in keys:
        v = a.get(k)
        if v is not None:
            if type(v) is str and v and (v[0] != '"' or not _json_serialized(k)):
                return v
            s = unquote(v)
            if s:
                return s
    return None


def _json_serialized(key: str) -> bool:
    """Langfuse's SDKs write each `…metadata.<key>` value as JSON (a string gets quotes)."""
    return key.startswith(("langfuse.trace.metadata.", "langfuse.observation.metadata."))


def first_count(a: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = a.get(k)
        if v is not None:
            n = as_count(v)
            if n is not None:
                return n
    return None


def meta_str(metas: tuple[dict[str, Any] | None, ...], keys: tuple[str, ...]) -> str | None:
    """The first non-empty value of `keys` in free-form metadata documents (None: absent), in order."""
    for d in metas:
        if not d:
            continue
        for k in keys:
            v = d.get(k)
            if v is not None:
                s = as_str(v)
                if s:
                    return s
    return None
