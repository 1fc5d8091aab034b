"""OTLP/gRPC receiver: TraceService and LogsService on one grpc.aio server.

Metrics are not stored; MetricsService is not registered, so gRPC answers UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from inferline.core import metrics
from inferline.core.consumer import ExportResult, Sink
from inferline.core.errors import Retryable
from inferline.core.logging import error_summary
from inferline.otlp.errors import OtlpDecodeError
from inferline.otlp.flatten import count_records
from inferline.otlp.json_codec import decode_protobuf
from inferline.receivers.otlp.admission import Admission
from inferline.storage.keys import ApiKeys, key_from_headers

log = structlog.get_logger()


PROTOCOL = "grpc"  # the `protocol` label of the request metrics


def _project(keys: ApiKeys, context: grpc.aio.ServicerContext) -> str | None:
    metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    return keys.project_for(key_from_headers(metadata))


async def _refuse(context: grpc.aio.ServicerContext, error: Retryable) -> None:
    """UNAVAILABLE (or RESOURCE_EXHAUSTED for a rate limit) with RetryInfo saying how long to wait:
    OTLP exporters retry both."""
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=error.retry_after_s))
    detail = any_pb2.Any()
    detail.Pack(retry)
    message = f"{error}; retry later"
    status = status_pb2.Status(code=code_pb2.Code.Value(error.grpc_code), message=message, details=[detail])
    await context.abort(
        grpc.StatusCode[error.grpc_code],
        message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


def _export_handler(
    signal: str,
    sink_method: str,
    request_type: type[Message],
    response_type: type[Message],
    rejected_field: str,
    sink: Sink,
    keys: ApiKeys,
    admission: Admission,
) -> grpc.RpcMethodHandler:
    """A unary Export handler that decodes the request itself, so a malformed payload gets
    INVALID_ARGUMENT with a reason (gRPC's own deserializer would answer INTERNAL). Every answer
    is counted in the request metrics by its outcome."""
    requests = metrics.OTLP_REQUESTS

    async def admit_and_export(body: bytes, project_id: str) -> tuple[int, ExportResult]:
        admission.check_rate(project_id, signal)
        held = len(body)
        admission.acquire(held)
        try:
            request = decode_protobuf(body, request_type)
            records = count_records(request)
            admission.take_rate(project_id, signal, records)
            try:
                return records, await getattr(sink, sink_method)(request, project_id, body)
            except Retryable as e:
                log.warning("export refused", reason=e.reason, project_id=project_id)
                raise
        finally:
            admission.release(held)

    async def export(body: bytes, context: grpc.aio.ServicerContext) -> Message:
        project_id = _project(keys, context)
        if project_id is None:
            requests.labels(PROTOCOL, signal, "unauthenticated").inc()
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown API key: "
                "send metadata 'authorization: Bearer <key>' or 'x-api-key: <key>'",
            )
        try:
            records, result = await admit_and_export(body, project_id)  # type: ignore[arg-type]
        except Retryable as e:
            requests.labels(PROTOCOL, signal, "refused").inc()
            metrics.REQUESTS_REFUSED.labels(PROTOCOL, e.reason).inc()
            await _refuse(context, e)
        except OtlpDecodeError as e:
            requests.labels(PROTOCOL, signal, "invalid").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed OTLP payload: {e}")
        except Exception as e:
            requests.labels(PROTOCOL, signal, "error").inc()
            log.error("export failed", signal=signal, error=error_summary(e))
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        requests.labels(PROTOCOL, signal, "partial" if result.rejected else "accepted").inc()
        metrics.RECORDS_ACCEPTED.labels(PROTOCOL, signal).inc(records - result.rejected)
        if result.rejected:
            metrics.RECORDS_REJECTED.labels(PROTOCOL, signal).inc(result.rejected)
        return result.response(response_type, rejected_field)

    return grpc.unary_unary_rpc_method_handler(
        export,
        request_deserializer=None,  # raw bytes
        response_serializer=lambda m: m.SerializeToString(),
    )


def otlp_grpc_server(
    sink: Sink,
    keys: ApiKeys,
    address: str,
    max_request_bytes: int,
    admission: Admission | None = None,
    max_concurrent_rpcs: int = 256,
) -> grpc.aio.Server:
    admission = admission or Admission(max_bytes=max(64 << 20, max_request_bytes))
    server = grpc.aio.server(
        # Past this many calls gRPC answers RESOURCE_EXHAUSTED before reading any message.
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[
            # Larger messages get RESOURCE_EXHAUSTED from gRPC itself, before any decoding.
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
    )
    traces = _export_handler(
        "traces",
        "export_spans",
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
        "rejected_spans",
        sink,
        keys,
        admission,
    )
    logs = _export_handler(
        "logs",
        "export_logs",
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
        "rejected_log_records",
        sink,
        keys,
        admission,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": traces}
            ),
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.logs.v1.LogsService", {"Export": logs}
            ),
        )
    )
    server.add_insecure_port(address)
    return server
