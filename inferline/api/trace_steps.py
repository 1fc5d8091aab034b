"""What each span of a trace is, for the waterfall: a model call, a tool call (MCP requests
included), a retrieval with its documents, an agent step, or anything else.

Read from a few span attributes the trace query selects (`STEP_ATTRIBUTES`), in the conventions'
own names: OTel GenAI `gen_ai.operation.name` (retrieval 1.40, execute_tool), MCP
`mcp.method.name` / `mcp.session.id` (1.39), OpenInference `openinference.span.kind`, Langfuse
`langfuse.observation.type`, OpenLLMetry `traceloop.span.kind`, the AI SDK's `ai.toolCall`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from inferline.storage.queries import TRACE_STEP_ATTRIBUTES as STEP_ATTRIBUTES

Step = Literal["inference", "tool_call", "retrieval", "agent", "other"]

_OPERATION = "gen_ai.operation.name"
_OI_KIND = "openinference.span.kind"
_LF_TYPE = "langfuse.observation.type"
_LL_KIND = "traceloop.span.kind"
_MCP_METHOD = "mcp.method.name"
_DOCUMENTS = "gen_ai.retrieval.documents"
__all__ = [
    "STEP_ATTRIBUTES",
    "Document",
    "Retrieval",
    "Step",
    "ToolCall",
    "retrieval",
    "step_of",
    "tool_call",
]
MAX_DOCUMENTS = 50  # listed per retrieval; `document_count` counts them all
_MAX_DOCUMENTS_JSON = 256 * 1024

_TOOL_OPERATIONS = {"execute_tool"}
_AGENT_OPERATIONS = {"invoke_agent", "create_agent", "invoke_workflow"}


class ToolCall(BaseModel):
    name: str = Field(description="The tool's name (`gen_ai.tool.name`), '' when not given.")
    call_id: str
    mcp_method: str = Field(description="MCP request method (`tools/call`, `initialize`, …); '' if not MCP.")
    mcp_session_id: str


class Document(BaseModel):
    id: str
    score: float | None


class Retrieval(BaseModel):
    data_source: str = Field(description="`gen_ai.data_source.id`, '' when not given.")
    document_count: int | None = Field(description="Documents retrieved, where the span lists them.")
    documents: list[Document] = Field(
        description=f"Their ids and relevance scores (at most {MAX_DOCUMENTS})."
    )


def step_of(attributes: dict[str, str], is_inference: bool) -> Step:
    if is_inference:
        return "inference"
    op = attributes.get(_OPERATION, "").strip().lower()
    oi = attributes.get(_OI_KIND, "").strip().upper()
    lf = attributes.get(_LF_TYPE, "").strip().lower()
    if op == "retrieval" or oi == "RETRIEVER" or lf == "retriever":
        return "retrieval"
    if (
        _MCP_METHOD in attributes
        or op in _TOOL_OPERATIONS
        or oi == "TOOL"
        or lf == "tool"
        or attributes.get(_LL_KIND, "").lower() == "tool"
        or attributes.get("ai.operationId") == "ai.toolCall"
    ):
        return "tool_call"
    if op in _AGENT_OPERATIONS or oi == "AGENT" or lf == "agent" or attributes.get(_LL_KIND) == "agent":
        return "agent"
    return "other"


def tool_call(attributes: dict[str, str]) -> ToolCall:
    return ToolCall(
        name=attributes.get("gen_ai.tool.name") or attributes.get("tool.name") or "",
        call_id=attributes.get("gen_ai.tool.call.id", ""),
        mcp_method=attributes.get(_MCP_METHOD, ""),
        mcp_session_id=attributes.get("mcp.session.id", ""),
    )


def retrieval(attributes: dict[str, str], oi_documents: int) -> Retrieval:
    """From the semconv attribute (a JSON array of `{id, score}` on spans), else OpenInference's
    flattened `retrieval.documents.<i>.document.*`."""
    documents: list[Document] = []
    count: int | None = None
    raw = attributes.get(_DOCUMENTS)
    if raw and len(raw) <= _MAX_DOCUMENTS_JSON:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            count = len(parsed)
            documents = [_document(d.get("id"), d.get("score")) for d in parsed if isinstance(d, dict)]
    if count is None and oi_documents:
        count = oi_documents
        by_index: dict[int, dict[str, str]] = {}
        for key, value in attributes.items():
            parts = key.split(".")
            if len(parts) == 5 and parts[0] == "retrieval" and parts[2].isdigit() and parts[3] == "document":
                by_index.setdefault(int(parts[2]), {})[parts[4]] = value
        documents = [_document(d.get("id"), d.get("score")) for _, d in sorted(by_index.items())]
    return Retrieval(
        data_source=attributes.get("gen_ai.data_source.id", ""),
        document_count=count,
        documents=documents[:MAX_DOCUMENTS],
    )


def _document(doc_id: Any, score: Any) -> Document:
    try:
        value = float(score) if score is not None and not isinstance(score, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is not None and not math.isfinite(value):
        value = None
    return Document(id="" if doc_id is None else str(doc_id), score=value)
