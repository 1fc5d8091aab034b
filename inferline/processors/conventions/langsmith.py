"""LangSmith OTel exporter (LangChain): `langsmith.*` attributes and Python-repr token details."""

from __future__ import annotations

from typing import Any, Final

from inferline.processors.conventions.values import as_count, as_py_dict, as_str

SPAN_KIND: Final = "langsmith.span.kind"
METADATA_PREFIX: Final = "langsmith.metadata."


def is_model_call(kind: Any) -> bool:
    s = as_str(kind)
    return s is not None and s.lower() in ("llm", "chat_model")


def is_langsmith(a: dict[str, Any]) -> bool:
    return SPAN_KIND in a or "langsmith.trace.name" in a


def token_detail(a: dict[str, Any], attr: str, *keys: str) -> int | None:
    """A count from `gen_ai.usage.input_token_details`, a `str(dict)` such as `{'cache_read': 100}`."""
    v = a.get(attr)
    if v is None:
        return None
    d = as_py_dict(v)
    if not d:
        return None
    for k in keys:
        if k in d:
            n = as_count(d[k])
            if n is not None:
                return n
    return None
