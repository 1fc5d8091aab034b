"""What the normaliser reads from a span's events, in one pass over them.

Span events carry TTFT markers (OpenInference, Vercel AI SDK, OpenLLMetry chunks), exceptions, and
message content (OTel GenAI content events, the older `gen_ai.content.prompt/completion`).
"""

from __future__ import annotations

from typing import Any, Final

from inferline.core.records import Event
from inferline.processors.conventions import openinference, openllmetry, otel_genai, vercel_ai
from inferline.processors.conventions.otel_genai import CONTENT_EVENTS, EventContent
from inferline.processors.conventions.values import as_float, as_str

_EXCEPTION_EVENTS: Final = ("exception", "gen_ai.client.operation.exception")


class SpanEvents:
    """TTFT markers, the first exception, and content found in a span's events.

    `content` is the span's content events merged with the content that logs brought (`log_content`).
    """

    __slots__ = (
        "chunk_ns",
        "completion_event",
        "content",
        "exc_msg",
        "exc_type",
        "first_token_ns",
        "prompt_event",
        "vercel_first_ms",
        "vercel_first_ns",
    )

    def __init__(self, events: list[Event], log_content: EventContent | None) -> None:
        first_token_ns = vercel_first_ms = vercel_first_ns = chunk_ns = None
        exc_type = exc_msg = None
        content: EventContent | None = None  # built lazily: most spans carry no content events
        prompt_event: Any = None
        completion_event: Any = None
        for e in events:
            name = e.name
            if name in CONTENT_EVENTS:
                if content is None:
                    content = EventContent()
                content.add(name, None, e.attributes)
            elif name == otel_genai.PROMPT_EVENT:
                prompt_event = e.attributes.get("gen_ai.prompt")
            elif name == otel_genai.COMPLETION_EVENT:
                completion_event = e.attributes.get("gen_ai.completion")
            elif name == openinference.FIRST_TOKEN_EVENT:
                if first_token_ns is None:
                    first_token_ns = e.time_ns
            elif name == vercel_ai.FIRST_CHUNK_EVENT:
                vercel_first_ms = as_float(e.attributes.get("ai.response.msToFirstChunk"))
                vercel_first_ns = e.time_ns
            elif name in openllmetry.CHUNK_EVENTS:
                if chunk_ns is None or e.time_ns < chunk_ns:
                    chunk_ns = e.time_ns
            elif name in _EXCEPTION_EVENTS:
                exc_type = exc_type or as_str(e.attributes.get("exception.type"))
                exc_msg = exc_msg or as_str(e.attributes.get("exception.message"))
        if content is None:
            content = log_content
        elif log_content is not None:
            content.merge(log_content)
        self.content = content
        self.prompt_event = prompt_event
        self.completion_event = completion_event
        self.first_token_ns: int | None = first_token_ns
        self.vercel_first_ms: float | None = vercel_first_ms
        self.vercel_first_ns: int | None = vercel_first_ns
        self.chunk_ns: int | None = chunk_ns
        self.exc_type: str | None = exc_type
        self.exc_msg: str | None = exc_msg
