"""Senders under steady load, for tests that stop or kill a service in the middle of it."""

from __future__ import annotations

import threading
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tests.conftest import wait_for
from tests.otlp_helpers import sdk_spans


class Senders:
    """Two senders (SDK gRPC and HTTP exporters) exporting small batches until stopped; they keep
    the span ids of every batch the service acknowledged."""

    def __init__(self, grpc_target: str, http_url: str, key: str) -> None:
        headers = {"authorization": f"Bearer {key}"}
        self._exporters: list[SpanExporter] = [
            GrpcSpanExporter(endpoint=grpc_target, insecure=True, headers=headers, timeout=2),
            HttpSpanExporter(endpoint=f"{http_url}/v1/traces", headers=headers, timeout=2),
        ]
        self.acknowledged: set[str] = set()
        self.refused = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(e,)) for e in self._exporters]

    def __enter__(self) -> Senders:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        for e in self._exporters:
            e.shutdown()

    def _run(self, exporter: SpanExporter) -> None:
        while not self._stop.is_set():
            spans = sdk_spans(count=5)
            if exporter.export(spans) == SpanExportResult.SUCCESS:
                with self._lock:
                    self.acknowledged.update(f"{s.context.span_id:016x}" for s in spans)
            else:
                self.refused += 1
                time.sleep(0.2)
            time.sleep(0.01)

    def wait_for_more(self, n: int, timeout: float = 60) -> None:
        """Until `n` more spans were acknowledged: the service is under steady traffic."""
        start = len(self.acknowledged)
        assert wait_for(lambda: len(self.acknowledged) >= start + n, timeout=timeout), "no traffic"
