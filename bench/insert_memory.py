"""Memory of the insert side alone: one process inserting batches of the bench's GenAI rows into
chDB (the service's schema, rollup views included), as the embedded main process does, printing
its RSS (anonymous and file-backed) every ten inserts.

    python -m bench.insert_memory [--copies 12] [--inserts 40]

`--copies`: copies of the ~800-span batch per insert (12: ~9,600 spans, about one flush of the
service). glibc settings can be tried through the environment (`MALLOC_ARENA_MAX=2 python -m …`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.stages import PROJECT, _requests
from inferline.core.logging import configure_logging
from inferline.core.memory import release_free_heap
from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.clickhouse.native import encode_block
from inferline.otlp.flatten import flatten_spans
from inferline.otlp.json_codec import decode_protobuf
from inferline.processors.normalise import GenAINormaliser
from inferline.processors.otel_rows import trace_row
from inferline.storage.clickhouse import connect
from inferline.storage.schema import LLM_INFERENCES, OTEL_TRACES, migrate


def rss_mb() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process, in MB."""
    wanted = ("VmRSS", "RssAnon", "RssFile")
    lines = Path("/proc/self/status").read_text().splitlines()
    return {k: int(v.split()[0]) // 1024 for k, v in (ln.split(":") for ln in lines if ln.startswith(wanted))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--inserts", type=int, default=40)
    args = parser.parse_args()
    configure_logging("error")
    proto = _requests("genai", "grpc", 4, 200)
    requests = [decode_protobuf(b, ExportTraceServiceRequest) for b, _, _ in proto]
    spans = [s for r in requests for s in flatten_spans(r, PROJECT).records]
    rows = GenAINormaliser().normalise(spans, [])
    blocks = [
        (OTEL_TRACES.name, len(spans), encode_block(OTEL_TRACES, [trace_row(s) for s in spans])),
        (LLM_INFERENCES.name, len(rows), encode_block(LLM_INFERENCES, rows)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(f"chdb://{tmp}/clickhouse")
        migrate(client)
        release_free_heap()
        print("before the first insert", rss_mb())
        inserter = Inserter(client)
        started, peak = time.monotonic(), 0
        for i in range(args.inserts):
            inserter.insert(Batch(encoded=[b for b in blocks for _ in range(args.copies)]), uuid.uuid4().hex)
            now = rss_mb()
            peak = max(peak, now["VmRSS"])
            if i % 10 == 9:
                merges = client.command("SELECT count() FROM system.merges")
                print(f"after {i + 1} inserts", now, "merges running", merges)
        print(f"peak RSS {peak} MB over {args.inserts} inserts of {len(spans) * args.copies} spans")
        print(f"({time.monotonic() - started:.1f} s)")
        client.close()


if __name__ == "__main__":
    main()
