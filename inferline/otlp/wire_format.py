"""Reading protobuf's wire format from `bytes`, for the OTLP requests' readers (`wire`: records,
`wire_split`: a request checked and split by partition): varints, tags, length-delimited and fixed
fields, UTF-8 text, and the group layout that ResourceSpans, ScopeSpans and their logs
counterparts share.

Every reader raises `NotPlain` where the bytes are not what it reads exactly (malformed or
truncated, a field number protobuf refuses, an unexpected wire type, invalid UTF-8, a singular
resource or scope sent twice): its caller then takes the path through upb's parse. Compiled with
the hot path (tools/compile_hot_path.py).
"""

from __future__ import annotations

from typing import Final

# Wire types. `Final`: compiled code uses the values, not a look-up of a module global per use.
VARINT: Final = 0
I64: Final = 1
LEN: Final = 2
I32: Final = 5


class NotPlain(Exception):
    """The request is not one these readers take exactly: its caller takes upb's parse instead."""


def read_varint(buf: bytes, p: int, end: int) -> tuple[int, int]:
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


def read_tag(buf: bytes, p: int, end: int) -> tuple[int, int]:
    """A field's tag (number << 3 | wire type) and the position after it."""
    tag, p = read_varint(buf, p, end)
    if tag < 8 or tag > 0xFFFFFFFF:  # field number 0, or past 2**29 - 1: protobuf refuses both
        raise NotPlain("invalid field number")
    return tag, p


def as_int32(value: int) -> int:
    """An enum or int32 field as protobuf reads it (the low 32 bits, signed)."""
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value >= 0x80000000 else value


def skip_value(buf: bytes, p: int, end: int, wire: int) -> int:
    """The position after an unknown field's value."""
    if wire == VARINT:
        return read_varint(buf, p, end)[1]
    if wire == I64:
        p += 8
    elif wire == LEN:
        n, p = read_varint(buf, p, end)
        p += n
    elif wire == I32:
        p += 4
    else:
        raise NotPlain("group or invalid wire type")
    if p > end:
        raise NotPlain("truncated")
    return p


def read_len(buf: bytes, p: int, end: int, wire: int) -> tuple[int, int]:
    """A length-delimited field's [start, stop)."""
    if wire != LEN:
        raise NotPlain("wire type")
    n, p = read_varint(buf, p, end)
    stop = p + n
    if stop > end:
        raise NotPlain("truncated")
    return p, stop


def read_fixed64(buf: bytes, p: int, end: int, wire: int) -> int:
    if wire != I64 or p + 8 > end:
        raise NotPlain("fixed64")
    return int.from_bytes(buf[p : p + 8], "little")


def read_fixed32(buf: bytes, p: int, end: int, wire: int) -> int:
    if wire != I32 or p + 4 > end:
        raise NotPlain("fixed32")
    return int.from_bytes(buf[p : p + 4], "little")


def read_text(buf: bytes, start: int, stop: int) -> str:
    try:
        return buf[start:stop].decode()
    except UnicodeDecodeError:
        raise NotPlain("invalid UTF-8") from None


class Group:
    """A ResourceSpans / ScopeSpans (or the logs' pair) read in one pass: its single fields, and
    where its repeated message field's items are (a schema_url can follow them)."""

    def __init__(self) -> None:
        self.single = -1  # start of the resource / scope message; -1: none sent
        self.single_end = 0
        self.items: list[int] = []  # start, stop, start, stop, ...
        self.schema_url = ""


def read_group(buf: bytes, p: int, end: int) -> Group:
    """Fields 1 (a message, once), 2 (repeated messages) and 3 (schema_url): the layout shared by
    ResourceSpans, ScopeSpans, ResourceLogs and ScopeLogs."""
    g = Group()
    while p < end:
        tag, p = read_tag(buf, p, end)
        field = tag >> 3
        if field == 2:
            start, p = read_len(buf, p, end, tag & 7)
            g.items.append(start)
            g.items.append(p)
        elif field == 1:
            if g.single >= 0:
                raise NotPlain("resource or scope sent twice")
            g.single, p = read_len(buf, p, end, tag & 7)
            g.single_end = p
        elif field == 3:
            start, p = read_len(buf, p, end, tag & 7)
            g.schema_url = read_text(buf, start, p)
        else:
            p = skip_value(buf, p, end, tag & 7)
    return g


def top_level(buf: bytes) -> list[int]:
    """Where the request's resource_spans / resource_logs (field 1) are: start, stop, ..."""
    out: list[int] = []
    p = 0
    end = len(buf)
    while p < end:
        tag, p = read_tag(buf, p, end)
        if tag >> 3 == 1:
            start, p = read_len(buf, p, end, tag & 7)
            out.append(start)
            out.append(p)
        else:
            p = skip_value(buf, p, end, tag & 7)
    return out
