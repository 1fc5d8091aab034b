"""The embedded sink: every stage in this process (or its worker processes), ClickHouse (chDB by
default) as the durable point. A request is acknowledged once its rows are committed."""

from __future__ import annotations

from typing import Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.core.consumer import ExportResult
from inferline.exporters.clickhouse.batch_writer import BatchWriter
from inferline.service.workers import Processed, Request


class Processing(Protocol):
    """inferline.service.workers.InThread or WorkerProcesses."""

    async def run(self, request: Request, project_id: str) -> Processed: ...


class EmbeddedSink:
    def __init__(self, processing: Processing, writer: BatchWriter) -> None:
        self._processing = processing
        self._writer = writer

    async def export_spans(self, request: ExportTraceServiceRequest, project_id: str) -> ExportResult:
        return await self._export(request, project_id)

    async def export_logs(self, request: ExportLogsServiceRequest, project_id: str) -> ExportResult:
        return await self._export(request, project_id)

    async def _export(self, request: Request, project_id: str) -> ExportResult:
        rejected, why, batch = await self._processing.run(request, project_id)
        await self._writer.write(batch)
        return ExportResult(rejected, why)
