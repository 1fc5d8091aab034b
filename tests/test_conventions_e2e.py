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

from tests.conftest import Service
from tests.genai_examples import example
from tests.otlp_helpers import json_span, logs_json, new_span_id, new_trace_id, traces_json

pytestmark = pytest.mark.e2e

# Hand-computed from the providers' list prices (see each comment), or the cost the span carried.
COSTS = {
    "10.1": ("0.0001542", "priced"),  # gpt-4o-mini: 176×0.15 + 1024×0.075 + 85×0.60 per M
    "10.2": ("0.000861", "priced"),  # claude-3.5-sonnet: 52×3 + 47×15 per M
    "10.3": ("0.00089", "priced"),  # azure gpt-4o: 64×2.5 + 256×1.25 + 41×10 per M
    "10.4": ("0.000605", "priced"),  # gpt-4o: 82×2.5 + 128×1.25 + 24×10 per M
    "10.5": ("0.00288", "priced"),  # claude-sonnet-4.5: 300×3 + 600×0.3 + 120×15 per M
    "10.6": ("0.0000104", "provided"),  # Langfuse cost_details
    "10.7": ("0.00002475", "provided"),  # OpenLIT gen_ai.usage.cost
}
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
    assert row["convention"] == FAMILIES[key]
    for field, want in ex["expected"].items():
        column = COLUMN.get(field, field)
        got: Any = row.get(column)
        if field == "status":
            assert row["success"] is (want == "ok")
        elif field == "cost_usd":
            assert got == Decimal(str(want))
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
