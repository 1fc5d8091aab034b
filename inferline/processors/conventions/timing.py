"""Whether a model call streamed, and its time to first token (doc section 1.7 units)."""

from __future__ import annotations

from typing import Any, Final

from inferline.processors.conventions import langfuse, openlit, vercel_ai
from inferline.processors.conventions.field_sources import Chains
from inferline.processors.conventions.span_events import SpanEvents
from inferline.processors.conventions.values import as_bool, as_float

_VERCEL_STREAM_IDS: Final = ("ai.streamText.doStream", "ai.streamObject.doStream")


def streaming_and_ttft(
    a: dict[str, Any],
    ch: Chains,
    oi_params: dict[str, Any] | None,
    start: int,
    is_langfuse: bool,
    is_vercel: bool,
    ev: SpanEvents,
) -> tuple[bool, float | None]:
    """(streamed, time to first token in ms). A span that does not say whether it streamed counts as
    streamed when it has a TTFT."""
    streaming = None
    for k in ch.stream:
        v = a.get(k)
        if v is not None:
            streaming = as_bool(v)
            if streaming is not None:
                break
    if streaming is None and oi_params and "stream" in oi_params:
        streaming = as_bool(oi_params["stream"])
    if streaming is None and is_vercel:
        oid = a.get(vercel_ai.OPERATION_ID)
        if type(oid) is str and oid.startswith(_VERCEL_STREAM_IDS):
            streaming = True
    ttft = _ttft_ms(a, ch.ttft_s, start, streaming, is_langfuse, is_vercel, ev)
    return (ttft is not None if streaming is None else streaming), ttft


def _ttft_ms(
    a: dict[str, Any],
    ttft_keys: tuple[str, ...],
    start: int,
    streaming: bool | None,
    is_langfuse: bool,
    is_vercel: bool,
    ev: SpanEvents,
) -> float | None:
    """Time to first token in ms from the first source present.

    `streaming` is what the span says (None when it does not): OpenLIT writes 0 for calls not streamed.
    """
    for k in ttft_keys:
        v = a.get(k)
        if v is not None:
            s = as_float(v)
            if s is not None and s >= 0:
                return round(s * 1000.0, 3)
    v = a.get(openlit.TTFT_S)
    if v is not None:
        s = as_float(v)
        if s is not None and (s > 0 or (s == 0 and streaming)):  # 0 means "not streamed"
            return round(s * 1000.0, 3)
    v = a.get("ai.response.msToFirstChunk") if is_vercel else None
    if v is not None:
        ms = as_float(v)
        if ms is not None and ms >= 0:
            return round(ms, 3)
    if ev.vercel_first_ms is not None and ev.vercel_first_ms >= 0:
        return round(ev.vercel_first_ms, 3)
    if ev.vercel_first_ns is not None and ev.vercel_first_ns >= start:
        return round((ev.vercel_first_ns - start) / 1e6, 3)
    if is_langfuse:
        cst = langfuse.completion_start_ns(a)
        if cst is not None and cst >= start:
            return round((cst - start) / 1e6, 3)
    for t in (ev.first_token_ns, ev.chunk_ns):
        if t is not None and t >= start:
            return round((t - start) / 1e6, 3)
    return None
