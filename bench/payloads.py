"""Request bodies for the load generator, built once before timing and stamped with fresh ids per send.

Each template is one OTLP request (protobuf or OTLP/JSON) whose trace and span ids are random
placeholders; `Template.stamp(base)` copies the body and writes ids `base .. base + n - 1` over
the placeholders (parents and correlated log records included), so every span sent is distinct
while sending costs a copy and a few thousand slice assignments. The id of span number k is
`base + k` as 8 big-endian bytes; the trace id is a per-run prefix followed by the span id of
the trace's root. The loss check rebuilds the expected span ids from (base, count) ranges.

Times are placeholders too, written at each send: a call starts 1-20 s before it is sent (its
duration and an exporter's batching delay), as real traffic does. Times fixed when the templates
were built made every call minutes old by the time it was sent, which no service sees from live
senders and which took the service's paths for late retries (the look-up of stored inference
rows, `inferline/exporters/clickhouse/new_inferences.py`) for every row.

GenAI spans follow the shapes of `tests/genai_examples.py` (OTel GenAI current with content on
the span, OTel GenAI older with content in log records, OpenInference, Traceloop/OpenLLMetry,
Vercel AI SDK, Langfuse, OpenLIT), with ~2 KB of prompt and response text, mixed providers and
models, some PII and some errors. Plain spans are HTTP server, database and HTTP client spans.
"""

from __future__ import annotations

import json
import random
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.bench_pii import PII, PROSE
from bench.bench_sentiment import FILLERS, OPENERS
from inferline.otlp.json_codec import decode_json
from inferline.otlp.validate import remove_invalid
from tests.genai_examples import example
from tests.otlp_helpers import any_value, json_span, key_values

TRANSPORTS = ("grpc", "http-protobuf", "http-json")
# Share of requests per transport: most SDKs and collectors send protobuf; some send OTLP/JSON.
TRANSPORT_WEIGHTS = (0.5, 0.35, 0.15)
PII_SHARE = 0.2  # GenAI spans whose prompt carries PII
ERROR_SHARE = 0.02

# (provider as the convention spells it, model). Prices are known for all but the self-hosted one.
MODELS: dict[str, list[str]] = {
    "openai": ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o3-mini"],
    "anthropic": ["claude-sonnet-4-5", "claude-3-5-haiku-20241022", "claude-3-5-sonnet-20241022"],
    "gcp.gemini": ["gemini-2.5-flash", "gemini-2.5-pro"],
    "aws.bedrock": ["anthropic.claude-3-5-sonnet-20240620-v1:0"],
    "azure.ai.openai": ["gpt-4o"],
    "self-hosted": ["llama-3.1-8b-instruct-finetune"],
}
SERVICES = ["checkout-bot", "support-api", "search", "summariser", "agent-runner", "translate"]


# ---------------------------------------------------------------------------------------------
# Text


def prose(rng: random.Random, chars: int, *, pii: bool = False, mood: bool = False) -> str:
    """About `chars` characters of assistant-like prose; with PII values, or opening with a
    sentence that carries sentiment (what the sentiment stage scores)."""
    parts = [rng.choice(OPENERS)] if mood else []
    values = rng.sample(PII, 2) if pii else []
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(rng.choice(PROSE + FILLERS))
        if values and rng.random() < 0.3:
            parts.append(values.pop() + ".")
    parts.extend(v + "." for v in values)
    return " ".join(parts)


@dataclass
class Call:
    """What one model call is about: who, which model, how much, what was said."""

    provider: str
    model: str
    system: str
    user: str
    assistant: str
    input_tokens: int
    output_tokens: int
    cache_read: int
    ttft_s: float
    duration_ns: int
    error: bool
    user_id: str
    session_id: str


def random_call(rng: random.Random, providers: list[str], scale: float = 1.0) -> Call:
    provider = rng.choice(providers)
    has_pii = rng.random() < PII_SHARE
    input_tokens = int(rng.lognormvariate(7.0, 0.8)) + 20
    duration_ns = int(rng.lognormvariate(20.4, 0.6))  # ~700 ms median
    return Call(
        provider=provider,
        model=rng.choice(MODELS[provider]),
        system=prose(rng, int(250 * scale)),
        user=prose(rng, int(750 * scale), pii=has_pii, mood=True),
        assistant=prose(rng, int(1150 * scale), mood=rng.random() < 0.5),
        input_tokens=input_tokens,
        output_tokens=int(rng.lognormvariate(5.5, 0.7)) + 1,
        cache_read=input_tokens // 2 if rng.random() < 0.3 else 0,
        ttft_s=round(duration_ns / 1e9 * rng.uniform(0.1, 0.4), 3),
        duration_ns=duration_ns,
        error=rng.random() < ERROR_SHARE,
        user_id=f"u_{int(rng.paretovariate(1.2)) % 5000}",
        session_id=f"s_{rng.randrange(100_000)}",
    )


# ---------------------------------------------------------------------------------------------
# One GenAI span per convention: (scope, span dict without ids, log records without ids)


@dataclass
class SpanShape:
    scope: str
    name: str
    kind: int
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)  # correlated log records (content)


def _otel_parts(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def otel_current(c: Call, rng: random.Random) -> SpanShape:
    """OTel GenAI semantic conventions ≥ 1.37: content as JSON attributes on the span."""
    a = dict(example("10.1")["attributes"])
    a.update(
        {
            "gen_ai.provider.name": c.provider if c.provider != "self-hosted" else "vllm",
            "gen_ai.request.model": c.model,
            "gen_ai.response.model": c.model,
            "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(48):x}",
            "gen_ai.usage.input_tokens": c.input_tokens,
            "gen_ai.usage.cache_read.input_tokens": c.cache_read,
            "gen_ai.usage.output_tokens": c.output_tokens,
            "gen_ai.response.time_to_first_chunk": c.ttft_s,
            "gen_ai.conversation.id": c.session_id,
            "user.id": c.user_id,
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": c.system}]),
            "gen_ai.input.messages": json.dumps([_otel_parts("user", c.user)]),
            "gen_ai.output.messages": json.dumps(
                [{**_otel_parts("assistant", c.assistant), "finish_reason": "stop"}]
            ),
        }
    )
    return SpanShape("opentelemetry.instrumentation.openai_v2", f"chat {c.model}", 3, a)


def otel_older_logs(c: Call, rng: random.Random) -> SpanShape:
    """OTel GenAI before 1.37: `gen_ai.system`, content in correlated log records (events)."""
    ex = example("10.2")
    a = dict(ex["span"]["attributes"])
    system = c.provider if c.provider in ("openai", "anthropic") else "openai"
    a.update(
        {
            "gen_ai.system": system,
            "gen_ai.request.model": c.model,
            "gen_ai.response.model": c.model,
            "gen_ai.response.id": f"msg_{rng.getrandbits(48):x}",
            "gen_ai.usage.input_tokens": c.input_tokens,
            "gen_ai.usage.output_tokens": c.output_tokens,
        }
    )
    logs: list[dict[str, Any]] = [
        {
            "eventName": "gen_ai.system.message",
            "attributes": {"gen_ai.system": system},
            "body": {"content": c.system},
        },
        {
            "attributes": {"event.name": "gen_ai.user.message", "gen_ai.system": system},
            "body": {"content": c.user},
        },
        {
            "eventName": "gen_ai.choice",
            "attributes": {"gen_ai.system": system},
            "body": {"index": 0, "finish_reason": "end_turn", "message": {"content": c.assistant}},
        },
        # An ordinary application log line in the same span: not content, stored as a log.
        {"attributes": {"code.function": "call_model"}, "body": f"calling {c.model}"},
    ]
    return SpanShape("opentelemetry.instrumentation.anthropic", f"chat {c.model}", 3, a, logs=logs)


def openinference(c: Call, rng: random.Random) -> SpanShape:
    a = dict(example("10.3")["attributes"])
    a.update(
        {
            "llm.system": "openai",
            "llm.provider": "azure" if c.provider == "azure.ai.openai" else "openai",
            "llm.model_name": c.model,
            "llm.input_messages.0.message.content": c.system,
            "llm.input_messages.1.message.content": c.user,
            "llm.output_messages.0.message.content": c.assistant,
            "llm.token_count.prompt": c.input_tokens,
            "llm.token_count.completion": c.output_tokens,
            "llm.token_count.total": c.input_tokens + c.output_tokens,
            "llm.token_count.prompt_details.cache_read": c.cache_read,
            # OpenInference repeats the request as JSON; kept short here so spans stay ~3 KB.
            "input.value": json.dumps({"model": c.model, "stream": True, "messages_count": 2}),
            "output.value": c.assistant[:200],
            "session.id": c.session_id,
            "user.id": c.user_id,
        }
    )
    return SpanShape("openinference.instrumentation.openai", "ChatCompletion", 1, a)


def traceloop(c: Call, rng: random.Random) -> SpanShape:
    ex = example("10.4")["attributes"]
    a = {k: v for k, v in ex.items() if ".tool_calls." not in k}
    a.update(
        {
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": c.model,
            "gen_ai.response.model": c.model,
            "gen_ai.prompt.0.content": c.system,
            "gen_ai.prompt.1.content": c.user,
            "gen_ai.completion.0.content": c.assistant,
            "gen_ai.completion.0.finish_reason": "stop",
            "gen_ai.usage.prompt_tokens": c.input_tokens,
            "gen_ai.usage.completion_tokens": c.output_tokens,
            "llm.usage.total_tokens": c.input_tokens + c.output_tokens,
            "gen_ai.usage.cache_read_input_tokens": c.cache_read,
            "llm.user": c.user_id,
            "traceloop.association.properties.user_id": c.user_id,
            "traceloop.association.properties.session_id": c.session_id,
        }
    )
    return SpanShape("opentelemetry.instrumentation.openai.v1", "openai.chat", 3, a)


def vercel(c: Call, rng: random.Random) -> SpanShape:
    a = dict(example("10.5")["attributes"])
    provider = "anthropic.messages" if c.provider == "anthropic" else "openai.chat"
    a.update(
        {
            "ai.model.id": c.model,
            "ai.model.provider": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": c.model,
            "gen_ai.response.model": c.model,
            "ai.response.model": c.model,
            "ai.telemetry.metadata.userId": c.user_id,
            "ai.telemetry.metadata.sessionId": c.session_id,
            "ai.prompt.messages": json.dumps(
                [
                    {"role": "system", "content": c.system},
                    {"role": "user", "content": [{"type": "text", "text": c.user}]},
                ]
            ),
            "ai.response.text": c.assistant,
            "ai.response.msToFirstChunk": c.ttft_s * 1000,
            "ai.usage.inputTokens": c.input_tokens,
            "ai.usage.outputTokens": c.output_tokens,
            "ai.usage.totalTokens": c.input_tokens + c.output_tokens,
            "ai.usage.cachedInputTokens": c.cache_read,
            "gen_ai.usage.input_tokens": c.input_tokens,
            "gen_ai.usage.output_tokens": c.output_tokens,
        }
    )
    return SpanShape("ai", "ai.streamText.doStream", 1, a, events=example("10.5")["events"])


def langfuse(c: Call, rng: random.Random) -> SpanShape:
    a = dict(example("10.6")["attributes"])
    a.pop("langfuse.observation.cost_details")  # priced by us, like most Langfuse generations
    a.pop("langfuse.observation.completion_start_time")
    a.update(
        {
            "langfuse.observation.model.name": c.model,
            "langfuse.observation.input": json.dumps(
                [{"role": "system", "content": c.system}, {"role": "user", "content": c.user}]
            ),
            "langfuse.observation.output": json.dumps({"role": "assistant", "content": c.assistant}),
            "langfuse.observation.usage_details": json.dumps(
                {
                    "input": c.input_tokens,
                    "output": c.output_tokens,
                    "total": c.input_tokens + c.output_tokens,
                }
            ),
            "user.id": c.user_id,
            "session.id": c.session_id,
        }
    )
    return SpanShape("langfuse-sdk", "generation", 1, a)


def openlit(c: Call, rng: random.Random) -> SpanShape:
    a = dict(example("10.7")["attributes"])
    for k in ("gen_ai.usage.cost", "service.name"):
        a.pop(k)
    a.update(
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": c.model,
            "gen_ai.response.model": c.model,
            "gen_ai.request.user": c.user_id,
            "gen_ai.usage.input_tokens": c.input_tokens,
            "gen_ai.usage.output_tokens": c.output_tokens,
            "gen_ai.usage.total_tokens": c.input_tokens + c.output_tokens,
            "gen_ai.server.time_to_first_token": c.ttft_s,
        }
    )
    events = [
        {
            "name": "gen_ai.content.prompt",
            "attributes": {"gen_ai.prompt": f"system: {c.system}\nuser: {c.user}"},
        },
        {"name": "gen_ai.content.completion", "attributes": {"gen_ai.completion": c.assistant}},
    ]
    return SpanShape("openlit.otel.tracing", f"chat {c.model}", 3, a, events=events)


# Convention → (shape builder, providers it is used with, content scale).
CONVENTIONS: dict[str, tuple[Callable[[Call, random.Random], SpanShape], list[str], float]] = {
    "otel_genai": (otel_current, ["openai", "anthropic", "gcp.gemini", "aws.bedrock", "self-hosted"], 1.0),
    "otel_genai_logs": (otel_older_logs, ["openai", "anthropic"], 1.0),
    "openinference": (openinference, ["openai", "azure.ai.openai"], 1.0),
    "openllmetry": (traceloop, ["openai"], 1.0),
    "vercel_ai": (vercel, ["anthropic", "openai"], 1.0),
    "langfuse": (langfuse, ["openai", "anthropic"], 1.0),
    "openlit": (openlit, ["openai"], 0.8),
}


def plain_trace(rng: random.Random) -> list[tuple[str, int, dict[str, Any], int]]:
    """An HTTP request handled by a service: server span, two database queries, one outgoing call.
    (name, kind, attributes, parent index within the trace or -1)."""
    order = rng.randrange(10**7)
    route = rng.choice(["/api/orders/{id}", "/api/cart", "/api/users/{id}/profile", "/healthz"])
    status = rng.choice([200] * 18 + [404, 500])
    server = {
        "http.request.method": rng.choice(["GET", "GET", "POST"]),
        "http.route": route,
        "url.path": route.replace("{id}", str(order)),
        "url.scheme": "https",
        "http.response.status_code": status,
        "server.address": "shop.example.com",
        "network.protocol.version": "1.1",
        "client.address": f"10.1.{rng.randrange(256)}.{rng.randrange(256)}",
        "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    }
    db = {
        "db.system.name": "postgresql",
        "db.namespace": "shop",
        "db.operation.name": "SELECT",
        "db.collection.name": "orders",
        "db.query.text": "SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at",
        "server.address": "db.internal",
        "server.port": 5432,
    }
    client = {
        "http.request.method": "GET",
        "url.full": f"https://inventory.internal/v2/items/{order}",
        "http.response.status_code": 200,
        "server.address": "inventory.internal",
    }
    return [
        (f"{server['http.request.method']} {route}", 2, server, -1),
        ("SELECT shop.orders", 3, db, 0),
        ("SELECT shop.orders", 3, dict(db, **{"db.collection.name": "order_items"}), 0),
        ("GET", 3, client, 0),
    ]


# ---------------------------------------------------------------------------------------------
# Templates


@dataclass
class Body:
    """One encoded request and where its placeholder ids sit: (offset, span index)."""

    data: bytes
    # (offset, span index): where span k's id goes.
    slots: list[tuple[int, int]]
    hex_ids: bool  # OTLP/JSON writes ids as hex text
    # (offset, root span index): where the second half of a trace id goes (the first half, the
    # run prefix, is written when the body is built).
    trace_slots: list[tuple[int, int]] = field(default_factory=list)
    # (offset, time index): where a time goes, as fixed64 (protobuf) or 19 digits (OTLP/JSON).
    time_slots: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Template:
    kind: str  # "genai" | "plain"
    transport: str
    spans: int
    genai_spans: int  # spans that make an llm_inferences row
    traces: Body
    logs: Body | None = None  # correlated log records, sent after the spans are acknowledged
    log_records: int = 0
    # The times the placeholders stand for (ns), as of `built_ns`; each send shifts them to its own.
    times: list[int] = field(default_factory=list)
    built_ns: int = 0

    def stamp(self, base: int, now_ns: int | None = None) -> tuple[bytes, bytes | None]:
        """The request bodies with span ids `base .. base + spans - 1` (trace ids: run prefix + root
        id) and times as if built at `now_ns` (default: now)."""
        shift = (time.time_ns() if now_ns is None else now_ns) - self.built_ns
        times = [t + shift for t in self.times]
        return _stamp(self.traces, base, times), _stamp(self.logs, base, times) if self.logs else None


_PACK = struct.Struct(">Q").pack_into
_PACK_TIME = struct.Struct("<Q").pack_into  # fixed64 is little-endian
# Time placeholders: this value plus the time's index. 19 digits in OTLP/JSON, found by its
# leading digits; as fixed64 its six high bytes are found (an index stays below 2**16).
_TIME_MARK = 9_000_000_000_000_000_000
_TIME_MARK_BYTES = struct.pack("<Q", _TIME_MARK)[2:]
_TIME_MARK_DIGITS = str(_TIME_MARK).encode()[:14]


def as_logged(traces: bytes, logs: bytes | None = None) -> tuple[bytes, bytes | None]:
    """Protobuf requests as a receiver writes them to the local log: without the records it
    refuses (the generator sends a few on purpose, which the service's workers never see)."""
    spans = ExportTraceServiceRequest.FromString(traces)
    remove_invalid(spans)
    if logs:
        records = ExportLogsServiceRequest.FromString(logs)
        remove_invalid(records)
        logs = records.SerializeToString()
    return spans.SerializeToString(), logs


def _stamp(body: Body, base: int, times: list[int]) -> bytes:
    buf = bytearray(body.data)
    if body.hex_ids:
        for off, k in body.time_slots:
            buf[off : off + 19] = b"%019d" % times[k]
    else:
        for off, k in body.time_slots:
            _PACK_TIME(buf, off, times[k])
    ids = [(off, base + i) for off, i in body.slots]
    # A trace id's last byte chooses its shard (`inferline.otlp.shard`) and is random in real W3C
    # trace ids: the root's number, mixed (splitmix64's finalizer, a bijection: ids stay unique).
    # Unmixed, a trace's root index steps by the (fixed) size of a plain trace and every plain
    # span went to the same shard, so one worker did all the work.
    ids += [(off, _mix(base + i)) for off, i in body.trace_slots]
    if body.hex_ids:
        for off, v in ids:
            buf[off : off + 16] = b"%016x" % v
    else:
        for off, v in ids:
            _PACK(buf, off, v)
    return bytes(buf)


_U64 = (1 << 64) - 1


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    return z ^ (z >> 31)


def _find_all(data: bytes, marker: bytes) -> list[int]:
    out, at = [], data.find(marker)
    while at >= 0:
        out.append(at)
        at = data.find(marker, at + 1)
    return out


def _encode(
    tree: dict[str, Any],
    message: type,
    hex_ids: bool,
    span_marks: list[bytes],
    trace_marks: dict[int, bytes],
    prefix: bytes,
    times: int,
) -> Body:
    raw = orjson.dumps(tree)
    data = bytearray(raw if hex_ids else decode_json(raw, message).SerializeToString())
    width = 16 if hex_ids else 8  # of one 8-byte id in the body

    def encoded(b: bytes) -> bytes:
        return b.hex().encode() if hex_ids else b

    slots: list[tuple[int, int]] = []
    for i, mark in enumerate(span_marks):
        slots += [(o, i) for o in _find_all(data, encoded(mark))]
    found_spans = {i for _, i in slots}
    found_traces = set()
    trace_slots: list[tuple[int, int]] = []
    for root, mark in trace_marks.items():
        for o in _find_all(data, encoded(mark)):
            data[o : o + width] = encoded(prefix)
            trace_slots.append((o + width, root))
            found_traces.add(root)
    if message is ExportTraceServiceRequest and (
        len(found_spans) != len(span_marks) or len(found_traces) != len(trace_marks)
    ):
        raise RuntimeError("a placeholder id was not found in the encoded request")
    if hex_ids:
        time_slots = [(o, int(data[o : o + 19]) - _TIME_MARK) for o in _find_all(data, _TIME_MARK_DIGITS)]
    else:
        time_slots = [
            (o - 2, int.from_bytes(data[o - 2 : o], "little")) for o in _find_all(data, _TIME_MARK_BYTES)
        ]
    if len(time_slots) != times or not all(0 <= k < 1 << 16 for _, k in time_slots):
        raise RuntimeError(f"{len(time_slots)} time placeholders found in the encoded request, not {times}")
    return Body(bytes(data), slots, hex_ids, trace_slots, time_slots)


def build_template(kind: str, transport: str, spans: int, rng: random.Random, prefix: bytes) -> Template:
    """One request of about `spans` spans (whole traces) from one service, several scopes."""
    now = time.time_ns()
    span_marks: list[bytes] = []
    trace_marks: dict[int, bytes] = {}
    by_scope: dict[str, list[dict[str, Any]]] = {}
    log_records: list[dict[str, Any]] = []
    genai = 0
    times: list[int] = []
    span_times, log_times = 0, 0  # placeholders in each request

    def at(ns: int) -> int:
        """A placeholder for time `ns` (`Template.stamp` writes the time of the send over it)."""
        times.append(ns)
        return _TIME_MARK + len(times) - 1

    def new_span(root: int) -> tuple[int, str, str]:
        i = len(span_marks)
        span_marks.append(secrets.token_bytes(8))
        if root < 0:
            trace_marks[i] = secrets.token_bytes(16)
            root = i
        return i, span_marks[i].hex(), trace_marks[root].hex()

    while len(span_marks) < spans:
        start = now - rng.randrange(1, 20) * 1_000_000_000
        if kind == "plain":
            ids: list[int] = []
            for name, span_kind, attrs, parent in plain_trace(rng):
                i, sid, tid = new_span(ids[0] if ids else -1)
                ids.append(i)
                s = json_span(
                    attrs,
                    trace_id=tid,
                    span_id=sid,
                    parent_span_id=span_marks[ids[parent]].hex() if parent >= 0 else "",
                    name=name,
                    kind=span_kind,
                    start_ns=at(start),
                    end_ns=at(start + rng.randrange(1, 80) * 1_000_000),
                )
                span_times += 2
                by_scope.setdefault("opentelemetry.instrumentation.fastapi", []).append(s)
            continue
        # A GenAI trace: one to three model calls (an agent's tool loop), the first one the root.
        root = -1
        for _ in range(rng.choice([1, 1, 2, 3])):
            convention = rng.choice(list(CONVENTIONS))
            shape_of, providers, scale = CONVENTIONS[convention]
            call = random_call(rng, providers, scale)
            shape = shape_of(call, rng)
            i, sid, tid = new_span(root)
            parent_span_id = "" if root < 0 else span_marks[root].hex()
            root = i if root < 0 else root
            attrs = dict(shape.attributes)
            status = 0
            if call.error:
                attrs["error.type"] = "RateLimitError"
                status = 2
            s = json_span(
                attrs,
                trace_id=tid,
                span_id=sid,
                parent_span_id=parent_span_id,
                name=shape.name,
                kind=shape.kind,
                start_ns=at(start),
                end_ns=at(start + call.duration_ns),
                events=[dict(e, timeUnixNano=at(start + 300_000_000)) for e in shape.events],
                status_code=status,
            )
            span_times += 2 + len(shape.events)
            by_scope.setdefault(shape.scope, []).append(s)
            genai += 1
            log_times += len(shape.logs)
            for log in shape.logs:
                log_records.append(
                    {
                        "timeUnixNano": str(at(start + 500_000_000)),
                        "traceId": tid,
                        "spanId": sid,
                        "attributes": key_values(log.get("attributes", {})),
                        "body": any_value(log["body"]),
                        **({"eventName": log["eventName"]} if "eventName" in log else {}),
                    }
                )
    resource = {
        "service.name": rng.choice(SERVICES),
        "service.version": "1.4.2",
        "deployment.environment.name": "production",
        "tenant.id": rng.choice(["acme", "globex", "initech"]),
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
    }
    hex_ids = transport == "http-json"
    traces_tree = {
        "resourceSpans": [
            {
                "resource": {"attributes": key_values(resource)},
                "scopeSpans": [{"scope": {"name": scope}, "spans": ss} for scope, ss in by_scope.items()],
            }
        ]
    }
    traces = _encode(
        traces_tree, ExportTraceServiceRequest, hex_ids, span_marks, trace_marks, prefix, span_times
    )
    logs = None
    if log_records:
        logs_tree = {
            "resourceLogs": [
                {
                    "resource": {"attributes": key_values(resource)},
                    "scopeLogs": [
                        {
                            "scope": {"name": "opentelemetry.instrumentation.anthropic"},
                            "logRecords": log_records,
                        }
                    ],
                }
            ]
        }
        logs = _encode(
            logs_tree, ExportLogsServiceRequest, hex_ids, span_marks, trace_marks, prefix, log_times
        )
    return Template(kind, transport, len(span_marks), genai, traces, logs, len(log_records), times, now)


def build_templates(
    kind: str, count: int, spans_per_request: int, prefix: bytes, seed: int = 7, transport: str = ""
) -> list[Template]:
    """`count` requests with transports in TRANSPORT_WEIGHTS proportions, interleaved, or all
    over `transport` if given (a peer may take only gRPC); trace ids start with `prefix` (8 bytes,
    one per run, so runs never share a trace). The same seed gives the same spans either way."""
    rng = random.Random(seed)
    transports: list[str] = []
    for t, w in zip(TRANSPORTS, TRANSPORT_WEIGHTS, strict=True):
        transports += [transport or t] * max(1, round(w * count))
    rng.shuffle(transports)
    return [build_template(kind, t, spans_per_request, rng, prefix) for t in transports[:count]]


def span_id_prefix(phase_byte: int) -> str:
    """Hex prefix every span id of a phase starts with (ids are phase_byte << 56 | counter)."""
    return f"{phase_byte:02x}"


def phase_base(phase_byte: int) -> int:
    return phase_byte << 56


def describe(templates: list[Template]) -> dict[str, Any]:
    spans = sum(t.spans for t in templates)
    proto = [t for t in templates if t.transport != "http-json"]
    return {
        "requests": len(templates),
        "spans_per_request": round(spans / len(templates), 1),
        "bytes_per_span_protobuf": round(
            sum(len(t.traces.data) for t in proto) / max(1, sum(t.spans for t in proto))
        ),
        "genai_share": round(sum(t.genai_spans for t in templates) / spans, 3),
        "log_records_per_request": round(sum(t.log_records for t in templates) / len(templates), 1),
    }
