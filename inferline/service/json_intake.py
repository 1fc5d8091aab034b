"""Embedded mode's OTLP/JSON intake (`inferline.receivers.otlp.http.JsonIntake`): a worker process
decodes the body and prepares it for the local log (checked, split by trace id, serialised per
partition: `inferline.otlp.prepared`), and the receiving process appends the parts as they came.

Measured per GenAI span (bench/stages.py, docs/performance.md): decoding on a worker and parsing
the protobuf it handed back, to check, split and re-serialise it in the main process, cost the
main process as much as receiving a protobuf request; now a JSON request costs it one append.
Not used with masking at the receiver, which needs the request's message in the main process.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from inferline.core.consumer import ExportResult
from inferline.exporters.local_log import LocalLogExporter
from inferline.otlp.prepared import Prepared
from inferline.service.workers import WorkerProcesses


class WorkerJsonIntake:
    def __init__(self, workers: WorkerProcesses[Any], exporter: LocalLogExporter) -> None:
        self._workers = workers
        self._exporter = exporter

    async def prepare(self, body: bytes, request_type: type[Message]) -> Prepared:
        # The exporter's own partitions and retention window: what it would apply itself.
        return await self._workers.prepare_json(
            body, request_type, self._exporter.partitions, self._exporter.window
        )

    async def append(self, prepared: Prepared, project_id: str) -> ExportResult:
        return await self._exporter.append(prepared, project_id)
