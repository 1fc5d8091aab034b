"""An OTLP request checked and split by partition from its bytes: what `prepared.prepare` does
with upb's parse, without a message object per record.

`prepare` reads each record's ids and times through upb's Python objects (a wrapper per record
and per field read), copies every record into a request per partition and serialises those:
~4 µs per plain span and ~7 per GenAI span in the receiving process (docs/performance.md,
"2026-12-07, later"). Here the few fields the rules of `inferline.otlp.validate` need are read
from the wire, and each partition's request is assembled from slices of the bytes received; a
request whose records all pass and all go to one partition is appended as it came.

The caller has parsed the request with upb already (that parse is the check that the bytes are
protobuf: its error is the sender's 400 / INVALID_ARGUMENT), so this meets well-formed requests
only. Anything it does not read exactly as the upb path would (a field of an unexpected wire
type, a resource or scope sent twice: `wire_format.NotPlain`) is left to `prepare`. Parts equal
`prepare`'s once parsed, except for unknown fields of the resource and scope groups, which
these keep (held to that by tests/test_wire_split.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

from inferline.core.records import LOGS, SPANS
from inferline.otlp.shard import shard_of
from inferline.otlp.validate import (
    UNTIMED_LOG_STAMPED,
    ZERO_TRACE_ID,
    Rejected,
    TimeWindow,
    link_ids_problem,
    log_fields_problem,
)
from inferline.otlp.wire import LogHead, SpanHead
from inferline.otlp.wire_format import (
    I64,
    Group,
    read_group,
    read_len,
    read_tag,
    skip_value,
    top_level,
)

# Tags (field number << 3 | wire type) written in assembled parts: fields 1-3, length-delimited.
_FIELD_1: Final = 0x0A
_FIELD_2: Final = 0x12
_FIELD_3: Final = 0x1A
# LogRecord.observed_time_unix_nano (field 11, fixed64), appended to an untimed record: a field
# sent again replaces the earlier value.
_OBSERVED_TIME: Final = bytes([11 << 3 | I64])
_STAMP: Final = len(_OBSERVED_TIME) + 8


class Split(NamedTuple):
    """`prepared.Prepared`'s fields but its kind."""

    records: int
    rejected: Rejected
    parts: dict[int, bytes]


class _Scoped:
    """A scope group (ScopeSpans / ScopeLogs) and where its kept records are, by partition: start,
    stop, start, stop, ... (a negative stop: the record is to be stamped, see `_STAMP`)."""

    __slots__ = ("group", "records")

    def __init__(self, group: Group) -> None:
        self.group = group
        self.records: dict[int, list[int]] = {}


class _Resourced:
    """A resource group (ResourceSpans / ResourceLogs) and its scope groups."""

    __slots__ = ("group", "scopes")

    def __init__(self, group: Group) -> None:
        self.group = group
        self.scopes: list[_Scoped] = []


def split_spans(buf: bytes, partitions: int, window: TimeWindow | None, now_ns: int) -> Split:
    """`prepare` of the ExportTraceServiceRequest `buf` (see the module's docstring)."""
    return _split(buf, SPANS, partitions, None, window, now_ns)


def split_logs(buf: bytes, partitions: int, window: TimeWindow | None, now_ns: int) -> Split:
    """`prepare` of the ExportLogsServiceRequest `buf`: untimed records are stamped `now_ns`."""
    return _split(buf, LOGS, partitions, None, window, now_ns)


def split_for_kafka(
    buf: bytes, kind: int, place: Callable[[bytes], int], window: TimeWindow | None, now_ns: int
) -> Split:
    """The same check, split by Kafka partition: each trace in partition `place(trace_id)` (the
    raw exporter's: where a message keyed by the trace id would go), asked once per trace;
    records without a trace id (empty or all zeros) apart, under `UNKEYED`. A request with no
    record kept has no part."""
    return _split(buf, kind, 0, place, window, now_ns)


UNKEYED: Final = -1  # `split_for_kafka`'s part of the records without a trace id
_UNSET: Final = -2


def _split(
    buf: bytes,
    kind: int,
    partitions: int,
    place: Callable[[bytes], int] | None,
    window: TimeWindow | None,
    now_ns: int,
) -> Split:
    rejected = Rejected()
    resources: list[_Resourced] = []
    placed: dict[bytes, int] = {}  # trace id -> Kafka partition (`place` given)
    records = 0
    first = _UNSET  # the partition of the first record kept
    mixed = False  # records kept for more than one partition
    changed = False  # a record left out or stamped: the bytes received cannot be appended as they are
    stamped = 0
    low, high = window.accepted_times(window.spans_days, now_ns) if window is not None else (0, 1 << 64)
    groups = top_level(buf)
    for i in range(0, len(groups), 2):
        resource = _Resourced(read_group(buf, groups[i], groups[i + 1]))
        resources.append(resource)
        items = resource.group.items
        for j in range(0, len(items), 2):
            scoped = _Scoped(read_group(buf, items[j], items[j + 1]))
            resource.scopes.append(scoped)
            ranges = scoped.group.items
            for k in range(0, len(ranges), 2):
                start, stop = ranges[k], ranges[k + 1]
                records += 1
                if kind == SPANS:
                    trace_id, why = _check_span(buf, start, stop, window, now_ns, low, high)
                else:
                    trace_id, why, stamp = _check_log(buf, start, stop, window, now_ns)
                    if stamp:  # OTLP: the first component to see it gives it its observed time
                        stop = -stop
                        stamped += 1
                        changed = True
                if why:
                    rejected.add(1, why)
                    changed = True
                    continue
                if place is None:
                    partition = shard_of(trace_id, partitions) if partitions > 1 else 0
                elif not trace_id or trace_id == ZERO_TRACE_ID:
                    partition = UNKEYED
                else:
                    found = placed.get(trace_id)
                    if found is None:
                        found = placed[trace_id] = place(trace_id)
                    partition = found
                if first == _UNSET:
                    first = partition
                elif partition != first:
                    mixed = True
                kept = scoped.records.get(partition)
                if kept is None:
                    kept = scoped.records[partition] = []
                kept.append(start)
                kept.append(stop)
    rejected.correct(stamped, UNTIMED_LOG_STAMPED)
    parts: dict[int, bytes] = {}
    if first == _UNSET:
        # Nothing kept. `prepare` passes a request of empty resources on as it came; Kafka gets
        # no message.
        if resources and not changed and place is None:
            parts[0] = buf
    elif not changed and not mixed:
        parts[first] = buf  # as `prepare` would serialise it: nothing to take out or add
    else:
        for partition in sorted({p for r in resources for s in r.scopes for p in s.records}):
            parts[partition] = _assemble(buf, resources, partition, now_ns)
    return Split(records, rejected, parts)


def _check_span(
    buf: bytes, p: int, end: int, window: TimeWindow | None, now_ns: int, low: int, high: int
) -> tuple[bytes, str]:
    """A span's trace id and why the rules refuse it ("" if they do not). [low, high): the start
    times the window accepts (`TimeWindow.accepted_times`)."""
    head = SpanHead()
    links: list[tuple[bytes, bytes]] = []
    while p < end:
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        wire = tag & 7
        after = head.read(buf, field, wire, p, end)
        if after >= 0:
            p = after
        elif field == 13:
            start, p = read_len(buf, p, end, wire)
            links.append(_link_ids(buf, start, p))
        else:
            p = skip_value(buf, p, end, wire)
    why = head.problem() or link_ids_problem(head.name, links)
    if not why and not low <= head.start_ns < high:
        why = window.span_start_problem(head.name, head.start_ns, now_ns) if window is not None else ""
    return head.trace_id, why


def _link_ids(buf: bytes, p: int, end: int) -> tuple[bytes, bytes]:
    trace_id = b""
    span_id = b""
    while p < end:
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        if field == 1:
            start, p = read_len(buf, p, end, tag & 7)
            trace_id = buf[start:p]
        elif field == 2:
            start, p = read_len(buf, p, end, tag & 7)
            span_id = buf[start:p]
        else:
            p = skip_value(buf, p, end, tag & 7)
    return trace_id, span_id


def _check_log(
    buf: bytes, p: int, end: int, window: TimeWindow | None, now_ns: int
) -> tuple[bytes, str, bool]:
    """A log record's trace id, why the rules refuse it, and whether it is to be stamped (it has
    no time at all, and the window says this is where records are accepted)."""
    head = LogHead()
    while p < end:
        tag, p = read_tag(buf, p, end)
        after = head.read(buf, tag >> 3, tag & 7, p, end)
        p = after if after >= 0 else skip_value(buf, p, end, tag & 7)
    trace_id, span_id, time_ns, observed_ns = head.trace_id, head.span_id, head.time_ns, head.observed_ns
    if window is None:
        return trace_id, log_fields_problem(trace_id, span_id, time_ns, observed_ns), False
    stamp = not time_ns and not observed_ns
    if stamp:
        observed_ns = now_ns
    return trace_id, window.log_fields_problem(trace_id, span_id, time_ns, observed_ns, now_ns), stamp


def _assemble(buf: bytes, resources: list[_Resourced], partition: int, now_ns: int) -> bytes:
    """The request of `partition`'s records: per resource and scope that has some, the group's
    resource (or scope) and schema_url, as `shard._shard` copies them, and the records."""
    out = bytearray()
    for resource in resources:
        scopes = [s for s in resource.scopes if partition in s.records]
        if not scopes:
            continue
        rg = resource.group
        scope_sizes = [_scope_size(s.group, s.records[partition]) for s in scopes]
        size = _single_size(rg) + sum(_field_size(n) for n in scope_sizes) + _url_size(rg)
        _header(out, _FIELD_1, size)
        _write_single(out, buf, rg)
        for scoped, scope_size in zip(scopes, scope_sizes, strict=True):
            _header(out, _FIELD_2, scope_size)
            _write_single(out, buf, scoped.group)
            ranges = scoped.records[partition]
            for k in range(0, len(ranges), 2):
                start, stop = ranges[k], ranges[k + 1]
                if stop >= 0:
                    _header(out, _FIELD_2, stop - start)
                    out += buf[start:stop]
                else:
                    _header(out, _FIELD_2, -stop - start + _STAMP)
                    out += buf[start:-stop]
                    out += _OBSERVED_TIME
                    out += now_ns.to_bytes(8, "little")
            _write_url(out, scoped.group)
        _write_url(out, rg)
    return bytes(out)


def _scope_size(group: Group, ranges: list[int]) -> int:
    size = _single_size(group) + _url_size(group)
    for k in range(0, len(ranges), 2):
        start, stop = ranges[k], ranges[k + 1]
        size += _field_size(stop - start if stop >= 0 else -stop - start + _STAMP)
    return size


def _single_size(group: Group) -> int:
    # Written even when not sent: `shard._shard` copies it with CopyFrom, which sets it.
    return _field_size(group.single_end - group.single if group.single >= 0 else 0)


def _url_size(group: Group) -> int:
    n = len(group.schema_url.encode())
    return _field_size(n) if n else 0


def _field_size(n: int) -> int:
    """Bytes of a length-delimited field of `n` bytes whose tag is one byte."""
    return 1 + _varint_size(n) + n


def _varint_size(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def _header(out: bytearray, tag: int, n: int) -> None:
    out.append(tag)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_single(out: bytearray, buf: bytes, group: Group) -> None:
    if group.single < 0:
        _header(out, _FIELD_1, 0)
        return
    _header(out, _FIELD_1, group.single_end - group.single)
    out += buf[group.single : group.single_end]


def _write_url(out: bytearray, group: Group) -> None:
    if group.schema_url:
        url = group.schema_url.encode()
        _header(out, _FIELD_3, len(url))
        out += url
