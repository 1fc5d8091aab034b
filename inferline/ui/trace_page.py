"""A trace as a waterfall: each span a bar placed by its start and length within the trace, GenAI
spans marked with their tokens and cost. Read through the traces API's own function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from inferline.api import traces
from inferline.api.traces import TraceSpan
from inferline.ui.auth import SessionDep, StateDep

router = APIRouter()
MAX_INDENT = 12  # deeper spans are drawn at this depth (app.css has .depth-0 … .depth-12)


@dataclass(frozen=True)
class Bar:
    span: TraceSpan
    offset: float  # fraction of the trace before the span starts
    width: float  # fraction of the trace the span lasts
    indent: int


def bars(spans: list[TraceSpan], duration_ms: float) -> list[Bar]:
    total = duration_ms or 1.0
    return [
        Bar(s, min(1.0, s.offset_ms / total), min(1.0, s.duration_ms / total), min(s.depth, MAX_INDENT))
        for s in spans
    ]


@router.get("/traces/{trace_id}")
def trace_page(
    request: Request,
    state: StateDep,
    session: SessionDep,
    trace_id: Annotated[str, Path(pattern="^[0-9a-f]{32}$")],
    span: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    trace = traces.get_trace(trace_id, session.caller, state.ctx)  # 404 outside the project
    context = {
        "session": session,
        "trace": trace,
        "bars": bars(trace.spans, trace.duration_ms),
        "selected": span,
    }
    return state.templates.TemplateResponse(request, "trace.html", context)
