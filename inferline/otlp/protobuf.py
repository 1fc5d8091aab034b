"""Parsing OTLP protobuf, with attribute values nested as deep as OTLP allows them to be.

protobuf's parser (upb) refuses messages nested deeper than 100 levels. An OTLP span attribute sits
6 levels down, and each level of a key-value list value takes 3 more (AnyValue → KeyValueList →
KeyValue), so upb alone reads only ~31 levels of nested maps. We promise `MAX_VALUE_DEPTH` levels:
a message upb refuses is measured here (a walk over the wire format that follows the message
descriptors and stops as soon as it passes the bound), and one within the bound is parsed again
with upb's depth limit lifted. The limit is a process-wide switch, so every parse holds one lock:
an unmeasured message is never parsed while the switch is on (upb holds the GIL while it parses,
so the lock costs no parallelism).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

try:  # upb, the default implementation since protobuf 4.21
    from google._upb._message import SetAllowOversizeProtos
except ImportError:  # pragma: no cover - the pure-Python and C++ implementations
    SetAllowOversizeProtos = None

_M = TypeVar("_M", bound=Message)

# Levels of key-value lists inside one attribute value (arrays nest 1.5× deeper: 2 messages each).
MAX_VALUE_DEPTH = 64
# Messages above an attribute's value (request → resource → scope → span or log → KeyValue →
# AnyValue is 6; span events and links add 2) plus 3 per level of key-value list.
MAX_MESSAGE_DEPTH = 8 + 3 * MAX_VALUE_DEPTH

_PARSING = threading.Lock()
# How upb's DecodeError names its nesting limit ("... Exceeded upb_DecodeOptions_MaxDepth").
_UPB_DEPTH_ERROR = "MaxDepth"


class TooDeep(DecodeError):
    """Nested past MAX_MESSAGE_DEPTH."""


def parse(body: bytes, message_type: type[_M]) -> _M:
    """`message_type.FromString(body)`, accepting nesting up to MAX_MESSAGE_DEPTH. Raises
    DecodeError (TooDeep when the nesting is the reason)."""
    with _PARSING:
        try:
            return message_type.FromString(body)
        except DecodeError as e:
            error = e
    # Only upb's depth limit is worth the walk (Python, ~0.3 s per MB): bad UTF-8, a truncated
    # field or garbage is refused at once, not after seconds of CPU per request.
    if (
        SetAllowOversizeProtos is None
        or _UPB_DEPTH_ERROR not in str(error)
        or message_depth(body, message_type.DESCRIPTOR) is None
    ):
        raise error
    with _PARSING:
        SetAllowOversizeProtos(True)
        try:
            return message_type.FromString(body)
        finally:
            SetAllowOversizeProtos(False)


def copy_into(repeated: Any, items: Iterable[Message]) -> None:
    """`repeated.extend(items)` for message fields. upb's `extend` copies by serializing and
    parsing again under its own depth limit, so a record parsed by `parse` past that limit would
    fail there; `add().CopyFrom` copies in memory (and costs the same)."""
    for item in items:
        repeated.add().CopyFrom(item)


def message_depth(body: bytes, descriptor: Descriptor, limit: int = MAX_MESSAGE_DEPTH) -> int | None:
    """How deep messages nest in `body` (1: no submessage); None if it is not valid wire format.
    Raises TooDeep past `limit`, without walking further."""
    return _walk(memoryview(body), descriptor, 1, limit)


def _walk(data: memoryview, descriptor: Descriptor, depth: int, limit: int) -> int | None:
    if depth > limit:
        raise TooDeep(
            f"attribute values are nested too deeply: at most {MAX_VALUE_DEPTH} levels of key-value "
            f"lists ({(MAX_MESSAGE_DEPTH - 6) // 2} of arrays)"
        )
    deepest = depth
    pos, end = 0, len(data)
    fields = descriptor.fields_by_number
    while pos < end:
        key, pos = _varint(data, pos)
        if pos < 0:
            return None
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
            if pos < 0:
                return None
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            size, pos = _varint(data, pos)
            if pos < 0 or pos + size > end:
                return None
            field = fields.get(number)
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                inner = _walk(data[pos : pos + size], field.message_type, depth + 1, limit)
                if inner is None:
                    return None
                deepest = max(deepest, inner)
            pos += size
        else:  # groups (3, 4) are not in OTLP; anything else is not wire format
            return None
    return deepest if pos == end else None


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    """(value, next position); position -1 when truncated or longer than 10 bytes."""
    value = shift = 0
    end = len(data)
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return 0, -1
