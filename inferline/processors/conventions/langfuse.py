"""Langfuse SDK (v3+) `langfuse.*` attributes, as accepted by Langfuse's OTLP endpoint."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from inferline.processors.conventions.messages import Message, to_messages
from inferline.processors.conventions.values import (
    as_count,
    as_decimal,
    as_json,
    as_json_dict,
    iso_to_ns,
    unquote,
)

OBSERVATION_TYPE: Final = "langfuse.observation.type"
TRACE_METADATA_PREFIX: Final = "langfuse.trace.metadata."
OBSERVATION_METADATA_PREFIX: Final = "langfuse.observation.metadata."

_TYPE_OPERATION: Final = {"generation": "chat", "embedding": "embeddings"}


def operation(obs_type: Any) -> str | None:
    return _TYPE_OPERATION.get(obs_type.lower()) if type(obs_type) is str else None


def is_langfuse(a: dict[str, Any], scope_name: str) -> bool:
    return scope_name.startswith("langfuse") or OBSERVATION_TYPE in a


class Usage:
    __slots__ = ("cache_read", "cache_write", "input", "output", "reasoning", "total")

    def __init__(self) -> None:
        self.input: int | None = None
        self.output: int | None = None
        self.total: int | None = None
        self.cache_read: int | None = None
        self.cache_write: int | None = None
        self.reasoning: int | None = None


def _first(d: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        if k in d:
            n = as_count(d[k])
            if n is not None:
                return n
    return None


def usage(a: dict[str, Any]) -> Usage | None:
    """Usage with input/output made inclusive: Langfuse buckets are disjoint and get summed."""
    d = as_json_dict(a.get("langfuse.observation.usage_details"))
    if not d:
        return None
    u = Usage()
    if "prompt_tokens" in d or "completion_tokens" in d:  # OpenAI-shaped: already inclusive
        u.input = _first(d, "prompt_tokens")
        u.output = _first(d, "completion_tokens")
        u.total = _first(d, "total_tokens", "total")
        ptd = d.get("prompt_tokens_details")
        if type(ptd) is dict:
            u.cache_read = _first(ptd, "cached_tokens")
        ctd = d.get("completion_tokens_details")
        if type(ctd) is dict:
            u.reasoning = _first(ctd, "reasoning_tokens")
        return u
    if "input_tokens_details" in d or "output_tokens_details" in d:  # OpenAI Responses: inclusive
        u.input = _first(d, "input_tokens")
        u.output = _first(d, "output_tokens")
        u.total = _first(d, "total_tokens", "total")
        itd, otd = d.get("input_tokens_details"), d.get("output_tokens_details")
        if type(itd) is dict:
            u.cache_read = _first(itd, "cached_tokens")
        if type(otd) is dict:
            u.reasoning = _first(otd, "reasoning_tokens")
        return u
    if "input_tokens" in d and "input" not in d:  # Anthropic-shaped: input excludes cache
        u.cache_read = _first(d, "cache_read_input_tokens")
        u.cache_write = _first(d, "cache_creation_input_tokens")
        base = _first(d, "input_tokens")
        if base is not None:
            u.input = base + (u.cache_read or 0) + (u.cache_write or 0)
        u.output = _first(d, "output_tokens")
        u.total = _first(d, "total_tokens", "total")
        return u
    inp = out = 0
    seen_in = seen_out = False
    for k, v in d.items():
        n = as_count(v)
        if n is None:
            continue
        if k.startswith("input") or k in ("cache_read_input_tokens", "cache_creation_input_tokens"):
            inp += n
            seen_in = True
        elif k.startswith("output"):
            out += n
            seen_out = True
    u.input = inp if seen_in else None
    u.output = out if seen_out else None
    u.total = _first(d, "total", "total_tokens")
    u.cache_read = _first(d, "input_cached_tokens", "input_cache_read", "cache_read_input_tokens")
    u.cache_write = _first(d, "input_cache_creation", "input_cache_write", "cache_creation_input_tokens")
    if u.cache_write is None:  # by cache lifetime (Anthropic's 5-minute and 1-hour writes)
        lifetimes = [as_count(v) for k, v in d.items() if k.startswith("input_cache_creation_")]
        if any(n is not None for n in lifetimes):
            u.cache_write = sum(n for n in lifetimes if n is not None)
    u.reasoning = _first(d, "output_reasoning_tokens", "output_reasoning")
    return u


def cost(a: dict[str, Any]) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """(total, input, output) USD from `cost_details`; a missing total is the sum of the buckets."""
    d = as_json_dict(a.get("langfuse.observation.cost_details"))
    if not d:
        return None, None, None
    total = as_decimal(d.get("total"))
    inp = out = None
    rest = Decimal(0)
    seen = False
    for k, v in d.items():
        if k == "total":
            continue
        c = as_decimal(v)
        if c is None:
            continue
        seen = True
        rest += c
        if k.startswith("input"):
            inp = c if inp is None else inp + c
        elif k.startswith("output"):
            out = c if out is None else out + c
    if total is None and seen:
        total = rest
    return total, inp, out


def model_parameters(a: dict[str, Any]) -> dict[str, Any] | None:
    v = a.get("langfuse.observation.model.parameters")
    return as_json_dict(v) if v is not None else None


def completion_start_ns(a: dict[str, Any]) -> int | None:
    v = a.get("langfuse.observation.completion_start_time")
    return iso_to_ns(v) if v is not None else None


def input_messages(a: dict[str, Any]) -> list[Message]:
    v = a.get("langfuse.observation.input")
    return to_messages(v, "user") if v is not None else []


def output_messages(a: dict[str, Any]) -> list[Message]:
    v = a.get("langfuse.observation.output")
    return to_messages(v, "assistant") if v is not None else []


def metadata(a: dict[str, Any]) -> dict[str, Any]:
    """Merged JSON metadata (`langfuse.trace.metadata`, `langfuse.observation.metadata`)."""
    out: dict[str, Any] = {}
    for key in ("langfuse.trace.metadata", "langfuse.observation.metadata"):
        v = a.get(key)
        if v is not None:
            d = as_json_dict(v)
            if d:
                out.update(d)
    return out


def meta_value(v: Any) -> Any:
    """Flattened metadata values are JSON-serialised by the SDK (`"\\"acme\\""`)."""
    if type(v) is str:
        return unquote(v)
    return v


def tags(a: dict[str, Any]) -> list[Any]:
    for key in ("langfuse.trace.tags", "langfuse.tags"):
        v = a.get(key)
        if v is None:
            continue
        if type(v) is str:
            parsed = as_json(v)
            if type(parsed) is list:
                return parsed
            return [t.strip() for t in v.split(",") if t.strip()]
        if type(v) is list:
            return v
    return []
