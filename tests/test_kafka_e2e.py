"""Distributed mode end to end: receiver, processor and writer as separate OS processes on a real
Kafka-protocol broker; OTLP from the real SDK exporters; a confluent-kafka consumer downstream;
a writer killed between its ClickHouse insert and its Kafka commit, restarted, leaving exactly one
row per span."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import confluent_kafka
import httpx
import orjson
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inferline.processors.normalise import inference_id
from tests.conftest import wait_for
from tests.kafka_helpers import (
    Backend,
    Role,
    consume,
    consume_records,
    headers_of,
    holding_trace,
    of_trace,
    role_env,
    start_backend,
    value_of,
)
from tests.otlp_helpers import (
    GENAI_ATTRIBUTES,
    GENAI_COST,
    json_span,
    logs_json,
    new_span_id,
    new_trace_id,
    sdk_spans,
    traces_json,
)
from tests.pii_samples import LOOKALIKES, PII, chat_attributes_with_pii

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(240)]

KEY, PROJECT = "test-key-kafka-e2e", "proj-kafka"
INFERENCES, SPANS, DLQ = "inferline.inferences", "inferline.spans", "inferline.dlq"
SCORES = "inferline.scores"


@dataclass
class Pipeline:
    backend: Backend
    receiver: Role
    processor: Role
    writer: Role


@pytest.fixture(scope="module", params=["mock", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """librdkafka's mock cluster + the writer's chDB; or Apache Kafka + ClickHouse server (Docker)."""
    b = start_backend(request.param)
    yield b
    b.close()


@pytest.fixture(scope="module")
def pipeline(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp(f"kafka-{backend.name}")
    # Masking at the receiver too: the raw topics must then hold no PII either.
    env = role_env(
        tmp,
        backend.bootstrap,
        backend.clickhouse_url,
        INFERLINE_API_KEYS=f"{KEY}={PROJECT}",
        INFERLINE_MASK_AT_RECEIVER="true",
    )
    roles = [Role(name, env, tmp) for name in ("processor", "writer", "receiver")]
    started: list[Role] = []
    try:
        for r in roles:
            started.append(r.start())
        yield Pipeline(backend, roles[2], roles[0], roles[1])
    finally:
        for r in reversed(started):
            r.stop()


def _writer_caught_up(bootstrap: str, topics: list[str]) -> bool:
    """The writer group's committed offsets are at the end of every enriched partition."""
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "inferline-writer"})
    try:
        md = c.list_topics(timeout=10)
        tps = [
            confluent_kafka.TopicPartition(t, p)
            for t in topics
            if t in md.topics
            for p in md.topics[t].partitions
        ]
        committed = {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=10)}
        for tp in tps:
            _, high = c.get_watermark_offsets(tp, timeout=10)
            if high > 0 and committed[(tp.topic, tp.partition)] != high:
                return False
        return True
    finally:
        c.close()


def _export(receiver: Role, genai_count: int, plain_count: int) -> tuple[int, set[str]]:
    """Real SDK exporters, gRPC for the GenAI spans and HTTP for the others. Returns the number of
    spans and the inference ids they must produce."""
    headers = {"authorization": f"Bearer {KEY}"}
    genai = sdk_spans(count=genai_count)
    plain = sdk_spans(attributes={"http.route": "/checkout"}, name="GET /checkout", count=plain_count)
    grpc_exporter = GrpcSpanExporter(endpoint=receiver.grpc_target, insecure=True, headers=headers)
    http_exporter = HttpSpanExporter(endpoint=f"{receiver.http_url}/v1/traces", headers=headers)
    assert grpc_exporter.export(genai) == SpanExportResult.SUCCESS
    assert http_exporter.export(plain) == SpanExportResult.SUCCESS
    grpc_exporter.shutdown()
    http_exporter.shutdown()
    ids = {inference_id(PROJECT, f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in genai}
    return len(genai) + len(plain), ids


def _enriched_inferences(bootstrap: str, ids: set[str]) -> list[dict]:
    """Downstream: the enriched inferences, read by a different Kafka client than ours."""
    got = consume_records(bootstrap, INFERENCES, lambda r: r.row["inference_id"] in ids, len(ids))
    assert len(got) == len(ids)
    for r in got:  # schema version 2: many records per message, one JSON object a line
        assert r.headers["schema-version"] == b"2"
        assert r.headers["content-type"] == b"application/x-ndjson"
        assert r.headers["record-kind"] == b"inference"
        assert r.headers["inferline-project"] == PROJECT.encode()
        # From when the processor remembers every call it made a row of: the writer need not
        # look up rows of calls that started later (not before this processor was assigned them).
        assert float(r.headers["inferline-calls-remembered-since"]) <= time.time()
    return [r.row for r in got]


def test_end_to_end_with_the_writer_killed_and_restarted(pipeline: Pipeline) -> None:
    """kill -9 of the writer with records in flight, more data while it is down, a restart: every
    span is stored once (the insert-then-crash case itself: tests/test_flush_plans.py)."""
    p = pipeline
    spans_1, ids_1 = _export(p.receiver, genai_count=3, plain_count=2)
    for record in _enriched_inferences(p.backend.bootstrap, ids_1):
        assert record["project_id"] == PROJECT
        assert record["price_status"] == "priced"
        assert Decimal(record["total_cost_usd"]) == Decimal(GENAI_COST)

    assert p.writer.process is not None
    p.writer.process.kill()  # whatever it had gathered or was inserting
    p.writer.wait_exit(timeout=30)

    spans_2, ids_2 = _export(p.receiver, genai_count=2, plain_count=1)
    _enriched_inferences(p.backend.bootstrap, ids_2)
    p.writer.start()
    assert wait_for(lambda: _writer_caught_up(p.backend.bootstrap, [INFERENCES, SPANS]), timeout=90)

    # Exactly one row per span (no FINAL: a duplicate would show).
    spans, inferences = spans_1 + spans_2, len(ids_1 | ids_2)
    assert p.writer.sql("SELECT count(), uniqExact(SpanId) FROM otel_traces", KEY) == f"{spans}\t{spans}"
    assert p.writer.sql("SELECT count() FROM llm_inferences", KEY) == str(inferences)
    # Merges could hide a duplicate row; they cannot hide it from the rollup, whose sums only
    # grow: a replayed block that was not dropped would count its calls twice there.
    assert p.writer.sql("SELECT sum(calls) FROM llm_inferences_by_minute", KEY) == str(inferences)
    cost = p.writer.sql("SELECT toString(sum(total_cost_usd)) FROM llm_inferences", KEY)
    assert Decimal(cost) == Decimal(GENAI_COST) * inferences
    assert "could not read the flush plans" not in p.writer.logs()


def test_garbage_raw_message_goes_to_dlq_and_processing_continues(pipeline: Pipeline) -> None:
    p = pipeline
    producer = confluent_kafka.Producer({"bootstrap.servers": p.backend.bootstrap})
    delivered: dict[str, int | None] = {}

    def on_delivery(err: confluent_kafka.KafkaError | None, msg: confluent_kafka.Message) -> None:
        assert err is None, err
        delivered.update(partition=msg.partition(), offset=msg.offset())

    garbage = b"\x0a\xff\xff\xff this is not an ExportTraceServiceRequest"
    producer.produce(
        "otlp_spans",
        garbage,
        key=b"junk",
        headers=[("inferline-project", PROJECT.encode())],
        on_delivery=on_delivery,
    )
    producer.flush(10)
    assert delivered

    # A valid request after it still flows.
    trace_id = new_trace_id()
    body = traces_json(
        [json_span({"http.route": "/after-garbage"}, trace_id=trace_id, span_id=new_span_id())]
    )
    r = httpx.post(
        f"{p.receiver.http_url}/v1/traces",
        content=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text

    dead = consume(p.backend.bootstrap, DLQ, lambda m: m.value() == garbage)
    assert len(dead) == 1
    h = headers_of(dead[0])
    assert h["inferline-dlq-source-topic"] == b"otlp_spans"
    assert int(h["inferline-dlq-source-partition"]) == delivered["partition"]
    assert int(h["inferline-dlq-source-offset"]) == delivered["offset"]
    assert h["inferline-dlq-stage"] == b"decode"
    assert h["inferline-dlq-error"]
    assert h["inferline-project"] == PROJECT.encode()
    assert dead[0].key() == b"junk"

    after = consume_records(p.backend.bootstrap, SPANS, of_trace(trace_id))
    assert len(after) == 1
    assert after[0].headers["record-kind"] == b"span"


def test_unknown_key_is_refused(pipeline: Pipeline) -> None:
    r = httpx.post(
        f"{pipeline.receiver.http_url}/v1/traces",
        content=traces_json([json_span({})]),
        headers={"content-type": "application/json", "authorization": "Bearer nope"},
        timeout=30,
    )
    assert r.status_code == 401


def test_no_pii_in_raw_or_enriched_topics(pipeline: Pipeline) -> None:
    """Content with PII goes in; neither the raw topic (masked at the receiver) nor any enriched
    record carries it, while lookalikes survive unchanged."""
    trace_id, span_id = new_trace_id(), new_span_id()
    attributes = chat_attributes_with_pii()
    span = json_span(attributes, trace_id=trace_id, span_id=span_id, name="chat gpt-4o-mini")
    log = {
        "traceId": trace_id,
        "spanId": span_id,
        "eventName": "gen_ai.user.message",
        "body": {"content": f"reach me at {PII['EMAIL']}"},
    }
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    for path, body in (("/v1/traces", traces_json([span])), ("/v1/logs", logs_json([log]))):
        r = httpx.post(f"{pipeline.receiver.http_url}{path}", content=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text

    bootstrap = pipeline.backend.bootstrap
    raw = {topic: consume(bootstrap, topic, holding_trace(trace_id)) for topic in ("otlp_spans", "otlp_logs")}
    records = {
        topic: consume_records(bootstrap, topic, of_trace(trace_id))
        for topic in (INFERENCES, SPANS, "inferline.logs")
    }
    for topic, found in (raw | records).items():
        assert found, f"nothing for the trace on {topic}"
    everything = b"".join(value_of(m) for found in raw.values() for m in found)
    everything += b"".join(r.value for found in records.values() for r in found)
    for kind, value in PII.items():
        assert value.encode() not in everything, f"{kind} reached Kafka"
    enriched = b"".join(r.value for r in records[INFERENCES])
    for lookalike in LOOKALIKES:
        assert lookalike.encode() in enriched, f"lookalike {lookalike!r} was altered"
    assert b"<CREDIT_CARD>" in enriched and b"<EMAIL>" in everything
    # Masked at the receiver, still counted: the counts travelled with the span.
    assert records[INFERENCES][0].row["pii_found"]["CREDIT_CARD"] == 1


def test_a_row_clickhouse_would_refuse_goes_to_the_dlq_and_the_writer_goes_on(pipeline: Pipeline) -> None:
    """Something other than our processor writes to an enriched topic: a row with a value of the
    wrong type is dead-lettered by the writer instead of failing (and retrying) its whole batch."""
    p = pipeline
    bad_trace = new_trace_id()
    bad = orjson.dumps({"project_id": PROJECT, "trace_id": bad_trace, "input_tokens": "lots", "version": 1})
    producer = confluent_kafka.Producer({"bootstrap.servers": p.backend.bootstrap})
    producer.produce(INFERENCES, bad, key=bad_trace.encode(), headers=[("schema-version", b"1")])
    producer.flush(10)

    _, ids = _export(p.receiver, genai_count=1, plain_count=0)  # a good call behind it
    [good] = ids
    dead = consume(p.backend.bootstrap, DLQ, lambda m: m.value() == bad)
    assert len(dead) == 1
    headers = headers_of(dead[0])
    assert headers["inferline-dlq-stage"] == b"write"
    assert b"input_tokens" in headers["inferline-dlq-error"]
    assert wait_for(
        lambda: p.writer.sql(f"SELECT count() FROM llm_inferences WHERE inference_id = '{good}'", KEY) == "1"
    )
    assert p.writer.sql(f"SELECT count() FROM llm_inferences WHERE trace_id = '{bad_trace}'", KEY) == "0"


def test_processor_masks_what_a_collector_publishes_and_clickhouse_holds_no_pii(pipeline: Pipeline) -> None:
    """A stock OTel Collector (kafka exporter, otlp_proto) feeds the raw topic directly, so the
    receiver's masking never saw it: the processor's PII stage must mask it before the enriched
    topics and ClickHouse."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from inferline.otlp.json_codec import decode_json

    trace_id, span_id = new_trace_id(), new_span_id()
    attributes = chat_attributes_with_pii()
    span = json_span(attributes, trace_id=trace_id, span_id=span_id, name="chat gpt-4o-mini")
    raw = decode_json(traces_json([span]), ExportTraceServiceRequest).SerializeToString()
    assert PII["EMAIL"].encode() in raw
    producer = confluent_kafka.Producer({"bootstrap.servers": pipeline.backend.bootstrap})
    producer.produce(
        "otlp_spans", raw, key=trace_id.encode(), headers=[("inferline-project", PROJECT.encode())]
    )
    producer.flush(10)

    bootstrap = pipeline.backend.bootstrap
    enriched = [
        r for topic in (INFERENCES, SPANS) for r in consume_records(bootstrap, topic, of_trace(trace_id))
    ]
    assert len(enriched) == 2
    inference = enriched[0].row
    assert inference["pii_found"]["EMAIL"] == 1 and inference["pii_found"]["CREDIT_CARD"] == 1
    assert wait_for(
        lambda: (
            pipeline.writer.sql(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace_id}'", KEY) == "1"
        )
    )
    stored = "".join(
        pipeline.writer.sql(f"SELECT * FROM {table} WHERE {column} = '{trace_id}' FORMAT JSONEachRow", KEY)
        for table, column in (("llm_inferences", "trace_id"), ("otel_traces", "TraceId"))
    )
    everything = b"".join(r.value for r in enriched).decode() + stored
    for kind, value in PII.items():
        assert value not in everything, f"{kind} reached the enriched topics or ClickHouse"
    for lookalike in LOOKALIKES:
        assert lookalike in everything, f"lookalike {lookalike!r} was altered"


def test_evaluation_scores_travel_their_topic_and_the_writer_stores_them(pipeline: Pipeline) -> None:
    """A model span with a `gen_ai.evaluation.result` span event (real SDK exporter, gRPC) and, in
    a request of its own, an evaluation log record in the span's context (OTLP/JSON): each result
    is a message of `inferline.scores`, keyed by trace, and a row of `scores` via the writer."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("opentelemetry.instrumentation.openai_v2").start_as_current_span(
        "chat gpt-4o-mini", attributes=GENAI_ATTRIBUTES
    ) as span:
        span.add_event(
            "gen_ai.evaluation.result",
            {"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.75},
        )
    provider.shutdown()
    headers = {"authorization": f"Bearer {KEY}"}
    exporter = GrpcSpanExporter(endpoint=pipeline.receiver.grpc_target, insecure=True, headers=headers)
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    exporter.shutdown()
    context = span.get_span_context()
    trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    record = {
        "traceId": trace_id,
        "spanId": span_id,
        "eventName": "gen_ai.evaluation.result",
        "attributes": {"gen_ai.evaluation.name": "hallucination", "gen_ai.evaluation.score.label": "factual"},
        "body": "",
    }
    r = httpx.post(
        f"{pipeline.receiver.http_url}/v1/logs",
        content=logs_json([record]),
        headers={**headers, "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text

    records = consume_records(pipeline.backend.bootstrap, SCORES, of_trace(trace_id), 2)
    assert {r.headers["record-kind"] for r in records} == {b"score"}
    assert {r.row["name"] for r in records} == {"relevance", "hallucination"}
    query = (
        f"SELECT name, value, label, toString(inference_id) FROM scores FINAL WHERE trace_id = '{trace_id}' "
        "ORDER BY name FORMAT TSV"
    )
    expected = inference_id(PROJECT, trace_id, span_id)
    stored = f"hallucination\t\\N\tfactual\t{expected}\nrelevance\t0.75\t\t{expected}"
    assert wait_for(lambda: pipeline.writer.sql(query, KEY) == stored, timeout=60), pipeline.writer.sql(
        query, KEY
    )
