"""End-to-end throughput of the embedded service on this machine.

    python bench/bench_service.py [--requests 400] [--spans 100] [--concurrency 32]

Starts a real service (temporary data directory), sends OTLP/protobuf requests of GenAI spans
over HTTP from concurrent senders, and prints accepted spans/s and request latency percentiles
(every request is acknowledged only after its rows are committed), then times analyst queries
over what was written. The sender shares the machine's cores with the service: read the figures
as a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlp.json_codec import decode_json
from tests.conftest import make_service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json


def build_bodies(count: int, spans: int) -> list[bytes]:
    models = ["gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash"]
    bodies = []
    for i in range(count):
        attrs = dict(
            GENAI_ATTRIBUTES,
            **{"gen_ai.request.model": models[i % 4], "gen_ai.response.model": models[i % 4]},
        )
        request = decode_json(
            traces_json([json_span(attrs, name="chat") for _ in range(spans)]), ExportTraceServiceRequest
        )
        bodies.append(request.SerializeToString())
    return bodies


async def send_all(url: str, key: str, bodies: list[bytes], concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {"x-api-key": key, "content-type": "application/x-protobuf"}

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            r = await client.post(f"{url}/v1/traces", content=body, headers=headers)
            r.raise_for_status()
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    bodies = build_bodies(args.requests, args.spans)
    service = make_service(Path(tempfile.mkdtemp()), INFERLINE_BATCH__MAX_DELAY_S="0.2")
    service.start()
    try:
        started = time.perf_counter()
        latencies = asyncio.run(send_all(service.http_url, service.key, bodies, args.concurrency))
        elapsed = time.perf_counter() - started
        total = args.requests * args.spans
        q = statistics.quantiles(latencies, n=100)
        print(f"service: {total} GenAI spans in {args.requests} requests, {args.concurrency} senders")
        print(f"  throughput   {total / elapsed:10.0f} spans/s accepted (committed before the ack)")
        print(f"  latency      p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms per request")
        for label, sql in (
            (
                "p95 latency by model",
                "SELECT model, quantile(0.95)(latency_ms) FROM llm_inferences GROUP BY model",
            ),
            (
                "cost by model and hour",
                "SELECT model, toStartOfHour(start_time) h, sum(total_cost_usd) "
                "FROM llm_inferences GROUP BY model, h",
            ),
        ):
            t = time.perf_counter()
            service.sql(sql)
            print(f"  query        {label}: {(time.perf_counter() - t) * 1000:.0f} ms over {total} rows")
    finally:
        service.stop()


if __name__ == "__main__":
    main()
