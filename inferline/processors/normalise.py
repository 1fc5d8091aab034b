"""GenAI normaliser: OTLP spans (+ correlated log records) -> one `llm_inferences` row per model call.

Reads every generation of OTel GenAI, OpenInference, OpenLLMetry, OpenLIT, the Vercel AI SDK,
Langfuse and LangSmith (see shared/research/genai-conventions.md and docs/conventions.md). Each
field is the first non-empty source in a fixed priority order (doc section 9; `field_sources`).

Message content can also arrive as log records, before, with or after the span; `content_join`
matches them up and re-emits rows that late logs complete, with a higher `version`.

Hot path: this runs per span, so it is plain dict lookups over tuples of keys, one pass over the
attribute keys for the indexed/prefixed families, and orjson only for values that are JSON.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import structlog

from inferline.core.records import LogRecord, Row, Span
from inferline.processors.conventions import (
    langfuse,
    openinference,
    openllmetry,
    otel_genai,
)
from inferline.processors.conventions.ancestry import (
    Ancestry,
    Inherited,
    Waiter,
    attributed,
    changes,
    needs_ancestors,
)
from inferline.processors.conventions.attribution import (
    ID_KEYS,
    Attribution,
    ResourceFacts,
    RowMetadata,
    attribution,
    metadata,
    resource_facts,
    span_ids,
)
from inferline.processors.conventions.call_memory import CallMemory
from inferline.processors.conventions.classify import convention as detect_convention
from inferline.processors.conventions.classify import model_call_operation
from inferline.processors.conventions.content_join import (
    ContentJoin,
    EmittedRow,
    JoinKey,
    Origins,
    Partition,
    add_log,
    add_origin,
    copy_row,
    merge_origins,
)
from inferline.processors.conventions.field_sources import DEFAULT_TENANT_KEYS, Chains, first_str
from inferline.processors.conventions.key_scan import Indexed, KeyLayout, scan
from inferline.processors.conventions.messages import Message
from inferline.processors.conventions.otel_genai import EventContent
from inferline.processors.conventions.row_messages import row_messages
from inferline.processors.conventions.span_events import SpanEvents
from inferline.processors.conventions.timing import streaming_and_ttft
from inferline.processors.conventions.usage import ProvidedCost, TokenCounts, provided_cost, tokens
from inferline.processors.conventions.values import as_count, as_float, as_str, host_of, stringify, unquote

_log = structlog.get_logger()

# Fixed so that replays of the same span produce the same inference_id.
INFERENCE_NAMESPACE: Final = uuid.UUID("b6f3c9e2-51a4-5d0e-9c7a-2f4e8d1a6b30")
_NS_BYTES: Final = INFERENCE_NAMESPACE.bytes
_sha1 = hashlib.sha1
# RFC 4122 variant bits 10xx: the uuid's 17th hex digit, by the hash's hex digit at that place.
_VARIANT_DIGIT: Final = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}

CONVENTIONS: Final = (
    "otel_genai",
    "openinference",
    "openllmetry",
    "openlit",
    "vercel_ai",
    "langfuse",
    "langsmith",
)

ROW_KEYS: Final[tuple[str, ...]] = (
    "inference_id", "project_id", "trace_id", "span_id", "parent_span_id", "start_time", "end_time",
    "latency_ms", "ttft_ms", "provider", "model", "request_model", "response_id", "operation", "convention",
    "success", "error_type", "status_message", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "total_tokens", "usage_details", "total_cost_usd",
    "input_cost_usd", "output_cost_usd", "provided_cost_usd", "price_status", "prompt_messages",
    "response_messages", "streaming", "finish_reasons", "temperature", "top_p", "max_tokens",
    "request_parameters", "user_id", "session_id", "tenant_id", "service_name", "environment",
    "server_address", "agent_name", "agent_id", "tags", "labels", "version",
)  # fmt: skip

_ROW_TEMPLATE: Final[Row] = dict.fromkeys(ROW_KEYS)

_STATUS_ERROR: Final = 2

# The typed records built once per model call (ModelCall, RequestParams, ...) are made with
# `_record(Record, (fields, in declaration order))`: the same NamedTuple as `Record(...)` without
# the generated Python `__new__` that call runs (~2,000 fewer instructions each, eight per span).
_record = tuple.__new__

# Distinct attribute key layouts remembered per normaliser. Instrumentations write a few each; keys
# that carry ids would make every span new: past this many, the cache starts over.
_MAX_LAYOUTS: Final = 2048
# Layouts of more keys are not remembered: instrumentations write a few dozen, and a sender's
# thousands of keys per span must not be kept 2048 times over.
_MAX_LAYOUT_KEYS: Final = 256

_NO_EVENTS: Final = SpanEvents([], None)  # read-only, shared by spans without events or log content

# Parsed JSON side documents (OpenInference, Langfuse), None where the span has none.
_Documents = tuple[dict[str, Any] | None, ...]

_MAX_TOKENS_PARAMS: Final = (
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "maxTokens",
    "maxOutputTokens",
    "max_new_tokens",
)


def inference_id(project_id: str, trace_id: str, span_id: str) -> str:
    """uuid5(INFERENCE_NAMESPACE, "project/trace/span"), computed without building UUID objects."""
    h = _sha1(_NS_BYTES + f"{project_id}/{trace_id}/{span_id}".encode()).hexdigest()
    # RFC 4122: version nibble 5, variant bits 10xx.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"


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
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_keys = tuple(tenant_keys)
        self._chains_full = Chains(None, self.tenant_keys)
        self._chains = {c: Chains.for_convention(c, self.tenant_keys) for c in CONVENTIONS}
        self._join = ContentJoin(join_window_s, max(0, int(max_pending)))
        # Every span is a link for the window: room for many more of them than of kept rows.
        self._ancestry = Ancestry(join_window_s, 10 * max(0, int(max_pending)), max(0, int(max_pending)))
        self._id_keys = ID_KEYS | frozenset(self.tenant_keys)
        # Retries and wrapper spans of calls already made rows (see call_memory). Its clock is when
        # the records were received (unix s), not when they are processed: a backlog (a burst the
        # log absorbed, a replay) must not make it forget calls whose retries are still behind it.
        self._wall_clock = wall_clock
        self._received = wall_clock()  # the latest receive time seen (or the start, before any)
        self._calls = CallMemory(join_window_s, 10 * max(0, int(max_pending)), self._received)
        self.repeats = 0  # model-call spans skipped as retries of a span already made a row
        self.wrappers = 0  # model-call spans skipped as another span of a call already made a row
        self._layouts: dict[tuple[str, ...], KeyLayout] = {}
        # Per call of `normalise`, by id of a resource attribute dict: its spans share the dict, and
        # hold it (so the id stays its own) while the call runs.
        self._resources: dict[int, ResourceFacts] = {}
        self._clock = clock
        self.failed = 0  # spans skipped because building their row raised
        self.failed_logs = 0  # log records skipped because reading them raised

    def _failed(self, span: Span, e: Exception) -> None:
        """A model call whose inference row could not be built: its span is still stored; this
        says so (type of the error only: its message may quote content)."""
        self.failed += 1
        _log.warning(
            "a model call could not be made an inference row; only its span is stored",
            trace_id=span.trace_id,
            span_id=span.span_id,
            error=type(e).__name__,
        )

    @property
    def join_window_s(self) -> float:
        return self._join.window_s

    @property
    def max_pending(self) -> int:
        return self._join.max_entries

    @property
    def pending_size(self) -> int:
        return self._join.pending_size

    @property
    def emitted_size(self) -> int:
        return self._join.emitted_size

    @property
    def ancestry_links(self) -> int:
        return self._ancestry.links_size

    @property
    def ancestry_waiting(self) -> int:
        return self._ancestry.waiting_size

    def held_offsets(self) -> dict[Partition, int]:
        """The lowest Kafka offset per (topic, partition) of the records the join still holds in memory
        (content waiting for its span, rows waiting for late content or for ancestors, the spans of the
        ancestry). A consumer must not commit past it: after a restart the replay rebuilds what was
        held. Empty for records without `origin`."""
        held = self._join.held_offsets()
        for tp, offset in self._ancestry.held_offsets().items():
            cur = held.get(tp)
            if cur is None or offset < cur:
                held[tp] = offset
        return held

    def expire(self) -> None:
        """Drop what outlived the join window (normalise does this on every call; for idle times)."""
        now = self._clock()
        self._join.expire(now)
        self._ancestry.expire(now)
        # Idle, so what is received next is received after now: the call memory's clock may move
        # on (a clock that only moves forward, for forgetting and vouching alike, keeps both right).
        self._received = max(self._received, self._wall_clock())
        self._calls.expire(self._received)

    def calls_remembered_since(self) -> float:
        """Unix time (s) from which this normaliser remembers every model call it made a row of:
        a call in the records received last that started later made no row before. Earlier ones
        may be a sender's retry of a request received longer ago than the join window."""
        return self._calls.complete_after(self._received)

    def assume_calls_remembered_since(self, since: float) -> None:
        """Before the first record: `calls_remembered_since` may reach back to `since`, because
        whoever read the store (the embedded service, at its start) found no stored call that
        started later (`exporters/clickhouse/new_inferences.py`, `calls_remembered_since_store`).
        Without it a new normaliser vouches only for calls that started after itself, and its
        first window's rows are all looked up. Ignored after the first call."""
        self._calls.assume_complete_after(since)

    def forget_calls(self, origins: set[Any]) -> None:
        """Forgets the model calls of these records (a failed entry: a retry of its calls in
        another entry is not a retry of anything stored)."""
        self._calls.forget_origins(origins)

    def forget(self, partitions: list[Partition]) -> int:
        """Drop what the join holds from records of `partitions` (revoked from this consumer)."""
        return self._join.forget(partitions) + self._ancestry.forget(partitions)

    def normalise(self, spans: list[Span], logs: list[LogRecord], received_at: float = 0.0) -> list[Row]:
        """Inference rows for the model-call spans among `spans`, with message content joined from
        `logs` (and from logs seen earlier) by (project_id, trace_id, span_id). `received_at`:
        when the latest of these records was received (unix s; 0: unknown, now)."""
        now = self._clock()
        received = self._received = max(self._received, received_at or self._wall_clock())
        self._resources.clear()  # ids of dicts from an earlier call may be reused
        join = self._join
        join.expire(now)
        self._ancestry.expire(now)
        calls = self._calls
        calls.expire(received)
        batch_content: dict[JoinKey, EventContent] = {}
        # Kafka coordinates of the content logs, per span (stays None in embedded mode).
        batch_origins: dict[JoinKey, Origins] | None = None
        for log in logs:
            try:
                key = add_log(batch_content, log)
            except Exception:  # one unreadable record must not cost the batch
                self.failed_logs += 1
                continue
            if key is not None and log.origin is not None:
                if batch_origins is None:
                    batch_origins = {}
                batch_origins[key] = add_origin(batch_origins.get(key), log.origin)
        rows: list[Row] = []
        waiting = join.waiting
        anc = self._ancestry
        # Every span joins the ancestry first, so the rows below see the ancestors of their batch.
        ops: list[str | None] = []
        for span in spans:
            try:
                op = model_call_operation(span)
                passed_on = self._passed_on(span.attributes) if op is None else None
            except Exception as e:  # a span that cannot be read is skipped and counted
                self._failed(span, e)
                ops.append(None)
                continue
            ops.append(op)
            if op is None:
                anc.record(
                    (span.project_id, span.trace_id, span.span_id),
                    span.parent_span_id,
                    passed_on,
                    now,
                    add_origin(None, span.origin) if span.origin is not None else None,
                )
        for span, op in zip(spans, ops, strict=True):
            if op is None:
                continue
            key = (span.project_id, span.trace_id, span.span_id)
            if calls.repeated(key, span.origin):
                # Its content logs, if any came along, complete the row made already (below).
                self.repeats += 1
                continue
            content = batch_content.pop(key, None)
            origins: Origins = None
            if key in waiting:
                content, origins = join.take(key, content)
            try:
                row, emitted, own, resource = self._build(span, op, content)
            except Exception as e:  # a span that still fails is skipped and counted
                self._failed(span, e)
                continue
            parent = (span.project_id, span.trace_id, span.parent_span_id)
            tokens = (row["input_tokens"], row["output_tokens"])
            if calls.nested(key, parent, tokens):
                # Another span of a call that made its row: no row of its own, but a link still,
                # so the spans under it are attributed through it.
                self.wrappers += 1
                anc.record(key, span.parent_span_id, _passed_on_by(own), now, None)
                continue
            calls.remember(key, parent, span.origin, tokens, received)
            missing = None
            if span.parent_span_id:
                found, missing = anc.resolve(span.project_id, span.trace_id, span.parent_span_id)
                if found:
                    row.update(attributed(own, found, resource))
                if missing is not None and not needs_ancestors(own):
                    missing = None
            if emitted is None and missing is None:
                rows.append(row)
            else:
                # Kept (for late logs or ancestors): the caller gets a copy, because later stages
                # rewrite rows in place (masking, pricing). Held while kept: the span, and the logs
                # whose content went into the row.
                rows.append(copy_row(row))
                if span.origin is not None:
                    origins = add_origin(origins, span.origin)
                if batch_origins is not None:
                    origins = merge_origins(origins, batch_origins.pop(key, None))
                if missing is not None:
                    kept = emitted or EmittedRow(row, _STRONG, EventContent(), _NO_WEAK)
                    waiter = Waiter(
                        kept, span.project_id, span.trace_id, span.parent_span_id, own, resource,
                        dict(origins) if origins else None,
                    )  # fmt: skip
                    anc.wait(missing, waiter, now, hold=True)
                if emitted is not None:
                    join.remember(key, emitted, now, origins)
            # A model call is seldom the ancestor of another: its link holds no offsets.
            anc.record(key, span.parent_span_id, _passed_on_by(own), now, None)
        # Rows whose missing ancestor came in this batch: a new version when it changes them.
        for w in anc.woken():
            try:
                found, missing = anc.resolve(w.project, w.trace, w.parent)
                fields = attributed(w.own, found, w.resource)
                if changes(w.emitted.row, fields):
                    rows.append(w.emitted.reattributed(fields))
            except Exception:
                self.failed += 1
                missing = None
            if missing is not None:
                anc.wait(missing, w, now, hold=False)
            else:
                anc.done(w)
        # Content for spans not in this batch: completes a row emitted earlier, or waits for its span.
        for key, content in batch_content.items():
            origins = batch_origins.get(key) if batch_origins is not None else None
            emitted = join.emitted(key)
            if emitted is None:
                join.wait(key, content, now, origins)
                continue
            try:
                rows.append(emitted.updated(content))
            except Exception:
                self.failed_logs += 1
            join.extend(emitted, origins)
        join.bound()
        anc.bound()
        self._resources.clear()
        return rows

    def _build(self, span: Span, op: str, log_content: EventContent | None) -> Built:
        """The row for one model-call span, what to keep for late logs, and what the span names."""
        a = span.attributes
        layout = self._layout(a)
        indexed, tagged = layout.scan(a)
        ll_indexed = indexed.get(openllmetry.PROMPT_PREFIX) or indexed.get(openllmetry.COMPLETION_PREFIX)
        # most spans carry no prefixed metadata: skip the generator then
        has_assoc = any(p == openllmetry.ASSOCIATION_PREFIX for p, _, _ in tagged) if tagged else False
        conv = detect_convention(span, bool(ll_indexed), has_assoc)
        is_vercel = conv == "vercel_ai"
        is_langfuse = conv == "langfuse"
        ch = layout.chains(self._chains_full if tagged else self._chains[conv])
        # most spans have no events and no log content: share one empty reading then
        ev = SpanEvents(span.events, log_content) if span.events or log_content is not None else _NO_EVENTS
        # JSON side documents, parsed only when present.
        oi_params = (
            openinference.invocation_parameters(a) if openinference.INVOCATION_PARAMETERS in a else None
        )
        oi_meta = openinference.metadata(a) if "metadata" in a else None
        lf_params = langfuse.model_parameters(a) if is_langfuse else None
        lf_meta = langfuse.metadata(a) if is_langfuse else None
        oi_response = None
        if conv == "openinference":
            # The raw request, when no invocation parameters carry its model and parameters.
            if oi_params is None and openinference.INPUT_VALUE in a:
                oi_params = openinference.request_document(a)
            # The raw response holds what OpenInference has no attribute for (the response id), and
            # usage and finish reasons some instrumentors leave there. An embeddings response is
            # mostly vectors: read only when its usage is missing.
            if openinference.OUTPUT_VALUE in a and (op != "embeddings" or "llm.token_count.prompt" not in a):
                oi_response = openinference.response_facts(a)

        call = _call(a, ch, op, conv, indexed, is_vercel, oi_params, oi_response)
        counts, adjusted = tokens(
            a, ch, is_langfuse, is_vercel, oi_response.usage(a) if oi_response else None
        )
        streaming, ttft = streaming_and_ttft(a, ch, oi_params, span.start_ns, is_langfuse, is_vercel, ev)
        if ttft is not None and span.end_ns > span.start_ns and ttft > (span.end_ns - span.start_ns) / 1e6:
            # The first token cannot come after the call ended: a sender's clock or field gone
            # wrong (a Langfuse completion start in year 9999 gave 2.5e14 ms), kept out of the
            # latency percentiles.
            ttft = None
        prompt, response, frs, waiting = row_messages(
            a, indexed, is_vercel, is_langfuse, ch.finish, ev, oi_response.document if oi_response else None
        )
        if not frs and oi_response is not None:
            frs = oi_response.finish_reasons
        row = _row(
            span,
            ttft,
            call,
            _status(span, is_langfuse, ev),
            counts,
            provided_cost(a, is_langfuse),
            _record(RowContent, (prompt, response, streaming, frs)),
            _request_params(a, layout.keys, (oi_params, lf_params), is_vercel, indexed),
            who := attribution(a, self._resource(span.resource), ch, (oi_meta, lf_meta)),
            meta := metadata(a, ch, tagged, oi_meta, lf_meta, is_langfuse, adjusted),
        )
        own = _record(Inherited, (*who.own_ids, meta.tags, meta.labels))
        if waiting is None:
            return _record(Built, (row, None, own, who.resource_ids))
        # Kept for later logs. The kept row shares message objects with the content.
        strong, weak = waiting
        kept = EmittedRow(row, strong, ev.content or EventContent(), weak)
        return _record(Built, (row, kept, own, who.resource_ids))

    def _resource(self, res: dict[str, Any]) -> ResourceFacts:
        facts = self._resources.get(id(res))
        if facts is None:
            facts = self._resources[id(res)] = resource_facts(res, self.tenant_keys)
        return facts

    def _layout(self, a: dict[str, Any]) -> KeyLayout:
        """The span's key layout (keys in order: the scan's findings depend on it)."""
        keys = tuple(a)
        if len(keys) > _MAX_LAYOUT_KEYS:
            return KeyLayout(keys)
        layout = self._layouts.get(keys)
        if layout is None:
            if len(self._layouts) >= _MAX_LAYOUTS:
                self._layouts.clear()
            layout = self._layouts[keys] = KeyLayout(keys)
        return layout

    def _passed_on(self, a: dict[str, Any]) -> Inherited | None:
        """What a span that is not a model call passes on to the calls under it (None: nothing)."""
        if self._id_keys.isdisjoint(a):  # most spans: one C-level pass over their keys
            return None
        _, tagged = scan(a)
        oi_meta = openinference.metadata(a) if "metadata" in a else None
        ids = span_ids(a, self._chains_full, (oi_meta,))
        meta = metadata(a, self._chains_full, tagged, oi_meta, None, False, {})
        if not any(ids) and not meta.tags and not meta.labels:
            return None
        return Inherited(*ids, meta.tags, meta.labels)


def _passed_on_by(own: Inherited) -> Inherited | None:
    """What a model call passes on to the spans under it (None: nothing)."""
    return own if own.user_id or own.session_id or own.tenant_id or own.tags or own.labels else None


class Built(NamedTuple):
    """A model call's row, what to keep for late log content (None: nothing to wait for), and what
    its own span and its resource name (for what ancestors add between the two)."""

    row: Row
    emitted: EmittedRow | None
    own: Inherited
    resource: tuple[str, str, str]


_STRONG: Final = (True, True, True)
_NO_WEAK: Final[tuple[list[Message], list[Message], list[str]]] = ([], [], [])


class RowContent(NamedTuple):
    """The messages of a call and how they were delivered."""

    prompt: list[Message]
    response: list[Message]
    streaming: bool
    finish_reasons: list[str]


def _row(
    span: Span,
    ttft: float | None,
    call: ModelCall,
    status: CallStatus,
    counts: TokenCounts,
    cost: ProvidedCost,
    content: RowContent,
    params: RequestParams,
    who: Attribution,
    meta: RowMetadata,
) -> Row:
    """The row, its keys in ROW_KEYS order."""
    error_type = status.error_type
    total_cost = cost.total  # the span's own cost; the pricing stage decides what total_cost_usd holds
    start = span.start_ns
    end = span.end_ns
    # A copy of a dict with the keys in place, then stores: a 50-key dict display compiles to one
    # insert at a time with resizes, ~40% slower.
    row = _ROW_TEMPLATE.copy()
    row["inference_id"] = inference_id(span.project_id, span.trace_id, span.span_id)
    row["project_id"] = span.project_id
    row["trace_id"] = span.trace_id
    row["span_id"] = span.span_id
    row["parent_span_id"] = span.parent_span_id
    row["start_time"] = start
    row["end_time"] = end
    row["latency_ms"] = max(0, end - start) / 1e6
    row["ttft_ms"] = ttft
    row["provider"] = call.provider
    row["model"] = call.model
    row["request_model"] = call.request_model
    row["response_id"] = call.response_id
    row["operation"] = call.operation
    row["convention"] = call.convention
    row["success"] = not status.failed and not error_type
    row["error_type"] = error_type
    row["status_message"] = status.status_message
    row["input_tokens"] = counts.input
    row["output_tokens"] = counts.output
    row["cache_read_tokens"] = counts.cache_read
    row["cache_write_tokens"] = counts.cache_write
    row["reasoning_tokens"] = counts.reasoning
    row["total_tokens"] = counts.total
    row["usage_details"] = counts.details
    row["total_cost_usd"] = total_cost
    row["input_cost_usd"] = cost.input
    row["output_cost_usd"] = cost.output
    row["provided_cost_usd"] = total_cost
    row["price_status"] = "provided" if total_cost is not None else ""
    row["prompt_messages"] = content.prompt
    row["response_messages"] = content.response
    row["streaming"] = content.streaming
    row["finish_reasons"] = content.finish_reasons
    row["temperature"] = params.temperature
    row["top_p"] = params.top_p
    row["max_tokens"] = params.max_tokens
    row["request_parameters"] = params.other
    row["user_id"] = who.user_id
    row["session_id"] = who.session_id
    row["tenant_id"] = who.tenant_id
    row["service_name"] = who.service_name
    row["environment"] = who.environment
    row["server_address"] = call.server_address
    row["agent_name"] = who.agent_name
    row["agent_id"] = who.agent_id
    row["tags"] = meta.tags
    row["labels"] = meta.labels
    row["version"] = 1
    return row


class ModelCall(NamedTuple):
    """Which model was called, how, and where; "" where unknown."""

    provider: str
    model: str
    request_model: str
    response_id: str
    operation: str
    convention: str
    server_address: str


# OpenInference: request-model attributes that beat the request document (`llm.model_name`, later in
# the chain, is the response model when the call succeeded).
_OI_REQUEST_MODEL: Final = ("gen_ai.request.model", "llm.request.model_name")
_RESPONSE_MODEL: Final = (
    "langfuse.observation.model.name",
    "gen_ai.response.model",
    "llm.response.model_name",
)


def _call(
    a: dict[str, Any],
    ch: Chains,
    op: str,
    conv: str,
    indexed: Indexed,
    is_vercel: bool,
    oi_request: dict[str, Any] | None,
    oi_response: openinference.ResponseFacts | None,
) -> ModelCall:
    # `otel_genai.server_address`, with the chain cut to the span's keys
    server_address = first_str(a, ch.server_address) or ""
    if not server_address and "gen_ai.openai.api_base" in a:
        server_address = host_of(a["gen_ai.openai.api_base"]) or ""
    provider = None
    for k in ch.provider:
        v = a.get(k)
        if v is not None:
            provider = otel_genai.normalise_provider(v, api_qualified=is_vercel)
            if provider:
                break
    if not provider and ("llm.provider" in a or "llm.system" in a):
        provider = openinference.provider(a)
    if not provider and "ai.model.provider" in a:
        provider = otel_genai.normalise_provider(a["ai.model.provider"], api_qualified=True)
    if not provider:
        provider = otel_genai.provider_from_host(server_address)
    if (
        op == "chat"
        and conv == "openinference"
        and openinference.PROMPTS_PREFIX in indexed
        and openinference.INPUT_PREFIX not in indexed
    ):
        op = "text_completion"  # OpenInference legacy completions API
    if conv == "openinference":
        request_model = (
            first_str(a, _OI_REQUEST_MODEL)
            or (openinference.request_model(oi_request) if oi_request else None)
            or first_str(a, ch.request_model)
            or ""
        )
        model = (
            first_str(a, _RESPONSE_MODEL)
            or (oi_response.model if oi_response else None)
            or first_str(a, ch.model)
            or request_model
        )
        response_id = first_str(a, ch.response_id) or (oi_response.response_id if oi_response else None) or ""
    else:
        request_model = first_str(a, ch.request_model) or ""
        model = first_str(a, ch.model) or request_model  # the model served, else the one requested
        response_id = first_str(a, ch.response_id) or ""
    return _record(ModelCall, (provider or "", model, request_model, response_id, op, conv, server_address))


class RequestParams(NamedTuple):
    """Sampling parameters the call asked for, None where not given; `other` holds the request
    parameters without a column of their own (seed, stop sequences, tool definitions, ...)."""

    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    other: dict[str, str]


# Request attributes without a column -> `request_parameters` keys (the first name found wins).
_OTHER_PARAMS: Final = {
    "gen_ai.request.seed": "seed",
    "gen_ai.openai.request.seed": "seed",
    "gen_ai.request.top_k": "top_k",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.stop_sequences": "stop_sequences",
    "gen_ai.request.choice.count": "choice_count",
    "gen_ai.output.type": "output_type",
    "gen_ai.openai.request.response_format": "output_type",
    "gen_ai.request.encoding_formats": "encoding_formats",
    "gen_ai.request.reasoning_effort": "reasoning_effort",
    "openai.request.service_tier": "service_tier",
    "gen_ai.openai.request.service_tier": "service_tier",
    "gen_ai.tool.definitions": "tool_definitions",
}
_OTHER_PARAM_NAMES: Final = frozenset(_OTHER_PARAMS)
# Every attribute `_request_params` reads (the AI SDK's settings aside).
_PARAM_ATTRIBUTES: Final = _OTHER_PARAM_NAMES | {
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.max_tokens",
}


def _other_params(
    a: dict[str, Any], keys: frozenset[str], params: _Documents, indexed: Indexed
) -> dict[str, str]:
    other: dict[str, str] = {}
    # most spans carry none of them: a check that builds no set
    present = None if _OTHER_PARAM_NAMES.isdisjoint(keys) else _OTHER_PARAM_NAMES & keys
    if present:
        for k, name in _OTHER_PARAMS.items():
            if k in present and name not in other:
                v = stringify(a[k])
                if v:
                    other[name] = v
    tools = indexed.get(openinference.TOOLS_PREFIX)
    if tools and "tool_definitions" not in other:
        other["tool_definitions"] = openinference.tool_definitions(tools)
    for d in params:
        if d:
            openinference.other_parameters(d, other)
    return other


def _request_params(
    a: dict[str, Any], keys: frozenset[str], params: _Documents, is_vercel: bool, indexed: Indexed
) -> RequestParams:
    """Each from the span attribute, then parameter documents (None: absent), then the AI SDK's
    settings."""
    if (
        not is_vercel
        and _PARAM_ATTRIBUTES.isdisjoint(keys)
        and not any(params)
        and openinference.TOOLS_PREFIX not in indexed
    ):
        return _record(RequestParams, (None, None, None, {}))  # nothing to read (many spans): no calls
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
    other = _other_params(a, keys, params, indexed)
    return _record(RequestParams, (temperature, top_p, max_tokens, other))


def _param(params: _Documents, keys: tuple[str, ...], conv: Callable[[Any], Any]) -> Any:
    for d in params:
        if not d:
            continue
        for k in keys:
            if k in d:
                v = conv(d[k])
                if v is not None:
                    return v
    return None


class CallStatus(NamedTuple):
    """How the call ended."""

    failed: bool
    error_type: str
    status_message: str


_OK: Final = CallStatus(False, "", "")  # shared: most calls succeed, and records are immutable


def _status(span: Span, is_langfuse: bool, ev: SpanEvents) -> CallStatus:
    """A failed call without an error type gets `_OTHER`."""
    a = span.attributes
    error_type = as_str(a.get("error.type")) or ""
    lf_error = is_langfuse and a.get("langfuse.observation.level") == "ERROR"
    failed = span.status_code == _STATUS_ERROR or lf_error
    if failed and not error_type:
        error_type = ev.exc_type or "_OTHER"
    status_message = span.status_message or ""
    if not status_message and is_langfuse:
        status_message = unquote(a.get("langfuse.observation.status_message")) or ""
    if not status_message and failed and ev.exc_msg:
        status_message = ev.exc_msg
    if failed or error_type or status_message:
        return CallStatus(failed, error_type, status_message)
    return _OK


__all__ = [
    "CONVENTIONS",
    "DEFAULT_TENANT_KEYS",
    "INFERENCE_NAMESPACE",
    "ROW_KEYS",
    "GenAINormaliser",
    "inference_id",
]
