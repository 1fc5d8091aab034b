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
from typing import Any, Final

from inferline.core.records import Event, Link, LogRecord, Span
from inferline.otlp.validate import ZERO_SPAN_ID, ZERO_TRACE_ID, log_fields_problem, span_fields_problem
from inferline.otlp.wire_format import (
    I64,
    VARINT,
    NotPlain,
    as_int32,
    read_fixed32,
    read_fixed64,
    read_group,
    read_len,
    read_tag,
    read_text,
    read_varint,
    skip_value,
    top_level,
)

# AnyValue in AnyValue (arrays, key-value lists) beyond this: upb's path (it measures depth).
MAX_NESTING: Final = 32


def any_value(buf: bytes, p: int, end: int, depth: int) -> Any:
    """An AnyValue message in [p, end): as `flatten.any_value` returns it."""
    if p == end:
        return None
    tag, p = read_tag(buf, p, end)
    field = tag >> 3
    wire = tag & 7
    value: Any
    if field == 1:  # string_value
        start, p = read_len(buf, p, end, wire)
        value = read_text(buf, start, p)
    elif field == 3:  # int_value (int64)
        if wire != VARINT:
            raise NotPlain("wire type")
        value, p = read_varint(buf, p, end)
        value &= 0xFFFFFFFFFFFFFFFF  # a longer varint's high bits are dropped, as protobuf does
        if value >= 0x8000000000000000:
            value -= 0x10000000000000000
    elif field == 2:  # bool_value
        if wire != VARINT:
            raise NotPlain("wire type")
        n, p = read_varint(buf, p, end)
        value = n != 0
    elif field == 4:  # double_value
        if wire != I64 or p + 8 > end:
            raise NotPlain("double")
        value = struct.unpack_from("<d", buf, p)[0]
        p += 8
    elif field == 5 or field == 6:  # array_value / kvlist_value: {repeated values = 1}
        if depth >= MAX_NESTING:
            raise NotPlain("nested deeper than this reader goes")
        start, p = read_len(buf, p, end, wire)
        value = _values(buf, start, p, depth + 1) if field == 5 else _kvlist(buf, start, p, depth + 1)
    elif field == 7:  # bytes_value
        start, p = read_len(buf, p, end, wire)
        value = buf[start:p]
    else:
        raise NotPlain("unknown AnyValue field")
    if p != end:  # another field: a second member of the oneof, or an unknown one
        raise NotPlain("AnyValue with more than one field")
    return value


def _values(buf: bytes, p: int, end: int, depth: int) -> list[Any]:
    out: list[Any] = []
    while p < end:
        tag, p = read_tag(buf, p, end)
        if tag >> 3 != 1:
            p = skip_value(buf, p, end, tag & 7)
            continue
        start, p = read_len(buf, p, end, tag & 7)
        out.append(any_value(buf, start, p, depth))
    return out


def _kvlist(buf: bytes, p: int, end: int, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while p < end:
        tag, p = read_tag(buf, p, end)
        if tag >> 3 != 1:
            p = skip_value(buf, p, end, tag & 7)
            continue
        start, p = read_len(buf, p, end, tag & 7)
        _key_value(buf, start, p, out, depth)
    return out


def _key_value(buf: bytes, p: int, end: int, into: dict[str, Any], depth: int) -> None:
    """One KeyValue message in [p, end), stored in `into` (a later key wins, as in a dict)."""
    key = ""
    value: Any = None
    seen_value = False
    while p < end:
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        if field == 1:
            start, p = read_len(buf, p, end, tag & 7)
            key = read_text(buf, start, p)
        elif field == 2:
            if seen_value:
                raise NotPlain("value sent twice")
            seen_value = True
            start, p = read_len(buf, p, end, tag & 7)
            value = any_value(buf, start, p, depth)
        else:
            p = skip_value(buf, p, end, tag & 7)
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
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        if field == 1:
            start, p = read_len(buf, p, end, tag & 7)
            scope.name = read_text(buf, start, p)
        elif field == 2:
            start, p = read_len(buf, p, end, tag & 7)
            scope.version = read_text(buf, start, p)
        elif field == 3:
            start, p = read_len(buf, p, end, tag & 7)
            _key_value(buf, start, p, scope.attributes, 0)
        else:
            p = skip_value(buf, p, end, tag & 7)
    return scope


def _event(buf: bytes, p: int, end: int) -> Event:
    time_ns = 0
    name = ""
    attrs: dict[str, Any] = {}
    while p < end:
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        if field == 3:
            start, p = read_len(buf, p, end, wire)
            _key_value(buf, start, p, attrs, 0)
        elif field == 1:
            time_ns = read_fixed64(buf, p, end, wire)
            p += 8
        elif field == 2:
            start, p = read_len(buf, p, end, wire)
            name = read_text(buf, start, p)
        else:
            p = skip_value(buf, p, end, wire)
    return Event(time_ns, name, attrs)


def _link(buf: bytes, p: int, end: int) -> Link:
    trace_id = b""
    span_id = b""
    trace_state = ""
    attrs: dict[str, Any] = {}
    while p < end:
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        if field == 4:
            start, p = read_len(buf, p, end, wire)
            _key_value(buf, start, p, attrs, 0)
        elif field == 1:
            start, p = read_len(buf, p, end, wire)
            trace_id = buf[start:p]
        elif field == 2:
            start, p = read_len(buf, p, end, wire)
            span_id = buf[start:p]
        elif field == 3:
            start, p = read_len(buf, p, end, wire)
            trace_state = read_text(buf, start, p)
        else:
            p = skip_value(buf, p, end, wire)
    return Link(
        trace_id.hex() if len(trace_id) == 16 else "",
        span_id.hex() if len(span_id) == 8 else "",
        trace_state,
        attrs,
    )


class SpanHead:
    """The fields of a span that the rules of `inferline.otlp.validate` and the split by trace id
    read (the receiving process reads only these: `wire_split`)."""

    def __init__(self) -> None:
        self.trace_id = b""
        self.span_id = b""
        self.parent = b""
        self.name = ""
        self.start_ns = 0
        self.end_ns = 0

    def read(self, buf: bytes, field: int, wire: int, p: int, end: int) -> int:
        """Reads the field `field` at `p` if it is one of these: the position after it, else -1."""
        if field == 1:
            start, p = read_len(buf, p, end, wire)
            self.trace_id = buf[start:p]
        elif field == 2:
            start, p = read_len(buf, p, end, wire)
            self.span_id = buf[start:p]
        elif field == 4:
            start, p = read_len(buf, p, end, wire)
            self.parent = buf[start:p]
        elif field == 5:
            start, p = read_len(buf, p, end, wire)
            self.name = read_text(buf, start, p)
        elif field == 7:
            self.start_ns = read_fixed64(buf, p, end, wire)
            p += 8
        elif field == 8:
            self.end_ns = read_fixed64(buf, p, end, wire)
            p += 8
        else:
            return -1
        return p

    def problem(self) -> str:
        return span_fields_problem(
            self.name, self.trace_id, self.span_id, self.parent, self.start_ns, self.end_ns
        )


class LogHead:
    """The fields of a log record that the rules and the split by trace id read."""

    def __init__(self) -> None:
        self.trace_id = b""
        self.span_id = b""
        self.time_ns = 0
        self.observed_ns = 0

    def read(self, buf: bytes, field: int, wire: int, p: int, end: int) -> int:
        """As `SpanHead.read`."""
        if field == 9:
            start, p = read_len(buf, p, end, wire)
            self.trace_id = buf[start:p]
        elif field == 10:
            start, p = read_len(buf, p, end, wire)
            self.span_id = buf[start:p]
        elif field == 1:
            self.time_ns = read_fixed64(buf, p, end, wire)
            p += 8
        elif field == 11:
            self.observed_ns = read_fixed64(buf, p, end, wire)
            p += 8
        else:
            return -1
        return p


def _span(
    buf: bytes,
    p: int,
    end: int,
    project_id: str,
    resource: dict[str, Any],
    schema_url: str,
    scope: _Scope,
) -> Span:
    head = SpanHead()
    trace_state = ""
    kind = 0
    code = 0
    message = ""
    attrs: dict[str, Any] = {}
    events: list[Event] = []
    links: list[Link] = []
    while p < end:
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        if field == 9:
            start, p = read_len(buf, p, end, wire)
            _key_value(buf, start, p, attrs, 0)
            continue
        after = head.read(buf, field, wire, p, end)
        if after >= 0:
            p = after
        elif field == 6:
            if wire != VARINT:
                raise NotPlain("wire type")
            kind, p = read_varint(buf, p, end)
            kind = as_int32(kind)
        elif field == 15:  # Status {message = 2, code = 3}; a second one merges field by field
            start, p = read_len(buf, p, end, wire)
            q = start
            while q < p:
                stag, q = read_tag(buf, q, p)
                if stag >> 3 == 3 and stag & 7 == VARINT:
                    code, q = read_varint(buf, q, p)
                    code = as_int32(code)
                elif stag >> 3 == 2:
                    mstart, q = read_len(buf, q, p, stag & 7)
                    message = read_text(buf, mstart, q)
                else:
                    q = skip_value(buf, q, p, stag & 7)
        elif field == 11:
            start, p = read_len(buf, p, end, wire)
            events.append(_event(buf, start, p))
        elif field == 13:
            start, p = read_len(buf, p, end, wire)
            links.append(_link(buf, start, p))
        elif field == 3:
            start, p = read_len(buf, p, end, wire)
            trace_state = read_text(buf, start, p)
        else:
            p = skip_value(buf, p, end, wire)
    # A span the rules refuse goes through upb's path, which says why in its partial success.
    if head.problem():
        raise NotPlain("a span the rules refuse")
    return Span(
        project_id,
        head.trace_id.hex(),
        head.span_id.hex(),
        head.parent.hex(),
        trace_state,
        head.name,
        kind,
        head.start_ns,
        head.end_ns or head.start_ns,
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
    groups = top_level(buf)
    for i in range(0, len(groups), 2):
        rs = read_group(buf, groups[i], groups[i + 1])
        resource = _kvlist(buf, rs.single, rs.single_end, 0) if rs.single >= 0 else {}  # attributes = 1
        for j in range(0, len(rs.items), 2):
            ss = read_group(buf, rs.items[j], rs.items[j + 1])
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
    head = LogHead()
    severity = 0
    severity_text = ""
    body: Any = None
    seen_body = False
    attrs: dict[str, Any] = {}
    flags = 0
    event_name = ""
    while p < end:
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        if field == 6:
            start, p = read_len(buf, p, end, wire)
            _key_value(buf, start, p, attrs, 0)
            continue
        after = head.read(buf, field, wire, p, end)
        if after >= 0:
            p = after
        elif field == 5:
            if seen_body:
                raise NotPlain("body sent twice")
            seen_body = True
            start, p = read_len(buf, p, end, wire)
            body = any_value(buf, start, p, 0)
        elif field == 2:
            if wire != VARINT:
                raise NotPlain("wire type")
            severity, p = read_varint(buf, p, end)
            severity = as_int32(severity)
        elif field == 3:
            start, p = read_len(buf, p, end, wire)
            severity_text = read_text(buf, start, p)
        elif field == 8:
            flags = read_fixed32(buf, p, end, wire)
            p += 4
        elif field == 12:
            start, p = read_len(buf, p, end, wire)
            event_name = read_text(buf, start, p)
        else:
            p = skip_value(buf, p, end, wire)
    trace_id, span_id, observed = head.trace_id, head.span_id, head.observed_ns
    if log_fields_problem(trace_id, span_id, head.time_ns, observed):  # as for spans above
        raise NotPlain("a log record the rules refuse")
    return LogRecord(
        project_id,
        head.time_ns or observed,
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
    groups = top_level(buf)
    for i in range(0, len(groups), 2):
        rl = read_group(buf, groups[i], groups[i + 1])
        resource = _kvlist(buf, rl.single, rl.single_end, 0) if rl.single >= 0 else {}  # attributes = 1
        for j in range(0, len(rl.items), 2):
            sl = read_group(buf, rl.items[j], rl.items[j + 1])
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
