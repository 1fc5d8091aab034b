"""Issue #11, item 7: no record is answered 200 and then lost. Through the distributed roles
(receiver → processor → writer, OS processes on librdkafka's mock cluster), each malformed or
extreme record is sent together with a normal GenAI span in the same request. What a user can
observe of it must be one of:

- the OTLP partial success names it as rejected (`rejected_spans` and an error message), and it is
  stored nowhere;
- it lands in ClickHouse (span row, and inference row for a GenAI span), with values the columns
  cannot hold emptied rather than wrapped around;
- it is in the dead-letter topic with its reason header.

The normal span of the same request always lands. A raw topic can also be filled by a stock
Collector that never ran our validation: the processor dead-letters what it cannot store, with the
reason, and processes the rest of the message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import confluent_kafka
import grpc
import httpx
import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanKind

from inferline.otlp.json_codec import decode_json
from inferline.otlp.protobuf import MAX_VALUE_DEPTH
from tests.conftest import wait_for
from tests.kafka_helpers import Backend, Role, headers_of, role_env, start_backend, value_of
from tests.otlp_helpers import GENAI_ATTRIBUTES, nested_request, nested_span, new_span_id, new_trace_id

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(300)]

KEY, PROJECT = "test-key-no-silent-drop", "proj-nodrop"
DLQ, RAW_SPANS, RAW_LOGS = "inferline.dlq", "otlp_spans", "otlp_logs"
PROTOBUF = "application/x-protobuf"
HEADERS = {"authorization": f"Bearer {KEY}"}
# Past the end of DateTime64(9) (2262-04-11), but still a valid fixed64 for OTLP.
YEAR_2300_NS = int(datetime(2300, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
LANDS_WITHIN_S = 60

STORED, DEAD_LETTERED, REJECTED = "stored", "dead-lettered", "rejected"


@dataclass
class Pipeline:
    backend: Backend
    receiver: Role
    processor: Role
    writer: Role
    dlq: DeadLetters

    def sql(self, query: str) -> str:
        return self.writer.sql(query, KEY)

    def count(self, table: str, column: str, value: str) -> int:
        return int(self.sql(f"SELECT count() FROM {table} WHERE {column} = '{value}'"))


class DeadLetters:
    """Everything on the dead-letter topic, read as an operator would (its own consumer group)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"no-silent-drop-{new_span_id()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe([DLQ])
        self.messages: list[confluent_kafka.Message] = []

    def _drain(self) -> None:
        while (m := self._consumer.poll(0.2)) is not None:
            if not m.error():
                self.messages.append(m)

    def matching(self, found: Callable[[bytes], bool]) -> list[confluent_kafka.Message]:
        self._drain()
        return [m for m in self.messages if m.value() is not None and found(value_of(m))]

    def about_span(self, span_id: str) -> list[confluent_kafka.Message]:
        """Dead letters holding this span: a raw OTLP message (the id's bytes) or an enriched JSON
        record (its hex)."""
        raw, text = bytes.fromhex(span_id), span_id.encode()
        return self.matching(lambda value: raw in value or text in value)

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    backend = start_backend("mock")
    tmp = tmp_path_factory.mktemp("no-silent-drop")
    env = role_env(tmp, backend.bootstrap, INFERLINE_API_KEYS=f"{KEY}={PROJECT}")
    roles = [Role(name, env, tmp) for name in ("processor", "writer", "receiver")]
    started: list[Role] = []
    dlq = None
    try:
        for r in roles:
            started.append(r.start())
        dlq = DeadLetters(backend.bootstrap)
        yield Pipeline(backend, roles[2], roles[0], roles[1], dlq)
    finally:
        if dlq is not None:
            dlq.close()
        for r in reversed(started):
            r.stop()
        backend.close()


# -- spans made by the real SDK ----------------------------------------------------------------


class ZeroTraceIds(IdGenerator):
    """A broken id generator: every trace id all zero (the SDK exports it as is)."""

    def generate_span_id(self) -> int:
        return RandomIdGenerator().generate_span_id()

    def generate_trace_id(self) -> int:
        return 0


def sdk_span(
    name: str = "chat gpt-4o-mini",
    attributes: dict[str, Any] = GENAI_ATTRIBUTES,
    start_ns: int | None = None,
    end_ns: int | None = None,
    id_generator: IdGenerator | None = None,
) -> ReadableSpan:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "no-silent-drop"}), id_generator=id_generator
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    start = start_ns if start_ns is not None else time.time_ns() - 5_000_000_000
    span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes, start_time=start)
    span.end(end_time=end_ns if end_ns is not None else start + 1_900_000_000)
    provider.shutdown()
    [finished] = memory.get_finished_spans()
    return finished


def span_id(span: ReadableSpan) -> str:
    return f"{span.context.span_id:016x}"


def sdk_export(receiver: Role, spans: Sequence[ReadableSpan]) -> ExportTraceServiceResponse:
    """One request through the SDK's OTLP/HTTP exporter; the response it got, as the sender saw it
    (the exporter itself only reports success or failure)."""
    replies: list[requests.Response] = []
    session = requests.Session()
    session.hooks["response"].append(lambda reply, *_, **__: replies.append(reply))
    exporter = HttpSpanExporter(endpoint=f"{receiver.http_url}/v1/traces", headers=HEADERS, session=session)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    [reply] = replies
    assert reply.status_code == 200, reply.text
    return ExportTraceServiceResponse.FromString(reply.content)


# -- what became of a record -------------------------------------------------------------------


def fate(p: Pipeline, sid: str, genai: bool) -> dict[str, str]:
    """Where each row of an accepted span went: its span row, and its inference row for a GenAI
    span, each `stored` or `dead-lettered` (with a reason); fails if one is nowhere."""
    rows = [("otel_traces", "SpanId")] + ([("llm_inferences", "span_id")] if genai else [])
    found: dict[str, str] = {}

    def settled() -> bool:
        for table, column in rows:
            if table in found:
                continue
            if p.count(table, column, sid):
                found[table] = STORED
            elif dead := p.dlq.about_span(sid):
                for m in dead:
                    assert headers_of(m)["inferline-dlq-error"], "a dead letter without its reason"
                found[table] = DEAD_LETTERED
        return len(found) == len(rows)

    assert wait_for(settled, timeout=LANDS_WITHIN_S, interval=0.3), (
        f"span {sid} was acknowledged without being rejected and then vanished: "
        f"only {found} after {LANDS_WITHIN_S}s"
    )
    return found


def assert_lands(p: Pipeline, span: ReadableSpan) -> None:
    """The normal GenAI span: its span row and its inference row, in ClickHouse."""
    sid = span_id(span)
    assert wait_for(lambda: p.count("otel_traces", "SpanId", sid) == 1, timeout=LANDS_WITHIN_S)
    assert wait_for(lambda: p.count("llm_inferences", "span_id", sid) == 1, timeout=LANDS_WITHIN_S)


def outcome(
    p: Pipeline, response: ExportTraceServiceResponse, bad: ReadableSpan, normal: ReadableSpan
) -> str:
    """What the user can observe of `bad`, sent with `normal` in one request."""
    assert_lands(p, normal)
    partial = response.partial_success
    sid = span_id(bad)
    if partial.rejected_spans:
        assert partial.rejected_spans == 1
        assert partial.error_message
        assert bad.name in partial.error_message  # names the record it refused
        # Refused means stored nowhere (the normal span of its request is already there).
        assert p.count("otel_traces", "SpanId", sid) == 0
        assert p.count("llm_inferences", "span_id", sid) == 0
        assert not p.dlq.about_span(sid)
        return REJECTED
    assert not partial.error_message
    where = fate(p, sid, genai=True)
    return STORED if set(where.values()) == {STORED} else DEAD_LETTERED


# -- (a) to (d): through the receiver, with the real SDK exporter ------------------------------


def test_a_span_past_2262_is_rejected_and_its_neighbour_lands(pipeline: Pipeline) -> None:
    bad = sdk_span("chat far future", start_ns=YEAR_2300_NS, end_ns=YEAR_2300_NS + 1_900_000_000)
    normal = sdk_span()
    response = sdk_export(pipeline.receiver, [bad, normal])
    assert outcome(pipeline, response, bad, normal) == REJECTED
    assert "2262" in response.partial_success.error_message


def test_a_span_ending_before_it_starts_is_accounted_for_without_a_negative_duration(
    pipeline: Pipeline,
) -> None:
    start = time.time_ns() - 5_000_000_000
    bad = sdk_span("chat backwards", start_ns=start, end_ns=start - 2_000_000_000)
    normal = sdk_span()
    response = sdk_export(pipeline.receiver, [bad, normal])
    result = outcome(pipeline, response, bad, normal)
    assert result in (REJECTED, STORED, DEAD_LETTERED)
    if result == STORED:
        sid = span_id(bad)
        # Duration is unsigned: clamped to zero, not wrapped around to 584 years.
        assert pipeline.sql(f"SELECT Duration FROM otel_traces WHERE SpanId = '{sid}'") == "0"
        assert pipeline.sql(f"SELECT latency_ms FROM llm_inferences WHERE span_id = '{sid}'") == "0"


def test_a_span_with_an_all_zero_trace_id_is_rejected_and_its_neighbour_lands(pipeline: Pipeline) -> None:
    bad = sdk_span("chat zero trace", id_generator=ZeroTraceIds())
    assert bad.context.trace_id == 0
    normal = sdk_span()
    response = sdk_export(pipeline.receiver, [bad, normal])
    assert outcome(pipeline, response, bad, normal) == REJECTED
    assert "trace_id" in response.partial_success.error_message


@pytest.mark.parametrize(
    ("usage", "stored"),
    [
        # input_tokens is UInt64 and holds 2^40 exactly; max_tokens is Nullable(UInt32) and cannot
        # (emptied to NULL); a negative count is no count (0, not 2^64 - 85).
        pytest.param(
            {
                "gen_ai.usage.input_tokens": 1 << 40,
                "gen_ai.usage.output_tokens": -85,
                "gen_ai.request.max_tokens": 1 << 40,
            },
            {
                "input_tokens": str(1 << 40),
                "output_tokens": "0",
                "max_tokens": "\\N",
                "price_status": "priced",
            },
            id="2^40-and-negative",
        ),
        # Beyond UInt64 (and beyond 64-bit JSON numbers on the enriched topic): emptied, and the
        # cost it would give (beyond Decimal(18, 12)) with it; the rest of the row is intact.
        pytest.param(
            {"gen_ai.usage.input_tokens": 1e30},
            {"input_tokens": "0", "output_tokens": "85", "max_tokens": "256", "total_cost_usd": "\\N"},
            id="1e30",
        ),
    ],
)
def test_a_genai_span_with_out_of_range_values_is_accounted_for(
    pipeline: Pipeline, usage: dict[str, Any], stored: dict[str, str]
) -> None:
    bad = sdk_span("chat out of range", attributes={**GENAI_ATTRIBUTES, **usage})
    normal = sdk_span()
    response = sdk_export(pipeline.receiver, [bad, normal])
    result = outcome(pipeline, response, bad, normal)
    assert result in (REJECTED, STORED, DEAD_LETTERED)
    if result != STORED:
        return
    sid = span_id(bad)
    columns = ", ".join(stored)
    row = pipeline.sql(f"SELECT {columns} FROM llm_inferences WHERE span_id = '{sid}'").split("\t")
    assert dict(zip(stored, row, strict=True)) == stored
    # What the sender claimed stays readable on the span row.
    claimed = pipeline.sql(
        f"SELECT SpanAttributes['gen_ai.usage.input_tokens'] FROM otel_traces WHERE SpanId = '{sid}'"
    )
    assert claimed == str(usage["gen_ai.usage.input_tokens"])


# -- hand-built protobuf, for what the SDK cannot express ---------------------------------------


def _hand_built_request() -> tuple[ExportTraceServiceRequest, str]:
    """A normal span and three the SDK cannot make (its ids are always 8 bytes and valid), in one
    request and one trace. Returns the request and the normal span's id."""
    trace_id = bytes.fromhex(new_trace_id())
    normal_id = new_span_id()
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "hand-built"
    ss = rs.scope_spans.add()
    ss.scope.name = "hand-built"
    now = time.time_ns() - 5_000_000_000
    bad_ids = [bytes.fromhex(new_span_id())[:7], bytes(8), bytes.fromhex(new_span_id())]
    specs = [
        ("seven-byte span id", bad_ids[0], b""),
        ("all-zero span id", bad_ids[1], b""),
        ("three-byte parent", bad_ids[2], b"abc"),
        ("normal", bytes.fromhex(normal_id), b""),
    ]
    for name, sid, parent in specs:
        span = ss.spans.add(name=name, trace_id=trace_id, span_id=sid, parent_span_id=parent, kind=3)
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 1_900_000_000
        span.attributes.add(key="http.route").value.string_value = "/hand-built"
    return request, normal_id


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_hand_built_spans_with_bad_ids_are_rejected_and_the_normal_one_lands(
    pipeline: Pipeline, protocol: str
) -> None:
    request, normal_id = _hand_built_request()
    if protocol == "http":
        r = httpx.post(
            f"{pipeline.receiver.http_url}/v1/traces",
            content=request.SerializeToString(),
            headers={**HEADERS, "content-type": PROTOBUF},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        response = ExportTraceServiceResponse.FromString(r.content)
    else:
        with grpc.insecure_channel(pipeline.receiver.grpc_target) as channel:
            response = TraceServiceStub(channel).Export(request, metadata=list(HEADERS.items()), timeout=30)
    assert response.partial_success.rejected_spans == 3
    assert "span_id" in response.partial_success.error_message
    assert wait_for(lambda: pipeline.count("otel_traces", "SpanId", normal_id) == 1, timeout=LANDS_WITHIN_S)
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    assert pipeline.count("otel_traces", "TraceId", trace_id) == 1


def test_values_nested_to_the_documented_depth_land_through_kafka(pipeline: Pipeline) -> None:
    """Deeper than protobuf's own parser reads, in a request of several traces (split by trace on
    the way to the raw topic, parsed again by the processor): every span is stored, whole."""
    spans = [nested_span(MAX_VALUE_DEPTH, "kvlist", new_span_id()) for _ in range(4)]
    r = httpx.post(
        f"{pipeline.receiver.http_url}/v1/traces",
        content=decode_json(nested_request(*spans), ExportTraceServiceRequest).SerializeToString(),
        headers={**HEADERS, "content-type": PROTOBUF},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans == 0
    ids = ", ".join(f"'{s['spanId']}'" for s in spans)
    query = (
        "SELECT count(), countIf(position(SpanAttributes['deep'], 'leaf') > 0) FROM otel_traces "
        f"WHERE SpanId IN ({ids})"
    )
    assert wait_for(lambda: pipeline.sql(query) == "4\t4", timeout=LANDS_WITHIN_S), pipeline.sql(query)


def test_a_log_record_with_a_bad_trace_id_is_rejected_and_the_normal_one_lands(pipeline: Pipeline) -> None:
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    marker = new_span_id()
    bad = records.add(trace_id=b"short", time_unix_nano=time.time_ns())
    bad.body.string_value = f"bad {marker}"
    good = records.add(trace_id=bytes.fromhex(new_trace_id()), time_unix_nano=time.time_ns())
    good.body.string_value = f"good {marker}"
    r = httpx.post(
        f"{pipeline.receiver.http_url}/v1/logs",
        content=request.SerializeToString(),
        headers={**HEADERS, "content-type": PROTOBUF},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    partial = ExportLogsServiceResponse.FromString(r.content).partial_success
    assert partial.rejected_log_records == 1
    assert "trace_id" in partial.error_message
    assert wait_for(
        lambda: pipeline.count("otel_logs", "Body", f"good {marker}") == 1, timeout=LANDS_WITHIN_S
    )
    assert pipeline.count("otel_logs", "Body", f"bad {marker}") == 0


# -- the processor, fed by something other than our receiver ------------------------------------


def _publish(bootstrap: str, topic: str, value: bytes, key: bytes) -> tuple[int, int]:
    """Produce as a stock Collector's kafka exporter would; returns (partition, offset)."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
    delivered: dict[str, int] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        delivered.update(partition=msg.partition(), offset=msg.offset())

    producer.produce(
        topic, value, key=key, headers=[("inferline-project", PROJECT.encode())], on_delivery=on_delivery
    )
    producer.flush(10)
    assert delivered
    return delivered["partition"], delivered["offset"]


def _dead_letter_of(p: Pipeline, value: bytes) -> dict[str, bytes]:
    dead = wait_for(lambda: p.dlq.matching(lambda v: v == value), timeout=LANDS_WITHIN_S, interval=0.3)
    assert len(dead) == 1, "a raw message with records that cannot be stored was not dead-lettered"
    return headers_of(dead[0])


def test_processor_dead_letters_spans_a_collector_published_unchecked(pipeline: Pipeline) -> None:
    """A raw message holding a normal span and two that cannot be stored (past 2262; all-zero trace
    id): the normal one lands, the message goes to the DLQ with the reason and its coordinates."""
    trace_id = bytes.fromhex(new_trace_id())
    normal_id = new_span_id()
    request = ExportTraceServiceRequest()
    ss = request.resource_spans.add().scope_spans.add()
    now = time.time_ns() - 5_000_000_000
    for name, tid, start in (
        ("far future", trace_id, YEAR_2300_NS),
        ("zero trace", bytes(16), now),
        ("normal", trace_id, now),
    ):
        sid = bytes.fromhex(normal_id) if name == "normal" else bytes.fromhex(new_span_id())
        span = ss.spans.add(name=name, trace_id=tid, span_id=sid, kind=3)
        span.start_time_unix_nano, span.end_time_unix_nano = start, start + 1_900_000_000
    value = request.SerializeToString()
    partition, offset = _publish(pipeline.backend.bootstrap, RAW_SPANS, value, trace_id.hex().encode())

    h = _dead_letter_of(pipeline, value)
    assert h["inferline-dlq-stage"] == b"decode"
    assert h["inferline-dlq-source-topic"] == RAW_SPANS.encode()
    assert int(h["inferline-dlq-source-partition"]) == partition
    assert int(h["inferline-dlq-source-offset"]) == offset
    assert h["inferline-project"] == PROJECT.encode()
    error = h["inferline-dlq-error"].decode()
    assert "2 of 3 spans" in error and "2262" in error, error
    assert wait_for(lambda: pipeline.count("otel_traces", "SpanId", normal_id) == 1, timeout=LANDS_WITHIN_S)
    assert pipeline.count("otel_traces", "TraceId", trace_id.hex()) == 1


def test_processor_dead_letters_log_records_a_collector_published_unchecked(pipeline: Pipeline) -> None:
    marker = new_span_id()
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    bad = records.add(time_unix_nano=YEAR_2300_NS)
    bad.body.string_value = f"far future {marker}"
    good = records.add(time_unix_nano=time.time_ns())
    good.body.string_value = f"good {marker}"
    value = request.SerializeToString()
    _publish(pipeline.backend.bootstrap, RAW_LOGS, value, marker.encode())

    h = _dead_letter_of(pipeline, value)
    assert h["inferline-dlq-stage"] == b"decode"
    assert h["inferline-dlq-source-topic"] == RAW_LOGS.encode()
    error = h["inferline-dlq-error"].decode()
    assert "1 of 2 log records" in error and "2262" in error, error
    assert wait_for(
        lambda: pipeline.count("otel_logs", "Body", f"good {marker}") == 1, timeout=LANDS_WITHIN_S
    )
