"""What the trace API calls each span (issue #15 item 5), from the attributes as the trace query
selects them (strings, as `otel_traces` stores them). Shapes: OTel retrieval spans (semconv 1.40,
`gen_ai.retrieval.documents` as a JSON string on spans), MCP spans (1.39), OpenInference
RETRIEVER spans (`retrieval.documents.<i>.document.{id,score,content}`) and TOOL spans."""

from __future__ import annotations

import pytest

from inferline.api.trace_steps import Document, retrieval, step_of, tool_call

pytestmark = pytest.mark.unit


def test_each_conventions_marker_names_the_step() -> None:
    assert step_of({"gen_ai.operation.name": "chat"}, True) == "inference"
    assert step_of({"gen_ai.operation.name": "retrieval"}, False) == "retrieval"
    assert step_of({"openinference.span.kind": "RETRIEVER"}, False) == "retrieval"
    assert step_of({"langfuse.observation.type": "retriever"}, False) == "retrieval"
    assert step_of({"mcp.method.name": "initialize"}, False) == "tool_call"
    assert step_of({"gen_ai.operation.name": "execute_tool"}, False) == "tool_call"
    assert step_of({"openinference.span.kind": "TOOL"}, False) == "tool_call"
    assert step_of({"traceloop.span.kind": "tool"}, False) == "tool_call"
    assert step_of({"ai.operationId": "ai.toolCall"}, False) == "tool_call"
    assert step_of({"gen_ai.operation.name": "invoke_agent"}, False) == "agent"
    assert step_of({"http.route": "/orders"}, False) == "other"


def test_an_mcp_tools_call_names_its_tool_and_session() -> None:
    call = tool_call(
        {
            "mcp.method.name": "tools/call",
            "mcp.session.id": "191c4850af6c49e08843a3f6c80e5046",
            "gen_ai.tool.name": "get-weather",
            "gen_ai.tool.call.id": "call_1",
        }
    )
    assert (call.name, call.call_id, call.mcp_method, call.mcp_session_id) == (
        "get-weather",
        "call_1",
        "tools/call",
        "191c4850af6c49e08843a3f6c80e5046",
    )


def test_semconv_documents_give_ids_scores_and_count() -> None:
    found = retrieval(
        {
            "gen_ai.data_source.id": "kb-main",
            "gen_ai.retrieval.documents": '[{"id": "doc_123", "score": 0.95}, {"id": 7, "score": "NaN"}]',
        },
        0,
    )
    assert found.data_source == "kb-main" and found.document_count == 2
    assert found.documents == [Document(id="doc_123", score=0.95), Document(id="7", score=None)]


def test_openinference_documents_are_counted_by_index_and_their_content_never_read() -> None:
    attributes = {
        "retrieval.documents.0.document.id": "a",
        "retrieval.documents.0.document.score": "0.8",
        "retrieval.documents.1.document.id": "b",
    }  # the trace query selects ids and scores only; it counts the indices of every document key
    found = retrieval(attributes, 3)
    assert found.document_count == 3
    assert found.documents == [Document(id="a", score=0.8), Document(id="b", score=None)]


def test_unreadable_documents_leave_the_count_unknown() -> None:
    assert retrieval({"gen_ai.retrieval.documents": "[{not json"}, 0).document_count is None
    assert retrieval({}, 0).documents == []
