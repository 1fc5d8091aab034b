"""Normaliser, issue #15: facts the instrumentations carry that used to be lost. Payloads are shaped
as each instrumentation writes them (the attribute names and JSON layouts of the OpenInference
OpenAI/Anthropic instrumentors, the Vercel AI SDK's `embedMany`, OpenLIT, and the OTel GenAI
semantic conventions up to semantic-conventions-genai after 1.42)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from inferline.processors.normalise import GenAINormaliser
from tests.genai_examples import flat_span

pytestmark = pytest.mark.unit


def one(attributes: dict[str, Any], **kw: Any) -> dict[str, Any]:
    rows = GenAINormaliser().normalise([flat_span(attributes, **kw)], [])
    assert len(rows) == 1, rows
    return rows[0]


# -- OpenInference: request model and parameters, raw response -----------------------------------

# openinference-instrumentation-openai: `llm.invocation_parameters` is the request without its
# messages (json.dumps of the params), `input.value` the whole request, `output.value` the
# response's `model_dump_json()`.
_OI_REQUEST = {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 64, "seed": 7, "stop": ["\n\n"]}
_OI_RESPONSE = {
    "id": "chatcmpl-AbC123",
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "logprobs": None,
            "message": {"content": "Hello!", "refusal": None, "role": "assistant", "annotations": []},
        }
    ],
    "created": 1755684000,
    "model": "gpt-4o-mini-2024-07-18",
    "object": "chat.completion",
    "service_tier": "default",
    "system_fingerprint": "fp_1",
    "usage": {
        "completion_tokens": 3,
        "prompt_tokens": 9,
        "total_tokens": 12,
        "completion_tokens_details": {"audio_tokens": 0, "reasoning_tokens": 0},
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
    },
}


def oi_openai_chat(**overrides: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Hi"}]
    attributes: dict[str, Any] = {
        "openinference.span.kind": "LLM",
        "llm.system": "openai",
        "llm.provider": "openai",
        "input.value": json.dumps({"messages": messages, **_OI_REQUEST}),
        "input.mime_type": "application/json",
        "llm.invocation_parameters": json.dumps(_OI_REQUEST),
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "Hi",
        "output.value": json.dumps(_OI_RESPONSE, separators=(",", ":")),
        "output.mime_type": "application/json",
        "llm.model_name": "gpt-4o-mini-2024-07-18",
        "llm.token_count.total": 12,
        "llm.token_count.prompt": 9,
        "llm.token_count.completion": 3,
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "Hello!",
    }
    attributes.update(overrides)
    return {k: v for k, v in attributes.items() if v is not None}


def test_openinference_request_model_parameters_and_response_id() -> None:
    row = one(oi_openai_chat(), name="ChatCompletion", scope="openinference.instrumentation.openai")
    assert row["request_model"] == "gpt-4o-mini"  # not llm.model_name, the dated response model
    assert row["model"] == "gpt-4o-mini-2024-07-18"
    assert row["response_id"] == "chatcmpl-AbC123"
    assert row["finish_reasons"] == ["stop"]
    assert (row["temperature"], row["max_tokens"]) == (0.2, 64)
    assert row["request_parameters"] == {"seed": "7", "stop": '["\\n\\n"]'}
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (9, 3, 12)


def test_openinference_failed_call_keeps_its_request_model() -> None:
    """The instrumentor sets `llm.model_name` from the response: a failed call has none."""
    attributes = oi_openai_chat(
        **{
            "llm.model_name": None,
            "output.value": None,
            "output.mime_type": None,
            "llm.token_count.total": None,
            "llm.token_count.prompt": None,
            "llm.token_count.completion": None,
            "llm.output_messages.0.message.role": None,
            "llm.output_messages.0.message.content": None,
        }
    )
    row = one(attributes, status="STATUS_CODE_ERROR", status_message="Error code: 429")
    assert row["success"] is False
    assert row["request_model"] == "gpt-4o-mini" and row["model"] == "gpt-4o-mini"
    assert row["temperature"] == 0.2


def test_openinference_request_from_input_value_without_invocation_parameters() -> None:
    row = one(oi_openai_chat(**{"llm.invocation_parameters": None, "llm.model_name": None}))
    assert row["request_model"] == "gpt-4o-mini"
    assert row["model"] == "gpt-4o-mini-2024-07-18"  # the raw response's model
    assert (row["temperature"], row["max_tokens"]) == (0.2, 64)
    assert row["request_parameters"]["seed"] == "7"


def test_openinference_streamed_response_accumulated_in_output_value() -> None:
    """The instrumentor accumulates the chunks (`delta` becomes `message`) and dumps them."""
    streamed = {
        "choices": [
            {"message": {"role": "assistant", "content": "Hello!"}, "index": 0, "finish_reason": "length"}
        ],
        "id": "chatcmpl-S1",
        "created": 1755684000,
        "model": "gpt-4o-mini-2024-07-18",
        "object": "chat.completion.chunk",
        "usage": {
            "completion_tokens": 64,
            "prompt_tokens": 1200,
            "total_tokens": 1264,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 16},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }
    request = {**_OI_REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    row = one(
        oi_openai_chat(
            **{
                "llm.invocation_parameters": json.dumps(request),
                "output.value": json.dumps(streamed),
                "llm.token_count.total": None,
                "llm.token_count.prompt": None,
                "llm.token_count.completion": None,
            }
        )
    )
    assert row["streaming"] is True
    assert row["response_id"] == "chatcmpl-S1" and row["finish_reasons"] == ["length"]
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (1200, 64, 1264)
    assert row["cache_read_tokens"] == 1024
    assert row["usage_details"] == {"input.audio": 16}  # zero counts are not reported
    assert row["request_parameters"]["stream_options"] == '{"include_usage":true}'


def test_openinference_anthropic_usage_only_in_the_raw_response() -> None:
    """openinference-instrumentation-anthropic (Messages wrapper): `llm.model_name` is the request's
    model, the prompt count is Anthropic's cache-less `input_tokens`, cache counts only in
    `output.value`."""
    response = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "content": [{"citations": None, "text": "Hi there", "type": "text"}],
        "model": "claude-3-5-sonnet-20241022",
        "role": "assistant",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "type": "message",
        "usage": {
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 2000,
            "input_tokens": 20,
            "output_tokens": 30,
            "server_tool_use": None,
            "service_tier": "standard",
        },
    }
    params = {"max_tokens": 1024, "model": "claude-3-5-sonnet-latest", "temperature": 0.5, "top_k": 40}
    row = one(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "claude-3-5-sonnet-latest",
            "llm.input_messages.0.message.content": "Hello",
            "llm.input_messages.0.message.role": "user",
            "llm.invocation_parameters": json.dumps(params),
            "input.value": json.dumps({"messages": [{"role": "user", "content": "Hello"}], **params}),
            "input.mime_type": "application/json",
            "llm.output_messages.0.message.content": "Hi there",
            "llm.output_messages.0.message.role": "assistant",
            "llm.token_count.prompt": 20,
            "llm.token_count.completion": 30,
            "output.value": json.dumps(response),
            "output.mime_type": "application/json",
        },
        name="Messages",
        scope="openinference.instrumentation.anthropic",
    )
    assert row["request_model"] == "claude-3-5-sonnet-latest"
    assert row["model"] == "claude-3-5-sonnet-20241022"
    assert row["response_id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert row["finish_reasons"] == ["stop"]
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (2120, 2000, 100)
    assert row["output_tokens"] == 30
    assert row["request_parameters"] == {"top_k": "40"}


def test_openinference_responses_api_status_as_finish_reason() -> None:
    response = {
        "id": "resp_67ccd2bed1ec8190",
        "object": "response",
        "status": "completed",
        "model": "o4-mini-2025-04-16",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        ],
        "usage": {
            "input_tokens": 20,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 256},
            "total_tokens": 320,
        },
    }
    row = one(
        {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.invocation_parameters": json.dumps({"model": "o4-mini", "reasoning": {"effort": "high"}}),
            "output.value": json.dumps(response),
            "output.mime_type": "application/json",
            "llm.model_name": "o4-mini-2025-04-16",
        }
    )
    assert row["response_id"] == "resp_67ccd2bed1ec8190"
    assert row["finish_reasons"] == ["tool_call"]
    assert (row["input_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (20, 300, 256)
    assert row["request_parameters"] == {"reasoning": '{"effort":"high"}'}


def test_openinference_langchain_llm_result() -> None:
    """openinference-instrumentation-langchain: `output.value` is the run's LLMResult; the response
    id and model are in `llm_output`, finish reasons in each generation's `generation_info`."""
    token_usage = {
        "completion_tokens": 2,
        "prompt_tokens": 405,
        "total_tokens": 407,
        "completion_tokens_details": None,
        "prompt_tokens_details": {"audio_tokens": None, "cache_write_tokens": None, "cached_tokens": 0},
    }
    result = {
        "generations": [
            [
                {
                    "text": "billing",
                    "generation_info": {"finish_reason": "stop", "logprobs": None},
                    "type": "ChatGeneration",
                    "message": {"content": "billing", "type": "ai", "id": "lc_run--019f7f91-0"},
                }
            ]
        ],
        "llm_output": {
            "token_usage": token_usage,
            "model_provider": "openai",
            "model_name": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_1",
            "id": "chatcmpl-nnko9b7UN7EXQXDE33wKGYxuH24DeeMJ",
        },
        "run": None,
        "type": "LLMResult",
    }
    params = {
        "model": "gpt-4o-mini",
        "model_name": "gpt-4o-mini",
        "stream": False,
        "n": 1,
        "temperature": 0.0,
    }
    row = one(
        {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini",
            "llm.invocation_parameters": json.dumps(params),
            "input.value": json.dumps(
                {"messages": [[{"lc": 1, "type": "constructor", "kwargs": {"content": "hi"}}]]}
            ),
            "input.mime_type": "application/json",
            "output.value": json.dumps(result),
            "output.mime_type": "application/json",
            "llm.token_count.prompt": 405,
            "llm.token_count.completion": 2,
            "llm.token_count.total": 407,
        },
        name="ChatOpenAI",
        scope="openinference.instrumentation.langchain",
    )
    assert row["response_id"] == "chatcmpl-nnko9b7UN7EXQXDE33wKGYxuH24DeeMJ"
    assert (row["request_model"], row["model"]) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert row["finish_reasons"] == ["stop"] and row["temperature"] == 0.0
    assert row["request_parameters"] == {"n": "1"}


@pytest.mark.parametrize(
    "output_value",
    [
        '{"id": "chatcmpl-1", "choices": [',  # cut short
        "[1, 2, 3]",  # not an object
        '{"id": 12, "choices": "x", "usage": {"prompt_tokens": "many"}}',  # wrong types
        '{"id": "chatcmpl-big", "pad": "' + "x" * (300 * 1024) + '"}',  # over the size bound
    ],
)
def test_openinference_bad_or_huge_raw_response_is_ignored(output_value: str) -> None:
    row = one(oi_openai_chat(**{"output.value": output_value}))
    assert row["response_id"] in ("", "12")
    assert row["response_id"] != "chatcmpl-big"
    assert row["input_tokens"] == 9 and row["request_model"] == "gpt-4o-mini"


def test_openinference_tool_definitions_kept() -> None:
    tool = {
        "type": "function",
        "function": {"name": "lookup_order", "parameters": {"type": "object", "properties": {}}},
    }
    row = one(oi_openai_chat(**{"llm.tools.0.tool.json_schema": json.dumps(tool)}))
    assert json.loads(row["request_parameters"]["tool_definitions"]) == [tool]


# -- Vercel AI SDK embedMany --------------------------------------------------------------------


def test_vercel_embed_many_keeps_every_input() -> None:
    """`ai.embedMany.doEmbed`: `ai.values` is `values.map(v => JSON.stringify(v))`."""
    values = ["sunny day at the beach", "rainy afternoon in the city", "snowy night in the mountains"]
    row = one(
        {
            "operation.name": "ai.embedMany.doEmbed support-search",
            "ai.operationId": "ai.embedMany.doEmbed",
            "ai.telemetry.functionId": "support-search",
            "ai.model.id": "text-embedding-3-small",
            "ai.model.provider": "openai.embedding",
            "ai.settings.maxRetries": 2,
            "ai.values": [json.dumps(v) for v in values],
            "ai.embeddings": ["[0.1,0.2]", "[0.3,0.4]", "[0.5,0.6]"],
            "ai.usage.tokens": 20,
        },
        name="ai.embedMany.doEmbed",
        scope="ai",
    )
    assert row["operation"] == "embeddings" and row["input_tokens"] == 20
    assert row["prompt_messages"] == [{"role": "user", "content": v} for v in values]


def test_vercel_embed_single_value_and_object_values() -> None:
    row = one(
        {
            "ai.operationId": "ai.embed.doEmbed",
            "ai.model.id": "text-embedding-3-small",
            "ai.model.provider": "openai.embedding",
            "ai.values": [json.dumps({"title": "Order 1234", "body": "shipped"})],
            "ai.usage.tokens": 5,
        },
        scope="ai",
    )
    assert [json.loads(m["content"]) for m in row["prompt_messages"]] == [
        {"title": "Order 1234", "body": "shipped"}
    ]


# -- OTel GenAI 2026 names ----------------------------------------------------------------------


def otel_chat(**extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-audio-preview",
        "gen_ai.response.model": "gpt-4o-audio-preview-2024-12-17",
        "gen_ai.usage.input_tokens": 1500,
        "gen_ai.usage.output_tokens": 700,
        **extra,
    }


def test_semconv_usage_names_cache_reasoning_and_modalities() -> None:
    row = one(
        otel_chat(
            **{
                "gen_ai.usage.cache_read.input_tokens": 1024,  # 1.40
                "gen_ai.usage.cache_creation.input_tokens": 200,  # 1.40
                "gen_ai.usage.reasoning.output_tokens": 500,  # 1.41
                "gen_ai.usage.text.input_tokens": 1100,  # semantic-conventions-genai, after 1.42
                "gen_ai.usage.audio.input_tokens": 300,
                "gen_ai.usage.image.input_tokens": 100,
                "gen_ai.usage.text.output_tokens": 600,
                "gen_ai.usage.audio.output_tokens": 100,
            }
        )
    )
    assert (row["cache_read_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == (1024, 200, 500)
    assert row["usage_details"] == {
        "input.text": 1100,
        "input.audio": 300,
        "input.image": 100,
        "output.text": 600,
        "output.audio": 100,
    }


@pytest.mark.parametrize(
    ("attributes", "want"),
    [
        # OpenLLMetry <= 0.47 and OpenLIT
        (
            {
                "gen_ai.usage.cache_read_input_tokens": 11,
                "gen_ai.usage.cache_creation_input_tokens": 12,
                "gen_ai.usage.reasoning_tokens": 13,
            },
            (11, 12, 13),
        ),
        # OpenLLMetry Nov 2025 - Mar 2026
        ({"llm.usage.reasoning_tokens": 14}, (0, 0, 14)),
        # OpenLIT 2025 details
        (
            {
                "gen_ai.usage.prompt_tokens_details.cached_tokens": 15,
                "gen_ai.usage.prompt_tokens_details.cache_creation_tokens": 16,
                "gen_ai.usage.completion_tokens_details.reasoning_tokens": 17,
            },
            (15, 16, 17),
        ),
        # OpenInference, including the Python constant `cache_input`
        (
            {
                "openinference.span.kind": "LLM",
                "llm.token_count.prompt_details.cache_input": 18,
                "llm.token_count.prompt_details.cache_write": 19,
                "llm.token_count.completion_details.reasoning": 20,
                "llm.token_count.prompt_details.audio": 21,
            },
            (18, 19, 20),
        ),
    ],
)
def test_older_usage_names_still_work(attributes: dict[str, Any], want: tuple[int, int, int]) -> None:
    row = one(otel_chat(**attributes))
    assert (row["cache_read_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == want
    if "llm.token_count.prompt_details.audio" in attributes:
        assert row["usage_details"] == {"input.audio": 21}


def test_agent_fields_conversation_and_tool_definitions() -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    row = one(
        otel_chat(
            **{
                "gen_ai.agent.name": "Math Tutor",
                "gen_ai.agent.id": "asst_5j66UpCpwteGg4YSxUnt7lPY",
                "gen_ai.agent.description": "Helps with math problems",
                "gen_ai.agent.version": "1.0.0",
                "gen_ai.conversation.id": "conv_5j66UpCpwteGg4YSxUnt7lPY",
                "gen_ai.tool.definitions": json.dumps(tools),
                "gen_ai.request.seed": 100,
                "gen_ai.request.stop_sequences": ["forest", "lived"],
                "gen_ai.output.type": "text",
            }
        )
    )
    assert (row["agent_name"], row["agent_id"]) == ("Math Tutor", "asst_5j66UpCpwteGg4YSxUnt7lPY")
    assert row["tags"]["gen_ai.agent.description"] == "Helps with math problems"
    assert row["tags"]["gen_ai.agent.version"] == "1.0.0"
    assert row["session_id"] == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert json.loads(row["request_parameters"]["tool_definitions"]) == tools
    assert row["request_parameters"]["seed"] == "100"
    assert json.loads(row["request_parameters"]["stop_sequences"]) == ["forest", "lived"]
    assert row["request_parameters"]["output_type"] == "text"


def test_conversation_id_is_the_session_only_when_nothing_else_is() -> None:
    both = one(otel_chat(**{"gen_ai.conversation.id": "conv_1", "session.id": "sess_1"}))
    assert both["session_id"] == "sess_1"
    traceloop = one(
        otel_chat(
            **{
                "gen_ai.conversation.id": "conv_1",
                "traceloop.association.properties.session_id": "s_1001",
            }
        )
    )
    assert traceloop["session_id"] == "s_1001"
    assert one(otel_chat(**{"gen_ai.conversation.id": "conv_1"}))["session_id"] == "conv_1"


def test_span_without_new_attributes_has_empty_new_columns() -> None:
    row = one(otel_chat())
    assert row["usage_details"] == {} and row["request_parameters"] == {}
    assert row["agent_id"] == "" and row["provided_cost_usd"] is None


def test_openlit_cost_is_provided_cost() -> None:
    row = one(
        {
            "telemetry.sdk.name": "openlit",
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 45,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.usage.cost": 0.00002475,
        }
    )
    assert row["provided_cost_usd"] == Decimal("0.00002475")
    assert row["price_status"] == "provided"  # until the pricing stage computes the table's
