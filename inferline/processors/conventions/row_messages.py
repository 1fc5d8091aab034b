"""A row's prompt/response messages and finish reasons, from the span and its content events.

Sources in priority order: "strong" span attributes (structured messages), then event/log content,
then "weak" span fallbacks (legacy flat text, `input.value`/`output.value`). A row that has only weak
or no content for a side is worth completing when later logs bring better content.
"""

from __future__ import annotations

from typing import Any

from inferline.processors.conventions import langfuse, openinference, openllmetry, otel_genai, vercel_ai
from inferline.processors.conventions.key_scan import Indexed
from inferline.processors.conventions.messages import Message, finish_reasons
from inferline.processors.conventions.span_events import SpanEvents

# (strong prompt, strong response, strong finish reasons), (weak prompt, weak response, weak finish)
Waiting = tuple[tuple[bool, bool, bool], tuple[list[Message], list[Message], list[str]]]


def row_messages(
    a: dict[str, Any],
    indexed: Indexed,
    is_vercel: bool,
    is_langfuse: bool,
    finish_keys: tuple[str, ...],
    ev: SpanEvents,
    raw_response: dict[str, Any] | None = None,
) -> tuple[list[Message], list[Message], list[str], Waiting | None]:
    """(prompt, response, finish reasons, waiting): `waiting` is set when a side still lacks strong or
    event content, and holds what completing the row later needs. `raw_response` is OpenInference's
    `output.value` when it was already parsed."""
    events = ev.content
    prompt = _strong_prompt(a, indexed, is_vercel, is_langfuse)
    response, fr_out = _strong_response(a, indexed, is_vercel, is_langfuse)
    frs = finish_reasons(a.get(otel_genai.FINISH_REASONS)) if otel_genai.FINISH_REASONS in a else []
    if not frs:
        frs = fr_out
    if not frs:
        frs = _first_finish_reasons(a, finish_keys)
    strong = (bool(prompt), bool(response), bool(frs))
    ev_prompt = ev_response = None
    weak_prompt: list[Message] = []
    weak_response: list[Message] = []
    if not prompt:
        ev_prompt = events.prompt_messages() if events is not None else None
        weak_prompt = _weak_prompt(a, indexed, ev.prompt_event, is_vercel)
        prompt = ev_prompt or weak_prompt
    if not response:
        ev_response = events.response_messages() if events is not None else None
        weak_response = _weak_response(a, indexed, ev.completion_event, raw_response)
        response = ev_response or weak_response
    if not frs and events is not None:
        frs = events.finish_reasons()
    if (not strong[0] and not ev_prompt) or (not strong[1] and not ev_response):
        return prompt, response, frs, (strong, (weak_prompt, weak_response, []))
    return prompt, response, frs, None


def _first_finish_reasons(a: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    frs: list[str] = []
    for k in keys:
        v = a.get(k)
        if v is not None:
            frs = finish_reasons(v)
            if frs:
                break
    return frs


def _strong_prompt(a: dict[str, Any], indexed: Indexed, is_vercel: bool, is_langfuse: bool) -> list[Message]:
    if otel_genai.INPUT_MESSAGES in a or otel_genai.SYSTEM_INSTRUCTIONS in a:
        msgs = otel_genai.input_messages(a)
        if msgs:
            return msgs
    ix = indexed.get(openinference.INPUT_PREFIX)
    if ix:
        return openinference.messages(ix)
    ix = indexed.get(openllmetry.PROMPT_PREFIX)
    if ix:
        return openllmetry.prompt_messages(ix)
    if is_vercel:
        msgs = vercel_ai.prompt_messages(a)
        if msgs:
            return msgs
    if is_langfuse:
        return langfuse.input_messages(a)
    return []


def _strong_response(
    a: dict[str, Any], indexed: Indexed, is_vercel: bool, is_langfuse: bool
) -> tuple[list[Message], list[str]]:
    if otel_genai.OUTPUT_MESSAGES in a:
        msgs, frs = otel_genai.output_messages(a)
        if msgs:
            return msgs, frs
    ix = indexed.get(openinference.OUTPUT_PREFIX)
    if ix:
        return openinference.messages(ix), []
    ix = indexed.get(openllmetry.COMPLETION_PREFIX)
    if ix:
        return openllmetry.completion_messages(ix)
    if is_vercel:
        msgs = vercel_ai.response_messages(a)
        if msgs:
            return msgs, []
    if is_langfuse:
        return langfuse.output_messages(a), []
    return [], []


def _weak_prompt(a: dict[str, Any], indexed: Indexed, prompt_event: Any, is_vercel: bool) -> list[Message]:
    for v in (prompt_event, a.get("gen_ai.prompt")):
        if v is not None:
            msgs = otel_genai.legacy_content_messages(v, "user")
            if msgs:
                return msgs
    ix = indexed.get(openinference.PROMPTS_PREFIX)
    if ix:
        return openinference.legacy_texts(ix, "prompt.text", "user")
    if is_vercel and "ai.prompt" in a:
        msgs = vercel_ai.root_prompt_messages(a)
        if msgs:
            return msgs
    return openinference.io_messages(a, "input.value", "user")


def _weak_response(
    a: dict[str, Any], indexed: Indexed, completion_event: Any, raw_response: dict[str, Any] | None
) -> list[Message]:
    for v in (completion_event, a.get("gen_ai.completion")):
        if v is not None:
            msgs = otel_genai.legacy_content_messages(v, "assistant")
            if msgs:
                return msgs
    ix = indexed.get(openinference.CHOICES_PREFIX)
    if ix:
        return openinference.legacy_texts(ix, "completion.text", "assistant")
    return openinference.io_messages(a, "output.value", "assistant", raw_response)
