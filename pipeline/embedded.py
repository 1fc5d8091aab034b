"""The embedded sink: every stage in this process, ClickHouse (chDB by default) as the durable
point. A request is acknowledged once its rows are committed."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ingest.sink import ExportResult
from otlp.flatten import Flattened, flatten_logs, flatten_spans
from pipeline.records import Batch
from processors.chain import ProcessorChain
from storage.writer import BatchWriter


class EmbeddedSink:
    def __init__(self, chain: ProcessorChain, writer: BatchWriter) -> None:
        self._chain = chain
        self._writer = writer
        # One thread: the normaliser's join caches are not shared between threads, and the
        # event loop stays free to take requests while a large one is processed.
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="process")

    async def export_spans(self, request: ExportTraceServiceRequest, project_id: str) -> ExportResult:
        flat, batch = await self._run(self._process_spans, request, project_id)
        await self._writer.write(batch)
        return self._result("spans", flat)

    async def export_logs(self, request: ExportLogsServiceRequest, project_id: str) -> ExportResult:
        flat, batch = await self._run(self._process_logs, request, project_id)
        await self._writer.write(batch)
        return self._result("logs", flat)

    async def _run(self, fn, request, project_id):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._cpu, fn, request, project_id)

    def _process_spans(self, request: ExportTraceServiceRequest, project_id: str) -> tuple[Flattened, Batch]:
        flat = flatten_spans(request, project_id)
        return flat, self._chain.run(flat.records, [])

    def _process_logs(self, request: ExportLogsServiceRequest, project_id: str) -> tuple[Flattened, Batch]:
        flat = flatten_logs(request, project_id)
        return flat, self._chain.run([], flat.records)

    @staticmethod
    def _result(signal: str, flat: Flattened) -> ExportResult:
        return ExportResult(flat.rejected, flat.error)

    def close(self) -> None:
        self._cpu.shutdown(wait=True)
