"""What a receiver hands a decoded, authenticated request to.

Embedded mode: the local log (`inferline.exporters.local_log`).
Distributed mode: the raw Kafka topics. Either way `export_*` returns only once the data reached
the durable point, and raises `inferline.core.errors.Retryable` when it could not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass(slots=True)
class ExportResult:
    """Records rejected individually (OTLP partial success) and why."""

    rejected: int = 0
    message: str = ""

    def response(self, response_type: type[Message], rejected_field: str) -> Message:
        """The Export*ServiceResponse that tells the sender, with partial_success when needed."""
        response = response_type()
        if self.rejected:
            partial = response.partial_success
            setattr(partial, rejected_field, self.rejected)
            partial.error_message = self.message
        return response


class Sink(Protocol):
    """Where receivers hand each accepted request. `body`: the bytes the request was parsed
    from, when the receiver has them (protobuf senders); a sink may prepare the request from
    them, so a sink that changes the request hands its own sink no body."""

    async def export_spans(
        self, request: ExportTraceServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult: ...

    async def export_logs(
        self, request: ExportLogsServiceRequest, project_id: str, body: bytes | None = None
    ) -> ExportResult: ...
