"""OTLP/HTTP receiver: POST /v1/traces and /v1/logs, protobuf or JSON, gzip/zstd, per the OTLP
specification's status codes. Errors carry a `google.rpc.Status` in the request's encoding."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest.admission import Admission
from ingest.auth import ApiKeys, key_from_headers
from ingest.bodies import BodyTooLarge, UnsupportedEncoding, decompress, read_limited
from ingest.sink import ExportResult, Sink
from otlp.errors import OtlpDecodeError
from otlp.json_codec import decode_json, decode_protobuf
from pipeline.errors import Retryable

log = structlog.get_logger()

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _status_body(code: int, message: str, as_json: bool) -> bytes:
    if as_json:
        return orjson.dumps({"code": code, "message": message})
    return status_pb2.Status(code=code, message=message).SerializeToString()


def _error(
    http_status: int, code: int, message: str, as_json: bool, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _status_body(code, message, as_json),
        status_code=http_status,
        media_type=JSON if as_json else PROTOBUF,
        headers=headers,
    )


def _response_json(response: Message, rejected_field: str) -> bytes:
    partial = response.partial_success  # type: ignore[attr-defined]
    body: dict[str, Any] = {}
    rejected = getattr(partial, rejected_field)
    if rejected or partial.error_message:
        body["partialSuccess"] = {
            _camel(rejected_field): str(rejected),
            "errorMessage": partial.error_message,
        }
    return orjson.dumps(body)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


Export = Callable[[Any, str], Awaitable[ExportResult]]


def _declared_length(header: str | None, limit: int) -> int:
    """What to reserve before reading: the declared length, or the limit for a chunked body."""
    try:
        return min(max(int(header), 0), limit) if header else limit
    except ValueError:
        return limit


def _refused(e: Retryable, as_json: bool) -> Response:
    return _error(
        e.http_status,
        code_pb2.UNAVAILABLE,
        f"{e}; retry later",
        as_json,
        {"Retry-After": str(e.retry_after_s)},
    )


def otlp_http_app(
    sink: Sink, keys: ApiKeys, max_request_bytes: int, admission: Admission | None = None
) -> Starlette:
    admission = admission or Admission(max_bytes=max(64 << 20, max_request_bytes))

    async def handle(
        request: Request,
        request_type: type[Message],
        response_type: type[Message],
        rejected_field: str,
        export: Export,
    ) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        as_json = content_type == JSON
        project_id = keys.project_for(key_from_headers(request.headers))
        if project_id is None:
            return _error(
                401,
                code_pb2.UNAUTHENTICATED,
                "missing or unknown API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                as_json,
                {"WWW-Authenticate": "Bearer"},
            )
        if content_type not in (PROTOBUF, JSON):
            return _error(
                415,
                code_pb2.INVALID_ARGUMENT,
                f"unsupported Content-Type {content_type!r}: use {PROTOBUF} or {JSON}",
                True,
            )
        # Hold a share of the in-flight budget from before the body is read until the answer.
        held = _declared_length(request.headers.get("content-length"), max_request_bytes)
        try:
            admission.acquire(held)
        except Retryable as e:
            return _refused(e, as_json)
        try:
            try:
                body = await read_limited(request.stream(), max_request_bytes)
                body = decompress(body, request.headers.get("content-encoding", ""), max_request_bytes)
                if len(body) > held:  # decompressed: take the difference too
                    admission.acquire(len(body) - held)
                    held = len(body)
                message = decode_json(body, request_type) if as_json else decode_protobuf(body, request_type)
            except BodyTooLarge as e:
                return _error(413, code_pb2.RESOURCE_EXHAUSTED, str(e), as_json)
            except UnsupportedEncoding as e:
                return _error(415, code_pb2.INVALID_ARGUMENT, str(e), as_json)
            except Retryable as e:
                return _refused(e, as_json)
            except (OtlpDecodeError, ValueError) as e:
                return _error(400, code_pb2.INVALID_ARGUMENT, f"malformed OTLP payload: {e}", as_json)
            del body
            try:
                result = await export(message, project_id)
            except Retryable as e:
                log.warning("export refused", reason=type(e).__name__, project_id=project_id)
                return _refused(e, as_json)
        finally:
            admission.release(held)
        response = result.response(response_type, rejected_field)
        if as_json:
            return Response(_response_json(response, rejected_field), media_type=JSON)
        return Response(response.SerializeToString(), media_type=PROTOBUF)

    async def traces(request: Request) -> Response:
        return await handle(
            request,
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
            "rejected_spans",
            sink.export_spans,
        )

    async def logs(request: Request) -> Response:
        return await handle(
            request,
            ExportLogsServiceRequest,
            ExportLogsServiceResponse,
            "rejected_log_records",
            sink.export_logs,
        )

    async def metrics_not_supported(request: Request) -> Response:
        as_json = request.headers.get("content-type", "").startswith(JSON)
        return _error(
            501,
            code_pb2.UNIMPLEMENTED,
            "OTLP metrics are not stored by this service: it keeps traces and logs. "
            "Send metrics to a metrics backend (for example through an OTel Collector).",
            as_json,
        )

    return Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/v1/logs", logs, methods=["POST"]),
            Route("/v1/metrics", metrics_not_supported, methods=["POST"]),
        ]
    )
