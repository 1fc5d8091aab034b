"""The load generator's requests look like real traffic where the service's behaviour depends on
it (no service needed: these are the requests, as built)."""

from __future__ import annotations

import random

import pytest
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
