"""OTLP protobuf bytes → `Span` / `LogRecord` objects, read straight from the wire format.

Why not upb, which parses the request anyway: reading a parsed request from Python costs a
wrapper object per message touched and a by-name field lookup per attribute read, ~6,000
instructions per attribute (a GenAI span has ~20 of them), more than the rest of flattening.
Compiled (tools/compile_hot_path.py), this reader builds the same records from the bytes with a
str per string and nothing else: docs/performance.md, "2026-12-07".

It reads the requests that OTLP senders write, exactly, and gives up on anything else
(`NotPlain`): malformed or truncated bytes, a field number protobuf refuses, a field with an
unexpected wire type, a singular message or value sent twice (protobuf merges those), values
nested deeper than `MAX_NESTING`, invalid UTF-8, and records that a rule of
`inferline.otlp.validate` refuses. The caller then flattens the request parsed by upb
(`inferline.otlp.flatten`), which stays the reference for every input: a differential test
holds the two to the same records.

Field numbers are those of opentelemetry-proto v1 (common, resource, trace, logs).
"""

from __future__ import annotations

import struct
from typing import Any

from inferline.core.records import Event, Link, LogRecord, Span
from inferline.otlp.validate import ZERO_SPAN_ID, ZERO_TRACE_ID, log_fields_problem, span_fields_problem

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# AnyValue in AnyValue (arrays, key-value lists) beyond this: upb's path (it measures depth).
MAX_NESTING = 32


class NotPlain(Exception):
    """The request is not one this reader takes exactly: flatten it from upb's parse."""


def _varint(buf: bytes, p: int, end: int) -> tuple[int, int]:
    """The varint at `p` and the position after it."""
    if p >= end:
        raise NotPlain("truncated")
    b = buf[p]
    if b < 0x80:
        return b, p + 1
    value = b & 0x7F
    shift = 7
    p += 1
    while True:
        if p >= end or shift > 63:
            raise NotPlain("bad varint")
        b = buf[p]
        p += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, p
        shift += 7


def _tag(buf: bytes, p: int, end: int) -> tuple[int, int]:
    """A field's tag (number << 3 | wire type) and the position after it."""
    tag, p = _varint(buf, p, end)
    if tag < 8 or tag > 0xFFFFFFFF:  # field number 0, or past 2**29 - 1: protobuf refuses both
        raise NotPlain("invalid field number")
    return tag, p


def _int32(value: int) -> int:
    """An enum or int32 field as protobuf reads it (the low 32 bits, signed)."""
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value >= 0x80000000 else value


def _skip(buf: bytes, p: int, end: int, wire: int) -> int:
    """The position after an unknown field's value."""
    if wire == _VARINT:
        return _varint(buf, p, end)[1]
    if wire == _I64:
        p += 8
    elif wire == _LEN:
        n, p = _varint(buf, p, end)
        p += n
    elif wire == _I32:
        p += 4
    else:
        raise NotPlain("group or invalid wire type")
    if p > end:
        raise NotPlain("truncated")
    return p


def _len(buf: bytes, p: int, end: int, wire: int) -> tuple[int, int]:
    """A length-delimited field's [start, stop)."""
    if wire != _LEN:
        raise NotPlain("wire type")
    n, p = _varint(buf, p, end)
    stop = p + n
    if stop > end:
        raise NotPlain("truncated")
    return p, stop


def _fixed64(buf: bytes, p: int, end: int, wire: int) -> int:
    if wire != _I64 or p + 8 > end:
        raise NotPlain("fixed64")
    return int.from_bytes(buf[p : p + 8], "little")


def _fixed32(buf: bytes, p: int, end: int, wire: int) -> int:
    if wire != _I32 or p + 4 > end:
        raise NotPlain("fixed32")
    return int.from_bytes(buf[p : p + 4], "little")


def _text(buf: bytes, start: int, stop: int) -> str:
    try:
        return buf[start:stop].decode()
    except UnicodeDecodeError:
        raise NotPlain("invalid UTF-8") from None


def any_value(buf: bytes, p: int, end: int, depth: int) -> Any:
    """An AnyValue message in [p, end): as `flatten.any_value` returns it."""
    if p == end:
        return None
    tag, p = _tag(buf, p, end)
    field = tag >> 3
    wire = tag & 7
    value: Any
    if field == 1:  # string_value
        start, p = _len(buf, p, end, wire)
        value = _text(buf, start, p)
    elif field == 3:  # int_value (int64)
        if wire != _VARINT:
            raise NotPlain("wire type")
        value, p = _varint(buf, p, end)
        value &= 0xFFFFFFFFFFFFFFFF  # a longer varint's high bits are dropped, as protobuf does
        if value >= 0x8000000000000000:
            value -= 0x10000000000000000
    elif field == 2:  # bool_value
        if wire != _VARINT:
            raise NotPlain("wire type")
        n, p = _varint(buf, p, end)
        value = n != 0
    elif field == 4:  # double_value
        if wire != _I64 or p + 8 > end:
            raise NotPlain("double")
        value = struct.unpack_from("<d", buf, p)[0]
        p += 8
    elif field == 5 or field == 6:  # array_value / kvlist_value: {repeated values = 1}
        if depth >= MAX_NESTING:
            raise NotPlain("nested deeper than this reader goes")
        start, p = _len(buf, p, end, wire)
        value = _values(buf, start, p, depth + 1) if field == 5 else _kvlist(buf, start, p, depth + 1)
    elif field == 7:  # bytes_value
        start, p = _len(buf, p, end, wire)
        value = buf[start:p]
    else:
        raise NotPlain("unknown AnyValue field")
    if p != end:  # another field: a second member of the oneof, or an unknown one
        raise NotPlain("AnyValue with more than one field")
    return value


def _values(buf: bytes, p: int, end: int, depth: int) -> list[Any]:
    out: list[Any] = []
    while p < end:
        tag, p = _tag(buf, p, end)
        if tag >> 3 != 1:
            p = _skip(buf, p, end, tag & 7)
            continue
        start, p = _len(buf, p, end, tag & 7)
        out.append(any_value(buf, start, p, depth))
    return out


def _kvlist(buf: bytes, p: int, end: int, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while p < end:
        tag, p = _tag(buf, p, end)
        if tag >> 3 != 1:
            p = _skip(buf, p, end, tag & 7)
            continue
        start, p = _len(buf, p, end, tag & 7)
        _key_value(buf, start, p, out, depth)
    return out


def _key_value(buf: bytes, p: int, end: int, into: dict[str, Any], depth: int) -> None:
    """One KeyValue message in [p, end), stored in `into` (a later key wins, as in a dict)."""
    key = ""
    value: Any = None
    seen_value = False
    while p < end:
        tag, p = _tag(buf, p, end)
        field = tag >> 3
        if field == 1:
            start, p = _len(buf, p, end, tag & 7)
            key = _text(buf, start, p)
        elif field == 2:
            if seen_value:
                raise NotPlain("value sent twice")
            seen_value = True
            start, p = _len(buf, p, end, tag & 7)
            value = any_value(buf, start, p, depth)
        else:
            p = _skip(buf, p, end, tag & 7)
    into[key] = value


class _Scope:
    """An InstrumentationScope: name, version, attributes."""

    def __init__(self) -> None:
        self.name = ""
        self.version = ""
        self.attributes: dict[str, Any] = {}


def _scope(buf: bytes, p: int, end: int) -> _Scope:
    scope = _Scope()
    while p < end:
        tag, p = _tag(buf, p, end)
        field = tag >> 3
        if field == 1:
            start, p = _len(buf, p, end, tag & 7)
            scope.name = _text(buf, start, p)
        elif field == 2:
            start, p = _len(buf, p, end, tag & 7)
            scope.version = _text(buf, start, p)
        elif field == 3:
            start, p = _len(buf, p, end, tag & 7)
            _key_value(buf, start, p, scope.attributes, 0)
        else:
            p = _skip(buf, p, end, tag & 7)
    return scope


class _Group:
    """A ResourceSpans / ScopeSpans (or the logs' pair) read in one pass: its single fields, and
    where its repeated message field's items are (a schema_url can follow them)."""

    def __init__(self) -> None:
        self.single = -1  # start of the resource / scope message; -1: none sent
        self.single_end = 0
        self.items: list[int] = []  # start, stop, start, stop, ...
        self.schema_url = ""


def _group(buf: bytes, p: int, end: int) -> _Group:
    """Fields 1 (a message, once), 2 (repeated messages) and 3 (schema_url): the layout shared by
    ResourceSpans, ScopeSpans, ResourceLogs and ScopeLogs."""
    g = _Group()
    while p < end:
        tag, p = _tag(buf, p, end)
        field = tag >> 3
        if field == 2:
            start, p = _len(buf, p, end, tag & 7)
            g.items.append(start)
            g.items.append(p)
        elif field == 1:
            if g.single >= 0:
                raise NotPlain("resource or scope sent twice")
            g.single, p = _len(buf, p, end, tag & 7)
            g.single_end = p
        elif field == 3:
            start, p = _len(buf, p, end, tag & 7)
            g.schema_url = _text(buf, start, p)
        else:
            p = _skip(buf, p, end, tag & 7)
    return g


def _top_level(buf: bytes) -> list[int]:
    """Where the request's resource_spans / resource_logs (field 1) are: start, stop, ..."""
    out: list[int] = []
    p = 0
    end = len(buf)
    while p < end:
        tag, p = _tag(buf, p, end)
        if tag >> 3 == 1:
            start, p = _len(buf, p, end, tag & 7)
            out.append(start)
            out.append(p)
        else:
            p = _skip(buf, p, end, tag & 7)
    return out


def _event(buf: bytes, p: int, end: int) -> Event:
    time_ns = 0
    name = ""
    attrs: dict[str, Any] = {}
    while p < end:
        tag, p = _tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        if field == 3:
            start, p = _len(buf, p, end, wire)
            _key_value(buf, start, p, attrs, 0)
        elif field == 1:
            time_ns = _fixed64(buf, p, end, wire)
            p += 8
        elif field == 2:
            start, p = _len(buf, p, end, wire)
            name = _text(buf, start, p)
        else:
            p = _skip(buf, p, end, wire)
    return Event(time_ns, name, attrs)


def _link(buf: bytes, p: int, end: int) -> Link:
    trace_id = b""
    span_id = b""
    trace_state = ""
    attrs: dict[str, Any] = {}
    while p < end:
        tag, p = _tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        if field == 4:
            start, p = _len(buf, p, end, wire)
            _key_value(buf, start, p, attrs, 0)
        elif field == 1:
            start, p = _len(buf, p, end, wire)
            trace_id = buf[start:p]
        elif field == 2:
            start, p = _len(buf, p, end, wire)
            span_id = buf[start:p]
        elif field == 3:
            start, p = _len(buf, p, end, wire)
            trace_state = _text(buf, start, p)
        else:
            p = _skip(buf, p, end, wire)
    return Link(
        trace_id.hex() if len(trace_id) == 16 else "",
        span_id.hex() if len(span_id) == 8 else "",
        trace_state,
        attrs,
    )


def _span(
    buf: bytes,
    p: int,
    end: int,
    project_id: str,
    resource: dict[str, Any],
    schema_url: str,
    scope: _Scope,
) -> Span:
    trace_id = b""
    span_id = b""
    parent = b""
    trace_state = ""
    name = ""
    kind = 0
    start_ns = 0
    end_ns = 0
    code = 0
    message = ""
    attrs: dict[str, Any] = {}
    events: list[Event] = []
    links: list[Link] = []
    while p < end:
        tag, p = _tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        if field == 9:
            start, p = _len(buf, p, end, wire)
            _key_value(buf, start, p, attrs, 0)
        elif field == 1:
            start, p = _len(buf, p, end, wire)
            trace_id = buf[start:p]
        elif field == 2:
            start, p = _len(buf, p, end, wire)
            span_id = buf[start:p]
        elif field == 4:
            start, p = _len(buf, p, end, wire)
            parent = buf[start:p]
        elif field == 5:
            start, p = _len(buf, p, end, wire)
            name = _text(buf, start, p)
        elif field == 7:
            start_ns = _fixed64(buf, p, end, wire)
            p += 8
        elif field == 8:
            end_ns = _fixed64(buf, p, end, wire)
            p += 8
        elif field == 6:
            if wire != _VARINT:
                raise NotPlain("wire type")
            kind, p = _varint(buf, p, end)
            kind = _int32(kind)
        elif field == 15:  # Status {message = 2, code = 3}; a second one merges field by field
            start, p = _len(buf, p, end, wire)
            q = start
            while q < p:
                stag, q = _tag(buf, q, p)
                if stag >> 3 == 3 and stag & 7 == _VARINT:
                    code, q = _varint(buf, q, p)
                    code = _int32(code)
                elif stag >> 3 == 2:
                    mstart, q = _len(buf, q, p, stag & 7)
                    message = _text(buf, mstart, q)
                else:
                    q = _skip(buf, q, p, stag & 7)
        elif field == 11:
            start, p = _len(buf, p, end, wire)
            events.append(_event(buf, start, p))
        elif field == 13:
            start, p = _len(buf, p, end, wire)
            links.append(_link(buf, start, p))
        elif field == 3:
            start, p = _len(buf, p, end, wire)
            trace_state = _text(buf, start, p)
        else:
            p = _skip(buf, p, end, wire)
    # A span the rules refuse goes through upb's path, which says why in its partial success.
    if span_fields_problem(name, trace_id, span_id, parent, start_ns, end_ns):
        raise NotPlain("a span the rules refuse")
    return Span(
        project_id,
        trace_id.hex(),
        span_id.hex(),
        parent.hex(),
        trace_state,
        name,
        kind,
        start_ns,
        end_ns or start_ns,
        code,
        message,
        attrs,
        events,
        links,
        resource,
        schema_url,
        scope.name,
        scope.version,
        scope.attributes,
    )


def read_spans(buf: bytes, project_id: str) -> list[Span]:
    """The spans of an ExportTraceServiceRequest, as `flatten.flatten_spans` makes them. Raises
    NotPlain for a request it does not read exactly (see the module's docstring)."""
    out: list[Span] = []
    groups = _top_level(buf)
    for i in range(0, len(groups), 2):
        rs = _group(buf, groups[i], groups[i + 1])
        resource = _kvlist(buf, rs.single, rs.single_end, 0) if rs.single >= 0 else {}  # attributes = 1
        for j in range(0, len(rs.items), 2):
            ss = _group(buf, rs.items[j], rs.items[j + 1])
            scope = _scope(buf, ss.single, ss.single_end) if ss.single >= 0 else _Scope()
            for k in range(0, len(ss.items), 2):
                out.append(
                    _span(buf, ss.items[k], ss.items[k + 1], project_id, resource, rs.schema_url, scope)
                )
    return out


def _log(
    buf: bytes,
    p: int,
    end: int,
    project_id: str,
    resource: dict[str, Any],
    schema_url: str,
    scope: _Scope,
    scope_schema_url: str,
    index: int,
) -> LogRecord:
    time_ns = 0
    observed = 0
    severity = 0
    severity_text = ""
    body: Any = None
    seen_body = False
    attrs: dict[str, Any] = {}
    flags = 0
    trace_id = b""
    span_id = b""
    event_name = ""
    while p < end:
        tag, p = _tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        if field == 6:
            start, p = _len(buf, p, end, wire)
            _key_value(buf, start, p, attrs, 0)
        elif field == 5:
            if seen_body:
                raise NotPlain("body sent twice")
            seen_body = True
            start, p = _len(buf, p, end, wire)
            body = any_value(buf, start, p, 0)
        elif field == 1:
            time_ns = _fixed64(buf, p, end, wire)
            p += 8
        elif field == 11:
            observed = _fixed64(buf, p, end, wire)
            p += 8
        elif field == 2:
            if wire != _VARINT:
                raise NotPlain("wire type")
            severity, p = _varint(buf, p, end)
            severity = _int32(severity)
        elif field == 3:
            start, p = _len(buf, p, end, wire)
            severity_text = _text(buf, start, p)
        elif field == 8:
            flags = _fixed32(buf, p, end, wire)
            p += 4
        elif field == 9:
            start, p = _len(buf, p, end, wire)
            trace_id = buf[start:p]
        elif field == 10:
            start, p = _len(buf, p, end, wire)
            span_id = buf[start:p]
        elif field == 12:
            start, p = _len(buf, p, end, wire)
            event_name = _text(buf, start, p)
        else:
            p = _skip(buf, p, end, wire)
    if log_fields_problem(trace_id, span_id, time_ns, observed):  # as for spans above
        raise NotPlain("a log record the rules refuse")
    return LogRecord(
        project_id,
        time_ns or observed,
        observed,
        trace_id.hex() if trace_id and trace_id != ZERO_TRACE_ID else "",
        span_id.hex() if span_id and span_id != ZERO_SPAN_ID else "",
        flags & 0xFF,
        severity_text,
        severity if 0 <= severity <= 24 else 0,
        body,
        attrs,
        event_name,
        resource,
        schema_url,
        scope.name,
        scope.version,
        scope.attributes,
        scope_schema_url,
        index=index,
    )


def read_logs(buf: bytes, project_id: str) -> list[LogRecord]:
    """The log records of an ExportLogsServiceRequest, as `flatten.flatten_logs` makes them.
    Raises NotPlain as `read_spans` does."""
    out: list[LogRecord] = []
    index = -1
    groups = _top_level(buf)
    for i in range(0, len(groups), 2):
        rl = _group(buf, groups[i], groups[i + 1])
        resource = _kvlist(buf, rl.single, rl.single_end, 0) if rl.single >= 0 else {}  # attributes = 1
        for j in range(0, len(rl.items), 2):
            sl = _group(buf, rl.items[j], rl.items[j + 1])
            scope = _scope(buf, sl.single, sl.single_end) if sl.single >= 0 else _Scope()
            for k in range(0, len(sl.items), 2):
                index += 1
                out.append(
                    _log(
                        buf,
                        sl.items[k],
                        sl.items[k + 1],
                        project_id,
                        resource,
                        rl.schema_url,
                        scope,
                        sl.schema_url,
                        index,
                    )
                )
    return out
