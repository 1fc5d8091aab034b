"""OpenInference (Arize / Phoenix): flattened `llm.*` attributes with indexed message lists."""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from inferline.processors.conventions.messages import (
    Message,
    flatten_content,
    norm_finish_reason,
    norm_role,
    output_finish_reasons,
    to_messages,
    tool_call,
)
from inferline.processors.conventions.otel_genai import normalise_provider
from inferline.processors.conventions.values import (
    as_count,
    as_json,
    as_str,
    json_object,
    key_index,
    stringify,
)

SPAN_KIND: Final = "openinference.span.kind"
FIRST_TOKEN_EVENT: Final = "First Token Stream Event"

# Indexed prefixes gathered by the normaliser's single pass over the attribute keys.
INPUT_PREFIX: Final = "llm.input_messages."
OUTPUT_PREFIX: Final = "llm.output_messages."
PROMPTS_PREFIX: Final = "llm.prompts."
CHOICES_PREFIX: Final = "llm.choices."
TOOLS_PREFIX: Final = "llm.tools."  # `llm.tools.<i>.tool.json_schema`: the tools offered to the model

_KIND_OPERATION: Final = {"LLM": "chat", "EMBEDDING": "embeddings"}

Indexed = dict[int, dict[str, Any]]


def operation(kind: Any) -> str | None:
    """Only LLM and EMBEDDING spans are model calls; CHAIN/AGENT/TOOL/... repeat a child's data."""
    s = as_str(kind)
    return _KIND_OPERATION.get(s.upper()) if s else None


def provider(a: dict[str, Any]) -> str | None:
    """`llm.provider` is the host, `llm.system` the model family: azure + openai is Azure OpenAI."""
    host = as_str(a.get("llm.provider"))
    family = as_str(a.get("llm.system"))
    if host:
        h = host.lower()
        if h == "azure":
            return "azure.ai.openai" if (family or "").lower() == "openai" else "azure.ai.inference"
        return normalise_provider(h)
    return normalise_provider(family) if family else None


def _message(sub: dict[str, Any]) -> Message:
    role = norm_role(sub.get("message.role"))
    content = sub.get("message.content")
    if content is None:
        parts: dict[int, dict[str, Any]] = {}
        for k, v in sub.items():
            if k.startswith("message.contents."):
                idx, _, rest = k[17:].partition(".")
                index = key_index(idx)
                if index is not None:
                    parts.setdefault(index, {})[rest] = v
        texts = []
        for j in sorted(parts):
            p = parts[j]
            if p.get("message_content.type", "text") == "text":
                t = p.get("message_content.text")
                if type(t) is str:
                    texts.append(t)
        content = "\n".join(texts) if texts else None
    elif type(content) is not str:
        content = flatten_content(content)[0]
    msg: Message = {"role": role, "content": content}
    calls: dict[int, dict[str, Any]] = {}
    for k, v in sub.items():
        if k.startswith("message.tool_calls."):
            idx, _, rest = k[19:].partition(".")
            index = key_index(idx)
            if index is not None:
                calls.setdefault(index, {})[rest] = v
    if calls:
        msg["tool_calls"] = [
            tool_call(
                c.get("tool_call.id"), c.get("tool_call.function.name"), c.get("tool_call.function.arguments")
            )
            for _, c in sorted(calls.items())
        ]
    tcid = as_str(sub.get("message.tool_call_id"))
    if tcid:
        msg["tool_call_id"] = tcid
    name = as_str(sub.get("message.name"))
    if name:
        msg["name"] = name
    return msg


def messages(indexed: Indexed) -> list[Message]:
    return [_message(indexed[i]) for i in sorted(indexed)]


def legacy_texts(indexed: Indexed, key: str, role: str) -> list[Message]:
    """`llm.prompts.<i>.prompt.text` / `llm.choices.<i>.completion.text` (completions API)."""
    out: list[Message] = []
    for i in sorted(indexed):
        t = indexed[i].get(key)
        if type(t) is str:
            out.append({"role": role, "content": t})
    return out


def io_messages(
    a: dict[str, Any], key: str, role: str, parsed_doc: dict[str, Any] | None = None
) -> list[Message]:
    """`input.value` / `output.value`: the raw request/response; a fallback only. `parsed_doc` is
    the value already parsed, when it was."""
    if parsed_doc is not None:
        return to_messages(parsed_doc, role)
    v = a.get(key)
    if v is None:
        return []
    parsed = as_json(v)
    if parsed is None:
        s = as_str(v)
        return [{"role": role, "content": s}] if s else []
    return to_messages(parsed, role)


# Raw documents longer than this are not parsed (a long chat history, embedding vectors): the
# facts read from them are not worth milliseconds per span.
MAX_DOCUMENT_CHARS: Final = 256 * 1024

INVOCATION_PARAMETERS: Final = "llm.invocation_parameters"
PROMPT_TOKENS: Final = "llm.token_count.prompt"
COMPLETION_TOKENS: Final = "llm.token_count.completion"
INPUT_VALUE: Final = "input.value"
OUTPUT_VALUE: Final = "output.value"


def invocation_parameters(a: dict[str, Any]) -> dict[str, Any] | None:
    """`llm.invocation_parameters`: the request's parameters without its messages (JSON)."""
    v = a.get(INVOCATION_PARAMETERS)
    return json_object(v, MAX_DOCUMENT_CHARS) if v is not None else None


def request_document(a: dict[str, Any]) -> dict[str, Any] | None:
    """The raw request (`input.value`), read only when the span has no `llm.invocation_parameters`:
    instrumentors write the same parameters there, with the messages."""
    v = a.get(INPUT_VALUE)
    return json_object(v, MAX_DOCUMENT_CHARS) if v is not None else None


def metadata(a: dict[str, Any]) -> dict[str, Any] | None:
    v = a.get("metadata")
    return json_object(v, MAX_DOCUMENT_CHARS) if v is not None else None


# Request-model keys of the providers' request bodies (OpenAI/Anthropic `model`, LangChain
# `model_name`, Bedrock `modelId`).
_MODEL_KEYS: Final = ("model", "model_name", "model_id", "modelId")
# Parameters the row has columns for (or that are not parameters); the rest go to
# `request_parameters` under their own names.
_NOT_OTHER_PARAMETERS: Final = frozenset(
    (
        *_MODEL_KEYS,
        "temperature",
        "top_p",
        "topP",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "maxTokens",
        "maxOutputTokens",
        "max_new_tokens",
        "stream",
        "messages",
        "input",
        "prompt",
        "system",
        "metadata",
        "user",
    )
)
_MAX_PARAMETERS: Final = 32
_MAX_PARAMETER_CHARS: Final = 4096


# Tool definitions in a request document, kept under one name whatever the provider calls them.
_TOOL_KEYS: Final = frozenset(("tools", "functions"))


def tool_definitions(indexed: Indexed) -> str:
    """`llm.tools.<i>.tool.json_schema` (JSON strings) as one JSON array."""
    schemas = []
    for i in sorted(indexed):
        v = indexed[i].get("tool.json_schema")
        parsed = as_json(v)
        schemas.append(parsed if parsed is not None else v)
    return stringify(schemas) or ""


def request_model(doc: dict[str, Any]) -> str | None:
    for k in _MODEL_KEYS:
        s = as_str(doc.get(k))
        if s:
            return s
    return None


def other_parameters(doc: dict[str, Any], out: dict[str, str]) -> None:
    """Request parameters without a column of their own (seed, stop, top_k, penalties, n, tools,
    response_format, ...) into `out`, under the names the request used; bounded in number and size."""
    for k, v in doc.items():
        if len(out) >= _MAX_PARAMETERS:
            return
        if k in _NOT_OTHER_PARAMETERS or v is None:
            continue
        name = "tool_definitions" if k in _TOOL_KEYS else k
        if name in out:
            continue
        t = type(v)
        if t is str:
            s: str | None = v
        elif t is int:
            s = str(v)  # JSON and str() agree on ints; orjson costs more
        else:
            s = stringify(v)
        if s is not None and (len(s) <= _MAX_PARAMETER_CHARS or name == "tool_definitions"):
            out[name] = s


class ResponseUsage(NamedTuple):
    """Token counts read from a raw response's `usage`, None where it has none. Input includes
    cache reads and writes, output includes reasoning (as the row's columns do)."""

    input: int | None
    output: int | None
    total: int | None
    cache_read: int | None
    cache_write: int | None
    reasoning: int | None
    details: dict[str, int]
    # Anthropic's own `input_tokens` (cache left out), which some instrumentors copy as the prompt count
    uncached_input: int | None = None


class ResponseFacts(NamedTuple):
    """What the raw response (`output.value`) says about the call."""

    document: dict[str, Any]
    response_id: str | None
    model: str | None
    finish_reasons: list[str]
    usage_document: dict[str, Any] | None  # the raw `usage`, read by `usage()` only when needed

    def usage(self, a: dict[str, Any]) -> ResponseUsage | None:
        """The response's token counts, when the span's attributes leave the input or output count
        out, or when it is Anthropic's usage (whose cache counts instrumentors may leave out)."""
        u = self.usage_document
        if u is None:
            return None
        if PROMPT_TOKENS in a and COMPLETION_TOKENS in a and "cache_read_input_tokens" not in u:
            return None
        return _response_usage(u)


def response_facts(a: dict[str, Any]) -> ResponseFacts | None:
    """The response id, model, finish reasons and usage of the raw response JSON in `output.value`
    (OpenAI chat/completions, streamed chunks accumulated, Responses API; Anthropic Messages).
    None when it is not a JSON object (plain text, too long, invalid)."""
    v = a.get(OUTPUT_VALUE)
    doc = json_object(v, MAX_DOCUMENT_CHARS) if v is not None else None
    if doc is None:
        return None
    llm_output = doc.get("llm_output")
    if type(llm_output) is dict:  # LangChain's LLMResult (the LangChain instrumentor's LLM spans)
        u = llm_output.get("token_usage") or llm_output.get("usage")
        return ResponseFacts(
            doc,
            as_str(llm_output.get("id")),
            as_str(llm_output.get("model_name")) or as_str(llm_output.get("model")),
            _generation_finish_reasons(doc.get("generations")),
            u if type(u) is dict else None,
        )
    u = doc.get("usage")
    return ResponseFacts(
        doc,
        as_str(doc.get("id")),
        as_str(doc.get("model")),
        _response_finish_reasons(doc),
        u if type(u) is dict else None,
    )


def _generation_finish_reasons(generations: Any) -> list[str]:
    """`generations[i][j].generation_info.finish_reason` (or `stop_reason`) of a LangChain LLMResult."""
    out: list[str] = []
    if type(generations) is not list:
        return out
    for batch in generations:
        for g in batch if type(batch) is list else ():
            info = g.get("generation_info") if type(g) is dict else None
            if type(info) is dict:
                reason = info.get("finish_reason") or info.get("stop_reason")
                if type(reason) is str and reason:
                    out.append(norm_finish_reason(reason))
    return out


def _response_finish_reasons(doc: dict[str, Any]) -> list[str]:
    if "choices" in doc:  # OpenAI chat / completions
        return output_finish_reasons(doc)
    stop = doc.get("stop_reason")  # Anthropic Messages
    if type(stop) is str and stop:
        return [norm_finish_reason(stop)]
    if doc.get("object") == "response":  # OpenAI Responses API: a status, no finish reason
        incomplete = doc.get("incomplete_details")
        reason = incomplete.get("reason") if type(incomplete) is dict else None
        if type(reason) is str and reason:
            return [norm_finish_reason(reason)]
        if doc.get("status") == "completed":
            output = doc.get("output")
            calls = type(output) is list and any(
                type(o) is dict and o.get("type") == "function_call" for o in output
            )
            return ["tool_call" if calls else "stop"]
    return []


def _detail(d: Any, key: str) -> int | None:
    return as_count(d.get(key)) if type(d) is dict else None


def _response_usage(u: dict[str, Any]) -> ResponseUsage:
    details: dict[str, int] = {}
    if "prompt_tokens" in u or "completion_tokens" in u:  # OpenAI chat / completions
        prompt_details = u.get("prompt_tokens_details")
        completion_details = u.get("completion_tokens_details")
        for key, d, name in (
            ("input.audio", prompt_details, "audio_tokens"),
            ("output.audio", completion_details, "audio_tokens"),
        ):
            n = _detail(d, name)
            if n:
                details[key] = n
        return ResponseUsage(
            as_count(u.get("prompt_tokens")),
            as_count(u.get("completion_tokens")),
            as_count(u.get("total_tokens")),
            _detail(prompt_details, "cached_tokens"),
            None,
            _detail(completion_details, "reasoning_tokens"),
            details,
        )
    inp = as_count(u.get("input_tokens"))
    if "input_tokens_details" in u or "output_tokens_details" in u:  # Responses API: input includes cache
        return ResponseUsage(
            inp,
            as_count(u.get("output_tokens")),
            as_count(u.get("total_tokens")),
            _detail(u.get("input_tokens_details"), "cached_tokens"),
            None,
            _detail(u.get("output_tokens_details"), "reasoning_tokens"),
            details,
        )
    # Anthropic Messages: input_tokens leaves out cache reads and writes
    cache_read = as_count(u.get("cache_read_input_tokens"))
    cache_write = as_count(u.get("cache_creation_input_tokens"))
    uncached = inp
    if inp is not None:
        inp += (cache_read or 0) + (cache_write or 0)
    return ResponseUsage(
        inp, as_count(u.get("output_tokens")), None, cache_read, cache_write, None, details, uncached
    )
