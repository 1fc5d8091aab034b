"""GenAI normaliser: OTLP spans (+ correlated log records) -> one `llm_inferences` row per model call.

Reads every generation of OTel GenAI, OpenInference, OpenLLMetry, OpenLIT, the Vercel AI SDK,
Langfuse and LangSmith (see shared/research/genai-conventions.md and docs/conventions.md). Each
field is the first non-empty source in a fixed priority order (doc section 9).

Message content can arrive on the span or as separate log records (OTel <=1.36 per-message events,
>=1.37 `gen_ai.client.inference.operation.details`), before, with or after the span. Logs that come
first wait in a bounded cache; rows still missing content are remembered (bounded) so later logs
produce an updated row with a higher `version` (the table is a ReplacingMergeTree(version)).

Hot path: this runs per span, so it is plain dict lookups over tuples of keys, one pass over the
attribute keys for the indexed/prefixed families, and orjson only for values that are JSON.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pipeline.records import LogRecord, Row, Span
from processors.conventions import (
    langfuse,
    langsmith,
    openinference,
    openlit,
    openllmetry,
    otel_genai,
    vercel_ai,
)
from processors.conventions.classify import convention as detect_convention
from processors.conventions.classify import model_call_operation
from processors.conventions.messages import Message, finish_reasons
from processors.conventions.otel_genai import CONTENT_EVENTS, EventContent
from processors.conventions.values import (
    as_bool,
    as_count,
    as_decimal,
    as_float,
    as_str,
    as_str_list,
    tag_value,
    unquote,
)

# Fixed so that replays of the same span produce the same inference_id.
INFERENCE_NAMESPACE = uuid.UUID("b6f3c9e2-51a4-5d0e-9c7a-2f4e8d1a6b30")
_NS_BYTES = INFERENCE_NAMESPACE.bytes
_sha1 = hashlib.sha1
_VARIANT = "89ab"

DEFAULT_TENANT_KEYS: tuple[str, ...] = (
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
_META_TENANT_KEYS = ("tenant_id", "tenantId", "tenant.id", "tenant")

_STATUS_ERROR = 2

# Priority chains (doc section 9): first non-empty wins.
_MODEL = (
    "langfuse.observation.model.name",
    "gen_ai.response.model",
    "llm.response.model_name",
    "ai.response.model",
    "llm.model_name",
    "gen_ai.request.model",
    "ai.model.id",
    "embedding.model_name",
)
_REQUEST_MODEL = (
    "gen_ai.request.model",
    "llm.request.model_name",
    "ai.model.id",
    "llm.model_name",
    "langfuse.observation.model.name",
    "embedding.model_name",
)
_RESPONSE_ID = ("gen_ai.response.id", "ai.response.id")
_INPUT = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "ai.usage.inputTokens",
    "ai.usage.promptTokens",
)
_OUTPUT = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
)
_TOTAL = (
    "llm.usage.total_tokens",
    "gen_ai.usage.total_tokens",
    "llm.token_count.total",
    "ai.usage.totalTokens",
)
_CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "ai.usage.cachedInputTokens",
    "gen_ai.usage.prompt_tokens_details.cached_tokens",
)
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.prompt_tokens_details.cache_creation_tokens",
)
_REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "ai.usage.reasoningTokens",
    "gen_ai.usage.completion_tokens_details.reasoning_tokens",
    "gen_ai.usage.completion_tokens_details.reasoning",
)
_STREAM = (
    "gen_ai.request.stream",
    "gen_ai.request.is_stream",
    "gen_ai.is_streaming",
    "llm.is_streaming",
    "langsmith.request.streaming",
)
_FINISH_ATTRS = (
    "llm.finish_reason",
    "ai.response.finishReason",
    "gen_ai.response.finish_reason",
    "llm.response.finish_reason",
    "llm.response.stop_reason",
)
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
_USER = (
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
_META_USER = ("user_id", "userId", "langfuse_user_id")
_SESSION = (
    "langfuse.session.id",
    "session.id",
    "gen_ai.conversation.id",
    "traceloop.association.properties.session_id",
    "ai.telemetry.metadata.sessionId",
    "langfuse.observation.metadata.langfuse_session_id",
    "langfuse.trace.metadata.langfuse_session_id",
    "langsmith.metadata.session_id",
    "langsmith.metadata.thread_id",
    "langsmith.metadata.conversation_id",
)
_META_SESSION = ("session_id", "sessionId", "langfuse_session_id", "thread_id", "conversation_id")
_ENVIRONMENT = (
    "langfuse.environment",
    "deployment.environment.name",
    "deployment.environment",
    "gen_ai.environment",
)
_SERVICE = ("service.name", "gen_ai.application_name")
_AGENT = (
    "gen_ai.agent.name",
    "traceloop.workflow.name",
    "gen_ai.workflow.name",
    "ai.telemetry.functionId",
    "agent.name",
)
_MAX_TOKENS_PARAMS = (
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "maxTokens",
    "maxOutputTokens",
    "max_new_tokens",
)

# Prefixes gathered in the one pass over attribute keys. Indexed ones hold `<prefix><i>.<sub>`.
_INDEXED = (
    openinference.INPUT_PREFIX,
    openinference.OUTPUT_PREFIX,
    openinference.PROMPTS_PREFIX,
    openinference.CHOICES_PREFIX,
    openllmetry.PROMPT_PREFIX,
    openllmetry.COMPLETION_PREFIX,
)
_TAGGED = (
    openllmetry.ASSOCIATION_PREFIX,
    vercel_ai.METADATA_PREFIX,
    langfuse.TRACE_METADATA_PREFIX,
    langfuse.OBSERVATION_METADATA_PREFIX,
    langsmith.METADATA_PREFIX,
)
_SCANNED = _INDEXED + _TAGGED
_SCAN_RX = re.compile("\n(" + "|".join(re.escape(p) for p in _SCANNED) + ")([^\n]*)")
_TAGGED_SET = frozenset(_TAGGED)
_LANGFUSE_TAGGED = (langfuse.TRACE_METADATA_PREFIX, langfuse.OBSERVATION_METADATA_PREFIX)
_CONTENT_REFS = ("gen_ai.input.messages.ref", "gen_ai.output.messages.ref")
_VERCEL_STREAM_IDS = ("ai.streamText.doStream", "ai.streamObject.doStream")

# Family of a chain key, so that each convention only looks up keys it can carry (a span from one
# family rarely holds another's keys; when prefixed metadata shows it does, the full chains are used).
_LL_LLM_KEYS = frozenset(
    (
        "llm.usage.total_tokens",
        "llm.usage.reasoning_tokens",
        "llm.is_streaming",
        "llm.user",
        "llm.response.finish_reason",
        "llm.response.stop_reason",
    )
)
_ALLOWED_FAMILIES = {
    "otel_genai": ("common", "openllmetry"),
    "openllmetry": ("common", "openllmetry"),
    "openlit": ("common",),
    "langsmith": ("common", "langsmith"),
    "openinference": ("common", "openinference"),
    "vercel_ai": ("common", "vercel_ai"),
}
CONVENTIONS = ("otel_genai", "openinference", "openllmetry", "openlit", "vercel_ai", "langfuse", "langsmith")


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


class _Chains:
    """The priority chains, filtered to the keys one convention can carry."""

    __slots__ = (
        "agent",
        "cache_read",
        "cache_write",
        "finish",
        "input",
        "model",
        "output",
        "reasoning",
        "request_model",
        "response_id",
        "session",
        "stream",
        "tenant",
        "total",
        "user",
    )

    def __init__(self, families: tuple[str, ...] | None, tenant_keys: tuple[str, ...]) -> None:
        def keep(keys: tuple[str, ...]) -> tuple[str, ...]:
            if families is None:
                return keys
            return tuple(k for k in keys if _key_family(k) in families)

        self.model = keep(_MODEL)
        self.request_model = keep(_REQUEST_MODEL)
        self.response_id = keep(_RESPONSE_ID)
        self.input = keep(_INPUT)
        self.output = keep(_OUTPUT)
        self.total = keep(_TOTAL)
        self.cache_read = keep(_CACHE_READ)
        self.cache_write = keep(_CACHE_WRITE)
        self.reasoning = keep(_REASONING)
        self.stream = keep(_STREAM)
        self.finish = keep(_FINISH_ATTRS)
        self.user = keep(_USER)
        self.session = keep(_SESSION)
        self.agent = keep(_AGENT)
        self.tenant = keep(tenant_keys)


ROW_KEYS: tuple[str, ...] = (
    "inference_id", "project_id", "trace_id", "span_id", "parent_span_id", "start_time", "end_time",
    "latency_ms", "ttft_ms", "provider", "model", "request_model", "response_id", "operation", "convention",
    "success", "error_type", "status_message", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "total_tokens", "total_cost_usd", "input_cost_usd",
    "output_cost_usd", "price_status", "prompt_messages", "response_messages", "streaming", "finish_reasons",
    "temperature", "top_p", "max_tokens", "user_id", "session_id", "tenant_id", "service_name", "environment",
    "server_address", "agent_name", "tags", "labels", "version",
)  # fmt: skip


def inference_id(project_id: str, trace_id: str, span_id: str) -> str:
    """uuid5(INFERENCE_NAMESPACE, "project/trace/span"), computed without building UUID objects."""
    h = _sha1(_NS_BYTES + f"{project_id}/{trace_id}/{span_id}".encode()).hexdigest()
    # RFC 4122: version nibble 5, variant bits 10xx.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def _scan(a: dict[str, Any]) -> tuple[dict[str, dict[int, dict[str, Any]]], list[tuple[str, str, Any]]]:
    """Indexed content (`<prefix><i>.<sub>` -> {prefix: {i: {sub: v}}}) and prefixed metadata.

    One regex pass over the joined keys finds the few keys of interest (and their prefix), so spans
    without such keys never run a per-key Python loop.
    """
    indexed: dict[str, dict[int, dict[str, Any]]] = {}
    tagged: list[tuple[str, str, Any]] = []
    for m in _SCAN_RX.finditer("\n" + "\n".join(a)):
        p, rest = m.group(1, 2)
        v = a.get(p + rest)
        if v is None:
            continue
        if p in _TAGGED_SET:
            tagged.append((p, rest, v))
        else:
            i, _, sub = rest.partition(".")
            if i.isdigit():
                by_index = indexed.get(p)
                if by_index is None:
                    by_index = indexed[p] = {}
                entry = by_index.get(int(i))
                if entry is None:
                    entry = by_index[int(i)] = {}
                entry[sub] = v
    return indexed, tagged
    for k, v in a.items():
        if k.startswith(_SCANNED):
            for p in _SCANNED:
                if k.startswith(p):
                    rest = k[len(p) :]
                    if p in _TAGGED:
                        tagged.append((p, rest, v))
                    else:
                        i, _, sub = rest.partition(".")
                        if i.isdigit():
                            indexed.setdefault(p, {}).setdefault(int(i), {})[sub] = v
                    break
    return indexed, tagged


def _first_str(a: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = a.get(k)
        if v is not None:
            s = as_str(v)
            if s:
                return s
    return None


def _first_id(a: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """Like _first_str, unwrapping Langfuse's JSON-quoted metadata values."""
    for k in keys:
        v = a.get(k)
        if v is not None:
            if type(v) is str and v and v[0] != '"':
                return v
            s = unquote(v)
            if s:
                return s
    return None


def _first_count(a: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = a.get(k)
        if v is not None:
            n = as_count(v)
            if n is not None:
                return n
    return None


def _meta_str(metas: list[dict[str, Any]], keys: tuple[str, ...]) -> str | None:
    for d in metas:
        for k in keys:
            v = d.get(k)
            if v is not None:
                s = as_str(v)
                if s:
                    return s
    return None


def _param(params: list[dict[str, Any]], keys: tuple[str, ...], conv: Callable[[Any], Any]) -> Any:
    for d in params:
        for k in keys:
            if k in d:
                v = conv(d[k])
                if v is not None:
                    return v
    return None


def _copy_msgs(msgs: list[Message]) -> list[Message]:
    out = []
    for m in msgs:
        c = dict(m)
        if "tool_calls" in c:
            c["tool_calls"] = [dict(t) for t in c["tool_calls"]]
        out.append(c)
    return out


def _copy_row(row: Row) -> Row:
    """A copy safe from later stages that mutate rows in place (masking, pricing)."""
    r = dict(row)
    r["prompt_messages"] = _copy_msgs(row["prompt_messages"])
    r["response_messages"] = _copy_msgs(row["response_messages"])
    r["finish_reasons"] = list(row["finish_reasons"])
    r["tags"] = dict(row["tags"])
    r["labels"] = list(row["labels"])
    return r


class _Emitted:
    """A row still missing content, kept so that later logs can complete it."""

    __slots__ = (
        "deadline",
        "events",
        "row",
        "strong_finish",
        "strong_prompt",
        "strong_response",
        "weak_finish",
        "weak_prompt",
        "weak_response",
    )

    def __init__(
        self,
        deadline: float,
        row: Row,
        strong: tuple[bool, bool, bool],
        events: EventContent,
        weak: tuple[list[Message], list[Message], list[str]],
    ) -> None:
        self.deadline = deadline
        self.row = row
        self.strong_prompt, self.strong_response, self.strong_finish = strong
        self.events = events
        self.weak_prompt, self.weak_response, self.weak_finish = weak


class GenAINormaliser:
    """Normalises GenAI spans and their content logs into `llm_inferences` rows.

    Not thread-safe: one instance per processing loop (it holds the join caches).
    """

    def __init__(
        self,
        *,
        tenant_keys: tuple[str, ...] = DEFAULT_TENANT_KEYS,
        join_window_s: float = 30.0,
        max_pending: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant_keys = tuple(tenant_keys)
        self._chains_full = _Chains(None, self.tenant_keys)
        self._chains = {c: _Chains(_ALLOWED_FAMILIES.get(c), self.tenant_keys) for c in CONVENTIONS}
        self.join_window_s = join_window_s
        self.max_pending = max(0, int(max_pending))
        self._clock = clock
        # (project_id, trace_id, span_id) -> (deadline, content) for logs whose span has not come yet
        self._pending: dict[tuple[str, str, str], tuple[float, EventContent]] = {}
        # (project_id, trace_id, span_id) -> emitted row that may still receive content
        self._emitted: dict[tuple[str, str, str], _Emitted] = {}
        self.failed = 0  # spans skipped because building their row raised
        self.failed_logs = 0  # log records skipped because reading them raised

    @property
    def pending_size(self) -> int:
        return len(self._pending)

    @property
    def emitted_size(self) -> int:
        return len(self._emitted)

    def normalise(self, spans: list[Span], logs: list[LogRecord]) -> list[Row]:
        """Inference rows for the model-call spans among `spans`, with message content joined from
        `logs` (and from logs seen earlier) by (project_id, trace_id, span_id)."""
        now = self._clock()
        self._expire(now)
        batch_events: dict[tuple[str, str, str], EventContent] = {}
        for log in logs:
            try:
                self._collect_log(log, batch_events)
            except Exception:  # one unreadable record must not cost the batch
                self.failed_logs += 1
        rows: list[Row] = []
        for span in spans:
            key = (span.project_id, span.trace_id, span.span_id)
            events = batch_events.pop(key, None)
            pend = self._pending.pop(key, None)
            if pend is not None:
                if events is not None:
                    pend[1].merge(events)
                events = pend[1]
            try:
                built = self._build(span, events)
            except Exception:  # a span that still fails is skipped and counted
                self.failed += 1
                continue
            if built is None:
                continue
            row, memo = built
            rows.append(row)
            if memo is not None:
                memo.deadline = now + self.join_window_s
                self._emitted.pop(key, None)
                self._emitted[key] = memo
        for key, events in batch_events.items():
            memo = self._emitted.get(key)
            if memo is not None:
                try:
                    rows.append(self._update(memo, events))
                except Exception:
                    self.failed_logs += 1
                continue
            pend = self._pending.get(key)
            if pend is not None:
                pend[1].merge(events)
            else:
                self._pending[key] = (now + self.join_window_s, events)
        self._bound()
        return rows

    # -- join caches ---------------------------------------------------------------------------

    def _collect_log(self, log: LogRecord, batch: dict[tuple[str, str, str], EventContent]) -> None:
        name = log.event_name
        if not name:
            name = log.attributes.get("event.name")
        if type(name) is not str or name not in CONTENT_EVENTS:
            return
        if not log.trace_id or not log.span_id:
            return
        key = (log.project_id, log.trace_id, log.span_id)
        ev = batch.get(key)
        if ev is None:
            ev = batch[key] = EventContent()
        ev.add(name, log.body, log.attributes)

    def _expire(self, now: float) -> None:
        # Insertion order is deadline order (deadlines are set on insert, never extended in place).
        for cache in (self._pending, self._emitted):
            while cache:
                k = next(iter(cache))
                entry = cache[k]
                deadline = entry.deadline if type(entry) is _Emitted else entry[0]
                if deadline > now:
                    break
                del cache[k]

    def _bound(self) -> None:
        for cache in (self._pending, self._emitted):
            excess = len(cache) - self.max_pending
            while excess > 0:  # evict oldest
                del cache[next(iter(cache))]
                excess -= 1

    def _update(self, memo: _Emitted, events: EventContent) -> Row:
        """The remembered row with the new content merged in, at version + 1."""
        memo.events.merge(events)
        row = dict(memo.row)
        ev = memo.events
        if not memo.strong_prompt:
            row["prompt_messages"] = ev.prompt_messages() or memo.weak_prompt
        if not memo.strong_response:
            row["response_messages"] = ev.response_messages() or memo.weak_response
        if not memo.strong_finish:
            row["finish_reasons"] = ev.finish_reasons() or memo.weak_finish
        row["version"] = memo.row["version"] + 1
        memo.row = row
        return _copy_row(row)

    # -- one span --------------------------------------------------------------------------------

    def _build(self, span: Span, events: EventContent | None) -> tuple[Row, _Emitted | None] | None:
        op = model_call_operation(span)
        if op is None:
            return None
        a = span.attributes
        res = span.resource

        indexed, tagged = _scan(a)
        ll_prompt = indexed.get(openllmetry.PROMPT_PREFIX)
        ll_completion = indexed.get(openllmetry.COMPLETION_PREFIX)
        has_assoc = any(p == openllmetry.ASSOCIATION_PREFIX for p, _, _ in tagged)
        conv = detect_convention(span, bool(ll_prompt or ll_completion), has_assoc)
        is_vercel = conv == "vercel_ai"
        is_langfuse = conv == "langfuse"
        ch = self._chains_full if tagged else self._chains[conv]

        # Span events: TTFT markers, exceptions, content events.
        start = span.start_ns
        first_token_ns = vercel_first_ms = vercel_first_ns = chunk_ns = None
        exc_type = exc_msg = None
        span_events: EventContent | None = None  # built lazily: most spans carry no content events
        prompt_event = completion_event = None
        for e in span.events:
            name = e.name
            if name in CONTENT_EVENTS:
                if span_events is None:
                    span_events = EventContent()
                span_events.add(name, None, e.attributes)
            elif name == otel_genai.PROMPT_EVENT:
                prompt_event = e.attributes.get("gen_ai.prompt")
            elif name == otel_genai.COMPLETION_EVENT:
                completion_event = e.attributes.get("gen_ai.completion")
            elif name == openinference.FIRST_TOKEN_EVENT:
                if first_token_ns is None:
                    first_token_ns = e.time_ns
            elif name == vercel_ai.FIRST_CHUNK_EVENT:
                vercel_first_ms = as_float(e.attributes.get("ai.response.msToFirstChunk"))
                vercel_first_ns = e.time_ns
            elif name in openllmetry.CHUNK_EVENTS:
                if chunk_ns is None or e.time_ns < chunk_ns:
                    chunk_ns = e.time_ns
            elif name == "exception" or name == "gen_ai.client.operation.exception":
                exc_type = exc_type or as_str(e.attributes.get("exception.type"))
                exc_msg = exc_msg or as_str(e.attributes.get("exception.message"))
        if span_events is not None:
            if events is not None:
                span_events.merge(events)
            events = span_events

        # JSON side documents, parsed only when present.
        oi_params = openinference.invocation_parameters(a) if "llm.invocation_parameters" in a else None
        oi_meta = openinference.metadata(a) if "metadata" in a else None
        lf_params = langfuse.model_parameters(a) if is_langfuse else None
        lf_meta = langfuse.metadata(a) if is_langfuse else None
        params = [d for d in (oi_params, lf_params) if d]
        metas = [d for d in (oi_meta, lf_meta) if d]

        # Model, provider, operation.
        model = _first_str(a, ch.model) or ""
        request_model = _first_str(a, ch.request_model) or ""
        provider = None
        for k in _PROVIDER:
            v = a.get(k)
            if v is not None:
                provider = otel_genai.normalise_provider(v, api_qualified=is_vercel)
                if provider:
                    break
        if not provider and ("llm.provider" in a or "llm.system" in a):
            provider = openinference.provider(a)
        if not provider and "ai.model.provider" in a:
            provider = otel_genai.normalise_provider(a["ai.model.provider"], api_qualified=True)
        server_address = otel_genai.server_address(a) or ""
        if not provider:
            provider = otel_genai.provider_from_host(server_address)
        if (
            op == "chat"
            and conv == "openinference"
            and openinference.PROMPTS_PREFIX in indexed
            and openinference.INPUT_PREFIX not in indexed
        ):
            op = "text_completion"  # OpenInference legacy completions API

        # Usage (input inclusive of cache, output inclusive of reasoning).
        inp = _first_count(a, ch.input)
        out = _first_count(a, ch.output)
        total = _first_count(a, ch.total)
        cache_read = _first_count(a, ch.cache_read)
        cache_write = _first_count(a, ch.cache_write)
        reasoning = _first_count(a, ch.reasoning)
        if is_langfuse:
            u = langfuse.usage(a)
            if u is not None:
                inp = inp if inp is not None else u.input
                out = out if out is not None else u.output
                total = total if total is not None else u.total
                cache_read = cache_read if cache_read is not None else u.cache_read
                cache_write = cache_write if cache_write is not None else u.cache_write
                reasoning = reasoning if reasoning is not None else u.reasoning
        if inp is None and "ai.usage.tokens" in a:  # Vercel embeddings
            inp = as_count(a["ai.usage.tokens"])
        if is_vercel and (cache_read is None or cache_write is None or reasoning is None):
            pm = vercel_ai.provider_metadata(a) if "ai.response.providerMetadata" in a else None
            if pm:
                if cache_read is None:
                    cache_read = vercel_ai.metadata_cache_read(pm)
                if cache_write is None:
                    cache_write = vercel_ai.metadata_cache_write(pm)
                if reasoning is None:
                    reasoning = vercel_ai.metadata_reasoning(pm)
        if "gen_ai.usage.input_token_details" in a:  # LangSmith str(dict)
            d_in = "gen_ai.usage.input_token_details"
            if cache_read is None:
                cache_read = langsmith.token_detail(a, d_in, "cache_read")
            if cache_write is None:
                cache_write = langsmith.token_detail(a, d_in, "cache_creation")
        if reasoning is None and "gen_ai.usage.output_token_details" in a:
            reasoning = langsmith.token_detail(a, "gen_ai.usage.output_token_details", "reasoning")
        tags: dict[str, str] = {}
        if is_vercel and provider == "anthropic" and cache_read and inp is not None and inp < cache_read:
            # AI SDK v5 reported Anthropic inputTokens without cache: make it inclusive (heuristic).
            inp += cache_read + (cache_write or 0)
            tags["inferline.input_tokens_adjusted"] = "vercel_v5_anthropic_cache"
        if total is None and "gen_ai.client.token.usage" in a:  # OpenLIT mid-2025
            total = as_count(a["gen_ai.client.token.usage"])
        inp = inp or 0
        out = out or 0
        if total is None:
            total = inp + out

        # Cost, only when the span carries one.
        total_cost = in_cost = out_cost = None
        if is_langfuse:
            total_cost, in_cost, out_cost = langfuse.cost(a)
        if total_cost is None and "gen_ai.usage.cost" in a:
            total_cost = as_decimal(a["gen_ai.usage.cost"])
        if "llm.cost.prompt" in a or "llm.cost.completion" in a or "llm.cost.total" in a:
            in_cost = in_cost if in_cost is not None else as_decimal(a.get("llm.cost.prompt"))
            out_cost = out_cost if out_cost is not None else as_decimal(a.get("llm.cost.completion"))
            if total_cost is None:
                total_cost = as_decimal(a.get("llm.cost.total"))
        if total_cost is None and (in_cost is not None or out_cost is not None):
            total_cost = (in_cost or Decimal(0)) + (out_cost or Decimal(0))

        # Streaming and TTFT.
        streaming = None
        for k in ch.stream:
            v = a.get(k)
            if v is not None:
                streaming = as_bool(v)
                if streaming is not None:
                    break
        if streaming is None and oi_params and "stream" in oi_params:
            streaming = as_bool(oi_params["stream"])
        if streaming is None and is_vercel:
            oid = a.get(vercel_ai.OPERATION_ID)
            if type(oid) is str and oid.startswith(_VERCEL_STREAM_IDS):
                streaming = True
        ttft = self._ttft(
            a,
            start,
            streaming,
            is_langfuse,
            is_vercel,
            first_token_ns,
            vercel_first_ms,
            vercel_first_ns,
            chunk_ns,
        )
        if streaming is None:
            streaming = ttft is not None

        # Request parameters.
        temperature = as_float(a.get("gen_ai.request.temperature"))
        if temperature is None:
            temperature = _param(params, ("temperature",), as_float)
            if temperature is None and is_vercel:
                temperature = as_float(a.get("ai.settings.temperature"))
        top_p = as_float(a.get("gen_ai.request.top_p"))
        if top_p is None:
            top_p = _param(params, ("top_p", "topP"), as_float)
            if top_p is None and is_vercel:
                top_p = as_float(a.get("ai.settings.topP"))
        max_tokens = as_count(a.get("gen_ai.request.max_tokens"))  # the column is unsigned
        if max_tokens is None:
            max_tokens = _param(params, _MAX_TOKENS_PARAMS, as_count)
            if max_tokens is None and is_vercel:
                max_tokens = as_count(a.get("ai.settings.maxOutputTokens")) or as_count(
                    a.get("ai.settings.maxTokens")
                )

        # Status.
        status_code = span.status_code
        error_type = as_str(a.get("error.type")) or ""
        lf_error = is_langfuse and a.get("langfuse.observation.level") == "ERROR"
        failed = status_code == _STATUS_ERROR or lf_error
        if failed and not error_type:
            error_type = exc_type or "_OTHER"
        status_message = span.status_message or ""
        if not status_message and is_langfuse:
            status_message = unquote(a.get("langfuse.observation.status_message")) or ""
        if not status_message and failed and exc_msg:
            status_message = exc_msg

        # Messages: strong span sources, then event/log content, then weak span fallbacks.
        prompt = self._strong_prompt(a, indexed, is_vercel, is_langfuse)
        response, fr_out = self._strong_response(a, indexed, is_vercel, is_langfuse)
        frs = finish_reasons(a.get(otel_genai.FINISH_REASONS)) if otel_genai.FINISH_REASONS in a else []
        if not frs:
            frs = fr_out
        if not frs:
            for k in ch.finish:
                v = a.get(k)
                if v is not None:
                    frs = finish_reasons(v)
                    if frs:
                        break
        strong = (bool(prompt), bool(response), bool(frs))
        ev_prompt = ev_response = None
        weak_prompt: list[Message] = []
        weak_response: list[Message] = []
        if not prompt:
            ev_prompt = events.prompt_messages() if events is not None else None
            weak_prompt = self._weak_prompt(a, indexed, prompt_event, is_vercel)
            prompt = ev_prompt or weak_prompt
        if not response:
            ev_response = events.response_messages() if events is not None else None
            weak_response = self._weak_response(a, indexed, completion_event)
            response = ev_response or weak_response
        if not frs and events is not None:
            frs = events.finish_reasons()

        # Who, where, what.
        tenant_id = (
            _first_id(a, ch.tenant)
            or _meta_str(metas, _META_TENANT_KEYS)
            or _first_id(res, self.tenant_keys)
            or ""
        )
        user_id = (
            _first_id(a, ch.user)
            or _meta_str(metas, _META_USER)
            or _first_id(res, ("user.id", "enduser.id"))
            or ""
        )
        session_id = (
            _first_id(a, ch.session)
            or _meta_str(metas, _META_SESSION)
            or _first_id(res, ("session.id",))
            or ""
        )
        environment = _first_id(a, _ENVIRONMENT) or _first_id(res, _ENVIRONMENT) or ""
        service_name = _first_str(res, _SERVICE) or _first_str(a, _SERVICE) or ""
        agent_name = _first_str(a, ch.agent) or ""

        # Free metadata (dict) and list tags.
        if oi_meta:
            for k, v in oi_meta.items():
                tags[k] = tag_value(v)
        if lf_meta:
            for k, v in lf_meta.items():
                tags[k] = tag_value(v)
        for p, k, v in tagged:
            if p == vercel_ai.METADATA_PREFIX and k == "tags":
                continue  # list-style, goes to labels
            tags[k] = tag_value(langfuse.meta_value(v) if p in _LANGFUSE_TAGGED else v)
        for k in _CONTENT_REFS:
            v = a.get(k)
            if v is not None:  # content uploaded elsewhere (contrib upload hook): keep the reference
                tags[k] = tag_value(v)
        labels: list[str] = []
        if is_langfuse:
            labels.extend(x for x in as_str_list(langfuse.tags(a)) if x not in labels)
        for k in ("tag.tags", "ai.telemetry.metadata.tags", "langsmith.span.tags"):
            v = a.get(k)
            if v is not None:
                labels.extend(x for x in as_str_list(v) if x not in labels)

        end = span.end_ns
        row: Row = {
            "inference_id": inference_id(span.project_id, span.trace_id, span.span_id),
            "project_id": span.project_id,
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "start_time": start,
            "end_time": end,
            "latency_ms": max(0, end - start) / 1e6,
            "ttft_ms": ttft,
            "provider": provider or "",
            "model": model or request_model,
            "request_model": request_model,
            "response_id": _first_str(a, ch.response_id) or "",
            "operation": op,
            "convention": conv,
            "success": not failed and not error_type,
            "error_type": error_type,
            "status_message": status_message,
            "input_tokens": inp,
            "output_tokens": out,
            "cache_read_tokens": cache_read or 0,
            "cache_write_tokens": cache_write or 0,
            "reasoning_tokens": reasoning or 0,
            "total_tokens": total,
            "total_cost_usd": total_cost,
            "input_cost_usd": in_cost,
            "output_cost_usd": out_cost,
            "price_status": "provided" if total_cost is not None else "",
            "prompt_messages": prompt,
            "response_messages": response,
            "streaming": streaming,
            "finish_reasons": frs,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "user_id": user_id,
            "session_id": session_id,
            "tenant_id": tenant_id,
            "service_name": service_name,
            "environment": environment,
            "server_address": server_address,
            "agent_name": agent_name,
            "tags": tags,
            "labels": labels,
            "version": 1,
        }
        if (not strong[0] and not ev_prompt) or (not strong[1] and not ev_response):
            # Kept for later logs. The kept row shares message objects with `events`; the caller gets
            # a copy, because later stages rewrite rows in place (masking, pricing).
            memo = _Emitted(0.0, row, strong, events or EventContent(), (weak_prompt, weak_response, []))
            return _copy_row(row), memo
        return row, None

    @staticmethod
    def _ttft(
        a: dict[str, Any],
        start: int,
        streaming: bool | None,
        is_langfuse: bool,
        is_vercel: bool,
        first_token_ns: int | None,
        vercel_first_ms: float | None,
        vercel_first_ns: int | None,
        chunk_ns: int | None,
    ) -> float | None:
        """Time to first token in ms from the first source present (doc section 1.7 units)."""
        for k in ("gen_ai.response.time_to_first_chunk", "gen_ai.client.operation.time_to_first_chunk"):
            v = a.get(k)
            if v is not None:
                s = as_float(v)
                if s is not None and s >= 0:
                    return round(s * 1000.0, 3)
        v = a.get(openlit.TTFT_S)
        if v is not None:
            s = as_float(v)
            if s is not None and (s > 0 or (s == 0 and streaming)):  # 0 means "not streamed"
                return round(s * 1000.0, 3)
        v = a.get("ai.response.msToFirstChunk") if is_vercel else None
        if v is not None:
            ms = as_float(v)
            if ms is not None and ms >= 0:
                return round(ms, 3)
        if vercel_first_ms is not None and vercel_first_ms >= 0:
            return round(vercel_first_ms, 3)
        if vercel_first_ns is not None and vercel_first_ns >= start:
            return round((vercel_first_ns - start) / 1e6, 3)
        if is_langfuse:
            cst = langfuse.completion_start_ns(a)
            if cst is not None and cst >= start:
                return round((cst - start) / 1e6, 3)
        for t in (first_token_ns, chunk_ns):
            if t is not None and t >= start:
                return round((t - start) / 1e6, 3)
        return None

    @staticmethod
    def _strong_prompt(
        a: dict[str, Any], indexed: dict[str, dict[int, dict[str, Any]]], is_vercel: bool, is_langfuse: bool
    ) -> list[Message]:
        if otel_genai.INPUT_MESSAGES in a or otel_genai.SYSTEM_INSTRUCTIONS in a:
            msgs = otel_genai.input_messages(a)
            if msgs:
                return msgs
        ix = indexed.get(openinference.INPUT_PREFIX)
        if ix:
            return openinference.messages(ix)
        ix = indexed.get(openllmetry.PROMPT_PREFIX)
        if ix:
            return openllmetry.prompt_messages(ix)
        if is_vercel:
            msgs = vercel_ai.prompt_messages(a)
            if msgs:
                return msgs
        if is_langfuse:
            return langfuse.input_messages(a)
        return []

    @staticmethod
    def _strong_response(
        a: dict[str, Any], indexed: dict[str, dict[int, dict[str, Any]]], is_vercel: bool, is_langfuse: bool
    ) -> tuple[list[Message], list[str]]:
        if otel_genai.OUTPUT_MESSAGES in a:
            msgs, frs = otel_genai.output_messages(a)
            if msgs:
                return msgs, frs
        ix = indexed.get(openinference.OUTPUT_PREFIX)
        if ix:
            return openinference.messages(ix), []
        ix = indexed.get(openllmetry.COMPLETION_PREFIX)
        if ix:
            return openllmetry.completion_messages(ix)
        if is_vercel:
            msgs = vercel_ai.response_messages(a)
            if msgs:
                return msgs, []
        if is_langfuse:
            return langfuse.output_messages(a), []
        return [], []

    @staticmethod
    def _weak_prompt(
        a: dict[str, Any], indexed: dict[str, dict[int, dict[str, Any]]], prompt_event: Any, is_vercel: bool
    ) -> list[Message]:
        for v in (prompt_event, a.get("gen_ai.prompt")):
            if v is not None:
                msgs = otel_genai.legacy_content_messages(v, "user")
                if msgs:
                    return msgs
        ix = indexed.get(openinference.PROMPTS_PREFIX)
        if ix:
            return openinference.legacy_texts(ix, "prompt.text", "user")
        if is_vercel and "ai.prompt" in a:
            msgs = vercel_ai.root_prompt_messages(a)
            if msgs:
                return msgs
        return openinference.io_messages(a, "input.value", "user")

    @staticmethod
    def _weak_response(
        a: dict[str, Any], indexed: dict[str, dict[int, dict[str, Any]]], completion_event: Any
    ) -> list[Message]:
        for v in (completion_event, a.get("gen_ai.completion")):
            if v is not None:
                msgs = otel_genai.legacy_content_messages(v, "assistant")
                if msgs:
                    return msgs
        ix = indexed.get(openinference.CHOICES_PREFIX)
        if ix:
            return openinference.legacy_texts(ix, "completion.text", "assistant")
        return openinference.io_messages(a, "output.value", "assistant")


__all__ = ["DEFAULT_TENANT_KEYS", "INFERENCE_NAMESPACE", "ROW_KEYS", "GenAINormaliser", "inference_id"]
