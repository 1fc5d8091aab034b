"""Parsing OTLP protobuf past upb's own depth limit: nesting up to the documented depth parses,
deeper input is refused after a bounded walk (however deep the hostile payload), broken wire
format keeps protobuf's own error, and upb's limit is back on after every parse."""

from __future__ import annotations

import threading

import orjson
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from inferline.otlp import protobuf
from inferline.otlp.json_codec import encode_json
from inferline.otlp.protobuf import MAX_VALUE_DEPTH, TooDeep, parse
from tests.otlp_helpers import nested_request, nested_span

pytestmark = pytest.mark.unit


def _encoded(depth: int, kind: str = "kvlist") -> bytes:
    return encode_json(
        orjson.loads(nested_request(nested_span(depth, kind, "ab" * 8))), ExportTraceServiceRequest
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def test_nesting_upb_refuses_parses_up_to_the_documented_depth() -> None:
    deep = _encoded(MAX_VALUE_DEPTH)
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(deep)  # upb alone
    request = parse(deep, ExportTraceServiceRequest)
    value = request.resource_spans[0].scope_spans[0].spans[0].attributes[0].value
    for _ in range(MAX_VALUE_DEPTH):
        value = value.kvlist_value.values[0].value
    assert value.string_value == "leaf"
    # The lifted limit was for that message only.
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(_encoded(40))


def test_deeper_is_refused_with_the_reason() -> None:
    with pytest.raises(TooDeep, match="nested too deeply"):
        parse(_encoded(MAX_VALUE_DEPTH + 1), ExportTraceServiceRequest)


def test_hostile_nesting_is_refused_without_walking_all_of_it() -> None:
    # AnyValue{array_value: ArrayValue{values: AnyValue{...}}}, 20,000 levels by hand (no encoder
    # would write it).
    inner = b""
    for _ in range(20_000):
        array = b"\x0a" + _varint(len(inner)) + inner
        inner = b"\x2a" + _varint(len(array)) + array
    with pytest.raises(TooDeep):
        parse(inner, AnyValue)


def test_broken_wire_format_keeps_protobufs_own_error() -> None:
    deep = _encoded(40)
    for broken in (deep[:-3], deep + b"\xff", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"):
        with pytest.raises(DecodeError) as raised:
            parse(broken, ExportTraceServiceRequest)
        assert not isinstance(raised.value, TooDeep)


def test_errors_other_than_depth_are_refused_without_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad UTF-8 in a large, otherwise valid request: upb's own error at once, no Python walk
    over megabytes (~0.3 s of CPU per MB for every such request otherwise)."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(2_000):
        span = spans.add(name=f"span {i}", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
        span.attributes.add(key="k").value.string_value = "value"
    body = bytearray(request.SerializeToString())
    body[body.rindex(b"value")] = 0xFF  # the last string is no longer UTF-8

    def no_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError("walked a message upb refused for another reason than its depth")

    monkeypatch.setattr(protobuf, "message_depth", no_walk)
    with pytest.raises(DecodeError, match="UTF-8"):
        parse(bytes(body), ExportTraceServiceRequest)
    # A message refused for its depth is still measured (and parsed) with the same patch undone.
    monkeypatch.undo()
    assert parse(_encoded(MAX_VALUE_DEPTH), ExportTraceServiceRequest).resource_spans


def test_parses_in_threads_never_see_the_lifted_limit() -> None:
    """While one thread parses a deep, measured message, others parse unmeasured ones: each of
    those is refused by upb's own limit or measured, never parsed unmeasured with the limit off."""
    too_deep, fine = _encoded(MAX_VALUE_DEPTH + 10), _encoded(MAX_VALUE_DEPTH)
    errors: list[str] = []

    def parse_many(body: bytes, deep_enough: bool) -> None:
        for _ in range(200):
            try:
                parse(body, ExportTraceServiceRequest)
                if deep_enough:
                    errors.append("a message past the limit was parsed")
            except TooDeep:
                if not deep_enough:
                    errors.append("a message within the limit was refused")

    threads = [threading.Thread(target=parse_many, args=(fine, False)) for _ in range(2)]
    threads += [threading.Thread(target=parse_many, args=(too_deep, True)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
