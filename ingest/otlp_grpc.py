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

from ingest.admission import Admission
from ingest.auth import ApiKeys, key_from_headers
from ingest.sink import Sink
from otlp.errors import OtlpDecodeError
from otlp.json_codec import decode_protobuf
from pipeline.errors import Retryable

log = structlog.get_logger()


async def _authenticate(keys: ApiKeys, context: grpc.aio.ServicerContext) -> str:
    metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    project_id = keys.project_for(key_from_headers(metadata))
    if project_id is None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or unknown API key: send metadata 'authorization: Bearer <key>' or 'x-api-key: <key>'",
        )
    return project_id  # type: ignore[return-value]


async def _refuse(context: grpc.aio.ServicerContext, error: Retryable) -> None:
    """UNAVAILABLE is retryable for every OTLP client; RetryInfo says how long to wait."""
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=error.retry_after_s))
    detail = any_pb2.Any()
    detail.Pack(retry)
    message = f"{error}; retry later"
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail])
    await context.abort(
        grpc.StatusCode.UNAVAILABLE,
        message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )


def _export_handler(
    sink_method: str,
    request_type: type[Message],
    response_type: type[Message],
    rejected_field: str,
    sink: Sink,
    keys: ApiKeys,
    admission: Admission,
) -> grpc.RpcMethodHandler:
    """A unary Export handler that decodes the request itself, so a malformed payload gets
    INVALID_ARGUMENT with a reason (gRPC's own deserializer would answer INTERNAL)."""

    async def export(body: bytes, context: grpc.aio.ServicerContext) -> Message:
        project_id = await _authenticate(keys, context)
        held = len(body)
        try:
            admission.acquire(held)
        except Retryable as e:
            await _refuse(context, e)
        try:
            try:
                request = decode_protobuf(body, request_type)
            except OtlpDecodeError as e:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed OTLP payload: {e}")
            try:
                result = await getattr(sink, sink_method)(request, project_id)
            except Retryable as e:
                await _refuse(context, e)
        finally:
            admission.release(held)
        response = result.response(response_type, rejected_field)
        return response

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
        "export_spans",
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
        "rejected_spans",
        sink,
        keys,
        admission,
    )
    logs = _export_handler(
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
