"""One trace of the caller's project: its spans in start order with their place in the trace
(for a waterfall), what each is (model call, tool call, retrieval, …), each GenAI span with its
inference's tokens and cost, and the trace's totals."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from inferline.api.deps import CallerDep, ContextDep, audit
from inferline.api.errors import documented
from inferline.api.trace_steps import Retrieval, Step, ToolCall, retrieval, step_of, tool_call
from inferline.storage import queries

router = APIRouter(prefix="/api/v1/traces", tags=["traces"], responses=documented(401, 504))
TraceId = Annotated[str, Path(pattern="^[0-9a-f]{32}$", description="32 lower-case hex digits.")]


class SpanInference(BaseModel):
    inference_id: str
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float | None = Field(description="USD; null when the model could not be priced.")
    is_success: bool


class TraceSpan(BaseModel):
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service_name: str
    start_time: str = Field(description="ISO 8601 UTC.")
    offset_ms: float = Field(description="Start, in milliseconds after the trace's first span started.")
    duration_ms: float
    depth: int = Field(description="0 for a root span; a parent absent from the trace counts as a root.")
    status: str = Field(description="Unset, Ok or Error.")
    status_message: str
    inference: SpanInference | None = Field(description="The inference this span is, for a GenAI call.")
    step: Step = Field(
        description="What the span is: `inference` (a model call), `tool_call` (a tool execution or an "
        "MCP request), `retrieval` (documents fetched for the model), `agent`, or `other`."
    )
    tool: ToolCall | None = Field(None, description="For a tool call: the tool and MCP request.")
    retrieval: Retrieval | None = Field(None, description="For a retrieval: its data source and documents.")


class Trace(BaseModel):
    trace_id: str
    start_time: str
    duration_ms: float = Field(description="From the first span's start to the last span's end.")
    span_count: int
    truncated: bool = Field(description=f"More than {queries.TRACE_MAX_SPANS} spans: the first ones only.")
    inferences: int
    total_tokens: int
    total_cost: float = Field(description="USD, of the priced inferences.")
    unpriced_inferences: int
    tool_calls: int = Field(description="Spans that are tool calls (MCP requests included).")
    retrievals: int
    spans: list[TraceSpan]


@router.get("/{trace_id}", response_model=Trace, summary="One trace", responses=documented(404))
def get_trace(trace_id: TraceId, who: CallerDep, ctx: ContextDep) -> Trace:
    """The spans of a trace of the key's project, oldest first, with the inferences among them."""
    params = {"project": who.project_id, "trace": trace_id, "limit": queries.TRACE_MAX_SPANS + 1}
    spans = ctx.sql.rows(who.project_id, queries.TRACE_SPANS, params)
    audit(who, "traces.get", rows=len(spans), trace_id=trace_id)
    if not spans:
        raise HTTPException(404, "no trace with this id in this project")
    truncated = len(spans) > queries.TRACE_MAX_SPANS
    spans = spans[: queries.TRACE_MAX_SPANS]
    window = {
        "project": who.project_id,
        "trace": trace_id,
        "from": spans[0]["start_text"],
        "to": max(s["start_text"] for s in spans),
    }
    by_span = {r["span_id"]: r for r in ctx.sql.rows(who.project_id, queries.TRACE_INFERENCES, window)}
    first_ns = int(spans[0]["start_ns"])
    end_ns = max(int(s["start_ns"]) + int(s["duration_ns"]) for s in spans)
    depths = _depths(spans)
    out = [_span(s, first_ns, depths[s["span_id"]], by_span.get(s["span_id"])) for s in spans]
    priced = [i.cost for s in out if (i := s.inference) is not None and i.cost is not None]
    return Trace(
        trace_id=trace_id,
        start_time=spans[0]["start_iso"],
        duration_ms=(end_ns - first_ns) / 1e6,
        span_count=len(out),
        truncated=truncated,
        inferences=sum(1 for s in out if s.inference is not None),
        total_tokens=sum(s.inference.total_tokens for s in out if s.inference is not None),
        total_cost=sum(priced),
        unpriced_inferences=sum(1 for s in out if s.inference is not None and s.inference.cost is None),
        tool_calls=sum(1 for s in out if s.step == "tool_call"),
        retrievals=sum(1 for s in out if s.step == "retrieval"),
        spans=out,
    )


def _depths(spans: list[dict[str, Any]]) -> dict[str, int]:
    """Each span's depth under its root; cycles and missing parents end the walk."""
    parents = {s["span_id"]: s["parent_span_id"] for s in spans}
    depths: dict[str, int] = {}
    for span_id in parents:
        depth, seen, current = 0, {span_id}, parents[span_id]
        while current in parents and current not in seen:
            seen.add(current)
            depth += 1
            current = parents[current]
        depths[span_id] = depth
    return depths


def _span(row: dict[str, Any], first_ns: int, depth: int, inference: dict[str, Any] | None) -> TraceSpan:
    attributes = row["step_attributes"]
    step = step_of(attributes, inference is not None)
    return TraceSpan(
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        name=row["name"],
        kind=row["kind"],
        service_name=row["service_name"],
        start_time=row["start_iso"],
        offset_ms=(int(row["start_ns"]) - first_ns) / 1e6,
        duration_ms=int(row["duration_ns"]) / 1e6,
        depth=depth,
        status=row["status"],
        status_message=row["status_message"],
        inference=None
        if inference is None
        else SpanInference(**{k: v for k, v in inference.items() if k != "span_id"}),
        step=step,
        tool=tool_call(attributes) if step == "tool_call" else None,
        retrieval=retrieval(attributes, int(row["oi_documents"])) if step == "retrieval" else None,
    )
