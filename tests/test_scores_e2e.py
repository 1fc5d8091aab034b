"""Evaluation scores, retrieval and MCP spans end to end on the embedded service (issue #15 items 4
and 5), sent with the real OTel SDK exporters over OTLP/HTTP, in separate requests:

1. an agent trace: the model span with a `gen_ai.evaluation.result` span event, a second model
   span, a retrieval span (semconv 1.40), an MCP `tools/call` span (semconv 1.39), and a judge's
   span whose evaluation event names the second call by response id;
2. a `gen_ai.evaluation.result` log record in the first model span's context;
3. a `gen_ai.evaluation.result` log record without a span context, naming the second call's
   response id, with a score the SDK sends as a word.

Then read back through the detail, list, export, analytics and trace APIs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanKind

from inferline.processors.normalise import inference_id
from tests.api_helpers import api, iso, list_ids
from tests.conftest import Service
from tests.otlp_helpers import GENAI_ATTRIBUTES

pytestmark = pytest.mark.e2e

MODEL = dict(GENAI_ATTRIBUTES)
RESOURCE = Resource.create({"service.name": "rag-bot"})


def _headers(svc: Service) -> dict[str, str]:
    return {"authorization": f"Bearer {svc.key}"}


@pytest.fixture(scope="module")
def sent(service: Service) -> Iterator[dict[str, Any]]:
    started = time.time_ns()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{service.http_url}/v1/traces", headers=_headers(service))
        )
    )
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    with tracer.start_as_current_span(
        "invoke_agent support", attributes={"gen_ai.operation.name": "invoke_agent"}
    ):
        with tracer.start_as_current_span(
            "retrieval kb-main",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "retrieval",
                "gen_ai.provider.name": "pinecone",
                "gen_ai.data_source.id": "kb-main",
                "gen_ai.request.top_k": 2,
                # semconv: a JSON string on spans when structured values are not supported
                "gen_ai.retrieval.documents": '[{"id": "doc_123", "score": 0.95}, '
                '{"id": "doc_456", "score": 0.87}]',
            },
        ):
            pass
        with tracer.start_as_current_span(
            "chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={**MODEL, "gen_ai.response.id": "chatcmpl-1"}
        ) as first:
            first.add_event(
                "gen_ai.evaluation.result",
                {
                    "gen_ai.evaluation.name": "relevance",
                    "gen_ai.evaluation.score.value": 0.91,
                    "gen_ai.evaluation.score.label": "relevant",
                    "gen_ai.evaluation.explanation": "Names the capital asked for.",
                },
            )
        with tracer.start_as_current_span(
            "tools/call get-weather",
            kind=SpanKind.CLIENT,
            attributes={
                "mcp.method.name": "tools/call",
                "mcp.session.id": "191c4850af6c49e08843a3f6c80e5046",
                "mcp.protocol.version": "2025-06-18",
                "gen_ai.tool.name": "get-weather",
                "gen_ai.operation.name": "execute_tool",
                "jsonrpc.request.id": "42",
                "network.transport": "pipe",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={**MODEL, "gen_ai.response.id": "chatcmpl-2"}
        ) as second:
            pass
        # A judge traced as a span of its own, naming the call it judged by response id.
        with tracer.start_as_current_span("evaluate helpfulness") as judge:
            judge.add_event(
                "gen_ai.evaluation.result",
                {
                    "gen_ai.evaluation.name": "helpfulness",
                    "gen_ai.evaluation.score.value": 0.5,
                    "gen_ai.response.id": "chatcmpl-2",
                },
            )
    provider.shutdown()

    loggers = LoggerProvider(resource=RESOURCE)
    loggers.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{service.http_url}/v1/logs", headers=_headers(service))
        )
    )
    logger = loggers.get_logger("opentelemetry.util.genai.evals")
    # Its own request: the judge of the first call, in the call's span context.
    logger.emit(
        LogRecord(
            context=trace.set_span_in_context(NonRecordingSpan(first.get_span_context())),
            event_name="gen_ai.evaluation.result",
            attributes={
                "gen_ai.evaluation.name": "hallucination",
                "gen_ai.evaluation.score.label": "factual",
                "gen_ai.evaluation.explanation": "Supported by doc_123.",
                "gen_ai.response.id": "chatcmpl-1",
            },
        )
    )
    # And another: a judge run later, with only the second call's response id.
    logger.emit(
        LogRecord(
            event_name="gen_ai.evaluation.result",
            attributes={
                "gen_ai.evaluation.name": "quality",
                "gen_ai.evaluation.score.value": "excellent",
                "gen_ai.response.id": "chatcmpl-2",
            },
        )
    )
    loggers.shutdown()

    def ids(span: Any) -> tuple[str, str]:
        c = span.get_span_context()
        return f"{c.trace_id:032x}", f"{c.span_id:016x}"

    trace_id, first_span = ids(first)
    yield {
        "trace": trace_id,
        "first": inference_id("default", trace_id, first_span),
        "second": inference_id("default", *ids(second)),
        "from": iso(started - 60_000_000_000),
    }


def detail(svc: Service, inference: str) -> dict[str, Any]:
    r = api(svc, "GET", f"/api/v1/metrics/inferences/{inference}", svc.key)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_detail_shows_the_results_from_the_span_event_and_the_log_record(
    service: Service, sent: dict
) -> None:
    scores = {s["name"]: s for s in detail(service, sent["first"])["scores"]}
    assert set(scores) == {"relevance", "hallucination"}
    assert scores["relevance"]["value"] == 0.91 and scores["relevance"]["label"] == "relevant"
    assert scores["relevance"]["explanation"] == "Names the capital asked for."
    assert scores["hallucination"]["value"] is None and scores["hallucination"]["label"] == "factual"
    assert {s["scope"] for s in scores.values()} == {"span"}


def test_results_naming_only_a_response_id_reach_their_call(service: Service, sent: dict) -> None:
    scores = {s["name"]: s for s in detail(service, sent["second"])["scores"]}
    # The SDK sent the score as a word: kept as the label, no value, nothing lost.
    assert (scores["quality"]["value"], scores["quality"]["label"]) == (None, "excellent")
    # The judge's own span carried this one.
    assert scores["helpfulness"]["value"] == 0.5 and set(scores) == {"quality", "helpfulness"}


def test_the_list_filters_by_score_range_and_label(service: Service, sent: dict) -> None:
    base = {"from_date": sent["from"]}
    assert list_ids(service, service.key, {**base, "scores": {"relevance": {"min": 0.9, "max": 1}}}) == [
        sent["first"]
    ]
    assert list_ids(service, service.key, {**base, "scores": {"relevance": {"min": 0.95}}}) == []
    assert list_ids(service, service.key, {**base, "scores": {"helpfulness": {"max": 0.5}}}) == [
        sent["second"]
    ]
    assert list_ids(service, service.key, {**base, "scores": {"hallucination": {"label": "factual"}}}) == [
        sent["first"]
    ]
    assert list_ids(service, service.key, {**base, "scores": {"quality": {"label": "excellent"}}}) == [
        sent["second"]
    ]
    # Both conditions must hold: no call has both.
    both = {"relevance": {"min": 0}, "quality": {"label": "excellent"}}
    assert list_ids(service, service.key, {**base, "scores": both}) == []
    bad = api(
        service,
        "POST",
        "/api/v1/metrics/inferences/list",
        service.key,
        json={**base, "scores": {"x": {"min": 2, "max": 1}}},
    )
    assert bad.status_code == 422
    # Another project's key sees none of it.
    assert list_ids(service, service.extra_keys["other"], {**base, "scores": {"relevance": {"min": 0}}}) == []


def test_the_csv_export_takes_the_score_filter_in_the_query_string(service: Service, sent: dict) -> None:
    def export(*scores: str) -> httpx.Response:
        params = [("from_date", sent["from"]), *(("score", s) for s in scores)]
        return api(service, "GET", "/api/v1/metrics/inferences/export", service.key, params=params)

    r = export("relevance:0.9:")
    assert r.status_code == 200, r.text
    lines = r.text.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith(f'"{sent["first"]}"')
    assert export("relevance").status_code == 422
    # One score's conditions in two parameters both hold (the last one alone let 0.91 through).
    r = export("relevance:0.95:", "relevance::1")
    assert r.status_code == 200 and r.text.strip().splitlines()[1:] == [], r.text  # no row: 0.91 < 0.95
    clash = export("relevance:0.9:", "relevance:0.8:")
    assert clash.status_code == 422 and "two min conditions" in clash.text


def test_analytics_averages_each_score_per_model(service: Service, sent: dict) -> None:
    r = api(
        service, "POST", "/api/v1/metrics/analytics/scores", service.key, json={"from_date": sent["from"]}
    )
    assert r.status_code == 200, r.text
    groups = {(g["name"], g["model"]): g for g in r.json()["groups"]}
    model = MODEL["gen_ai.response.model"]
    relevance = groups[("relevance", model)]
    assert (relevance["results"], relevance["scored"], relevance["avg"]) == (1, 1, 0.91)
    assert relevance["labels"] == {"relevant": 1}
    assert groups[("hallucination", model)]["labels"] == {"factual": 1}
    assert groups[("quality", model)]["avg"] is None and groups[("quality", model)]["results"] == 1
    assert groups[("helpfulness", model)]["avg"] == 0.5
    # The other analytics routes take the score filter too (answered from llm_inferences).
    body = {"from_date": sent["from"], "scores": {"relevance": {"min": 0.9}}}
    overview = api(service, "POST", "/api/v1/metrics/analytics/overview", service.key, json=body).json()
    assert overview["requests"] == 1 and overview["sources"] == ["llm_inferences"]
    other = api(
        service,
        "POST",
        "/api/v1/metrics/analytics/scores",
        service.extra_keys["other"],
        json={"from_date": sent["from"]},
    )
    assert other.json()["groups"] == []


def test_retrieval_and_mcp_spans_are_steps_of_the_trace_not_inferences(service: Service, sent: dict) -> None:
    r = api(service, "GET", f"/api/v1/traces/{sent['trace']}", service.key)
    assert r.status_code == 200, r.text
    t = r.json()
    assert (t["span_count"], t["inferences"], t["tool_calls"], t["retrievals"]) == (6, 2, 1, 1)
    steps = {s["name"]: s for s in t["spans"]}
    tool = steps["tools/call get-weather"]
    assert tool["step"] == "tool_call" and tool["inference"] is None
    assert tool["tool"] == {
        "name": "get-weather",
        "call_id": "",
        "mcp_method": "tools/call",
        "mcp_session_id": "191c4850af6c49e08843a3f6c80e5046",
    }
    found = steps["retrieval kb-main"]
    assert found["step"] == "retrieval" and found["inference"] is None
    assert found["retrieval"] == {
        "data_source": "kb-main",
        "document_count": 2,
        "documents": [{"id": "doc_123", "score": 0.95}, {"id": "doc_456", "score": 0.87}],
    }
    assert steps["invoke_agent support"]["step"] == "agent"
    count = service.sql(f"SELECT count() FROM llm_inferences WHERE trace_id = '{sent['trace']}'")
    assert count.strip() == "2"
