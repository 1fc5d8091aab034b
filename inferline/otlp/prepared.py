"""An OTLP request made ready for a partitioned durable log: checked (`validate`), split by trace id
(`shard`) and serialised per partition, with what its sender is to be told.

The local log exporter prepares every request it receives this way. An OTLP/JSON request is
prepared by the worker process that decodes it into protobuf bytes (`json_codec`), from those
bytes as a protobuf request is: the receiving process then appends the parts as they are, instead
of parsing the request again to check, split and re-serialise it (~5-6 µs of the main process per
GenAI span).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from inferline.core.records import LOGS, SPANS
from inferline.otlp import wire_split
from inferline.otlp.flatten import count_records
from inferline.otlp.shard import shard_logs, shard_spans
from inferline.otlp.validate import Rejected, TimeWindow, remove_invalid
from inferline.otlp.wire_format import NotPlain

# The splitter pays only compiled (interpreted it reads every record's fields in Python).
SPLIT_COMPILED = not (wire_split.__file__ or "").endswith(".py")


@dataclass(frozen=True, slots=True)
class Prepared:
    kind: int  # SPANS or LOGS (`inferline.core.records`)
    records: int  # in the request as sent: what rate limits and request metrics count
    rejected: Rejected  # removed by the checks: the partial success, the ledger's tally
    parts: dict[int, bytes]  # partition → the request's records of that partition, serialised


def prepare(
    request: ExportTraceServiceRequest | ExportLogsServiceRequest, partitions: int, window: TimeWindow | None
) -> Prepared:
    """Checks `request` (removing, in place, what cannot be stored), splits and serialises it."""
    records = count_records(request)
    rejected = remove_invalid(request, window)
    if isinstance(request, ExportTraceServiceRequest):
        kind, split = SPANS, shard_spans(request, partitions) if request.resource_spans else {}
    else:
        kind, split = LOGS, shard_logs(request, partitions) if request.resource_logs else {}
    return Prepared(kind, records, rejected, {k: part.SerializeToString() for k, part in split.items()})


def prepare_received(
    body: bytes,
    request: ExportTraceServiceRequest | ExportLogsServiceRequest,
    partitions: int,
    window: TimeWindow | None,
) -> Prepared:
    """`prepare` of a request parsed from `body` and not changed since: from the bytes where the
    compiled splitter (`wire_split`) reads them exactly, else from the parsed request."""
    if SPLIT_COMPILED:
        try:
            if isinstance(request, ExportTraceServiceRequest):
                return Prepared(SPANS, *wire_split.split_spans(body, partitions, window, time.time_ns()))
            return Prepared(LOGS, *wire_split.split_logs(body, partitions, window, time.time_ns()))
        except NotPlain:
            pass
    return prepare(request, partitions, window)
