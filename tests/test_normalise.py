"""GenAI normaliser: the doc's section-10 examples field by field, classification, joins, caches,
lenient parsing and isolation of bad input."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from inferline.core.records import Batch, Span
from inferline.processors.conventions.messages import finish_reasons
from inferline.processors.conventions.otel_genai import normalise_provider
from inferline.processors.normalise import INFERENCE_NAMESPACE, ROW_KEYS, GenAINormaliser
from inferline.processors.pricing import Pricer
from tests.genai_examples import (
    PROJECT_ID,
    example,
    flat_span,
    make_log,
    make_logs,
    make_span,
)

pytestmark = pytest.mark.unit

# The doc's `expected` names that differ from the row's column names.
_COLUMN = {"completion_messages": "response_messages", "cost_usd": "total_cost_usd"}


def _one(rows: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(rows) == 1, rows
    return rows[0]


def assert_expected(row: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every `expected` field of a doc example, exactly (numbers compared as numbers)."""
    for field, want in expected.items():
        if field == "status":
            assert row["success"] is (want == "ok"), field
            assert row["error_type"] == ("" if want == "ok" else row["error_type"])
            continue
        if field == "tags" and isinstance(want, list):  # list-style tags are the `labels` column
            assert row["labels"] == want
            continue
        got = row[_COLUMN.get(field, field)]
        if field == "cost_usd":
            assert got == Decimal(str(want)), (field, got)
        elif isinstance(want, bool) or want is None:
            assert got is want, (field, got)
        elif isinstance(want, (int, float)):
            assert isinstance(got, (int, float)) and not isinstance(got, bool), (field, got)
            assert got == want, (field, got, want)
        else:
            assert got == want, (field, got, want)


def run(ex: dict[str, Any], n: GenAINormaliser | None = None) -> dict[str, Any]:
    n = n or GenAINormaliser()
    return _one(n.normalise([make_span(ex)], make_logs(ex)))


# -- doc section 10, one test per family --------------------------------------------------------


def test_otel_genai_1_41_span_attributes() -> None:
    ex = example("10.1")
    row = run(ex)
    assert_expected(row, ex["expected"])
    assert row["convention"] == "otel_genai"
    assert row["ttft_ms"] == 412.0
    assert row["top_p"] == 1.0
    assert row["response_id"] == "chatcmpl-A1b2C3d4"
    assert row["service_name"] == "checkout-bot"
    assert row["server_address"] == "api.openai.com"
    assert row["latency_ms"] == 1900.0
    assert row["prompt_messages"] == [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert row["response_messages"] == [{"role": "assistant", "content": "Paris."}]
    assert row["total_cost_usd"] is None and row["price_status"] == ""
    assert row["version"] == 1


def test_otel_genai_1_36_span_with_log_events() -> None:
    ex = example("10.2")
    # the second log uses the older `event.name` attribute, not the LogRecord field
    assert "eventName" not in ex["logs"][1] and ex["logs"][1]["attributes"]["event.name"]
    row = run(ex)
    assert_expected(row, ex["expected"])
    assert row["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert row["span_id"] == "00f067aa0ba902b7"
    assert row["max_tokens"] == 200
    assert row["total_tokens"] == 99
    assert row["version"] == 1


def test_openinference_llm_span() -> None:
    ex = example("10.3")
    row = run(ex)
    assert_expected(row, ex["expected"])
    assert row["convention"] == "openinference"
    assert row["operation"] == "chat"
    assert row["tags"] == {"tenant_id": "acme", "env": "prod"}
    assert row["prompt_messages"] == [
        {"role": "system", "content": "You are a SQL expert."},
        {"role": "user", "content": "Count orders per day."},
    ]
    assert row["response_messages"] == [
        {"role": "assistant", "content": "SELECT date(created_at), count(*) FROM orders GROUP BY 1;"}
    ]


def test_openllmetry_legacy_indexed() -> None:
    ex = example("10.4")
    row = run(ex)
    assert_expected(row, ex["expected"])
    assert row["convention"] == "openllmetry"
    assert row["agent_name"] == "support_agent"
    assert row["server_address"] == "api.openai.com"
    assert row["tags"] == {"user_id": "u_77", "session_id": "s_1001", "tenant_id": "acme"}
    assert row["prompt_messages"] == [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "Where is order 1234?"},
    ]


def test_vercel_ai_legacy_do_stream() -> None:
    ex = example("10.5")
    row = run(ex)
    assert_expected(row, ex["expected"])
    assert row["convention"] == "vercel_ai"
    assert row["agent_name"] == "support-chat"
    assert row["response_id"] == "msg_01AbCd"
    assert row["prompt_messages"] == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Summarize my last order."},
    ]
    assert row["response_messages"] == [
        {"role": "assistant", "content": "Your last order (#1234) shipped yesterday."}
    ]
    assert row["tags"] == {"userId": "u_5", "sessionId": "chat_88", "tenantId": "acme"}


def test_langfuse_generation() -> None:
    ex = example("10.6")
    row = run(ex)
    assert_expected(row, ex["expected"])
    assert row["convention"] == "langfuse"
    assert row["total_cost_usd"] == Decimal("0.0000104")
    assert row["price_status"] == "provided"
    assert row["labels"] == ["translation"]
    assert row["prompt_messages"] == [{"role": "user", "content": "Translate 'hello' to German"}]
    assert row["response_messages"] == [{"role": "assistant", "content": "Hallo"}]


def test_openlit_flat_text_events() -> None:
    ex = example("10.7")
    row = run(ex)
    assert_expected(row, ex["expected"])
    assert row["convention"] == "openlit"
    assert row["service_name"] == "support-api"
    assert row["response_messages"] == [
        {"role": "assistant", "content": "You can request a refund within 30 days."}
    ]
    assert row["finish_reasons"] == ["stop"]


def test_every_row_has_exactly_the_columns() -> None:
    n = GenAINormaliser()
    for key in ("10.1", "10.2", "10.3", "10.4", "10.5", "10.6", "10.7"):
        ex = example(key)
        row = _one(n.normalise([make_span(ex)], make_logs(ex)))
        assert tuple(row) == ROW_KEYS
        assert isinstance(row["inference_id"], str) and isinstance(row["start_time"], int)
        for col in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "total_tokens",
            "version",
        ):
            assert type(row[col]) is int, col
        for col in (
            "provider",
            "model",
            "operation",
            "error_type",
            "user_id",
            "session_id",
            "tenant_id",
            "environment",
            "service_name",
            "server_address",
            "agent_name",
            "price_status",
        ):
            assert type(row[col]) is str, col


# -- which spans are model calls ------------------------------------------------------------------


def test_vercel_parent_and_child_produce_one_row() -> None:
    child = example("10.5")
    parent_attrs = {
        k: v for k, v in child["attributes"].items() if not k.startswith(("gen_ai.", "ai.response.ms"))
    }
    parent_attrs.update(
        {
            "operation.name": "ai.streamText support-chat",
            "ai.operationId": "ai.streamText",
            "ai.prompt": '{"system":"You are helpful.","prompt":"Summarize my last order."}',
        }
    )
    parent = make_span(
        {"name": "ai.streamText", "scope": {"name": "ai"}, "attributes": parent_attrs}, seed="p"
    )
    child_span = make_span(child, seed="c", trace_id=parent.trace_id, parent_span_id=parent.span_id)
    rows = GenAINormaliser().normalise([parent, child_span], [])
    assert len(rows) == 1
    assert rows[0]["span_id"] == child_span.span_id
    assert rows[0]["input_tokens"] == 900


def test_ai_sdk_otel_new_shape() -> None:
    usage = {
        "gen_ai.usage.input_tokens": 500,
        "gen_ai.usage.output_tokens": 40,
        "gen_ai.usage.cache_read.input_tokens": 100,
        "gen_ai.usage.cache_creation.input_tokens": 50,
    }
    scope = "@ai-sdk/otel"
    agent = flat_span(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.agent.name": "support",
            "gen_ai.request.model": "claude-sonnet-4-5",
            **usage,
        },
        name="invoke_agent claude-sonnet-4-5",
        scope=scope,
    )
    step = flat_span({"gen_ai.operation.name": "agent_step", **usage}, name="agent_step", scope=scope)
    chat = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.response.model": "claude-sonnet-4-5-20250929",
            "gen_ai.agent.name": "support",
            "gen_ai.client.operation.duration": 1.2,
            "gen_ai.client.operation.time_to_first_chunk": 0.25,
            "gen_ai.client.operation.time_per_output_chunk": 0.01,
            "gen_ai.system_instructions": [{"type": "text", "content": "Be brief."}],
            "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}],
            "gen_ai.output.messages": [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "hello"}],
                    "finish_reason": "stop",
                }
            ],
            **usage,
        },
        name="chat claude-sonnet-4-5",
        scope=scope,
    )
    tool = flat_span(
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
        name="execute_tool",
        scope=scope,
    )
    emb = flat_span(
        {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 12,
        },
        name="embeddings text-embedding-3-small",
        scope=scope,
    )
    rows = GenAINormaliser().normalise([agent, step, chat, tool, emb], [])
    assert [r["operation"] for r in rows] == ["chat", "embeddings"]
    row = rows[0]
    assert row["span_id"] == chat.span_id
    assert row["convention"] == "vercel_ai"
    assert row["provider"] == "anthropic"
    assert row["ttft_ms"] == 250.0 and row["streaming"] is True
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (500, 100, 50)
    assert row["agent_name"] == "support"
    assert row["prompt_messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert row["finish_reasons"] == ["stop"]
    assert rows[1]["input_tokens"] == 12 and rows[1]["model"] == "text-embedding-3-small"


@pytest.mark.parametrize(
    "attrs",
    [
        {
            "openinference.span.kind": "CHAIN",
            "input.value": "hi",
            "output.value": "yo",
            "llm.token_count.prompt": 5,
        },
        {"openinference.span.kind": "AGENT", "llm.token_count.prompt": 5},
        {"traceloop.span.kind": "workflow", "traceloop.entity.input": "{}", "traceloop.workflow.name": "w"},
        {"traceloop.span.kind": "task", "traceloop.entity.output": "{}"},
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
        },
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "x"},
        {"langfuse.observation.type": "span", "langfuse.observation.input": "x"},
        {"langsmith.span.kind": "chain", "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3},
        {"http.request.method": "POST", "url.full": "https://api.openai.com/v1/chat/completions"},
        {"db.system.name": "postgresql", "db.query.text": "select 1"},
        {},
    ],
)
def test_non_model_spans_produce_no_row(attrs: dict[str, Any]) -> None:
    assert GenAINormaliser().normalise([flat_span(attrs)], []) == []


def test_openinference_embedding_and_openllmetry_embedding_rows() -> None:
    oi = flat_span(
        {
            "openinference.span.kind": "EMBEDDING",
            "embedding.model_name": "text-embedding-3-small",
            "llm.token_count.prompt": 8,
        }
    )
    ll = flat_span(
        {
            "llm.request.type": "embedding",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "text-embedding-ada-002",
            "gen_ai.usage.prompt_tokens": 4,
        }
    )
    rows = GenAINormaliser().normalise([oi, ll], [])
    assert [(r["operation"], r["model"], r["input_tokens"]) for r in rows] == [
        ("embeddings", "text-embedding-3-small", 8),
        ("embeddings", "text-embedding-ada-002", 4),
    ]


def test_pre_1_27_span_without_operation_name_is_a_model_call() -> None:
    row = _one(
        GenAINormaliser().normalise(
            [
                flat_span(
                    {
                        "gen_ai.system": "openai",
                        "gen_ai.request.model": "gpt-4",
                        "gen_ai.usage.prompt_tokens": 7,
                        "gen_ai.usage.completion_tokens": 2,
                    }
                )
            ],
            [],
        )
    )
    assert (row["operation"], row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
        "chat",
        7,
        2,
        9,
    )


# -- log joins ---------------------------------------------------------------------------------------


def _ex_10_2_parts() -> tuple[Span, list]:
    ex = example("10.2")
    return make_span(ex), make_logs(ex)


_JOKE_PROMPT = [
    {"role": "system", "content": "You are a helpful bot"},
    {"role": "user", "content": "Tell me a joke about OpenTelemetry"},
]
_JOKE_ANSWER = [
    {"role": "assistant", "content": "Why did the span cross the road? To get to the other service."}
]


def test_logs_with_span_same_call() -> None:
    span, logs = _ex_10_2_parts()
    n = GenAINormaliser()
    row = _one(n.normalise([span], logs))
    assert row["prompt_messages"] == _JOKE_PROMPT and row["response_messages"] == _JOKE_ANSWER
    assert n.pending_size == 0 and n.emitted_size == 0  # complete rows are not remembered


def test_logs_before_span() -> None:
    span, logs = _ex_10_2_parts()
    n = GenAINormaliser()
    assert n.normalise([], logs) == []
    assert n.pending_size == 1
    row = _one(n.normalise([span], []))
    assert row["prompt_messages"] == _JOKE_PROMPT and row["response_messages"] == _JOKE_ANSWER
    assert row["version"] == 1
    assert n.pending_size == 0


def test_logs_after_span_emit_updated_row() -> None:
    span, logs = _ex_10_2_parts()
    n = GenAINormaliser()
    first = _one(n.normalise([span], []))
    assert first["prompt_messages"] == [] and first["response_messages"] == [] and first["version"] == 1
    assert first["finish_reasons"] == ["stop"]
    second = _one(n.normalise([], logs[:2]))  # prompt logs first
    assert second["inference_id"] == first["inference_id"]
    assert second["version"] == 2
    assert second["prompt_messages"] == _JOKE_PROMPT and second["response_messages"] == []
    assert second["input_tokens"] == 52 and second["model"] == "claude-3-5-sonnet-20241022"
    third = _one(n.normalise([], logs[2:]))  # then the choice
    assert third["version"] == 3
    assert third["prompt_messages"] == _JOKE_PROMPT and third["response_messages"] == _JOKE_ANSWER
    assert n.pending_size == 0


def test_updated_row_is_safe_from_downstream_mutation() -> None:
    span, logs = _ex_10_2_parts()
    n = GenAINormaliser()
    first = _one(n.normalise([span], logs[:2]))  # prompt now, choice later
    first["prompt_messages"][0]["content"] = "[MASKED]"  # a later stage rewrites in place
    first["tags"]["x"] = "y"
    second = _one(n.normalise([], logs[2:]))
    assert second["prompt_messages"] == _JOKE_PROMPT
    assert second["tags"] == {}
    assert second["response_messages"] == _JOKE_ANSWER and second["version"] == 2


def test_logs_for_other_project_do_not_join() -> None:
    span, _logs = _ex_10_2_parts()
    other = [
        make_log(
            {
                "traceId": span.trace_id,
                "spanId": span.span_id,
                "eventName": "gen_ai.user.message",
                "body": {"content": "secret"},
            },
            project_id="other-project",
        )
    ]
    row = _one(GenAINormaliser().normalise([span], other))
    assert row["prompt_messages"] == []


def test_join_window_expires_pending_logs() -> None:
    now = [100.0]
    n = GenAINormaliser(join_window_s=30.0, clock=lambda: now[0])
    span, logs = _ex_10_2_parts()
    n.normalise([], logs)
    assert n.pending_size == 1
    now[0] += 31.0
    row = _one(n.normalise([span], []))
    assert row["prompt_messages"] == []
    assert n.pending_size == 0


def test_join_window_expires_remembered_rows() -> None:
    now = [0.0]
    n = GenAINormaliser(join_window_s=5.0, clock=lambda: now[0])
    span, logs = _ex_10_2_parts()
    n.normalise([span], [])
    assert n.emitted_size == 1
    now[0] = 6.0
    assert n.normalise([], logs) == []  # too late for an update: held as pending until it expires too
    assert n.emitted_size == 0 and n.pending_size == 1
    now[0] = 12.0
    n.normalise([], [])
    assert n.pending_size == 0


def _user_log(i: int) -> Any:
    return make_log(
        {
            "traceId": f"{i:032x}",
            "spanId": f"{i:016x}",
            "eventName": "gen_ai.user.message",
            "body": {"content": f"question {i}"},
        }
    )


def test_pending_cache_is_bounded_and_evicts_oldest() -> None:
    n = GenAINormaliser(max_pending=100)
    for start in range(0, 1000, 250):
        n.normalise([], [_user_log(i) for i in range(start, start + 250)])
        assert n.pending_size <= 100
    assert n.pending_size == 100

    def span_for(i: int) -> Span:
        return make_span(
            {
                "traceId": f"{i:032x}",
                "spanId": f"{i:016x}",
                "attributes": {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "m",
                },
            }
        )

    oldest, newest = _one(n.normalise([span_for(0)], [])), _one(n.normalise([span_for(999)], []))
    assert oldest["prompt_messages"] == []
    assert newest["prompt_messages"] == [{"role": "user", "content": "question 999"}]


def test_remembered_rows_are_bounded() -> None:
    n = GenAINormaliser(max_pending=50)
    spans = [
        make_span(
            {
                "traceId": f"{i:032x}",
                "spanId": f"{i:016x}",
                "attributes": {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "m",
                },
            }
        )
        for i in range(500)
    ]
    rows = n.normalise(spans, [])
    assert len(rows) == 500
    assert n.emitted_size == 50
    assert n.normalise([], [_user_log(0)]) == []  # evicted: no update
    upd = _one(n.normalise([], [_user_log(499)]))
    assert upd["version"] == 2 and upd["prompt_messages"] == [{"role": "user", "content": "question 499"}]


def test_operation_details_log_event_1_37() -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10,
        }
    )
    log = make_log(
        {
            "traceId": span.trace_id,
            "spanId": span.span_id,
            "eventName": "gen_ai.client.inference.operation.details",
            "attributes": {
                "gen_ai.operation.name": "chat",
                "gen_ai.system_instructions": [{"type": "text", "content": "Be terse."}],
                "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "2+2?"}]}],
                "gen_ai.output.messages": [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "4"}],
                        "finish_reason": "stop",
                    }
                ],
            },
        }
    )
    row = _one(GenAINormaliser().normalise([span], [log]))
    assert row["prompt_messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "2+2?"},
    ]
    assert row["response_messages"] == [{"role": "assistant", "content": "4"}]
    assert row["finish_reasons"] == ["stop"]


def test_operation_details_as_span_event() -> None:
    span = flat_span(
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
        events=[
            {
                "name": "gen_ai.client.inference.operation.details",
                "attributes": {
                    "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"ping"}]}]',
                    "gen_ai.output.messages": '[{"role":"assistant",'
                    '"parts":[{"type":"text","content":"pong"}],'
                    '"finish_reason":"length"}]',
                },
            }
        ],
    )
    n = GenAINormaliser()
    row = _one(n.normalise([span], []))
    assert row["prompt_messages"] == [{"role": "user", "content": "ping"}]
    assert row["response_messages"] == [{"role": "assistant", "content": "pong"}]
    assert row["finish_reasons"] == ["length"]
    assert n.emitted_size == 0


def test_legacy_message_events_on_span_with_tool_calls() -> None:
    span = flat_span(
        {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o"},
        events=[
            {"name": "gen_ai.user.message", "attributes": {"content": "weather in Paris?"}},
            {
                "name": "gen_ai.assistant.message",
                "attributes": {
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                        }
                    ]
                },
            },
            {"name": "gen_ai.tool.message", "attributes": {"content": "18C", "id": "c1"}},
            {
                "name": "gen_ai.choice",
                "attributes": {"index": 0, "finish_reason": "stop", "message": {"content": "It is 18C."}},
            },
        ],
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["prompt_messages"] == [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'}],
        },
        {"role": "tool", "content": "18C", "tool_call_id": "c1"},
    ]
    assert row["response_messages"] == [{"role": "assistant", "content": "It is 18C."}]
    assert row["finish_reasons"] == ["stop"]


def test_choice_events_ordered_by_index_and_empty_capture() -> None:
    span = flat_span(
        {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "m"}
    )
    ids = {"traceId": span.trace_id, "spanId": span.span_id, "eventName": "gen_ai.choice"}
    logs = [
        make_log({**ids, "body": {"index": 1, "finish_reason": "length", "message": {"content": "B"}}}),
        make_log({**ids, "body": {"index": 0, "finish_reason": "stop", "message": {}}}),
    ]
    row = _one(GenAINormaliser().normalise([span], logs))
    assert row["response_messages"] == [
        {"role": "assistant", "content": None},
        {"role": "assistant", "content": "B"},
    ]
    assert row["finish_reasons"] == ["stop", "length"]


# -- message shapes -----------------------------------------------------------------------------------


def test_otel_parts_with_tool_calls_reasoning_and_roles() -> None:
    inputs = [
        {"role": "developer", "parts": [{"type": "text", "content": "Use tools."}]},
        {
            "role": "Human",
            "parts": [
                {"type": "text", "content": "Weather in "},
                {"type": "text", "content": "Oslo?"},
                {"type": "uri", "modality": "image", "uri": "https://x/img.png"},
            ],
        },
        {
            "role": "AI",
            "parts": [
                {"type": "reasoning", "content": "Need the weather tool."},
                {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}},
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"temp": -3}}]},
    ]
    outputs = [
        {
            "role": "assistant",
            "finish_reason": "tool_calls",
            "parts": [
                {"type": "text", "content": "Checking forecast."},
                {
                    "type": "tool_call",
                    "id": "call_2",
                    "name": "get_forecast",
                    "arguments": '{"city": "Oslo"}',
                },
            ],
        }
    ]
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-5",
            "gen_ai.system_instructions": '[{"type":"text","content":"You are a weather bot."}]',
            "gen_ai.input.messages": inputs,
            "gen_ai.output.messages": outputs,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.usage.reasoning.output_tokens": 12,
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["prompt_messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in \nOslo?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning": "Need the weather tool.",
            "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'}],
        },
        {"role": "tool", "content": '{"temp":-3}', "tool_call_id": "call_1"},
    ]
    assert row["response_messages"] == [
        {
            "role": "assistant",
            "content": "Checking forecast.",
            "tool_calls": [{"id": "call_2", "name": "get_forecast", "arguments": '{"city": "Oslo"}'}],
        }
    ]
    assert row["finish_reasons"] == ["tool_call"]  # from the output message when the span has none
    assert (row["output_tokens"], row["reasoning_tokens"]) == (30, 12)


def test_vercel_prompt_with_tool_call_and_result_parts() -> None:
    msgs = (
        '[{"role":"user","content":[{"type":"text","text":"order 7?"}]},'
        '{"role":"assistant","content":[{"type":"tool-call","toolCallId":"t1","toolName":"order",'
        '"input":{"id":7}}]},'
        '{"role":"tool","content":[{"type":"tool-result","toolCallId":"t1","toolName":"order",'
        '"output":{"type":"json","value":{"status":"shipped"}}}]}]'
    )
    span = flat_span(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.provider": "openai.responses",
            "ai.model.id": "gpt-4.1",
            "ai.prompt.messages": msgs,
            "ai.response.toolCalls": '[{"toolCallType":"function","toolCallId":"t2",'
            '"toolName":"notify","input":"{\\"id\\":7}"}]',
            "ai.response.finishReason": "tool-calls",
            "ai.usage.promptTokens": "31",
            "ai.usage.completionTokens": 9.0,
        },
        scope="ai",
        name="ai.generateText.doGenerate",
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["provider"] == "openai" and row["model"] == "gpt-4.1" and row["streaming"] is False
    assert row["prompt_messages"] == [
        {"role": "user", "content": "order 7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "t1", "name": "order", "arguments": '{"id":7}'}],
        },
        {"role": "tool", "content": '{"status":"shipped"}', "tool_call_id": "t1"},
    ]
    assert row["response_messages"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "t2", "name": "notify", "arguments": '{"id":7}'}],
        }
    ]
    assert row["finish_reasons"] == ["tool_call"]
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (31, 9, 40)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # JSON: OTel v1.26 OpenAI messages (OpenLLMetry's indexed keys are tested separately)
        ('[{"role": "user", "content": "hi"}]', [{"role": "user", "content": "hi"}]),
        # LangSmith: the run inputs as JSON, LangChain-serialised messages in batches
        (
            '{"messages": [[{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages",'
            ' "SystemMessage"], "kwargs": {"content": "sys"}}, {"lc": 1, "type": "constructor", "id": '
            '["langchain", "schema", "messages", "HumanMessage"], "kwargs": {"content": "q", "type": '
            '"human"}}]]}',
            [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}],
        ),
        # OpenLIT flat text
        (
            "system: be nice\nuser: hello\nthere",
            [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello\nthere"}],
        ),
        ("just a question", [{"role": "user", "content": "just a question"}]),
        # structured value instead of a JSON string
        ([{"role": "human", "content": "structured"}], [{"role": "user", "content": "structured"}]),
    ],
)
def test_gen_ai_prompt_collision_dispatch_on_shape(value: Any, expected: list[dict[str, Any]]) -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "m",
            "gen_ai.prompt": value,
        }
    )
    assert _one(GenAINormaliser().normalise([span], []))["prompt_messages"] == expected


def test_indexed_gen_ai_prompt_wins_over_flat_value() -> None:
    span = flat_span(
        {
            "llm.request.type": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "m",
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "indexed",
            "gen_ai.prompt.prompt_filter_results": "[]",
        }
    )
    assert _one(GenAINormaliser().normalise([span], []))["prompt_messages"] == [
        {"role": "user", "content": "indexed"}
    ]


# -- OpenLLMetry generations, LangSmith ---------------------------------------------------------------


def test_openllmetry_current_shape() -> None:
    """>=0.55: OTel parts JSON, gen_ai.provider.name, OTel cache names, gen_ai.usage.total_tokens."""
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-opus-4",
            "gen_ai.response.model": "claude-opus-4-20250514",
            "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"hey"}]}]',
            "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"yo"},'
            '{"type":"refusal","content":"(none)"}],"finish_reason":"end_turn"}]',
            "gen_ai.usage.input_tokens": 1500,
            "gen_ai.usage.output_tokens": 200,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 300,
            "gen_ai.usage.total_tokens": 1700,
            "gen_ai.usage.reasoning_tokens": 50,
            "gen_ai.is_streaming": True,
            "gen_ai.conversation.id": "conv-9",
            "traceloop.association.properties.customer_id": "cust-1",
            "traceloop.association.properties.plan": "pro",
        },
        name="anthropic.chat",
        scope="opentelemetry.instrumentation.anthropic",
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["convention"] == "openllmetry"
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (1500, 200, 1700)
    assert (row["cache_read_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == (1000, 300, 50)
    assert row["streaming"] is True and row["ttft_ms"] is None
    assert row["session_id"] == "conv-9" and row["tenant_id"] == "cust-1"
    assert row["tags"] == {"customer_id": "cust-1", "plan": "pro"}
    assert row["response_messages"] == [{"role": "assistant", "content": "yo\n(none)"}]
    assert row["finish_reasons"] == ["stop"]


def test_openllmetry_mid_generation_and_ttft_from_chunk_events() -> None:
    """0.48-0.54: indexed content with OTel token names; TTFT from the first chunk event."""
    start = 1_755_684_000_000_000_000
    span = flat_span(
        {
            "llm.request.type": "chat",
            "gen_ai.system": "az.ai.openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 20,
            "gen_ai.usage.output_tokens": 5,
            "llm.usage.total_tokens": 25,
            "llm.usage.reasoning_tokens": 2,
            "llm.is_streaming": True,
            "gen_ai.prompt.0.content": '[{"type": "text", "text": "multi"}, {"type": "image_url"}]',
            "gen_ai.completion.0.content": "done",
            "gen_ai.completion.0.finish_reason": "stop",
        },
        events=[
            {"name": "gen_ai.content.completion.chunk", "timeUnixNano": start + 150_000_000},
            {"name": "gen_ai.content.completion.chunk", "timeUnixNano": start + 90_000_000},
        ],
        start=start,
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["provider"] == "azure.ai.openai"
    assert row["ttft_ms"] == 90.0
    assert row["reasoning_tokens"] == 2 and row["total_tokens"] == 25
    assert row["prompt_messages"] == [{"role": "user", "content": "multi"}]
    assert row["response_messages"] == [{"role": "assistant", "content": "done"}]


def test_langsmith_llm_span() -> None:
    span = flat_span(
        {
            "langsmith.span.kind": "llm",
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 300,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.total_tokens": 320,
            "gen_ai.usage.input_token_details": "{'cache_read': 256, 'audio': 0}",
            "gen_ai.usage.output_token_details": "{'reasoning': 8}",
            "gen_ai.response.finish_reasons": "stop,length",
            "gen_ai.prompt": '{"messages": [{"role": "user", "content": "hello"}]}',
            "gen_ai.completion": '{"generations": [{"text": "hi", "message": {"role": "assistant", '
            '"content": "hi"}}]}',
            "langsmith.span.tags": "prod,beta",
            "langsmith.metadata.thread_id": "th_1",
            "langsmith.metadata.tenant_id": "acme",
            "langsmith.trace.session_id": "project-uuid",  # a LangSmith project, not a conversation
            "langsmith.request.streaming": "false",
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["convention"] == "langsmith"
    assert (row["cache_read_tokens"], row["reasoning_tokens"]) == (256, 8)
    assert row["finish_reasons"] == ["stop", "length"]
    assert row["prompt_messages"] == [{"role": "user", "content": "hello"}]
    assert row["response_messages"] == [{"role": "assistant", "content": "hi"}]
    assert row["labels"] == ["prod", "beta"]
    assert row["session_id"] == "th_1" and row["tenant_id"] == "acme"
    assert row["streaming"] is False


def test_each_label_is_kept_once_in_the_order_first_seen() -> None:
    """Within one attribute and across them (the hot path is compiled: mypyc builds a generator
    given to `list.extend` as a whole list first, which kept repeats)."""
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "tag.tags": ["a", "a", "b"],
            "langsmith.span.tags": "b,c,c,a",
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["labels"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # Cache writes by lifetime (Anthropic's 5-minute and 1-hour buckets): writes, not plain input.
        (
            '{"input": 100, "input_cache_creation_5m": 300, "input_cache_creation_1h": 200, "output": 40}',
            (600, 40, 0, 500, 0),
        ),
        # OpenAI Responses shape: input and output inclusive, details apart (was read as Anthropic's).
        (
            '{"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 85, '
            '"output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 1285}',
            (1200, 85, 1024, 0, 40),
        ),
    ],
)
def test_langfuse_usage_shapes(usage: str, expected: tuple[int, ...]) -> None:
    span = flat_span(
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "gpt-4o-mini",
            "langfuse.observation.usage_details": usage,
        },
        scope="langfuse-sdk",
    )
    row = _one(GenAINormaliser().normalise([span], []))
    got = (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"])
    assert (*got, row["reasoning_tokens"]) == expected


def test_langfuse_split_buckets_error_level_and_quoted_metadata() -> None:
    span = flat_span(
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "claude-3-7-sonnet",
            "langfuse.observation.usage_details": '{"input": 100, "input_cache_read": 900, '
            '"input_cache_creation": '
            '50, "output": 40, "output_reasoning_tokens": 10}',
            "langfuse.observation.cost_details": '{"input": 0.003, "output": 0.0015}',
            "langfuse.observation.level": "ERROR",
            "langfuse.observation.status_message": "rate limited",
            "langfuse.trace.metadata.tenant_id": '"acme"',
            "langfuse.observation.metadata.region": '"eu"',
            "langfuse.trace.tags": '["a", "b"]',
            "langfuse.user.id": "lf-user",
            "user.id": "other-user",
            "deployment.environment.name": "staging",
        },
        scope="langfuse-sdk",
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["input_tokens"] == 1050 and row["output_tokens"] == 50 and row["total_tokens"] == 1100
    assert (row["cache_read_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == (900, 50, 10)
    assert row["input_cost_usd"] == Decimal("0.003") and row["output_cost_usd"] == Decimal("0.0015")
    assert row["total_cost_usd"] == Decimal("0.0045") and row["price_status"] == "provided"
    assert (
        row["success"] is False and row["error_type"] == "_OTHER" and row["status_message"] == "rate limited"
    )
    assert row["tenant_id"] == "acme" and row["tags"] == {"tenant_id": "acme", "region": "eu"}
    assert row["labels"] == ["a", "b"] and row["user_id"] == "lf-user" and row["environment"] == "staging"


@pytest.mark.parametrize(
    ("key", "scope"),
    [("user.id", ""), ("enduser.id", ""), ("gen_ai.request.user", ""), ("langfuse.user.id", "langfuse-sdk")],
)
def test_an_id_sent_with_quotes_outside_langfuse_metadata_keeps_them(key: str, scope: str) -> None:
    """Only Langfuse's metadata values are JSON-encoded by their SDK: a user id that is `"quoted"`
    anywhere else was stored as `quoted`, and the dashboard's filter on the id as sent found nothing."""
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai"}
    row = _one(GenAINormaliser().normalise([flat_span({**chat, key: '"quoted"'}, scope=scope)], []))
    assert row["user_id"] == '"quoted"'
    metadata = {**chat, "langfuse.trace.metadata.langfuse_user_id": '"quoted"'}
    assert (
        _one(GenAINormaliser().normalise([flat_span(metadata, scope="langfuse-sdk")], []))["user_id"]
        == "quoted"
    )


def test_langfuse_completion_start_with_nanoseconds_and_offset() -> None:
    start = 1755684300000000000  # 2025-08-20T10:05:00Z
    span = flat_span(
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.completion_start_time": "2025-08-20T12:05:00.123456789+02:00",
        },
        start=start,
    )
    assert _one(GenAINormaliser().normalise([span], []))["ttft_ms"] == 123.457


# -- status, lenient values, providers -------------------------------------------------------------------


def test_error_span_with_error_type() -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "error.type": "openai.RateLimitError",
        },
        status="STATUS_CODE_ERROR",
        status_message="429 Too Many Requests",
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["success"] is False
    assert row["error_type"] == "openai.RateLimitError"
    assert row["status_message"] == "429 Too Many Requests"


def test_error_status_without_error_type_uses_exception_event() -> None:
    span = flat_span(
        {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o"},
        status="STATUS_CODE_ERROR",
        events=[
            {
                "name": "exception",
                "attributes": {"exception.type": "TimeoutError", "exception.message": "read timed out"},
            }
        ],
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert (row["success"], row["error_type"], row["status_message"]) == (
        False,
        "TimeoutError",
        "read timed out",
    )


def test_error_type_alone_marks_failure() -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "m",
            "error.type": "timeout",
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["success"] is False and row["error_type"] == "timeout"


def test_lenient_values() -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": "1200",  # OTLP/JSON int64 as a string
            "gen_ai.usage.output_tokens": 85.0,  # JS SDK double
            "gen_ai.usage.cache_read.input_tokens": '{"intValue": "1024"}',  # leaked AnyValue JSON
            "gen_ai.usage.reasoning.output_tokens": {"intValue": "7"},
            "gen_ai.request.max_tokens": "256",
            "gen_ai.request.temperature": "0.5",
            "gen_ai.request.stream": "true",
            "gen_ai.response.finish_reasons": "stop, MAX_TOKENS",
            "gen_ai.response.time_to_first_chunk": "0.25",
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (1200, 85, 1024)
    assert row["reasoning_tokens"] == 7 and row["total_tokens"] == 1285
    assert row["max_tokens"] == 256 and row["temperature"] == 0.5
    assert row["streaming"] is True and row["ttft_ms"] == 250.0
    assert row["finish_reasons"] == ["stop", "length"]


def test_malformed_values_are_absent_not_fatal() -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": ["not", "a", "string"],
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": "lots",
            "gen_ai.usage.output_tokens": -5,
            "gen_ai.request.temperature": float("nan"),
            "gen_ai.request.max_tokens": True,
            "gen_ai.input.messages": '[{"role": "user", "parts": [',
            "gen_ai.output.messages": 42,
            "gen_ai.response.finish_reasons": {"odd": 1},
            "gen_ai.usage.cost": "free",
            "gen_ai.response.time_to_first_chunk": "soon",
            "server.address": b"api.openai.com",
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["provider"] == "openai"  # from server.address
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (0, 0, 0)
    assert row["temperature"] is None and row["max_tokens"] is None and row["ttft_ms"] is None
    assert row["total_cost_usd"] is None and row["price_status"] == ""
    assert row["prompt_messages"] == [] and row["finish_reasons"] == []
    assert row["response_messages"] == []


def test_one_bad_span_does_not_break_the_others() -> None:
    good = make_span(example("10.1"))
    bad = make_span(example("10.1"), seed="bad")
    bad.attributes = None  # type: ignore[assignment]  # a decoder bug upstream
    also_good = make_span(example("10.7"))
    n = GenAINormaliser()
    rows = n.normalise([good, bad, also_good], [make_log({"traceId": "x", "spanId": "y", "eventName": None})])
    assert [r["span_id"] for r in rows] == [good.span_id, also_good.span_id]
    assert n.failed == 1


def test_openlit_zero_ttft_when_not_streaming_is_absent() -> None:
    span = flat_span(
        {
            "telemetry.sdk.name": "openlit",
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.request.is_stream": False,
            "gen_ai.server.time_to_first_token": 0,
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["ttft_ms"] is None and row["streaming"] is False


def test_vercel_v5_anthropic_cache_exclusion_heuristic() -> None:
    span = flat_span(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.provider": "anthropic.messages",
            "ai.model.id": "claude-sonnet-4",
            "ai.usage.inputTokens": 12,
            "ai.usage.outputTokens": 30,
            "ai.usage.cachedInputTokens": 2000,
            "ai.response.providerMetadata": '{"anthropic":{"cacheCreationInputTokens":500}}',
        },
        scope="ai",
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (2512, 2000, 500)
    assert row["total_tokens"] == 2542
    assert row["tags"]["inferline.input_tokens_adjusted"] == "vercel_v5_anthropic_cache"


def _priced(row: dict[str, Any]) -> dict[str, Any]:
    Pricer().process(Batch(inferences=[row]))
    return row


def test_vercel_v5_cache_writes_alone_are_added_to_a_cache_less_input() -> None:
    """A call that created a cache and read none (AI SDK v5, Anthropic: `inputTokens` without
    cache): an input below its own cache writes cannot include them. It was left unpriced."""
    span = flat_span(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.provider": "anthropic.messages",
            "ai.model.id": "claude-sonnet-4-5",
            "ai.usage.inputTokens": 200,
            "ai.usage.outputTokens": 100,
            "ai.usage.totalTokens": 300,
            "ai.response.providerMetadata": '{"anthropic":{"cacheCreationInputTokens":5000}}',
        },
        scope="ai",
    )
    row = _priced(_one(GenAINormaliser().normalise([span], [])))
    assert (row["input_tokens"], row["cache_write_tokens"], row["total_tokens"]) == (5200, 5000, 5300)
    assert row["tags"]["inferline.input_tokens_adjusted"] == "vercel_v5_anthropic_cache"
    # 200 × $3/M + 5,000 cache writes × $3.75/M + 100 × $15/M
    assert row["price_status"] == "priced" and row["total_cost_usd"] == Decimal("0.02085")


def test_vercel_v5_bedrock_cache_reads_are_added_to_a_cache_less_input() -> None:
    span = flat_span(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.provider": "amazon-bedrock",
            "ai.model.id": "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "ai.usage.inputTokens": 200,
            "ai.usage.outputTokens": 100,
            "ai.usage.cachedInputTokens": 3000,
        },
        scope="ai",
    )
    row = _priced(_one(GenAINormaliser().normalise([span], [])))
    assert (row["input_tokens"], row["cache_read_tokens"]) == (3200, 3000)
    assert row["price_status"] == "priced" and row["total_cost_usd"] is not None


def test_vercel_v5_google_reasoning_outside_output_is_billed_as_output() -> None:
    """AI SDK v5's Google provider reported `candidatesTokenCount` as output and thinking tokens
    apart; the total (input + output + reasoning) shows it. Google bills thinking as output."""
    span = flat_span(
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.provider": "google.generative-ai",
            "ai.model.id": "gemini-2.5-pro",
            "ai.usage.inputTokens": 1000,
            "ai.usage.outputTokens": 100,
            "ai.usage.reasoningTokens": 900,
            "ai.usage.totalTokens": 2000,
        },
        scope="ai",
    )
    row = _priced(_one(GenAINormaliser().normalise([span], [])))
    assert (row["output_tokens"], row["reasoning_tokens"], row["total_tokens"]) == (1000, 900, 2000)
    assert row["tags"]["inferline.output_tokens_adjusted"] == "reasoning_outside_output"
    # 1,000 × $1.25/M + 1,000 × $10/M (was 100 output tokens: $0.00225)
    assert row["total_cost_usd"] == Decimal("0.01125")


def test_reasoning_inside_output_is_left_alone() -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "o3-mini",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 2000,
            "gen_ai.usage.reasoning.output_tokens": 1500,
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert (row["output_tokens"], row["total_tokens"]) == (2000, 3000)
    assert "inferline.output_tokens_adjusted" not in row["tags"]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # Input without its cache, output missing, total with both: the output is what is left.
        (
            {
                "gen_ai.usage.input_tokens": 10,
                "llm.usage.total_tokens": 1060,
                "gen_ai.usage.cache_read.input_tokens": 1000,
            },
            (1010, 50, 1060),
        ),
        # Reads in the input (OpenAI-style), writes not: only the writes are added.
        (
            {
                "gen_ai.usage.input_tokens": 600,
                "gen_ai.usage.output_tokens": 200,
                "llm.usage.total_tokens": 800,
                "gen_ai.usage.cache_read.input_tokens": 500,
                "gen_ai.usage.cache_creation.input_tokens": 2000,
            },
            (2600, 200, 2800),
        ),
    ],
)
def test_cache_outside_input_is_added_once(usage: dict[str, int], expected: tuple[int, int, int]) -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            **usage,
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == expected


def test_output_missing_is_the_total_less_the_input() -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1000,
            "llm.usage.total_tokens": 1500,
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (1000, 500, 1500)


def test_vercel_legacy_ms_to_first_chunk_event_only() -> None:
    start = 1_755_684_200_000_000_000
    span = flat_span(
        {
            "ai.operationId": "ai.streamText.doStream",
            "ai.model.provider": "google.vertex.chat",
            "ai.model.id": "gemini-2.5-pro",
            "ai.usage.promptTokens": 10,
        },
        events=[{"name": "ai.stream.firstChunk", "timeUnixNano": start + 333_000_000}],
        scope="ai",
        start=start,
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["provider"] == "gcp.vertex_ai" and row["ttft_ms"] == 333.0 and row["streaming"] is True


def test_openinference_io_value_fallback_and_costs() -> None:
    span = flat_span(
        {
            "openinference.span.kind": "LLM",
            "llm.provider": "aws",
            "llm.system": "anthropic",
            "llm.model_name": "claude-3-haiku",
            "input.value": '{"messages": [{"role": "user", "content": "raw"}]}',
            "output.value": "plain answer",
            "llm.cost.prompt": 0.001,
            "llm.cost.completion": "0.002",
        }
    )
    row = _one(GenAINormaliser().normalise([span], []))
    assert row["provider"] == "aws.bedrock"
    assert row["prompt_messages"] == [{"role": "user", "content": "raw"}]
    assert row["response_messages"] == [{"role": "assistant", "content": "plain answer"}]
    assert row["total_cost_usd"] == Decimal("0.003") and row["price_status"] == "provided"


def test_tenant_keys_are_configurable() -> None:
    span = flat_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "m",
            "tenant.id": "default-tenant",
            "org.id": "org-7",
        }
    )
    assert _one(GenAINormaliser(tenant_keys=("org.id",)).normalise([span], []))["tenant_id"] == "org-7"
    assert _one(GenAINormaliser().normalise([span], []))["tenant_id"] == "default-tenant"


def test_inference_id_is_deterministic_uuid5() -> None:
    span = make_span(example("10.1"))
    a = _one(GenAINormaliser().normalise([span], []))
    b = _one(GenAINormaliser().normalise([make_span(example("10.1"))], []))
    want = uuid.uuid5(INFERENCE_NAMESPACE, f"{PROJECT_ID}/{span.trace_id}/{span.span_id}")
    assert a["inference_id"] == b["inference_id"] == str(want)


@pytest.mark.parametrize(
    ("raw", "api_qualified", "want"),
    [
        ("anthropic.messages", True, "anthropic"),
        ("openai.chat", True, "openai"),
        ("azure-openai.chat", True, "azure.ai.openai"),
        ("google.generative-ai", True, "gcp.gemini"),
        ("amazon-bedrock", True, "aws.bedrock"),
        ("mistral.chat", True, "mistral_ai"),
        ("xai.chat", True, "x_ai"),
        ("az.ai.openai", False, "azure.ai.openai"),
        ("az.ai.inference", False, "azure.ai.inference"),
        ("vertex_ai", False, "gcp.vertex_ai"),
        ("gemini", False, "gcp.gemini"),
        ("mistralai", False, "mistral_ai"),
        ("xai", False, "x_ai"),
        ("aws.bedrock", False, "aws.bedrock"),
        ("ibm.watsonx.ai", False, "ibm.watsonx.ai"),
        ("Groq", False, "groq"),
    ],
)
def test_provider_normalisation(raw: str, api_qualified: bool, want: str) -> None:
    assert normalise_provider(raw, api_qualified=api_qualified) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (["end_turn"], ["stop"]),
        (["tool_use"], ["tool_call"]),
        ("tool_calls", ["tool_call"]),
        (["max_tokens", "MAX_TOKENS"], ["length", "length"]),
        ("content-filter,SAFETY", ["content_filter", "content_filter"]),
        ('["STOP", "function_call"]', ["stop", "tool_call"]),
        (["Recitation"], ["recitation"]),
        ("", []),
    ],
)
def test_finish_reason_normalisation(raw: Any, want: list[str]) -> None:
    assert finish_reasons(raw) == want


@pytest.mark.parametrize(
    "start", ['"9999-12-31T23:59:59Z"', '"2025-08-20T10:05:09.000000Z"'], ids=["year-9999", "after-end"]
)
def test_a_first_token_after_the_call_ended_is_no_ttft(start: str) -> None:
    """A Langfuse completion start in year 9999 gave a TTFT of 2.5e14 ms, into every latency
    percentile: a first token after the call's end is a clock or field gone wrong."""
    ex = example("10.6")
    ex["attributes"]["langfuse.observation.completion_start_time"] = start
    row = run(ex)
    assert row["ttft_ms"] is None
    assert row["latency_ms"] > 0 and row["input_tokens"] == ex["expected"]["input_tokens"]
