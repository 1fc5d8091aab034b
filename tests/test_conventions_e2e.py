"""One test per GenAI convention family, end to end: the research note's example payloads sent as
OTLP/JSON to a running service, read back from ClickHouse through the SQL endpoint, with the
expected values and exact costs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect
import httpx
import orjson
import pytest

from tests.conftest import Service, make_service
from tests.genai_examples import example
from tests.otlp_helpers import (
    GENAI_ATTRIBUTES,
    GENAI_COST,
    json_span,
    logs_json,
    new_span_id,
    new_trace_id,
    traces_json,
)

pytestmark = pytest.mark.e2e

# Hand-computed from the providers' list prices (see each comment), or the cost the span carried.
COSTS = {
    "10.1": ("0.0001542", "priced"),  # gpt-4o-mini: 176×0.15 + 1024×0.075 + 85×0.60 per M
    "10.2": ("0.000861", "priced"),  # claude-3.5-sonnet: 52×3 + 47×15 per M
    "10.3": ("0.00089", "priced"),  # azure gpt-4o: 64×2.5 + 256×1.25 + 41×10 per M
    "10.4": ("0.000605", "priced"),  # gpt-4o: 82×2.5 + 128×1.25 + 24×10 per M
    "10.5": ("0.00288", "priced"),  # claude-sonnet-4.5: 300×3 + 600×0.3 + 120×15 per M
    "10.6": ("0.0000104", "priced"),  # gpt-4.1-mini: 14×0.40 + 3×1.60 per M
    "10.7": ("0.00002475", "priced"),  # gpt-4o-mini: 45×0.15 + 30×0.60 per M
}
# The cost the span itself carried, kept beside the table's (`price_status` says which is used).
PROVIDED = {"10.6": "0.0000104", "10.7": "0.00002475"}  # Langfuse cost_details, OpenLIT gen_ai.usage.cost
FAMILIES = {
    "10.1": "otel_genai",
    "10.2": "otel_genai",
    "10.3": "openinference",
    "10.4": "openllmetry",
    "10.5": "vercel_ai",
    "10.6": "langfuse",
    "10.7": "openlit",
}
# `expected` keys of the research note → llm_inferences columns
COLUMN = {"cost_usd": "total_cost_usd", "completion_messages": "response_messages", "tags": "labels"}


def send(service: Service, path: str, body: bytes) -> None:
    r = httpx.post(
        f"{service.http_url}{path}",
        content=body,
        headers={"x-api-key": service.key, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert "partialSuccess" not in r.json()
    service.settle()  # acknowledged once in the local log; queryable a flush later


def shifted(ex: dict[str, Any], start_ns: int) -> tuple[dict[str, Any], int]:
    """The example moved to now (rows older than the retention TTL would be dropped)."""
    span = ex.get("span", ex)
    old_start = span.get("startTimeUnixNano", 1_755_684_000_000_000_000)
    delta = start_ns - old_start
    attributes = dict(span["attributes"])
    if "langfuse.observation.completion_start_time" in attributes:
        raw = orjson.loads(attributes["langfuse.observation.completion_start_time"])  # double-encoded
        at = datetime.fromisoformat(raw.replace("Z", "+00:00")) + timedelta(microseconds=delta // 1000)
        iso = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        attributes["langfuse.observation.completion_start_time"] = orjson.dumps(iso).decode()
    events = [{**e, "timeUnixNano": e.get("timeUnixNano", old_start) + delta} for e in span.get("events", [])]
    end = span.get("endTimeUnixNano", old_start + 1_000_000_000) + delta
    return {"attributes": attributes, "events": events, "name": span["name"], "end_ns": end}, delta


@pytest.mark.parametrize("key", list(FAMILIES))
def test_convention_family_end_to_end(service: Service, key: str) -> None:
    ex = example(key)
    start_ns = time.time_ns() // 1_000_000 * 1_000_000 - 10_000_000_000  # whole ms: exact shifted times
    moved, _ = shifted(ex, start_ns)
    trace_id, span_id = new_trace_id(), new_span_id()
    kind = {"CLIENT": 3, "INTERNAL": 1, "SERVER": 2}.get(ex.get("span", ex).get("kind", "CLIENT"), 3)
    span = json_span(
        moved["attributes"],
        trace_id=trace_id,
        span_id=span_id,
        name=moved["name"],
        kind=kind,
        start_ns=start_ns,
        end_ns=moved["end_ns"],
        events=moved["events"],
    )
    resource = ex.get("resource") or {"service.name": "conventions"}
    scope = (ex.get("scope") or {}).get("name", "test")
    if "logs" in ex:
        logs = [{**log, "traceId": trace_id, "spanId": span_id} for log in ex["logs"]]
        send(service, "/v1/logs", logs_json(logs, resource))
    send(service, "/v1/traces", traces_json([span], resource, scope=scope))

    client = clickhouse_connect.get_client(host="127.0.0.1", port=service.api_port, password=service.key)
    result = client.query(
        "SELECT * FROM llm_inferences FINAL WHERE trace_id = {t:String}", parameters={"t": trace_id}
    )
    assert len(result.result_rows) == 1
    row = dict(zip(result.column_names, result.result_rows[0], strict=True))

    cost, status = COSTS[key]
    assert row["total_cost_usd"] == Decimal(cost)
    assert row["price_status"] == status
    provided = PROVIDED.get(key)
    assert row["provided_cost_usd"] == (Decimal(provided) if provided else None)
    assert row["convention"] == FAMILIES[key]
    for field, want in ex["expected"].items():
        column = COLUMN.get(field, field)
        got: Any = row.get(column)
        if field == "status":
            assert row["success"] is (want == "ok")
        elif field == "cost_usd":  # the research note's cost is the one the span carried
            assert row["provided_cost_usd"] == Decimal(str(want))
        elif field in ("prompt_messages", "completion_messages"):
            assert orjson.loads(got) == want, field
        elif isinstance(want, float):
            assert got == pytest.approx(want), field
        else:
            assert got == want, field


def test_parent_spans_do_not_double_count(service: Service) -> None:
    """Vercel AI SDK: the ai.streamText parent repeats its doStream child's usage."""
    ex = example("10.5")
    start_ns = time.time_ns() - 10_000_000_000
    moved, _ = shifted(ex, start_ns)
    trace_id, parent_id = new_trace_id(), new_span_id()
    parent_attributes = {
        k: v for k, v in moved["attributes"].items() if k.startswith(("ai.usage", "ai.model", "ai.telemetry"))
    }
    parent_attributes["ai.operationId"] = "ai.streamText"
    parent_attributes["operation.name"] = "ai.streamText support-chat"
    parent = json_span(
        parent_attributes,
        trace_id=trace_id,
        span_id=parent_id,
        name="ai.streamText",
        kind=1,
        start_ns=start_ns - 1000,
        end_ns=moved["end_ns"] + 1000,
    )
    child = json_span(
        moved["attributes"],
        trace_id=trace_id,
        parent_span_id=parent_id,
        name=moved["name"],
        kind=1,
        start_ns=start_ns,
        end_ns=moved["end_ns"],
        events=moved["events"],
    )
    send(service, "/v1/traces", traces_json([parent, child], scope="ai"))
    assert service.sql(
        f"SELECT count(), sum(input_tokens) FROM llm_inferences WHERE trace_id = '{trace_id}'"
    ) == ("1\t900\n")
    assert service.sql(f"SELECT count() FROM otel_traces WHERE TraceId = '{trace_id}'") == "2\n"


# -- issue #15: facts that used to be lost, through the running service ---------------------------

_OI_PARAMS = {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 64, "seed": 7}
_OI_RESPONSE = {
    "id": "chatcmpl-AbC123",
    "choices": [{"finish_reason": "stop", "index": 0, "message": {"content": "Hello!", "role": "assistant"}}],
    "created": 1755684000,
    "model": "gpt-4o-mini-2024-07-18",
    "object": "chat.completion",
    "usage": {"completion_tokens": 3, "prompt_tokens": 9, "total_tokens": 12},
}


def _issue_15_spans(trace_id: str, start_ns: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """OpenInference (a call and a failed call), an AI SDK embedMany call and an OTel call with the
    2026 names, as their instrumentations write them; and the span id of each."""
    ids = {name: new_span_id() for name in ("oi", "oi_failed", "embed", "otel")}
    oi = {
        "openinference.span.kind": "LLM",
        "llm.system": "openai",
        "llm.provider": "openai",
        "llm.invocation_parameters": orjson.dumps(_OI_PARAMS).decode(),
        "input.value": orjson.dumps({"messages": [{"role": "user", "content": "Hi"}], **_OI_PARAMS}).decode(),
        "input.mime_type": "application/json",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "Hi",
    }
    done = {
        **oi,
        "llm.model_name": "gpt-4o-mini-2024-07-18",
        "output.value": orjson.dumps(_OI_RESPONSE).decode(),
        "output.mime_type": "application/json",
        "llm.token_count.prompt": 9,
        "llm.token_count.completion": 3,
        "llm.token_count.total": 12,
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "Hello!",
    }
    embed = {
        "operation.name": "ai.embedMany.doEmbed",
        "ai.operationId": "ai.embedMany.doEmbed",
        "ai.model.id": "text-embedding-3-small",
        "ai.model.provider": "openai.embedding",
        "ai.values": ['"sunny day at the beach"', '"rainy afternoon in the city"'],
        "ai.usage.tokens": 12,
    }
    otel = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.cache_read.input_tokens": 1024,
        "gen_ai.usage.output_tokens": 85,
        "gen_ai.usage.reasoning.output_tokens": 40,
        "gen_ai.usage.text.input_tokens": 1100,
        "gen_ai.usage.audio.input_tokens": 100,
        "gen_ai.agent.name": "Math Tutor",
        "gen_ai.agent.id": "asst_5j66",
        "gen_ai.conversation.id": "conv_5j66",
        "gen_ai.tool.definitions": '[{"type":"function","name":"get_weather"}]',
    }
    times: dict[str, Any] = {"trace_id": trace_id, "start_ns": start_ns, "end_ns": start_ns + 1_000_000_000}
    spans = [
        json_span(done, span_id=ids["oi"], name="ChatCompletion", **times),
        json_span(oi, span_id=ids["oi_failed"], name="ChatCompletion", status_code=2, **times),
        json_span(embed, span_id=ids["embed"], name="ai.embedMany.doEmbed", **times),
        json_span(otel, span_id=ids["otel"], name="chat gpt-4o-mini", **times),
    ]
    return spans, ids


def _rows_by_span(service: Service, trace_id: str) -> dict[str, dict[str, Any]]:
    client = clickhouse_connect.get_client(host="127.0.0.1", port=service.api_port, password=service.key)
    result = client.query(
        "SELECT * FROM llm_inferences FINAL WHERE trace_id = {t:String}", parameters={"t": trace_id}
    )
    rows = [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]
    return {r["span_id"]: r for r in rows}


def test_issue_15_facts_land_in_llm_inferences(service: Service) -> None:
    trace_id, start_ns = new_trace_id(), time.time_ns() - 10_000_000_000
    spans, ids = _issue_15_spans(trace_id, start_ns)
    send(service, "/v1/traces", traces_json(spans, scope="mixed"))
    rows = _rows_by_span(service, trace_id)
    assert len(rows) == 4

    oi = rows[ids["oi"]]
    assert (oi["request_model"], oi["model"]) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert oi["response_id"] == "chatcmpl-AbC123" and oi["finish_reasons"] == ["stop"]
    assert (oi["temperature"], oi["max_tokens"]) == (0.2, 64)
    assert oi["request_parameters"] == {"seed": "7"}
    assert oi["total_cost_usd"] == Decimal("0.00000315")  # 9×0.15 + 3×0.60 per M
    failed = rows[ids["oi_failed"]]
    assert failed["success"] is False
    assert (failed["request_model"], failed["model"]) == ("gpt-4o-mini", "gpt-4o-mini")

    embed = rows[ids["embed"]]
    assert [m["content"] for m in orjson.loads(embed["prompt_messages"])] == [
        "sunny day at the beach",
        "rainy afternoon in the city",
    ]

    otel = rows[ids["otel"]]
    assert (otel["cache_read_tokens"], otel["reasoning_tokens"]) == (1024, 40)
    assert otel["usage_details"] == {"input.text": 1100, "input.audio": 100}
    assert (otel["agent_name"], otel["agent_id"], otel["session_id"]) == (
        "Math Tutor",
        "asst_5j66",
        "conv_5j66",
    )
    assert otel["request_parameters"] == {"tool_definitions": '[{"type":"function","name":"get_weather"}]'}
    assert otel["provided_cost_usd"] is None and otel["price_status"] == "priced"


def test_prefer_provided_costs_setting(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With `INFERLINE_PROCESSORS__PRICING__PREFER=provided`, OpenLIT's own (here stale) cost is the
    row's cost; the table's is what the default would have used."""
    svc = make_service(tmp_path_factory.mktemp("prefer"), INFERLINE_PROCESSORS__PRICING__PREFER="provided")
    svc.start()
    try:
        ex = example("10.7")
        start_ns = time.time_ns() - 10_000_000_000
        moved, _ = shifted(ex, start_ns)
        attributes = {**moved["attributes"], "gen_ai.usage.cost": 0.5}
        trace_id = new_trace_id()
        span = json_span(attributes, trace_id=trace_id, span_id=new_span_id(), name=moved["name"],
                         start_ns=start_ns, end_ns=moved["end_ns"])  # fmt: skip
        send(svc, "/v1/traces", traces_json([span], scope="openlit.otel.tracing"))
        [row] = _rows_by_span(svc, trace_id).values()
        assert row["total_cost_usd"] == Decimal("0.5") == row["provided_cost_usd"]
        assert row["price_status"] == "provided"
    finally:
        assert svc.stop() == 0, svc.logs()[-3000:]


@pytest.mark.parametrize("order", ["parent_first", "child_first"])
def test_user_and_session_from_the_parent_request_span(service: Service, order: str) -> None:
    """The application sets `user.id` and `session.id` on its own request span; the openai-v2 model
    span under it names neither. Sent in separate requests, in either order: one row, attributed."""
    trace_id, parent_id, child_id = new_trace_id(), new_span_id(), new_span_id()
    start_ns = time.time_ns() - 10_000_000_000
    parent = json_span(
        {"http.request.method": "POST", "http.route": "/chat", "user.id": "u_77", "session.id": "sess_5"},
        trace_id=trace_id,
        span_id=parent_id,
        name="POST /chat",
        kind=2,
        start_ns=start_ns,
        end_ns=start_ns + 3_000_000_000,
    )
    child_attributes = {
        k: v for k, v in GENAI_ATTRIBUTES.items() if k not in ("user.id", "gen_ai.conversation.id")
    }
    child = json_span(
        child_attributes,
        trace_id=trace_id,
        span_id=child_id,
        parent_span_id=parent_id,
        name="chat gpt-4o-mini",
        start_ns=start_ns + 100_000_000,
        end_ns=start_ns + 2_000_000_000,
    )
    requests = [
        ([parent], "opentelemetry.instrumentation.fastapi"),
        ([child], "opentelemetry.instrumentation.openai_v2"),
    ]
    if order == "child_first":
        requests.reverse()
    for spans, scope in requests:
        send(service, "/v1/traces", traces_json(spans, {"service.name": "chat-api"}, scope=scope))
    rows = _rows_by_span(service, trace_id)
    assert list(rows) == [child_id]  # FINAL: one row per inference, whatever its versions
    row = rows[child_id]
    assert (row["user_id"], row["session_id"]) == ("u_77", "sess_5")
    assert row["version"] == (1 if order == "parent_first" else 2)
    assert row["total_cost_usd"] == Decimal(GENAI_COST)
