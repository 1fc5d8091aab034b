"""The per-minute rollup agrees with the inference table it summarises, and a call whose content
arrived later (a second row version) is counted once."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import Service, make_service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, logs_json, new_span_id, new_trace_id, traces_json

pytestmark = pytest.mark.e2e


def send(service: Service, path: str, body: bytes) -> None:
    headers = {"x-api-key": service.key, "content-type": "application/json"}
    assert httpx.post(f"{service.http_url}{path}", content=body, headers=headers).status_code == 200


def test_rollup_matches_the_inference_table(service: Service) -> None:
    spans = [json_span(GENAI_ATTRIBUTES, name="chat", end_ns=None, start_ns=None) for _ in range(9)] + [
        json_span(GENAI_ATTRIBUTES, name="failed", status_code=2)
    ]
    unknown = dict(
        GENAI_ATTRIBUTES, **{"gen_ai.response.model": "in-house-llm", "gen_ai.provider.name": "vllm"}
    )
    spans.append(json_span(unknown, name="self-hosted"))
    send(service, "/v1/traces", traces_json(spans))

    # Content arriving after its span rewrites the inference (version 2); the rollup must not count it twice.
    trace_id, span_id = new_trace_id(), new_span_id()
    no_content = {k: v for k, v in GENAI_ATTRIBUTES.items() if not k.endswith("messages")}
    send(service, "/v1/traces", traces_json([json_span(no_content, trace_id=trace_id, span_id=span_id)]))
    # Stored before its content is sent: otherwise both may reach one worker batch and the
    # content is joined before the first version is written (one version-1 row; CI saw it).
    service.settle()
    log = {
        "traceId": trace_id,
        "spanId": span_id,
        "eventName": "gen_ai.user.message",
        "body": {"content": "hi"},
    }
    send(service, "/v1/logs", logs_json([log]))
    # The latest version wins (the version-1 row may have been collapsed at insert when both
    # arrived in one flush); the rollup counts the call once either way (checked below).
    versions = (
        f"SELECT version, length(prompt_messages) > 2 FROM llm_inferences FINAL WHERE trace_id = '{trace_id}'"
    )
    assert service.sql(versions) == "2\t1\n"

    base = service.sql(
        "SELECT count(), countIf(NOT success), countIf(total_cost_usd IS NULL), sum(input_tokens), "
        "sum(output_tokens), sum(total_cost_usd) FROM llm_inferences FINAL FORMAT JSONCompactEachRow"
    )
    rollup = service.sql(
        "SELECT sum(calls), sum(errors), sum(unpriced_calls), sum(input_tokens), sum(output_tokens), "
        "sum(cost_usd) FROM llm_inferences_by_minute FORMAT JSONCompactEachRow"
    )
    assert orjson.loads(rollup) == orjson.loads(base)
    assert orjson.loads(rollup)[:3] == [12, 1, 1]

    by_model = service.sql(
        "SELECT model, sum(calls), round(quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(latency_ms)[3]) "
        "FROM llm_inferences_by_minute GROUP BY model ORDER BY model"
    )
    assert by_model == "gpt-4o-mini-2024-07-18\t11\t1900\nin-house-llm\t1\t1900\n"


def test_a_request_sent_twice_is_counted_once_by_the_rollups(service: Service) -> None:
    """An exporter that timed out sends its request again: the table collapses the copies, and the
    rollups (the analytics' default source) count the calls once too."""
    body = traces_json([json_span(GENAI_ATTRIBUTES, name="retried") for _ in range(3)])
    trace_ids = [s["traceId"] for s in orjson.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    send(service, "/v1/traces", body)
    send(service, "/v1/traces", body)  # the retry
    service.settle()
    ids = ", ".join(f"'{t}'" for t in trace_ids)
    assert service.sql(f"SELECT count() FROM llm_inferences FINAL WHERE trace_id IN ({ids})") == "3\n"
    stored = service.sql(
        "SELECT sum(calls) FROM llm_inferences_by_minute WHERE minute >= "
        f"(SELECT toStartOfMinute(min(start_time)) FROM llm_inferences WHERE trace_id IN ({ids}))"
    )
    raw = service.sql(
        "SELECT count() FROM llm_inferences FINAL WHERE start_time >= "
        f"(SELECT toStartOfMinute(min(start_time)) FROM llm_inferences WHERE trace_id IN ({ids}))"
    )
    assert stored == raw, (stored, raw)


def test_a_retry_later_than_the_join_window_is_counted_once(tmp_path: Path) -> None:
    """The normaliser recognises a retry only within its join window (1 s here, 30 s by default);
    an exporter that gave up and sent its request again later makes rows the table holds. They
    are looked up and left out: the rollups count each call once, as `FINAL` on the table does."""
    svc = make_service(tmp_path, INFERLINE_PROCESSORS__JOIN_WINDOW_S="1")
    svc.start()
    try:
        body = traces_json([json_span(GENAI_ATTRIBUTES, name="retried late") for _ in range(3)])
        send(svc, "/v1/traces", body)
        svc.settle()
        time.sleep(1.5)  # past the window
        send(svc, "/v1/traces", body)
        svc.settle()
        assert svc.sql("SELECT count() FROM llm_inferences FINAL") == "3\n"
        assert svc.sql("SELECT count() FROM llm_inferences") == "3\n"  # no copy waiting for a merge
        assert svc.sql("SELECT sum(calls) FROM llm_inferences_by_minute") == "3\n"
        assert svc.sql("SELECT sum(requests) FROM inference_stats_by_minute") == "3\n"
        assert svc.sql("SELECT count() FROM otel_traces FINAL") == "3\n"
    finally:
        assert svc.stop() == 0, svc.logs()[-3000:]
