"""Masking at the receiver: the OTLP request itself is masked before any sink sees it."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.core.consumer import ExportResult
from inferline.otlp.json_codec import decode_json
from inferline.processors.mask_request import MaskingSink
from inferline.processors.pii import PiiMasker
from inferline.processors.pii_config import PiiConfig
from tests.otlp_helpers import json_span, logs_json, traces_json

pytestmark = pytest.mark.unit

EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"


class Recorder:
    """The next sink: keeps what it was handed (serialized, as Kafka would carry it)."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def export_spans(
        self, request: ExportTraceServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult:
        assert body is None  # the request was masked: its bytes as received are not passed on
        self.seen.append(request.SerializeToString())
        return ExportResult()

    async def export_logs(
        self, request: ExportLogsServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult:
        assert body is None
        self.seen.append(request.SerializeToString())
        return ExportResult()


def test_content_attributes_events_and_log_bodies_are_masked_before_the_sink() -> None:
    masker = PiiMasker(PiiConfig(attributes=["enduser.*"]))
    recorder = Recorder()
    sink = MaskingSink(recorder, masker)
    span = json_span(
        {
            "gen_ai.input.messages": f'[{{"role":"user","content":"mail {EMAIL}, card {CARD}"}}]',
            "enduser.contact": [EMAIL, "order 1234567"],
            "http.url": "https://shop.example/orders/1234567",
        },
        events=[
            {"name": "gen_ai.content.completion", "attributes": {"gen_ai.completion": f"sent to {EMAIL}"}}
        ],
    )
    traces = decode_json(traces_json([span]), ExportTraceServiceRequest)
    asyncio.run(sink.export_spans(traces, "p"))
    log = {"traceId": span["traceId"], "spanId": span["spanId"], "body": {"content": f"I am {EMAIL}"}}
    logs = decode_json(logs_json([log]), ExportLogsServiceRequest)
    asyncio.run(sink.export_logs(logs, "p"))

    raw = b"".join(recorder.seen)
    assert EMAIL.encode() not in raw and CARD.encode() not in raw
    assert raw.count(b"<EMAIL>") == 4 and b"<CREDIT_CARD>" in raw
    # The counts travel with each masked record, for the pii_found columns downstream.
    masked_span = (
        ExportTraceServiceRequest.FromString(recorder.seen[0]).resource_spans[0].scope_spans[0].spans[0]
    )
    carried = {kv.key: kv.value.string_value for kv in masked_span.attributes}["inferline.pii_found"]
    assert orjson.loads(carried) == {"EMAIL": 3, "CREDIT_CARD": 1}
    assert b"order 1234567" in raw and b"https://shop.example/orders/1234567" in raw


def test_every_string_value_is_masked_at_the_receiver_except_never_masked_keys() -> None:
    """Resource attributes, any span attribute, the status message and a log body: all masked
    before the sink; ids, the model and the route are left as they are; counts per span include
    what the span's resource held."""
    masker = PiiMasker(PiiConfig())
    recorder = Recorder()
    sink = MaskingSink(recorder, masker)
    span = json_span(
        {
            "app.note": f"escalated by Anna Schmidt, {EMAIL}",
            "gen_ai.request.model": "gpt-4o-mini",
            "http.route": "/users/{id}",
        },
        status_code=2,
        name=f"GET /users/{EMAIL}",
    )
    span["status"]["message"] = f"timeout calling {EMAIL}"
    traces = decode_json(
        traces_json([span], resource={"service.name": "support-bot", "deployment.owner": EMAIL}),
        ExportTraceServiceRequest,
    )
    asyncio.run(sink.export_spans(traces, "p"))
    log = {"traceId": span["traceId"], "spanId": span["spanId"], "body": "Hauptstraße 5, 10115 Berlin"}
    logs = decode_json(logs_json([log], resource={"service.name": "support-bot"}), ExportLogsServiceRequest)
    asyncio.run(sink.export_logs(logs, "p"))

    sent = ExportTraceServiceRequest.FromString(recorder.seen[0]).resource_spans[0]
    resource = {kv.key: kv.value.string_value for kv in sent.resource.attributes}
    assert resource == {"service.name": "support-bot", "deployment.owner": "<EMAIL>"}
    masked_span = sent.scope_spans[0].spans[0]
    attrs = {kv.key: kv.value.string_value for kv in masked_span.attributes}
    assert attrs["app.note"] == "escalated by <PERSON>, <EMAIL>"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini" and attrs["http.route"] == "/users/{id}"
    assert masked_span.status.message == "timeout calling <EMAIL>"
    assert masked_span.name == "GET /users/<EMAIL>"
    assert orjson.loads(attrs["inferline.pii_found"]) == {"EMAIL": 4, "PERSON": 1}
    body = ExportLogsServiceRequest.FromString(recorder.seen[1]).resource_logs[0].scope_logs[0].log_records[0]
    assert body.body.string_value == "<ADDRESS>"


def test_a_logs_scope_attributes_are_masked_at_the_receiver() -> None:
    """otel_logs stores the scope's attributes on every record's row (they leaked before)."""
    recorder = Recorder()
    sink = MaskingSink(recorder, PiiMasker(PiiConfig()))
    log = {"traceId": "ab" * 16, "spanId": "cd" * 8, "body": "nothing to see"}
    logs = decode_json(logs_json([log], resource={"service.name": "support-bot"}), ExportLogsServiceRequest)
    logs.resource_logs[0].scope_logs[0].scope.attributes.add(key="app.note").value.string_value = EMAIL
    asyncio.run(sink.export_logs(logs, "p"))
    scope_logs = ExportLogsServiceRequest.FromString(recorder.seen[0]).resource_logs[0].scope_logs[0]
    assert {kv.key: kv.value.string_value for kv in scope_logs.scope.attributes} == {"app.note": "<EMAIL>"}
    record = {kv.key: kv.value.string_value for kv in scope_logs.log_records[0].attributes}
    assert orjson.loads(record["inferline.pii_found"]) == {"EMAIL": 1}


def test_event_names_are_masked_at_the_receiver() -> None:
    """The names applications give span events and log events ("reminder sent to jane@…")."""
    recorder = Recorder()
    sink = MaskingSink(recorder, PiiMasker(PiiConfig()))
    span = json_span({"k": "v"}, events=[{"name": f"reminder sent to {EMAIL}"}, {"name": "exception"}])
    asyncio.run(sink.export_spans(decode_json(traces_json([span]), ExportTraceServiceRequest), "p"))
    log = {
        "traceId": "ab" * 16,
        "spanId": "cd" * 8,
        "body": "nothing to see",
        "eventName": f"signup of {EMAIL}",
    }
    asyncio.run(sink.export_logs(decode_json(logs_json([log]), ExportLogsServiceRequest), "p"))

    sent = ExportTraceServiceRequest.FromString(recorder.seen[0]).resource_spans[0].scope_spans[0].spans[0]
    assert [e.name for e in sent.events] == ["reminder sent to <EMAIL>", "exception"]
    record = (
        ExportLogsServiceRequest.FromString(recorder.seen[1]).resource_logs[0].scope_logs[0].log_records[0]
    )
    assert record.event_name == "signup of <EMAIL>"
    counts = {kv.key: kv.value.string_value for kv in record.attributes}
    assert orjson.loads(counts["inferline.pii_found"]) == {"EMAIL": 1}


def test_a_logs_schema_urls_are_masked_at_the_receiver() -> None:
    """otel_logs keeps the resource's and the scope's schema URLs: a URL may carry an address."""
    recorder = Recorder()
    sink = MaskingSink(recorder, PiiMasker(PiiConfig()))
    log = {"traceId": "ab" * 16, "spanId": "cd" * 8, "body": "nothing to see"}
    request = decode_json(logs_json([log]), ExportLogsServiceRequest)
    request.resource_logs[0].schema_url = f"https://schemas.example.com/{EMAIL}"
    request.resource_logs[0].scope_logs[0].schema_url = f"https://schemas.example.com/?owner={EMAIL}"
    asyncio.run(sink.export_logs(request, "p"))

    sent = ExportLogsServiceRequest.FromString(recorder.seen[0]).resource_logs[0]
    assert sent.schema_url == "https://schemas.example.com/<EMAIL>"
    assert sent.scope_logs[0].schema_url == "https://schemas.example.com/?owner=<EMAIL>"
    counts = {kv.key: kv.value.string_value for kv in sent.scope_logs[0].log_records[0].attributes}
    assert orjson.loads(counts["inferline.pii_found"]) == {"EMAIL": 2}
