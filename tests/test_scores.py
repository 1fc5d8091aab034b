"""Evaluation results → `scores` rows (issue #15 item 4), through the processor chain as the
pipeline runs it. Payloads are shaped as the conventions define them: the OTel GenAI event
`gen_ai.evaluation.result` (semconv 1.38, `model/gen-ai/events.yaml`: name, score.value,
score.label, explanation, response.id), as a span event or a log record; OpenInference's
annotations and evaluations (`spec/annotations.md` of Arize-ai/openinference: inline on the span,
or on a post-hoc carrier span with one link to the span judged; span, trace and session scope)."""

from __future__ import annotations

from typing import Any

import pytest

from inferline.core.records import Event, Link, LogRecord, Span
from inferline.processors.chain import ProcessorChain
from inferline.processors.normalise import inference_id
from inferline.processors.scores import NIL_UUID, score_value
from tests.genai_examples import PROJECT_ID, make_log

pytestmark = pytest.mark.unit

TRACE, MODEL_SPAN, JUDGE_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "00f067aa0ba902b7"
START = 1_764_800_000_000_000_000
_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.id": "chatcmpl-CZ1",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 12,
}


def span(attributes: dict[str, Any], **kw: Any) -> Span:
    fields: dict[str, Any] = {
        "project_id": PROJECT_ID,
        "trace_id": TRACE,
        "span_id": MODEL_SPAN,
        "parent_span_id": "",
        "trace_state": "",
        "name": "chat gpt-4o-mini",
        "kind": 3,
        "start_ns": START,
        "end_ns": START + 900_000_000,
        "status_code": 0,
        "status_message": "",
        "attributes": attributes,
    }
    fields.update(kw)
    return Span(**fields)


def evaluation(**attributes: Any) -> dict[str, Any]:
    return {"gen_ai.evaluation.name": "relevance", **attributes}


def run(spans: list[Span], logs: list[LogRecord] | None = None) -> Any:
    return ProcessorChain().run(spans, logs or [])


def test_a_span_event_scores_the_model_call_it_is_on() -> None:
    event = Event(
        START + 1_000_000_000,
        "gen_ai.evaluation.result",
        evaluation(
            **{
                "gen_ai.evaluation.score.value": 0.87,
                "gen_ai.evaluation.score.label": "relevant",
                "gen_ai.evaluation.explanation": "Answers the question asked.",
            }
        ),
    )
    batch = run([span(_CHAT, events=[event])])
    assert len(batch.inferences) == 1  # the event adds a score, not another call
    (row,) = batch.scores
    assert row["inference_id"] == batch.inferences[0]["inference_id"]
    assert (row["trace_id"], row["span_id"], row["response_id"]) == (TRACE, MODEL_SPAN, "chatcmpl-CZ1")
    assert (row["name"], row["value"], row["label"]) == ("relevance", 0.87, "relevant")
    assert row["explanation"] == "Answers the question asked."
    assert (row["scope"], row["source"], row["timestamp"]) == ("span", "otel_genai", START + 1_000_000_000)


def test_a_log_record_scores_the_span_of_its_context() -> None:
    record = make_log(
        {
            "eventName": "gen_ai.evaluation.result",
            "attributes": evaluation(
                **{"gen_ai.evaluation.score.value": 1, "gen_ai.response.id": "chatcmpl-CZ1"}
            ),
        },
        trace_id=TRACE,
        span_id=MODEL_SPAN,
    )
    (row,) = run([], [record]).scores
    assert row["inference_id"] == inference_id(PROJECT_ID, TRACE, MODEL_SPAN)
    assert (row["value"], row["label"], row["response_id"]) == (1.0, "", "chatcmpl-CZ1")


def test_an_older_sdk_names_the_event_in_an_attribute() -> None:
    record = make_log(
        {
            "attributes": {
                "event.name": "gen_ai.evaluation.result",
                **evaluation(**{"gen_ai.evaluation.score.label": "pass"}),
            }
        },
        trace_id=TRACE,
        span_id=MODEL_SPAN,
    )
    (row,) = run([], [record]).scores
    assert (row["name"], row["value"], row["label"]) == ("relevance", None, "pass")


def test_without_a_span_context_the_response_id_links_it() -> None:
    record = make_log(
        {
            "eventName": "gen_ai.evaluation.result",
            "attributes": evaluation(
                **{"gen_ai.evaluation.score.value": 0.4, "gen_ai.response.id": "resp_77"}
            ),
        }
    )
    (row,) = run([], [record]).scores
    assert (row["trace_id"], row["span_id"], row["response_id"]) == ("", "", "resp_77")
    assert row["inference_id"] == NIL_UUID


def test_an_unreadable_value_is_kept_as_its_label_and_loses_nothing_else() -> None:
    events = [
        Event(
            START, "gen_ai.evaluation.result", evaluation(**{"gen_ai.evaluation.score.value": "excellent"})
        ),
        Event(
            START,
            "gen_ai.evaluation.result",
            {"gen_ai.evaluation.name": "toxicity", "gen_ai.evaluation.score.value": "0.02"},
        ),
        Event(
            START,
            "gen_ai.evaluation.result",
            {"gen_ai.evaluation.name": "nan", "gen_ai.evaluation.score.value": float("nan")},
        ),
    ]
    batch = run([span(_CHAT, events=events)])
    assert len(batch.inferences) == 1
    got = {r["name"]: (r["value"], r["label"]) for r in batch.scores}
    assert got == {"relevance": (None, "excellent"), "toxicity": (0.02, ""), "nan": (None, "NaN")}
    assert score_value(True) == (1.0, "")


def test_openinference_inline_annotations_and_evaluations_score_their_span() -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": 10,
        "llm.token_count.completion": 3,
        "annotations.0.annotation.name": "hallucination",
        "annotations.0.annotation.score": 1,
        "annotations.0.annotation.label": "hallucinated",
        "annotations.0.annotation.explanation": "The claim is not supported by the retrieved documents.",
        "annotations.0.annotation.annotator_kind": "LLM",
        "annotations.0.annotation.identifier": "judge-v2",
        "annotations.0.annotation.metadata": '{"rubric_version":"2"}',
        "evaluations.0.evaluation.name": "correctness",
        "evaluations.0.evaluation.score": 0.5,
        "evaluations.0.evaluation.annotator_kind": "HUMAN",
    }
    batch = run([span(attributes)])
    assert len(batch.inferences) == 1
    rows = {r["name"]: r for r in batch.scores}
    h = rows["hallucination"]
    assert (h["value"], h["label"], h["evaluator"], h["identifier"]) == (
        1.0,
        "hallucinated",
        "LLM",
        "judge-v2",
    )
    assert h["metadata"] == '{"rubric_version":"2"}' and h["source"] == "openinference"
    assert h["inference_id"] == batch.inferences[0]["inference_id"]
    assert (rows["correctness"]["value"], rows["correctness"]["evaluator"]) == (0.5, "HUMAN")


def test_a_post_hoc_openinference_carrier_scores_the_span_it_links_to_and_is_no_inference() -> None:
    carrier = span(
        {
            "openinference.span.kind": "EVALUATOR",
            "evaluations.0.evaluation.name": "hallucination",
            "evaluations.0.evaluation.label": "factual",
            "evaluations.0.evaluation.annotator_kind": "HUMAN",
        },
        trace_id="1" * 32,
        span_id=JUDGE_SPAN,
        name="hallucination evaluation",
        links=[Link(TRACE, MODEL_SPAN, "", {})],
    )
    batch = run([carrier])
    assert batch.inferences == []
    (row,) = batch.scores
    assert (row["trace_id"], row["span_id"], row["carrier_span_id"]) == (TRACE, MODEL_SPAN, JUDGE_SPAN)
    assert row["inference_id"] == inference_id(PROJECT_ID, TRACE, MODEL_SPAN)


def test_trace_and_session_feedback_keep_their_scope() -> None:
    root = span(
        {
            "openinference.span.kind": "CHAIN",
            "session.id": "session-123",
            "trace.annotations.0.annotation.name": "retrieval_quality",
            "trace.annotations.0.annotation.score": 0.92,
            "trace.annotations.0.annotation.annotator_kind": "CODE",
            "session.annotations.0.annotation.name": "conversational_coherence",
            "session.annotations.0.annotation.label": "coherent",
        },
        span_id=JUDGE_SPAN,
    )
    rows = {r["scope"]: r for r in run([root]).scores}
    assert (rows["trace"]["trace_id"], rows["trace"]["span_id"], rows["trace"]["value"]) == (TRACE, "", 0.92)
    assert rows["trace"]["inference_id"] == NIL_UUID
    assert (rows["session"]["session_id"], rows["session"]["label"]) == ("session-123", "coherent")


def test_a_judges_explanation_is_masked_like_other_content() -> None:
    event = Event(
        START,
        "gen_ai.evaluation.result",
        evaluation(
            **{"gen_ai.evaluation.explanation": "The answer mailed jane.doe@example.com the invoice."}
        ),
    )
    (row,) = run([span(_CHAT, events=[event])]).scores
    assert "jane.doe@example.com" not in row["explanation"]
    assert row["pii_found"]


def test_retrieval_and_mcp_spans_are_not_inferences() -> None:
    retrieval = span(
        {
            "gen_ai.operation.name": "retrieval",
            "gen_ai.provider.name": "pinecone",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.data_source.id": "kb-main",
            "gen_ai.retrieval.documents": '[{"id": "doc_123", "score": 0.95}]',
        },
        name="retrieval kb-main",
    )
    mcp = span(
        {
            "mcp.method.name": "tools/call",
            "mcp.session.id": "191c4850af6c49e08843a3f6c80e5046",
            "gen_ai.tool.name": "get-weather",
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
        },
        span_id=JUDGE_SPAN,
        name="tools/call get-weather",
    )
    mcp_without_operation = span(
        {
            "mcp.method.name": "tools/call",
            "gen_ai.tool.name": "x",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "m",
        },
        span_id="2" * 16,
    )
    batch = run([retrieval, mcp, mcp_without_operation])
    assert batch.inferences == [] and len(batch.spans) == 3


def test_any_otlp_value_as_a_score_is_kept_without_failing_the_batch() -> None:
    """OTLP lets a sender put any AnyValue in the score: bytes, arrays, maps, a name that is a
    number. None of them fails the batch; what is no number is kept as text."""
    odd = [b"A+", [0.5, 1], {"grade": "B"}, "  ", "1e400"]
    events = [
        Event(
            START,
            "gen_ai.evaluation.result",
            {"gen_ai.evaluation.name": 7, "gen_ai.evaluation.score.value": v},
        )
        for v in odd
    ]
    batch = run([span(_CHAT, events=events)])
    assert len(batch.inferences) == 1
    assert [(r["name"], r["value"], r["label"]) for r in batch.scores] == [
        ("7", None, "A+"),
        ("7", None, "[0.5,1]"),
        ("7", None, '{"grade":"B"}'),
        ("7", None, ""),
        ("7", None, "1e400"),
    ]


@pytest.mark.parametrize("at", [1, 946_684_800 * 10**9, 2**64 - 1], ids=["1ns", "year-2000", "2^64-1"])
def test_an_evaluation_event_at_a_time_no_event_of_its_span_can_have_takes_the_spans_end(at: int) -> None:
    """Such a score row was deleted by the retention TTL as soon as it was stored; the span was
    accepted and nothing said so."""
    event = Event(at, "gen_ai.evaluation.result", evaluation(**{"gen_ai.evaluation.score.value": 1}))
    (row,) = run([span(_CHAT, events=[event])]).scores
    assert row["timestamp"] == START + 900_000_000


def test_an_evaluation_event_a_judge_adds_after_the_span_ended_keeps_its_time() -> None:
    later = START + 3_600 * 10**9
    event = Event(later, "gen_ai.evaluation.result", evaluation(**{"gen_ai.evaluation.score.value": 1}))
    (row,) = run([span(_CHAT, events=[event])]).scores
    assert row["timestamp"] == later
