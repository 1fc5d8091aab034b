"""Canonical chat messages from the message shapes seen in the wild.

The canonical shape is `{"role", "content": str | None}` plus, only when present, `tool_calls`
(`[{"id", "name", "arguments": str}]`), `tool_call_id`, `name` and `reasoning`. One converter
reads every shape the conventions use, because the same shapes recur across them:

- OTel >=1.37 `{"role", "parts": [{"type": "text", "content"}, {"type": "tool_call", ...}]}`
- OpenAI chat `{"role", "content": str | [{"type": "text", "text"}], "tool_calls": [{"function"}]}`
- Vercel AI SDK `{"role", "content": [{"type": "tool-call", "toolCallId", "toolName", "input"}]}`
- Anthropic blocks (`tool_use`, `tool_result`, `thinking`), OpenAI Responses items
- LangChain serialised messages (`{"lc": 1, "id": [..., "HumanMessage"], "kwargs": {...}}`)
"""

from __future__ import annotations

from typing import Any, Final

from inferline.processors.conventions.values import as_json, as_str, stringify

Message = dict[str, Any]

_ROLES: Final = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",  # Gemini
    "bot": "assistant",
    "chatbot": "assistant",  # Cohere
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
    # LangChain class names and message types
    "humanmessage": "user",
    "humanmessagechunk": "user",
    "aimessage": "assistant",
    "aimessagechunk": "assistant",
    "systemmessage": "system",
    "toolmessage": "tool",
    "functionmessage": "tool",
    "chatmessage": "user",
}

_FINISH: Final = {
    "tool_calls": "tool_call",
    "tool-calls": "tool_call",
    "tool_use": "tool_call",
    "function_call": "tool_call",
    "tool_call": "tool_call",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "stop": "stop",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "length": "length",
    "content-filter": "content_filter",
    "content_filter": "content_filter",
    "safety": "content_filter",
}

_TEXT_PARTS: Final = frozenset(("text", "input_text", "output_text"))
_REASONING_PARTS: Final = frozenset(("reasoning", "thinking", "redacted_thinking"))
_CALL_PARTS: Final = frozenset(
    ("tool_call", "tool-call", "tool_use", "function_call", "server_tool_call", "server_tool_use")
)
_RESULT_PARTS: Final = frozenset(
    ("tool_call_response", "tool-result", "tool_result", "function_call_output", "server_tool_call_response")
)
_MEDIA_PARTS: Final = frozenset(
    ("blob", "uri", "file", "image", "image_url", "input_image", "audio", "input_audio", "video", "document")
)


def norm_role(v: Any, default: str = "user") -> str:
    hit = _ROLES.get(v) if type(v) is str else None
    if hit is not None:
        return hit
    s = as_str(v)
    if not s:
        return default
    low = s.strip().lower()
    return _ROLES.get(low, low)


def norm_finish_reason(v: str) -> str:
    hit = _FINISH.get(v)  # most values are spelled as a key already: no strip, no lower
    if hit is not None:
        return hit
    low = v.strip().lower()
    return _FINISH.get(low, low)


def finish_reasons(v: Any) -> list[str]:
    """Normalised finish reasons from an array, a JSON array string or a comma-joined string."""
    t = type(v)
    if t is list or t is tuple:
        items = v
    elif t is str:
        s = v.strip()
        if not s:
            return []
        if s[0] == "[":
            parsed = as_json(s)
            items = parsed if type(parsed) is list else [s]
        else:
            items = s.split(",") if "," in s else (s,)
    else:
        return []
    out = []
    for x in items:
        hit = _FINISH.get(x) if type(x) is str else None  # a known spelling: no calls
        if hit is not None:
            out.append(hit)
            continue
        s = as_str(x)
        if s and s.strip():
            out.append(norm_finish_reason(s))
    return out


def tool_call(id_: Any, name: Any, arguments: Any) -> dict[str, str]:
    args = arguments if type(arguments) is str else stringify(arguments) or ""
    return {"id": as_str(id_) or "", "name": as_str(name) or "", "arguments": args}


def _result_text(v: Any) -> str | None:
    """A tool result as text (Vercel `{type: "json", value}` wrappers and text-block lists unwrapped)."""
    if v is None or type(v) is str:
        return v
    if type(v) is dict and "value" in v and v.get("type") in ("text", "json", "error-text", "error-json"):
        return _result_text(v["value"])
    if type(v) is list:
        text, _calls, _results, _reasoning = flatten_content(v)
        if text is not None:
            return text
    return stringify(v)


def flatten_content(
    content: Any,
) -> tuple[str | None, list[dict[str, str]], list[tuple[str, str | None]], str | None]:
    """(text, tool_calls, tool_results[(id, text)], reasoning) from a content value or a parts list."""
    if content is None:
        return None, [], [], None
    t = type(content)
    if t is str:
        return content, [], [], None
    if t is dict:
        if "type" in content or "text" in content:
            content = [content]
        else:
            return stringify(content), [], [], None
    elif t is not list:
        return stringify(content), [], [], None
    texts: list[str] = []
    calls: list[dict[str, str]] = []
    results: list[tuple[str, str | None]] = []
    reasoning: list[str] = []
    for p in content:
        if type(p) is str:
            texts.append(p)
            continue
        if type(p) is not dict:
            continue
        ptype = p.get("type")
        if ptype is None or ptype in _TEXT_PARTS:
            s = p.get("text")
            if type(s) is not str:
                s = p.get("content")
            if type(s) is str:
                texts.append(s)
        elif ptype in _CALL_PARTS:
            args = p.get("arguments")
            if args is None:
                args = p.get("input")
            if args is None:
                args = p.get("args")
            if args is None:
                args = p.get("server_tool_call")
            calls.append(
                tool_call(
                    p.get("id") or p.get("toolCallId") or p.get("call_id"),
                    p.get("name") or p.get("toolName"),
                    args,
                )
            )
        elif ptype in _RESULT_PARTS:
            rid = as_str(p.get("id") or p.get("toolCallId") or p.get("tool_use_id") or p.get("call_id")) or ""
            for key in ("response", "output", "result", "content", "server_tool_call_response"):
                if key in p:
                    results.append((rid, _result_text(p[key])))
                    break
            else:
                results.append((rid, None))
        elif ptype in _REASONING_PARTS:
            s = p.get("content") or p.get("text") or p.get("thinking")
            if type(s) is str:
                reasoning.append(s)
        elif ptype not in _MEDIA_PARTS:
            s = p.get("content")  # generic parts, e.g. OpenLLMetry `refusal`
            if type(s) is str:
                texts.append(s)
    return (
        "\n".join(texts) if texts else None,
        calls,
        results,
        "\n".join(reasoning) if reasoning else None,
    )


def _explicit_tool_calls(raw: Any) -> list[dict[str, str]]:
    """OpenAI `tool_calls` (`{id, function: {name, arguments}}`), flat `{id, name, arguments}`,
    LangChain `{name, args, id}`."""
    if type(raw) is str:
        raw = as_json(raw)
    if type(raw) is not list:
        return []
    out = []
    for c in raw:
        if type(c) is not dict:
            continue
        fn = c.get("function")
        if type(fn) is dict:
            out.append(tool_call(c.get("id"), fn.get("name"), fn.get("arguments")))
        else:
            args = c.get("arguments")
            if args is None:
                args = c.get("args")
            if args is None:
                args = c.get("input")
            out.append(
                tool_call(c.get("id") or c.get("toolCallId"), c.get("name") or c.get("toolName"), args)
            )
    return out


def message_from_dict(m: dict, default_role: str = "user") -> list[Message]:
    """One source message -> one or more canonical messages (tool results split into `tool` messages)."""
    raw_role = m.get("role")
    if raw_role is None:
        if "lc" in m and type(m.get("kwargs")) is dict:  # LangChain serialised
            ids = m.get("id")
            cls = ids[-1] if type(ids) is list and ids else None
            kw = m["kwargs"]
            default_role = norm_role(kw.get("type") or cls, default_role)
            m = kw
        elif type(m.get("data")) is dict and type(m.get("type")) is str:  # LangChain message dict
            default_role = norm_role(m["type"], default_role)
            m = m["data"]
        raw_role = m.get("role")
        if raw_role is None:
            mt = m.get("type")
            if type(mt) is str and mt.lower() in _ROLES:
                raw_role = mt
    role = _ROLES.get(raw_role) if type(raw_role) is str else None  # `norm_role`'s first step, inline
    if role is None:
        role = norm_role(raw_role, default_role)

    text: str | None
    calls: list[dict[str, str]]
    results: list[tuple[str, str | None]]
    reasoning: str | None
    parts = m.get("parts")
    if type(parts) is list:
        p0 = parts[0] if len(parts) == 1 else None
        if type(p0) is dict and p0.get("type") == "text" and type(p0.get("content")) is str:
            text, calls, results, reasoning = p0["content"], [], [], None  # the common single text part
        else:
            text, calls, results, reasoning = flatten_content(parts)
    else:
        content = m.get("content")
        if type(content) is str:
            text, calls, results, reasoning = content, [], [], None
        else:
            if content is None and type(m.get("text")) is str:
                content = m["text"]
            text, calls, results, reasoning = flatten_content(content)
    if not calls and not results and len(m) == ("role" in m) + ("content" in m or "parts" in m):
        # {"role", "content"|"parts"}: nothing else to read
        if reasoning:
            return [{"role": role, "content": text, "reasoning": reasoning}]
        return [{"role": role, "content": text}]
    for key in ("tool_calls", "function_call"):
        if key in m:
            raw = m[key]
            calls = calls + _explicit_tool_calls([raw] if type(raw) is dict else raw)
    if not calls and type(m.get("additional_kwargs")) is dict:
        calls = _explicit_tool_calls(m["additional_kwargs"].get("tool_calls"))
    if reasoning is None:
        r = m.get("reasoning") or m.get("reasoning_content")
        if type(r) is str and r:
            reasoning = r

    out: list[Message] = []
    if results and role in ("tool", "user") and text is None and not calls:
        for rid, rtext in results:
            msg: Message = {"role": "tool", "content": rtext}
            if rid:
                msg["tool_call_id"] = rid
            out.append(msg)
        return out
    msg = {"role": role, "content": text}
    if calls:
        msg["tool_calls"] = calls
    tcid = m.get("tool_call_id") or m.get("toolCallId")
    if tcid is None and role == "tool":
        tcid = m.get("id")  # OTel <=1.36 gen_ai.tool.message body
    if type(tcid) is str and tcid:
        msg["tool_call_id"] = tcid
    name = m.get("name")
    if type(name) is str and name:
        msg["name"] = name
    if reasoning:
        msg["reasoning"] = reasoning
    out.append(msg)
    for rid, rtext in results:
        res: Message = {"role": "tool", "content": rtext}
        if rid:
            res["tool_call_id"] = rid
        out.append(res)
    return out


def to_messages(v: Any, default_role: str = "user") -> list[Message]:
    """Canonical messages from a list of messages, one message, a `{"messages": [...]}` wrapper,
    an OpenAI response (`choices`), or plain text (one message of `default_role`)."""
    if v is None:
        return []
    t = type(v)
    if t is str:
        parsed = as_json(v)
        if parsed is None:
            return [{"role": default_role, "content": v}] if v else []
        v, t = parsed, type(parsed)
    if t is dict:
        for key in ("messages", "input_messages", "choices", "messages_list"):
            inner = v.get(key)
            if type(inner) is list:
                if key == "choices":
                    return _choices(inner)
                return to_messages(inner, default_role)
        if "message" in v and type(v["message"]) is dict:
            return message_from_dict(v["message"], default_role)
        if any(k in v for k in ("role", "content", "parts", "tool_calls", "lc", "text")):
            return message_from_dict(v, default_role)
        for key in ("prompt", "input", "query", "question", "output", "completion", "answer", "response"):
            inner = v.get(key)
            if type(inner) is str and inner:
                return [{"role": default_role, "content": inner}]
        if "prompts" in v and type(v["prompts"]) is list:  # LangChain LLM run inputs
            return [{"role": default_role, "content": s} for s in v["prompts"] if type(s) is str]
        if "generations" in v and type(v["generations"]) is list:  # LangChain LLM run outputs
            return to_messages(v["generations"], default_role)
        return [{"role": default_role, "content": stringify(v)}]
    if t is list:
        out: list[Message] = []
        for item in v:
            ti = type(item)
            if ti is dict:
                if "message" in item and type(item["message"]) is dict and "role" not in item:
                    out.extend(message_from_dict(item["message"], default_role))  # LangChain generation
                else:
                    out.extend(message_from_dict(item, default_role))
            elif ti is list:  # LangChain batches: [[msg, msg]]
                out.extend(to_messages(item, default_role))
            elif ti is str:
                out.append({"role": default_role, "content": item})
        return out
    return [{"role": default_role, "content": stringify(v)}]


def _choices(choices: list) -> list[Message]:
    out: list[Message] = []
    for c in choices:
        if type(c) is not dict:
            continue
        m = c.get("message") or c.get("delta")
        if type(m) is dict:
            out.extend(message_from_dict(m, "assistant"))
        elif type(c.get("text")) is str:
            out.append({"role": "assistant", "content": c["text"]})
    return out


def output_finish_reasons(raw: Any) -> list[str]:
    """finish_reason values of OTel output messages / OpenAI choices (for when the span has none)."""
    if type(raw) is dict:
        raw = raw.get("choices")
    if type(raw) is not list:
        return []
    out = []
    for m in raw:
        if type(m) is dict:
            fr = m.get("finish_reason")
            if type(fr) is str and fr:
                out.append(norm_finish_reason(fr))
    return out


def system_message(v: Any) -> Message | None:
    """The OTel `gen_ai.system_instructions` parts (or plain text) as one system message."""
    if v is None:
        return None
    if type(v) is str:
        parsed = as_json(v)
        if parsed is None:
            return {"role": "system", "content": v} if v else None
        v = parsed
    if type(v) is dict and ("role" in v or "parts" in v):
        v = v.get("parts") or v.get("content")
    text, _calls, _results, _reasoning = flatten_content(v)
    if text is None:
        return None
    return {"role": "system", "content": text}
