"""Random OTLP requests with every kind of value (nested arrays and maps, int64 and enum limits,
bytes, repeated keys), some ids and times the rules refuse: for differential tests of the wire
readers against upb's path."""

from __future__ import annotations

import math
import random
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status


def enum_value(value: int) -> Any:
    """An int where protobuf's stubs want an enum's ValueType (open enums take any int32)."""
    return value


def _random_value(rng: random.Random, depth: int = 0) -> AnyValue:
    kind = rng.choice(["s", "s", "s", "i", "d", "b", "y", "a", "k", "none"] if depth < 3 else ["s", "i", "d"])
    v = AnyValue()
    if kind == "s":
        v.string_value = rng.choice(["", "x", "naïve ☕", "a" * rng.randint(100, 3000), '{"k": [1, 2]}'])
    elif kind == "i":
        v.int_value = rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.randint(-(10**12), 10**12)])
    elif kind == "d":
        v.double_value = rng.choice([0.0, -0.0, 1.5, -2.25e300, math.inf, 5e-324])
    elif kind == "b":
        v.bool_value = rng.random() < 0.5
    elif kind == "y":
        v.bytes_value = rng.randbytes(rng.randint(0, 20))
    elif kind == "a":
        v.array_value.values.extend(_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4)))
    elif kind == "k":
        v.kvlist_value.values.extend(_random_attributes(rng, depth + 1))
    return v  # "none": no member of the oneof set


def _random_attributes(rng: random.Random, depth: int = 0) -> list[KeyValue]:
    keys = ["a", "b", "gen_ai.prompt", "ключ", ""]
    out = []
    for _ in range(rng.randint(0, 6)):
        kv = KeyValue(key=rng.choice(keys))  # repeated keys: the later one wins
        if rng.random() < 0.9:
            kv.value.CopyFrom(_random_value(rng, depth))
        out.append(kv)
    return out


def _random_id(rng: random.Random, size: int) -> bytes:
    return rng.choice([rng.randbytes(size), rng.randbytes(size), b"", rng.randbytes(size - 1)])


def _random_span(rng: random.Random) -> PbSpan:
    s = PbSpan(
        trace_id=rng.randbytes(16),
        span_id=rng.randbytes(8),
        parent_span_id=rng.choice([b"", rng.randbytes(8)]),
        trace_state=rng.choice(["", "vendor=1"]),
        name=rng.choice(["", "chat", "ünïcode"]),
        kind=enum_value(rng.choice([0, 1, 3, 5, 77, -4])),
        start_time_unix_nano=rng.choice([0, 1_700_000_000_000_000_000]),
        end_time_unix_nano=rng.choice([0, 1_700_000_001_000_000_000]),
        flags=rng.choice([0, 0x100, 0xFFFFFFFF]),
        dropped_attributes_count=rng.choice([0, 3]),
    )
    s.attributes.extend(_random_attributes(rng))
    for _ in range(rng.randint(0, 2)):
        e = s.events.add(time_unix_nano=rng.randint(0, 2**63 - 1), name=rng.choice(["", "exception"]))
        e.attributes.extend(_random_attributes(rng))
    for _ in range(rng.randint(0, 2)):
        lk = s.links.add(trace_id=_random_id(rng, 16), span_id=_random_id(rng, 8), trace_state="t")
        lk.attributes.extend(_random_attributes(rng))
    if rng.random() < 0.6:
        s.status.CopyFrom(Status(code=enum_value(rng.choice([0, 1, 2, 9])), message=rng.choice(["", "boom"])))
    return s


def random_trace_request(rng: random.Random) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(rng.randint(1, 3)):
        rs = request.resource_spans.add(
            schema_url=rng.choice(["", "https://opentelemetry.io/schemas/1.26.0"])
        )
        if rng.random() < 0.8:
            rs.resource.attributes.extend(_random_attributes(rng))
        for _ in range(rng.randint(0, 3)):
            ss = rs.scope_spans.add(schema_url=rng.choice(["", "s"]))
            if rng.random() < 0.8:
                ss.scope.name = rng.choice(["", "openai", "ø"])
                ss.scope.version = rng.choice(["", "1.0"])
                ss.scope.attributes.extend(_random_attributes(rng))
            ss.spans.extend(_random_span(rng) for _ in range(rng.randint(0, 4)))
    return request


def random_log_request(rng: random.Random) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for _ in range(rng.randint(1, 3)):
        rl = request.resource_logs.add(schema_url=rng.choice(["", "u"]))
        rl.resource.attributes.extend(_random_attributes(rng))
        for _ in range(rng.randint(0, 3)):
            sl = rl.scope_logs.add(schema_url=rng.choice(["", "scope-schema"]))
            sl.scope.name = rng.choice(["", "logger"])
            for _ in range(rng.randint(0, 4)):
                r = PbLogRecord(
                    time_unix_nano=rng.choice([0, 1_700_000_000_000_000_000]),
                    observed_time_unix_nano=rng.choice([0, 1_700_000_000_500_000_000]),
                    severity_number=enum_value(rng.choice([0, 9, 17, 24, 25, -1])),
                    severity_text=rng.choice(["", "WARN"]),
                    flags=rng.choice([0, 1, 0x1FF]),
                    trace_id=rng.choice([b"", bytes(16), rng.randbytes(16)]),
                    span_id=rng.choice([b"", bytes(8), rng.randbytes(8)]),
                    event_name=rng.choice(["", "gen_ai.choice"]),
                )
                if rng.random() < 0.8:
                    r.body.CopyFrom(_random_value(rng))
                r.attributes.extend(_random_attributes(rng))
                sl.log_records.append(r)
    return request
