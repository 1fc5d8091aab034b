"""Lenient decoding of attribute values.

Instrumentations disagree on encodings: ints arrive as ints, doubles, numeric strings or the
OTLP/JSON `{"intValue": "52"}` wrapper; structured content arrives as JSON strings or as decoded
lists/dicts. Every helper here returns None (or an empty container) for a value it cannot read,
so a malformed attribute is treated as absent and never raises.
"""

from __future__ import annotations

import ast
import math
from calendar import timegm
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_ANY_VALUE_KEYS: Final = ("intValue", "doubleValue", "stringValue", "boolValue")
_TRUE: Final = frozenset(("true", "1", "yes", "y", "on"))
_FALSE: Final = frozenset(("false", "0", "no", "n", "off", ""))


def _unwrap_any_value(v: Any) -> Any:
    """`{"intValue": "52"}` (a leaked OTLP/JSON AnyValue) -> "52"; anything else unchanged."""
    if isinstance(v, dict):
        for k in _ANY_VALUE_KEYS:
            if k in v:
                return v[k]
    return v


def as_int(v: Any) -> int | None:
    t = type(v)
    if t is int:
        return v
    if t is float:
        return int(v) if math.isfinite(v) else None
    if t is str:
        s = v.strip()
        if not s:
            return None
        try:
            return int(s)
        except ValueError:
            pass
        if s[0] == "{":
            return as_int(_unwrap_any_value(loads(s)))
        try:
            f = float(s)
        except ValueError:
            return None
        return int(f) if math.isfinite(f) else None
    if t is dict:
        inner = _unwrap_any_value(v)
        return None if inner is v else as_int(inner)
    return None  # bool, bytes, list, None: not a count


# The largest position an indexed key (`gen_ai.prompt.<i>.content`, `llm.input_messages.<i>.…`) may
# name: no conversation has a million messages, and int() refuses numerals past 4,300 digits.
_MAX_INDEX_DIGITS: Final = 6


def key_index(s: str) -> int | None:
    """The `<i>` of an indexed attribute key, or None when it is not a plain ASCII number (`isdigit`
    also accepts "²", which `int` refuses) of at most six digits."""
    if s.isascii() and s.isdigit() and len(s) <= _MAX_INDEX_DIGITS:
        return int(s)
    return None


def as_count(v: Any) -> int | None:
    """A token count: a non-negative int, else None."""
    n = as_int(v)
    return n if n is not None and n >= 0 else None


def as_float(v: Any) -> float | None:
    t = type(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is int:
        return float(v)
    if t is str:
        s = v.strip()
        if not s:
            return None
        try:
            f = float(s)
        except ValueError:
            if s[0] == "{":
                return as_float(_unwrap_any_value(loads(s)))
            return None
        return f if math.isfinite(f) else None
    if t is dict:
        inner = _unwrap_any_value(v)
        return None if inner is v else as_float(inner)
    return None


def as_bool(v: Any) -> bool | None:
    t = type(v)
    if t is bool:
        return v
    if t is str:
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        return None
    if t is int:
        return v != 0
    return None


def as_str(v: Any) -> str | None:
    """A non-empty string; numbers are rendered, containers and empty strings are absent."""
    t = type(v)
    if t is str:
        return v or None
    if t is int or t is float:
        return str(v)
    if t is bytes:
        return v.decode("utf-8", "replace") or None
    return None


def loads(s: str | bytes) -> Any:
    """orjson.loads that returns None on invalid JSON."""
    try:
        return orjson.loads(s)
    except (orjson.JSONDecodeError, TypeError):
        return None


def as_json(v: Any) -> Any:
    """A structured value: lists/dicts as they are, JSON strings parsed, anything else None."""
    t = type(v)
    if t is list or t is dict:
        return v
    if t is str or t is bytes:
        s = v.strip()
        if s[:1] in ("[", "{", b"[", b"{"):
            return loads(s)
    return None


def json_object(v: Any, max_chars: int) -> dict | None:
    """A JSON object attribute (a raw request/response document) as a dict. None when absent, not
    an object, invalid, or longer than `max_chars`: parsing megabytes per span would cost more than
    the few facts read from it are worth."""
    t = type(v)
    if t is dict:
        return v
    if (t is str or t is bytes) and len(v) <= max_chars:
        s = v.lstrip()
        if s[:1] in ("{", b"{"):
            d = loads(s)
            return d if type(d) is dict else None
    return None


def as_json_dict(v: Any) -> dict | None:
    d = as_json(v)
    return d if type(d) is dict else None


def as_py_dict(v: Any) -> dict | None:
    """A dict from JSON or from a Python `str(dict)` (LangSmith token details: `{'cache_read': 100}`)."""
    d = as_json(v)
    if type(d) is dict:
        return d
    if type(v) is str and v.lstrip()[:1] == "{":
        try:
            d = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        return d if type(d) is dict else None
    return None


def as_str_list(v: Any) -> list[str]:
    """A string list from an array, a JSON array string, or a comma-joined string."""
    t = type(v)
    if t is list or t is tuple:
        return [s for s in (as_str(x) for x in v) if s]
    if t is str:
        s = v.strip()
        if not s:
            return []
        if s[0] == "[":
            parsed = loads(s)
            if type(parsed) is list:
                return [x for x in (as_str(y) for y in parsed) if x]
        if "," in s:
            return [p for p in (x.strip() for x in s.split(",")) if p]
        return [s]
    return []


def unquote(v: Any) -> str | None:
    """A string that may be JSON-encoded once more (`"\\"acme\\""`, Langfuse's metadata and timestamps)."""
    s = as_str(v)
    if s and len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        inner = loads(s)
        if type(inner) is str:
            return inner or None
    return s


def stringify(v: Any) -> str | None:
    """Free text from any value: strings unchanged, structures as compact JSON."""
    if v is None:
        return None
    if type(v) is str:
        return v
    try:
        return orjson.dumps(v, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        return str(v)


def tag_value(v: Any) -> str:
    """A tag value as a string: strings unchanged, everything else as JSON."""
    if type(v) is str:
        return v
    return stringify(v) or ""


def as_decimal(v: Any) -> Decimal | None:
    """A non-negative finite USD amount."""
    t = type(v)
    if t is bool or v is None:
        return None
    if t is float or t is int:
        if not math.isfinite(v):
            return None
        s = repr(v)
    elif t is str:
        s = v.strip()
    elif t is dict:
        inner = _unwrap_any_value(v)
        return None if inner is v else as_decimal(inner)
    else:
        return None
    try:
        d = Decimal(s)
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() and d >= 0 else None


def iso_to_ns(v: Any) -> int | None:
    """Unix ns from an ISO-8601 timestamp (any fraction length, `Z` or offset, maybe JSON-quoted)."""
    s = unquote(v)
    if not s:
        return None
    s = s.strip()
    if len(s) >= 20 and s[-1] == "Z" and s[4] == "-" and s[10] in "Tt " and s[19] in ".Z":
        # Fast path for the usual `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
        try:
            days = date(int(s[0:4]), int(s[5:7]), int(s[8:10])).toordinal() - _EPOCH_ORDINAL
            secs = days * 86400 + int(s[11:13]) * 3600 + int(s[14:16]) * 60 + int(s[17:19])
            digits = s[20:-1] if s[19] == "." else ""
            if digits and not digits.isdigit():
                raise ValueError(digits)
            return secs * 1_000_000_000 + (int((digits + "000000000")[:9]) if digits else 0)
        except ValueError:
            pass  # fall through to the general parser
    try:
        t_at = s.find("T")
        if t_at < 0:
            t_at = s.find(" ")
        frac_ns = 0
        dot = s.find(".", t_at) if t_at >= 0 else -1
        if dot >= 0:
            end = dot + 1
            while end < len(s) and s[end].isdigit():
                end += 1
            digits = s[dot + 1 : end]
            frac_ns = int((digits + "000000000")[:9]) if digits else 0
            s = s[:dot] + s[end:]
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    secs = timegm(dt.timetuple() if dt.tzinfo is None else dt.utctimetuple())  # naive means UTC
    return secs * 1_000_000_000 + frac_ns


def host_of(url: Any) -> str | None:
    """The host of a URL (`https://x.openai.azure.com/v1/` -> `x.openai.azure.com`)."""
    s = as_str(url)
    if not s:
        return None
    i = s.find("://")
    if i >= 0:
        s = s[i + 3 :]
    s = s.split("/", 1)[0].rsplit("@", 1)[-1]
    if s.startswith("["):  # IPv6 literal
        return s.split("]", 1)[0][1:] or None
    return s.split(":", 1)[0] or None
