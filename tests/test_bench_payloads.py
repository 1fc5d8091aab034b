"""The load generator's requests look like real traffic where the service's behaviour depends on
it (no service needed: these are the requests, as built)."""

from __future__ import annotations

import random

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import build_template
from inferline.otlp.json_codec import decode_json
from inferline.otlp.shard import shard_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", ["plain", "genai"])
@pytest.mark.parametrize("transport", ["grpc", "http-json"])
def test_generated_traces_spread_over_the_workers_shards(kind: str, transport: str) -> None:
    """Real trace ids are random, so a service's shards (one per worker) share the load; the
    generator's plain traces once all fell in one shard, and the plain figure measured one
    worker."""
    template = build_template(kind, transport, 400, random.Random(3), b"\x01" * 8)
    traces, _ = template.stamp(5 << 16)
    request = (
        decode_json(traces, ExportTraceServiceRequest)
        if transport == "http-json"
        else ExportTraceServiceRequest.FromString(traces)
    )
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    for shards in (2, 3, 4):
        counts = [0] * shards
        for s in spans:
            counts[shard_of(s.trace_id, shards)] += 1
        assert min(counts) > len(spans) / shards / 2, (shards, counts)
    assert len({s.span_id for s in spans}) == len(spans)


@pytest.mark.parametrize("transport", ["grpc", "http-json"])
def test_times_are_those_of_the_send(transport: str) -> None:
    """Live senders export a call seconds after it started; times fixed when the templates were
    built made every call minutes old when sent, and the service took its paths for late retries
    (a look-up of stored rows) for all of them."""
    template = build_template("genai", transport, 200, random.Random(5), b"\x02" * 8)
    sent_at = template.built_ns + 600 * 10**9  # ten minutes after the templates were built
    traces, logs = template.stamp(7 << 16, now_ns=sent_at)
    assert logs is not None
    if transport == "http-json":
        request = decode_json(traces, ExportTraceServiceRequest)
        records = decode_json(logs, ExportLogsServiceRequest)
    else:
        request = ExportTraceServiceRequest.FromString(traces)
        records = ExportLogsServiceRequest.FromString(logs)
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) >= 200
    for s in spans:
        assert sent_at - 20 * 10**9 <= s.start_time_unix_nano <= s.end_time_unix_nano, s.name
        assert s.end_time_unix_nano < sent_at + 300 * 10**9  # the longest calls end after the send
        for e in s.events:
            assert e.time_unix_nano - s.start_time_unix_nano == 300_000_000
    starts = {s.span_id: s.start_time_unix_nano for s in spans}
    logged = [r for rl in records.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert logged
    for r in logged:
        assert r.time_unix_nano - starts[r.span_id] == 500_000_000
