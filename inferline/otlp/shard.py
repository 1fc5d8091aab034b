"""Splits an OTLP request by trace id into one request per shard.

The processor chain keeps state per trace (content in log records waiting for its span, and the
other way round), so every record of a trace must reach the same worker process. A request whose
records all fall in one shard, the common case for small exports, is passed on without a copy.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.otlp.protobuf import copy_into


def shard_of(trace_id: bytes, shards: int) -> int:
    # The last bytes of a W3C trace id are random; records without a valid one go to shard 0.
    return trace_id[15] % shards if len(trace_id) == 16 else 0


def shard_spans(request: ExportTraceServiceRequest, shards: int) -> dict[int, ExportTraceServiceRequest]:
    return _shard(request, shards, "resource_spans", "scope_spans", "spans", ExportTraceServiceRequest)


def shard_logs(request: ExportLogsServiceRequest, shards: int) -> dict[int, ExportLogsServiceRequest]:
    return _shard(request, shards, "resource_logs", "scope_logs", "log_records", ExportLogsServiceRequest)


def _shard(request: Any, shards: int, resources: str, scopes: str, records: str, cls: Any) -> dict[int, Any]:
    if shards == 1:
        return {0: request}
    first = -1
    mixed = False
    for resource in getattr(request, resources):
        for scope in getattr(resource, scopes):
            for record in getattr(scope, records):
                k = shard_of(record.trace_id, shards)
                if first < 0:
                    first = k
                elif k != first:
                    mixed = True
                    break
            if mixed:
                break
        if mixed:
            break
    if not mixed:
        return {max(first, 0): request}

    out: dict[int, Any] = {}
    for resource in getattr(request, resources):
        for scope in getattr(resource, scopes):
            groups: dict[int, list[Any]] = {}
            for record in getattr(scope, records):
                groups.setdefault(shard_of(record.trace_id, shards), []).append(record)
            for k, items in groups.items():
                part = out.get(k)
                if part is None:
                    part = out[k] = cls()
                new_resource = getattr(part, resources).add()
                new_resource.resource.CopyFrom(resource.resource)
                new_resource.schema_url = resource.schema_url
                new_scope = getattr(new_resource, scopes).add()
                new_scope.scope.CopyFrom(scope.scope)
                new_scope.schema_url = scope.schema_url
                copy_into(getattr(new_scope, records), items)
    return out
