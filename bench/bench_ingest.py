"""Per-span cost of the ingest hot path, measured side by side in one run.

    python bench/bench_ingest.py

Prints µs per span for: OTLP/JSON decoding (orjson + descriptor walk vs protobuf's json_format),
protobuf parsing, flattening, normalisation + enrichment chain, and the writer's column build.
Figures, not assertions: machines are noisy, so compare the ratios printed in the same run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlp.flatten import flatten_spans
from otlp.json_codec import decode_json, decode_protobuf
from pipeline.config import ProcessorSettings
from processors.chain import ProcessorChain
from storage.native import to_columns
from storage.schema import LLM_INFERENCES, OTEL_TRACES
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json

SPANS_PER_REQUEST = 100


def timed(label: str, fn, spans: int, repeat: int = 20) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm caches
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    per_span = best / spans * 1e6
    print(f"  {label:<46} {per_span:8.1f} µs/span")
    return per_span


def main() -> None:
    body = traces_json([json_span(GENAI_ATTRIBUTES, name=f"chat {i}") for i in range(SPANS_PER_REQUEST)])
    request = decode_json(body, ExportTraceServiceRequest)
    proto = request.SerializeToString()
    print(f"request: {SPANS_PER_REQUEST} GenAI spans, {len(body)} bytes JSON, {len(proto)} bytes protobuf")

    ours = timed(
        "OTLP/JSON decode: orjson + walk",
        lambda: decode_json(body, ExportTraceServiceRequest),
        SPANS_PER_REQUEST,
    )
    theirs = timed(
        "OTLP/JSON decode: protobuf json_format",
        lambda: json_format.Parse(body, ExportTraceServiceRequest(), ignore_unknown_fields=True),
        SPANS_PER_REQUEST,
        repeat=5,
    )
    print(f"  -> the walk is {theirs / ours:.1f}x faster than json_format")
    timed("protobuf decode", lambda: decode_protobuf(proto, ExportTraceServiceRequest), SPANS_PER_REQUEST)
    timed("flatten to Span objects", lambda: flatten_spans(request, "p"), SPANS_PER_REQUEST)
    spans = flatten_spans(request, "p").records
    for chain in (["pricing"], ["pricing", "pii", "sentiment"]):
        processor = ProcessorChain(ProcessorSettings(chain=chain))
        timed(
            f"normalise + rows + {'+'.join(chain)}", lambda p=processor: p.run(spans, []), SPANS_PER_REQUEST
        )
    batch = ProcessorChain(ProcessorSettings(chain=["pricing"])).run(spans, [])
    timed(
        "column build (otel_traces + llm_inferences)",
        lambda: (to_columns(OTEL_TRACES, batch.spans), to_columns(LLM_INFERENCES, batch.inferences)),
        SPANS_PER_REQUEST,
    )


if __name__ == "__main__":
    main()
