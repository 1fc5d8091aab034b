"""OTLP/JSON → protobuf wire bytes, written straight from the orjson-decoded tree.

protobuf's `json_format` costs 250-430 µs/span. Here orjson decodes the body and one walk over its
tree writes the request's protobuf encoding (no message objects in between; compiled with mypyc,
`tools/compile_hot_path.py`); upb then parses those bytes once, which is also the depth check of
anything read back from the log. The walk is driven by the message descriptors (a plan built once
per type), so it follows the proto exactly:

- keys in lowerCamelCase (the proto3 JSON names) or the original snake_case; unknown keys ignored;
  when both spellings of a field are given, the last one wins (as it would in a dict);
- trace/span ids are hex strings (OTLP/JSON's deviation from proto3 JSON's base64);
  other bytes fields are base64;
- 64-bit integers as numbers or decimal strings; enums as integers (names accepted too);
- an attribute value (`AnyValue` in a key-value list) is read by its first known key.

Anything the walk cannot write raises, and a second, slower walk (`_locate`) names the JSON path
of the problem in the error the sender gets.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any, Final, TypeVar

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from inferline.otlp.errors import OtlpDecodeError
from inferline.otlp.protobuf import TooDeep, parse

_M = TypeVar("_M", bound=Message)

_HEX_FIELDS: Final = frozenset({"trace_id", "span_id", "parent_span_id"})
# What each integer type holds: a value past it is named with its JSON path, not left to the
# message's constructor ("Value out of range: -1", which says neither field nor type).
_INT64: Final = (-(1 << 63), (1 << 63) - 1, "int64")
_INT32: Final = (-(1 << 31), (1 << 31) - 1, "int32")
_INT_RANGES: Final[dict[int, tuple[int, int, str]]] = {
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_UINT64: (0, (1 << 64) - 1, "uint64"),
    FieldDescriptor.TYPE_FIXED64: (0, (1 << 64) - 1, "fixed64"),
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_UINT32: (0, (1 << 32) - 1, "uint32"),
    FieldDescriptor.TYPE_FIXED32: (0, (1 << 32) - 1, "fixed32"),
}
_INT_MIN: Final = -(1 << 63)
_UINT64_MAX: Final = (1 << 64) - 1
_MASK32: Final = (1 << 32) - 1
_FLOAT_TYPES: Final = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})

# What a field's JSON value is read as.
_MESSAGE: Final = 0
_HEX: Final = 1
_BYTES: Final = 2
_INT: Final = 3
_FLOAT: Final = 4
_BOOL: Final = 5
_STRING: Final = 6
_ENUM: Final = 7
_KEY_VALUES: Final = 8
# How it is written (protobuf's encodings of the field types).
_VARINT: Final = 0  # int32, int64, uint32, uint64, enum, bool (negatives as 64-bit two's complement)
_ZIGZAG: Final = 1  # sint32, sint64
_FIXED64: Final = 2  # fixed64, sfixed64
_FIXED32: Final = 3  # fixed32, sfixed32
_DOUBLE: Final = 4
_FLOAT32: Final = 5
_LENGTH: Final = 6  # string, bytes, messages
_WIRE_TYPES: Final = {_VARINT: 0, _ZIGZAG: 0, _FIXED64: 1, _FIXED32: 5, _DOUBLE: 1, _FLOAT32: 5, _LENGTH: 2}
_ENCODINGS: Final[dict[int, int]] = {
    FieldDescriptor.TYPE_DOUBLE: _DOUBLE,
    FieldDescriptor.TYPE_FLOAT: _FLOAT32,
    FieldDescriptor.TYPE_SINT32: _ZIGZAG,
    FieldDescriptor.TYPE_SINT64: _ZIGZAG,
    FieldDescriptor.TYPE_FIXED64: _FIXED64,
    FieldDescriptor.TYPE_SFIXED64: _FIXED64,
    FieldDescriptor.TYPE_FIXED32: _FIXED32,
    FieldDescriptor.TYPE_SFIXED32: _FIXED32,
    FieldDescriptor.TYPE_STRING: _LENGTH,
    FieldDescriptor.TYPE_BYTES: _LENGTH,
    FieldDescriptor.TYPE_MESSAGE: _LENGTH,
}

_KEY_VALUE: Final = "opentelemetry.proto.common.v1.KeyValue"


def _varint(n: int) -> bytes:
    """`n` as a protobuf varint; a negative one in ten bytes (two's complement), as protobuf writes
    negative int32s and enums too."""
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


_SMALL: Final = tuple(bytes([i]) for i in range(128))


_KV_KEY: Final = _tag(1, 2)
_KV_VALUE: Final = _tag(2, 2)
_ANY_STRING: Final = _tag(1, 2)
_ANY_BOOL: Final = _tag(2, 0)
_ANY_INT: Final = _tag(3, 0)
_ANY_DOUBLE: Final = _tag(4, 1)
_ANY_ARRAY: Final = _tag(5, 2)
_ANY_KVLIST: Final = _tag(6, 2)
_ANY_BYTES: Final = _tag(7, 2)
_VALUES: Final = _tag(1, 2)


class _Field:
    """One field of a message as the walk reads and writes it."""

    def __init__(self, f: Any) -> None:
        self.name: str = f.name
        self.number: int = f.number
        self.repeated: bool = f.is_repeated
        self.sub: Any = None  # a message field's Descriptor
        self.rule: Any = None  # what `_scalar` checks a value by: an integer's range, an enum's type
        self.plan: dict[str, _Field] | None = None  # a message field's, once first needed
        is_message = f.type == FieldDescriptor.TYPE_MESSAGE
        if is_message and f.message_type.full_name == _KEY_VALUE and f.is_repeated:
            self.kind = _KEY_VALUES  # attributes: most of a span, so a dedicated path
            self.sub = f.message_type
        elif is_message:
            self.kind = _MESSAGE
            self.sub = f.message_type
        elif f.type == FieldDescriptor.TYPE_BYTES:
            self.kind = _HEX if f.name in _HEX_FIELDS else _BYTES
        elif f.type in _INT_RANGES:
            self.kind = _INT
            self.rule = _INT_RANGES[f.type]
        elif f.type in _FLOAT_TYPES:
            self.kind = _FLOAT
        elif f.type == FieldDescriptor.TYPE_BOOL:
            self.kind = _BOOL
        elif f.type == FieldDescriptor.TYPE_ENUM:
            self.kind = _ENUM
            self.rule = f.enum_type
        else:
            self.kind = _STRING
        self.encoding: int = _ENCODINGS.get(f.type, _VARINT)
        self.tag: bytes = _tag(f.number, _WIRE_TYPES[self.encoding])


_PLANS: dict[Any, dict[str, _Field]] = {}  # by message descriptor


def _plan(descriptor: Descriptor) -> dict[str, _Field]:
    """A message's fields by both their JSON names (lowerCamelCase and snake_case)."""
    plan = _PLANS.get(descriptor)
    if plan is None:
        plan = {}
        for f in descriptor.fields:
            field = _Field(f)
            plan[f.json_name] = field
            plan[f.name] = field
        _PLANS[descriptor] = plan
    return plan


# The walk appends each field's pieces (tags, lengths, values' bytes) to one list, joined once at
# the end: nothing is copied per level of nesting. A nested message's length is known only after
# its fields, so `_open` leaves a slot for it and `_close` fills it in.


def _sub_plan(field: _Field) -> dict[str, _Field]:
    # Kept on the field: an attribute read rather than a look-up for every nested message.
    plan = field.plan
    if plan is None:
        plan = field.plan = _plan(field.sub)
    return plan


def _open(parts: list[bytes], tag: bytes) -> int:
    parts.append(tag)
    parts.append(b"")
    return len(parts) - 1


def _close(parts: list[bytes], slot: int, size: int) -> int:
    """Fills in the length of the `size` bytes appended after `slot`; the field's whole size."""
    length = _varint(size)
    parts[slot] = length
    return len(parts[slot - 1]) + len(length) + size


def _piece(parts: list[bytes], tag: bytes, data: bytes) -> int:
    """A field whose value's encoding (`data`) is known."""
    parts.append(tag)
    parts.append(data)
    return len(tag) + len(data)


def _bytes_field(parts: list[bytes], tag: bytes, data: bytes) -> int:
    length = _varint(len(data))
    parts.append(tag)
    parts.append(length)
    parts.append(data)
    return len(tag) + len(length) + len(data)


def _message(parts: list[bytes], obj: Any, plan: dict[str, _Field]) -> int:
    """Appends one message's fields from its JSON object; returns their size. Raises on anything
    it cannot write."""
    if type(obj) is not dict:
        raise TypeError("expected a JSON object")
    start = len(parts)
    size = 0
    seen = 0  # field numbers written (OTLP's are small)
    for key, value in obj.items():
        field = plan.get(key)
        if field is None or value is None:
            continue  # unknown fields are ignored, per the OTLP/JSON rules
        bit = 1 << field.number
        if seen & bit:
            del parts[start:]
            return _message_last_wins(parts, obj, plan)
        seen |= bit
        size += _field(parts, field, value)
    return size


def _message_last_wins(parts: list[bytes], obj: dict[str, Any], plan: dict[str, _Field]) -> int:
    """A field given in both spellings (`traceId` and `trace_id`): written once, with the last
    value, where the first stood (protobuf would merge two messages and append two lists)."""
    chosen: dict[int, tuple[_Field, Any]] = {}
    for key, value in obj.items():
        field = plan.get(key)
        if field is not None and value is not None:
            chosen[field.number] = (field, value)
    size = 0
    for field, value in chosen.values():
        size += _field(parts, field, value)
    return size


def _nested(parts: list[bytes], tag: bytes, obj: Any, plan: dict[str, _Field]) -> int:
    slot = _open(parts, tag)
    return _close(parts, slot, _message(parts, obj, plan))


def _field(parts: list[bytes], field: _Field, value: Any) -> int:
    kind = field.kind
    if not field.repeated:
        if kind == _MESSAGE:
            return _nested(parts, field.tag, value, _sub_plan(field))
        return _scalar_field(parts, field, value)
    if type(value) is not list:
        raise TypeError(field.name)
    size = 0
    if kind == _KEY_VALUES:
        for kv in value:
            size += _key_value(parts, field.tag, kv)
    elif kind == _MESSAGE:
        plan = _sub_plan(field)
        for item in value:
            size += _nested(parts, field.tag, item, plan)
    else:
        for item in value:
            size += _scalar_field(parts, field, item)
    return size


def _scalar_field(parts: list[bytes], field: _Field, value: Any) -> int:
    kind = field.kind
    if kind == _STRING and type(value) is str:
        return _bytes_field(parts, field.tag, value.encode())
    if kind == _HEX and type(value) is str:  # ids: every span has two or three
        return _bytes_field(parts, field.tag, _hex_id(value))
    value = _scalar(value, kind, field.rule, "")
    encoding = field.encoding
    if encoding == _LENGTH:  # base64 bytes (strings and ids were written above)
        return _bytes_field(parts, field.tag, value)
    data: bytes
    if encoding == _VARINT:
        data = _varint(int(value))
    elif encoding == _FIXED64:
        data = (value & _UINT64_MAX).to_bytes(8, "little")
    elif encoding == _FIXED32:
        data = (value & _MASK32).to_bytes(4, "little")
    elif encoding == _DOUBLE:
        data = struct.pack("<d", value)
    elif encoding == _FLOAT32:
        data = struct.pack("<f", value)
    else:  # zigzag
        data = _varint(value << 1 if value >= 0 else ((-value) << 1) - 1)
    return _piece(parts, field.tag, data)


def _key_value(parts: list[bytes], tag: bytes, kv: Any) -> int:
    """A KeyValue: attributes are most of a span (~20 per GenAI span, two thirds of them strings)."""
    if type(kv) is not dict:
        raise TypeError("expected a JSON object")
    slot = _open(parts, tag)
    size = 0
    key = kv.get("key")
    if key is not None:
        if type(key) is not str:
            raise TypeError("key")
        size += _bytes_field(parts, _KV_KEY, key.encode())
    value = kv.get("value")
    if value is None:
        pass  # no value (an empty one reads the same)
    elif not value:  # {}, and leniently "", 0, [] or false: an empty value
        size += _bytes_field(parts, _KV_VALUE, b"")
    else:
        size += _nested_value(parts, _KV_VALUE, value)
    return _close(parts, slot, size)


def _nested_value(parts: list[bytes], tag: bytes, value: Any) -> int:
    if type(value) is not dict:
        raise TypeError("expected a JSON object")
    slot = _open(parts, tag)
    return _close(parts, slot, _any_value(parts, value))


def _any_value(parts: list[bytes], value: dict[str, Any]) -> int:
    """An attribute value, read by its first known key (later ones, and unknown ones, ignored)."""
    for key, x in value.items():
        if x is None:
            continue  # proto3 JSON: null is the field's default, as if it were absent
        if key == "stringValue" or key == "string_value":
            if type(x) is not str:
                raise TypeError(key)
            return _bytes_field(parts, _ANY_STRING, x.encode())  # even "": it says which value is set
        if key == "intValue" or key == "int_value":
            return _piece(parts, _ANY_INT, _varint(_scalar(x, _INT, _INT64, "")))
        if key == "doubleValue" or key == "double_value":
            return _piece(parts, _ANY_DOUBLE, struct.pack("<d", _scalar(x, _FLOAT, None, "")))
        if key == "boolValue" or key == "bool_value":
            return _piece(parts, _ANY_BOOL, _SMALL[1] if _scalar(x, _BOOL, None, "") else _SMALL[0])
        if key == "arrayValue" or key == "array_value":
            if type(x) is not dict:
                raise TypeError(key)
            slot = _open(parts, _ANY_ARRAY)
            size = 0
            for item in x.get("values") or ():
                size += _nested_value(parts, _VALUES, item)
            return _close(parts, slot, size)
        if key == "kvlistValue" or key == "kvlist_value":
            if type(x) is not dict:
                raise TypeError(key)
            slot = _open(parts, _ANY_KVLIST)
            size = 0
            for kv in x.get("values") or ():
                size += _key_value(parts, _VALUES, kv)
            return _close(parts, slot, size)
        if key == "bytesValue" or key == "bytes_value":
            return _bytes_field(parts, _ANY_BYTES, _scalar(x, _BYTES, None, ""))
    return 0  # an empty AnyValue is legal


def _scalar(value: Any, kind: int, rule: Any, path: str) -> Any:
    if kind == _STRING:
        if not isinstance(value, str):
            raise OtlpDecodeError(f"{path}: expected a string, got {type(value).__name__}")
        return value
    if kind == _INT:
        if isinstance(value, bool):
            raise OtlpDecodeError(f"{path}: expected an integer, got a boolean")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value)
            except ValueError:
                raise OtlpDecodeError(f"{path}: {value[:40]!r} is not an integer") from None
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        else:
            raise OtlpDecodeError(f"{path}: expected an integer, got {type(value).__name__}")
        if not _INT_MIN <= number <= _UINT64_MAX:
            raise OtlpDecodeError(f"{path}: {number} does not fit in 64 bits")
        if rule is not None and not rule[0] <= number <= rule[1]:
            raise OtlpDecodeError(f"{path}: {number} is out of range for {rule[2]}")
        return number
    if kind == _HEX:
        if not isinstance(value, str):
            raise OtlpDecodeError(f"{path}: expected a hex string")
        return _hex_id(value)
    if kind == _FLOAT:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
            return float(value.replace("Infinity", "inf"))
        raise OtlpDecodeError(f"{path}: expected a number")
    if kind == _BOOL:
        if isinstance(value, bool):
            return value
        raise OtlpDecodeError(f"{path}: expected a boolean")
    if kind == _ENUM:
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT32[0] <= value <= _INT32[1]:  # enums are int32
                raise OtlpDecodeError(f"{path}: {value} is out of range for {rule.name}")
            return value
        if isinstance(value, str):
            named = rule.values_by_name.get(value)
            if named is not None:
                return named.number
        raise OtlpDecodeError(f"{path}: {value!r} is not a valid {rule.name}")
    if kind == _BYTES:
        if not isinstance(value, str):
            raise OtlpDecodeError(f"{path}: expected base64 bytes")
        # Strict: characters outside the alphabet were dropped ("!!!!AAEC" stored as 3 bytes).
        # Both alphabets are read, as proto3 JSON allows; missing padding too.
        padded = value + "=" * (-len(value) % 4)
        try:
            return base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            pass
        try:
            return base64.b64decode(padded, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise OtlpDecodeError(f"{path}: invalid base64 ({value[:40]!r})") from None
    raise AssertionError(kind)


def _hex_id(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        # An unreadable id rejects only its own record (partial success), not the request.
        return b"\xff"


def _locate(obj: Any, descriptor: Descriptor, path: str) -> None:
    """The slow walk, only after the fast one failed: raises OtlpDecodeError naming the JSON path."""
    if not isinstance(obj, dict):
        raise OtlpDecodeError(f"{path or 'body'}: expected a JSON object, got {type(obj).__name__}")
    plan = _plan(descriptor)
    for key, value in obj.items():
        field = plan.get(key)
        if field is None or value is None:
            continue
        kind = field.kind
        where = f"{path}.{key}" if path else key
        if field.repeated:
            if not isinstance(value, list):
                raise OtlpDecodeError(f"{where}: expected an array")
            for i, v in enumerate(value):
                if kind in (_MESSAGE, _KEY_VALUES):
                    _locate(v, field.sub, f"{where}[{i}]")
                else:
                    _scalar(v, kind, field.rule, f"{where}[{i}]")
        elif kind == _MESSAGE:
            _locate(value, field.sub, where)
        else:
            _scalar(value, kind, field.rule, where)


def encode_json(tree: Any, message_type: type[Message]) -> bytes:
    """The protobuf encoding of an OTLP/JSON tree (as orjson decoded it), raising OtlpDecodeError
    with the JSON path of what is wrong."""
    descriptor = message_type.DESCRIPTOR
    parts: list[bytes] = []
    try:
        _message(parts, tree, _plan(descriptor))
        return b"".join(parts)
    except (OtlpDecodeError, TypeError, AttributeError, ValueError, KeyError, OverflowError, struct.error):
        _locate(tree, descriptor, "")
        raise OtlpDecodeError("invalid OTLP/JSON structure") from None


def read_back_json(body: bytes, request_type: type[_M]) -> tuple[bytes, _M]:
    """An OTLP/JSON body as protobuf bytes, and those bytes parsed: the message the local log or
    Kafka will give back. A request protobuf cannot read back (values nested past
    `MAX_VALUE_DEPTH`) is refused here, with the reason, rather than accepted and then unreadable."""
    if not body.strip():
        return b"", request_type()
    try:
        tree = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise OtlpDecodeError(f"invalid JSON: {e}") from None
    encoded = encode_json(tree, request_type)
    try:
        return encoded, parse(encoded, request_type)
    except DecodeError as e:
        raise OtlpDecodeError(str(e) if isinstance(e, TooDeep) else f"invalid OTLP/JSON payload: {e}") from e


def decode_json(body: bytes, message_type: type[_M]) -> _M:
    """Parse an OTLP/JSON body into `message_type`, raising OtlpDecodeError with the JSON path."""
    return read_back_json(body, message_type)[1]


def decoded_as_protobuf(body: bytes, request_type: type[Message]) -> bytes:
    """`read_back_json`'s bytes (a worker process sends them back to the receiver)."""
    return read_back_json(body, request_type)[0]


def decode_protobuf(body: bytes, message_type: type[_M]) -> _M:
    try:
        return parse(body, message_type)
    except TooDeep as e:
        raise OtlpDecodeError(str(e)) from None
    except Exception as e:  # protobuf raises DecodeError, but upb may raise others on garbage
        raise OtlpDecodeError(f"invalid protobuf payload: {e}") from None
