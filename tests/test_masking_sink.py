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
from inferline.processors.pii import PiiConfig, PiiMasker
from tests.otlp_helpers import json_span, logs_json, traces_json

pytestmark = pytest.mark.unit

EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"


class Recorder:
    """The next sink: keeps what it was handed (serialized, as Kafka would carry it)."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def export_spans(self, request: ExportTraceServiceRequest, project_id: str) -> ExportResult:
        self.seen.append(request.SerializeToString())
        return ExportResult()

    async def export_logs(self, request: ExportLogsServiceRequest, project_id: str) -> ExportResult:
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
