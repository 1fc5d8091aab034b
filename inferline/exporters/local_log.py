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
from inferline.core.records import LEDGER, LOGS, SPANS
from inferline.otlp.shard import shard_logs, shard_spans
from inferline.otlp.validate import Rejected, TimeWindow, remove_invalid


class LocalLogExporter:
    """`inferline.core.consumer.Sink` over the local log."""

    def __init__(self, log: LocalLog, partitions: int, window: TimeWindow | None = None) -> None:
        self._log = log
        self._partitions = partitions
        self._window = window

    async def export_spans(self, request: ExportTraceServiceRequest, project_id: str) -> ExportResult:
        rejected = remove_invalid(request, self._window)
        parts = shard_spans(request, self._partitions) if request.resource_spans else {}
        appends = [Append(p, SPANS, project_id, part.SerializeToString()) for p, part in parts.items()]
        await self._log.append(appends + _tally(project_id, SPANS_SIGNAL, rejected))
        return ExportResult(rejected.count, rejected.message)

    async def export_logs(self, request: ExportLogsServiceRequest, project_id: str) -> ExportResult:
        rejected = remove_invalid(request, self._window)
        parts = shard_logs(request, self._partitions) if request.resource_logs else {}
        appends = [Append(p, LOGS, project_id, part.SerializeToString()) for p, part in parts.items()]
        await self._log.append(appends + _tally(project_id, LOGS_SIGNAL, rejected))
        return ExportResult(rejected.count, rejected.message)


def _tally(project_id: str, signal: str, rejected: Rejected) -> list[Append]:
    """The receiver's ledger tally of the request (records rejected or corrected), appended in
    the same commit as its records; nothing when there is nothing to tell."""
    tally = ReceiverTally(signal, rejected.reasons, rejected.corrected)
    return [Append(0, LEDGER, project_id, tally.encode())] if tally else []
