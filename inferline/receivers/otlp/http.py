"""OTLP/HTTP receiver: POST /v1/traces and /v1/logs, protobuf or JSON, gzip/zstd, per the OTLP
specification's status codes. Errors carry a `google.rpc.Status` in the request's encoding."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

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
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from inferline.core import metrics
from inferline.core.consumer import ExportResult, Sink
from inferline.core.errors import Retryable
from inferline.core.logging import error_summary
from inferline.otlp.errors import OtlpDecodeError
from inferline.otlp.flatten import count_records
from inferline.otlp.json_codec import decode_protobuf, read_back_json
from inferline.otlp.prepared import Prepared
from inferline.receivers.otlp.admission import Admission
from inferline.receivers.otlp.bodies import (
    BodyStalled,
    BodyTooLarge,
    UnsupportedEncoding,
    decompress,
    read_limited,
)
from inferline.storage.keys import ApiKeys, key_from_headers

log = structlog.get_logger()

PROTOCOL = "http"  # the `protocol` label of the request metrics
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
    partial = response.partial_success
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


Export = Callable[[Any, str, bytes | None], Awaitable[ExportResult]]


def _refused(e: Retryable, as_json: bool) -> Response:
    return _error(
        e.http_status,
        code_pb2.Code.Value(e.grpc_code),
        f"{e}; retry later",
        as_json,
        {"Retry-After": str(e.retry_after_s)},
    )


# OTLP/JSON → its protobuf bytes and their message (`read_back_json`); CPU-heavy, so the embedded
# service runs it in a decoder process.
JsonDecoder = Callable[[bytes, type[Message]], Awaitable[tuple[bytes, Message]]]


async def decode_json_here(body: bytes, request_type: type[Message]) -> tuple[bytes, Message]:
    return read_back_json(body, request_type)


class JsonIntake(Protocol):
    """OTLP/JSON taken in without a message in this process: `prepare` decodes, checks and splits
    the body elsewhere (a worker process), `append` makes the result durable as the sink's
    `export_*` would have (embedded mode without masking at the receiver)."""

    async def prepare(self, body: bytes, request_type: type[Message]) -> Prepared: ...

    async def append(self, prepared: Prepared, project_id: str) -> ExportResult: ...


def otlp_http_app(
    sink: Sink,
    keys: ApiKeys,
    max_request_bytes: int,
    admission: Admission | None = None,
    json_decoder: JsonDecoder = decode_json_here,
    json_intake: JsonIntake | None = None,
    body_idle_timeout_s: float = 30.0,
) -> Starlette:
    admission = admission or Admission(max_bytes=max(64 << 20, max_request_bytes))

    async def handle(
        request: Request,
        signal: str,
        request_type: type[Message],
        response_type: type[Message],
        rejected_field: str,
        export: Export,
    ) -> Response:
        """The answer to one export request, counted in the request metrics by its outcome."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        as_json = content_type == JSON
        requests = metrics.OTLP_REQUESTS
        try:
            response, records, rejected = await answer(
                request, content_type, signal, request_type, response_type, rejected_field, export
            )
        except Retryable as e:
            requests.labels(PROTOCOL, signal, "refused").inc()
            metrics.REQUESTS_REFUSED.labels(PROTOCOL, e.reason).inc()
            return _refused(e, as_json)
        except Exception as e:
            requests.labels(PROTOCOL, signal, "error").inc()
            log.error("export failed", signal=signal, error=error_summary(e))
            return _error(500, code_pb2.INTERNAL, "internal error", as_json)
        if response.status_code != 200:
            outcome = "unauthenticated" if response.status_code == 401 else "invalid"
            requests.labels(PROTOCOL, signal, outcome).inc()
            return response
        requests.labels(PROTOCOL, signal, "partial" if rejected else "accepted").inc()
        metrics.RECORDS_ACCEPTED.labels(PROTOCOL, signal).inc(records - rejected)
        if rejected:
            metrics.RECORDS_REJECTED.labels(PROTOCOL, signal).inc(rejected)
        return response

    async def answer(
        request: Request,
        content_type: str,
        signal: str,
        request_type: type[Message],
        response_type: type[Message],
        rejected_field: str,
        export: Export,
    ) -> tuple[Response, int, int]:
        """(response, records in the request, records rejected); raises Retryable to refuse."""
        as_json = content_type == JSON
        project_id = keys.project_for(key_from_headers(request.headers))
        if project_id is None:
            return (
                _error(
                    401,
                    code_pb2.UNAUTHENTICATED,
                    "missing or unknown API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                    as_json,
                    {"WWW-Authenticate": "Bearer"},
                ),
                0,
                0,
            )
        if content_type not in (PROTOBUF, JSON):
            return (
                _error(
                    415,
                    code_pb2.INVALID_ARGUMENT,
                    f"unsupported Content-Type {content_type!r}: use {PROTOBUF} or {JSON}",
                    True,
                ),
                0,
                0,
            )
        admission.check_rate(project_id, signal)
        # The in-flight budget holds the body's bytes as they arrive, until the answer: a sender
        # that announces 16 MiB and sends nothing holds nothing (nine such connections held the
        # whole budget, refusing every other sender for as long as they stayed open).
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_request_bytes:
            too_large = f"request body of {declared} bytes exceeds {max_request_bytes} bytes"
            return _error(413, code_pb2.RESOURCE_EXHAUSTED, too_large, as_json), 0, 0
        held = 0

        def take(n: int) -> None:
            nonlocal held
            admission.acquire(n, held)
            held += n

        try:
            try:
                body = await read_limited(
                    request.stream(), max_request_bytes, take=take, idle_timeout_s=body_idle_timeout_s
                )
                body = decompress(body, request.headers.get("content-encoding", ""), max_request_bytes)
                if len(body) > held:  # decompressed: take the difference too
                    take(len(body) - held)
                message: Any = None  # the request's message, unless prepared elsewhere
                prepared: Prepared | None = None
                # The protobuf bytes `message` was parsed from: the sink may prepare from them.
                received: bytes | None = None
                if as_json and json_intake is not None:
                    prepared = await json_intake.prepare(body, request_type)
                elif as_json:
                    received, message = await json_decoder(body, request_type)
                else:
                    message = decode_protobuf(body, request_type)
                    received = body
            except BodyTooLarge as e:
                return _error(413, code_pb2.RESOURCE_EXHAUSTED, str(e), as_json), 0, 0
            except BodyStalled as e:
                return _error(408, code_pb2.DEADLINE_EXCEEDED, str(e), as_json), 0, 0
            except ClientDisconnect:  # gone before its body was whole: nobody to answer, no error
                log.info("a sender disconnected before its request body was read", signal=signal)
                return _error(400, code_pb2.CANCELLED, "client disconnected", as_json), 0, 0
            except UnsupportedEncoding as e:
                return _error(415, code_pb2.INVALID_ARGUMENT, str(e), as_json), 0, 0
            except (OtlpDecodeError, ValueError) as e:
                return _error(400, code_pb2.INVALID_ARGUMENT, f"malformed OTLP payload: {e}", as_json), 0, 0
            del body
            records = prepared.records if prepared is not None else count_records(message)
            admission.take_rate(project_id, signal, records)
            try:
                if prepared is not None and json_intake is not None:
                    result = await json_intake.append(prepared, project_id)
                else:
                    result = await export(message, project_id, received)
            except Retryable as e:
                log.warning("export refused", reason=e.reason, project_id=project_id)
                raise
        finally:
            admission.release(held)
        response = result.response(response_type, rejected_field)
        if as_json:
            return (
                Response(_response_json(response, rejected_field), media_type=JSON),
                records,
                result.rejected,
            )
        return Response(response.SerializeToString(), media_type=PROTOBUF), records, result.rejected

    async def traces(request: Request) -> Response:
        return await handle(
            request,
            "traces",
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
            "rejected_spans",
            sink.export_spans,
        )

    async def logs(request: Request) -> Response:
        return await handle(
            request,
            "logs",
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
