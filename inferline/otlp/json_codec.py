"""OTLP/JSON → protobuf message, by a direct walk over the orjson-decoded tree.

protobuf's `json_format` costs 250-430 µs/span; orjson plus this walk costs a few µs. The walk is
driven by the message descriptors (built once per type), so it follows the proto exactly:

- keys in lowerCamelCase (the proto3 JSON names) or the original snake_case; unknown keys ignored;
- trace/span ids are hex strings (OTLP/JSON's deviation from proto3 JSON's base64);
  other bytes fields are base64;
- 64-bit integers as numbers or decimal strings; enums as integers (names accepted too).

The result is a dict tree handed to the message constructor once, which is cheap under upb.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from functools import cache
from typing import Any, TypeVar

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from inferline.otlp.errors import OtlpDecodeError
from inferline.otlp.protobuf import TooDeep, parse

_M = TypeVar("_M", bound=Message)

_HEX_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})
# What each integer type holds: a value past it is named with its JSON path, not left to the
# message's constructor ("Value out of range: -1", which says neither field nor type).
_INT64 = (-(1 << 63), (1 << 63) - 1, "int64")
_INT32 = (-(1 << 31), (1 << 31) - 1, "int32")
_INT_RANGES: dict[int, tuple[int, int, str]] = {
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
_INT_TYPES = frozenset(_INT_RANGES)
_INT_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})

# A field plan: (proto field name, kind, repeated, sub-descriptor or enum descriptor)
_MESSAGE, _HEX, _BYTES, _INT, _FLOAT, _BOOL, _STRING, _ENUM, _KEY_VALUES = range(9)


_KEY_VALUE = "opentelemetry.proto.common.v1.KeyValue"


def _any_value(value: dict[str, Any]) -> dict[str, Any]:
    for key, x in value.items():
        if x is None:
            continue  # proto3 JSON: null is the field's default, as if it were absent
        if key in ("stringValue", "string_value"):
            if type(x) is not str:
                raise TypeError(key)
            return {"string_value": x}
        if key in ("intValue", "int_value"):
            return {"int_value": _scalar(x, _INT, _INT64, "")}
        if key in ("doubleValue", "double_value"):
            return {"double_value": _scalar(x, _FLOAT, None, "")}
        if key in ("boolValue", "bool_value"):
            return {"bool_value": _scalar(x, _BOOL, None, "")}
        if key in ("arrayValue", "array_value"):
            return {"array_value": {"values": [_any_value(v) for v in x.get("values") or ()]}}
        if key in ("kvlistValue", "kvlist_value"):
            return {"kvlist_value": {"values": _key_values(x.get("values") or ())}}
        if key in ("bytesValue", "bytes_value"):
            return {"bytes_value": _scalar(x, _BYTES, None, "")}
    return {}  # an empty AnyValue is legal


def _key_values(kvs: Iterable[Any]) -> list[dict[str, Any]]:
    # Attributes are most of a span (~20 per GenAI span, two thirds of them strings): a value that
    # is one string takes no call. `_any_value` reads the first key it knows, so for a one-key
    # object this is the same answer.
    out: list[dict[str, Any]] = []
    append = out.append
    for kv in kvs:
        value = kv.get("value") or {}
        if len(value) == 1:
            s = value.get("stringValue")
            if type(s) is str:
                append({"key": kv.get("key", ""), "value": {"string_value": s}})
                continue
        append({"key": kv.get("key", ""), "value": _any_value(value)})
    return out


@cache
def _plan(descriptor: Descriptor) -> dict[str, tuple[str, int, bool, Any]]:
    plan: dict[str, tuple[str, int, bool, Any]] = {}
    for f in descriptor.fields:
        if (
            f.type == FieldDescriptor.TYPE_MESSAGE
            and f.message_type.full_name == _KEY_VALUE
            and f.is_repeated
        ):
            kind, sub = _KEY_VALUES, f.message_type  # attributes: most of a span, so a dedicated path
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            kind, sub = _MESSAGE, f.message_type
        elif f.type == FieldDescriptor.TYPE_BYTES:
            kind, sub = (_HEX if f.name in _HEX_FIELDS else _BYTES), None
        elif f.type in _INT_TYPES:
            kind, sub = _INT, _INT_RANGES[f.type]
        elif f.type in _FLOAT_TYPES:
            kind, sub = _FLOAT, None
        elif f.type == FieldDescriptor.TYPE_BOOL:
            kind, sub = _BOOL, None
        elif f.type == FieldDescriptor.TYPE_ENUM:
            kind, sub = _ENUM, f.enum_type
        else:
            kind, sub = _STRING, None
        entry = (f.name, kind, f.is_repeated, sub)
        plan[f.json_name] = entry
        plan[f.name] = entry
    return plan


def _scalar(value: Any, kind: int, sub: Any, path: str) -> Any:
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
        if sub is not None and not sub[0] <= number <= sub[1]:
            raise OtlpDecodeError(f"{path}: {number} is out of range for {sub[2]}")
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
                raise OtlpDecodeError(f"{path}: {value} is out of range for {sub.name}")
            return value
        if isinstance(value, str):
            number = sub.values_by_name.get(value)
            if number is not None:
                return number.number
        raise OtlpDecodeError(f"{path}: {value!r} is not a valid {sub.name}")
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


def _walk(obj: Any, descriptor: Descriptor) -> dict[str, Any]:
    """The fast walk: no path bookkeeping. Any problem raises; `_locate` then finds where."""
    plan = _plan(descriptor)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        entry = plan.get(key)
        if entry is None or value is None:
            continue  # unknown fields are ignored, per the OTLP/JSON rules
        name, kind, repeated, sub = entry
        if repeated and type(value) is not list:
            raise TypeError(key)
        if kind == _KEY_VALUES:
            out[name] = _key_values(value)
        elif kind == _MESSAGE:
            out[name] = [_walk(v, sub) for v in value] if repeated else _walk(value, sub)
        elif repeated:
            out[name] = [_scalar(v, kind, sub, "") for v in value]
        elif kind == _STRING and type(value) is str:
            out[name] = value
        elif kind == _HEX and type(value) is str:  # ids: every span has two or three
            out[name] = _hex_id(value)
        else:
            out[name] = _scalar(value, kind, sub, "")
    return out


def _locate(obj: Any, descriptor: Descriptor, path: str) -> None:
    """The slow walk, only after the fast one failed: raises OtlpDecodeError naming the JSON path."""
    if not isinstance(obj, dict):
        raise OtlpDecodeError(f"{path or 'body'}: expected a JSON object, got {type(obj).__name__}")
    plan = _plan(descriptor)
    for key, value in obj.items():
        entry = plan.get(key)
        if entry is None or value is None:
            continue
        _, kind, repeated, sub = entry
        where = f"{path}.{key}" if path else key
        if repeated:
            if not isinstance(value, list):
                raise OtlpDecodeError(f"{where}: expected an array")
            for i, v in enumerate(value):
                if kind in (_MESSAGE, _KEY_VALUES):
                    _locate(v, sub, f"{where}[{i}]")
                else:
                    _scalar(v, kind, sub, f"{where}[{i}]")
        elif kind == _MESSAGE:
            _locate(value, sub, where)
        else:
            _scalar(value, kind, sub, where)


def decode_json(body: bytes, message_type: type[Message]) -> Message:
    """Parse an OTLP/JSON body into `message_type`, raising OtlpDecodeError with the JSON path."""
    if not body.strip():
        return message_type()
    try:
        tree = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise OtlpDecodeError(f"invalid JSON: {e}") from None
    try:
        if not isinstance(tree, dict):
            raise TypeError
        fields = _walk(tree, message_type.DESCRIPTOR)
    except (OtlpDecodeError, TypeError, AttributeError, ValueError, KeyError):
        _locate(tree, message_type.DESCRIPTOR, "")
        raise OtlpDecodeError("invalid OTLP/JSON structure") from None
    try:
        return message_type(**fields)
    except (TypeError, ValueError) as e:  # e.g. an out-of-range integer
        raise OtlpDecodeError(f"invalid value: {e}") from None


def decode_protobuf(body: bytes, message_type: type[_M]) -> _M:
    try:
        return parse(body, message_type)
    except TooDeep as e:
        raise OtlpDecodeError(str(e)) from None
    except Exception as e:  # protobuf raises DecodeError, but upb may raise others on garbage
        raise OtlpDecodeError(f"invalid protobuf payload: {e}") from None


def read_back_json(body: bytes, request_type: type[_M]) -> tuple[bytes, _M]:
    """The OTLP/JSON request serialized as the protobuf it will be read back as (from the local
    log, or Kafka), and that read-back message. A request protobuf cannot read back (values
    nested past `MAX_VALUE_DEPTH`) is refused here, with the reason, rather than accepted and then
    unreadable."""
    encoded = decode_json(body, request_type).SerializeToString()
    try:
        return encoded, parse(encoded, request_type)
    except DecodeError as e:
        raise OtlpDecodeError(str(e) if isinstance(e, TooDeep) else f"invalid OTLP/JSON payload: {e}") from e


def decoded_as_protobuf(body: bytes, request_type: type[Message]) -> bytes:
    """`read_back_json`'s bytes (a worker process sends them back to the receiver)."""
    return read_back_json(body, request_type)[0]
