"""Embedded mode's receiver-side exporter: each accepted OTLP request is checked
(`inferline.otlp.validate`), split by trace id into the local log's partitions, appended, and
acknowledged once the log has fsynced it. ClickHouse is not waited for: the log is the durable
point, and the embedded pipeline stores what it holds.
"""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.bus.local_log import Append, LocalLog
from inferline.core.consumer import ExportResult
from inferline.core.ledger import LOGS_SIGNAL, SPANS_SIGNAL, ReceiverTally
from inferline.core.records import LEDGER, SPANS
from inferline.otlp.prepared import Prepared, prepare, prepare_received
from inferline.otlp.validate import Rejected, TimeWindow


class LocalLogExporter:
    """`inferline.core.consumer.Sink` over the local log."""

    def __init__(self, log: LocalLog, partitions: int, window: TimeWindow | None = None) -> None:
        self._log = log
        self.partitions = partitions
        self.window = window

    async def export_spans(
        self, request: ExportTraceServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult:
        return await self.append(self._prepare(request, body), project_id)

    async def export_logs(
        self, request: ExportLogsServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult:
        return await self.append(self._prepare(request, body), project_id)

    def _prepare(
        self, request: ExportTraceServiceRequest | ExportLogsServiceRequest, body: bytes | None
    ) -> Prepared:
        if body is None:
            return prepare(request, self.partitions, self.window)
        return prepare_received(body, request, self.partitions, self.window)

    async def append(self, prepared: Prepared, project_id: str) -> ExportResult:
        """A request prepared for this log (`prepare` with its `partitions` and `window`), appended
        as it is; returns once it is durable."""
        appends = [Append(p, prepared.kind, project_id, part) for p, part in prepared.parts.items()]
        signal = SPANS_SIGNAL if prepared.kind == SPANS else LOGS_SIGNAL
        await self._log.append(appends + _tally(project_id, signal, prepared.rejected))
        return ExportResult(prepared.rejected.count, prepared.rejected.message)


def _tally(project_id: str, signal: str, rejected: Rejected) -> list[Append]:
    """The receiver's ledger tally of the request (records rejected or corrected), appended in
    the same commit as its records; nothing when there is nothing to tell."""
    tally = ReceiverTally(signal, rejected.reasons, rejected.corrected)
    return [Append(0, LEDGER, project_id, tally.encode())] if tally else []
