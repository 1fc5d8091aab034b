"""Inferences of the caller's project: list with filters and sorting, export, detail.

Every read goes through the project's read-only session (`ReadOnlySql`), with the caller's
project as a query parameter as well; a `project_id` in a request is only checked against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from inferline.api.deps import CallerDep, ContextDep, audit
from inferline.api.errors import documented, error_code
from inferline.api.filters import check_project, where_clause
from inferline.api.inference_models import (
    ExportFormat,
    ExportQuery,
    ExportRequest,
    InferenceDetail,
    InferenceList,
    ListRequest,
)
from inferline.api.inference_report import detail_from_rows
from inferline.api.sql import ReadOnlySql
from inferline.storage import queries

log = structlog.get_logger()
router = APIRouter(prefix="/api/v1/metrics/inferences", tags=["inferences"], responses=documented(401, 504))

_FORMATS = {
    "csv": ("CSVWithNames", "text/csv; charset=utf-8"),
    "jsonl": ("JSONEachRow", "application/x-ndjson"),
}


def _rows(sql: ReadOnlySql, project_id: str, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    # Engine errors become 504/500 in inferline.api.errors.query_failed.
    return sql.rows(project_id, query, params)


@router.post("/list", response_model=InferenceList, summary="List inferences", responses=documented(403))
def list_inferences(body: ListRequest, who: CallerDep, ctx: ContextDep) -> InferenceList:
    """A page of the project's inferences matching the filters, in the chosen order, with the
    total count of matches."""
    check_project(body, who.project_id)
    where, params = where_clause(body, who.project_id)
    query = queries.list_page(where, body.sort_by, body.sort_order)
    items = _rows(ctx.sql, who.project_id, query, {**params, "limit": body.limit, "offset": body.offset})
    total = _rows(ctx.sql, who.project_id, queries.count(where), params)[0]["total"]
    audit(who, "inferences.list", rows=len(items), filters=body.names())
    return InferenceList.model_validate(
        {
            "items": items,
            "total_count": total,
            "offset": body.offset,
            "limit": body.limit,
            "has_more": body.offset + len(items) < total,
        }
    )


def _export(ctx: ContextDep, who: CallerDep, request: ExportRequest, fmt: ExportFormat) -> StreamingResponse:
    check_project(request, who.project_id)
    where, params = where_clause(request, who.project_id)
    if request.limit is not None:
        params["limit"] = request.limit
    # Counted first: the audit line says how many rows leave, and a failing query is an HTTP
    # error here rather than a response cut short.
    total = _rows(ctx.sql, who.project_id, queries.count(where), params)[0]["total"]
    rows = min(total, request.limit) if request.limit is not None else total
    audit(who, "inferences.export", rows=rows, filters=request.names(), format=fmt)
    columns = queries.CSV_COLUMNS if fmt == "csv" else queries.ITEM_COLUMNS
    query = queries.export(where, request.sort_by, request.sort_order, columns, request.limit is not None)
    ch_format, media_type = _FORMATS[fmt]
    chunks = _stream(ctx.sql, who.project_id, query, ch_format, params)
    return StreamingResponse(
        chunks,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="inferences-{who.project_id}.{fmt}"'},
    )


def _stream(
    sql: ReadOnlySql, project_id: str, query: str, fmt: str, params: dict[str, Any]
) -> Iterator[bytes]:
    """Chunks as the engine makes them (Starlette iterates this in a worker thread)."""
    try:
        yield from sql.stream(project_id, query, fmt, params)
    except Exception as e:  # headers are gone: the cut-short body is all the client can see
        log.error("export failed mid-stream", error=error_code(str(e)))
        raise


_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **documented(403),
    200: {
        "description": "CSV with a header row, or one JSON object per line",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    },
}
_EXPORT_DOC = (
    "Every matching inference, streamed: CSV (the seed's columns) or JSONL (the list's item "
    "fields), in list order. Honours every list filter."
)


@router.post(
    "/export",
    summary="Export inferences (filters in the body)",
    description=_EXPORT_DOC,
    responses=_EXPORT_RESPONSES,
)
def export_post(
    body: ExportRequest,
    who: CallerDep,
    ctx: ContextDep,
    format: Annotated[ExportFormat, Query(description="`csv` or `jsonl`")] = "csv",
) -> StreamingResponse:
    return _export(ctx, who, body, format)


@router.get(
    "/export",
    summary="Export inferences (filters in the query string)",
    description=_EXPORT_DOC,
    responses=_EXPORT_RESPONSES,
)
def export_get(
    query: Annotated[ExportQuery, Query()],
    who: CallerDep,
    ctx: ContextDep,
) -> StreamingResponse:
    return _export(ctx, who, _export_request(query), query.format)  # type: ignore[attr-defined]


def _export_request(query: BaseModel) -> ExportRequest:
    """The query string's fields as an ExportRequest (so the same checks apply), with errors
    reported as query-parameter errors."""
    data = query.model_dump(exclude={"format", "tag", "score"}, exclude_none=True)
    tags: dict[str, str] = {}
    for item in query.tag:  # type: ignore[attr-defined]
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _query_error("tag", "tag must be key=value", item)
        if tags.get(key, value) != value:
            raise _query_error("tag", f"tag {key} is given twice: one value per key", item)
        tags[key] = value
    if tags:
        data["tags"] = tags
    # One score's conditions may come in several parameters (`score=relevance=relevant&
    # score=relevance::0.7`): they combine, as in the POST body; the same one twice is refused.
    scores: dict[str, dict[str, str]] = {}
    for item in query.score:  # type: ignore[attr-defined]
        name, sep, label = item.partition("=")
        if sep and name:
            condition = {"label": label}
        else:
            name, *bounds = item.rsplit(":", 2)  # the name may hold colons; the bounds cannot
            if len(bounds) != 2 or not name:
                raise _query_error("score", "score must be name:min:max or name=label", item)
            condition = {k: v for k, v in zip(("min", "max"), bounds, strict=True) if v}
        held = scores.setdefault(name, {})
        for field, value in condition.items():
            if held.get(field, value) != value:
                raise _query_error("score", f"score {name} is given two {field} conditions", item)
        held.update(condition)
    if scores:
        data["scores"] = scores
    try:
        return ExportRequest.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError(
            [
                {**err, "loc": ("query", *err["loc"])}
                for err in e.errors(include_url=False, include_context=False)
            ]
        ) from None


def _query_error(name: str, message: str, item: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": item}]
    )


@router.get(
    "/{inference_id}", response_model=InferenceDetail, summary="One inference", responses=documented(404)
)
def get_inference(
    inference_id: Annotated[UUID, Path(description="The inference's id (from the list).")],
    who: CallerDep,
    ctx: ContextDep,
    window_hours: Annotated[
        int, Query(ge=1, le=24 * 90, description="Hours before this call that the averages cover.")
    ] = 24,
) -> InferenceDetail:
    """Overview, messages, performance (compared with the project's and the model's averages
    over a recent window), raw attributes and evaluation results of one inference of the project."""
    params = {"project": who.project_id, "id": str(inference_id)}
    found = _rows(ctx.sql, who.project_id, queries.DETAIL, params)
    audit(who, "inferences.get", rows=len(found), inference_id=str(inference_id))
    if not found:
        raise HTTPException(404, "no inference with this id in this project")
    row = found[0]
    span_params = {
        "project": who.project_id,
        "trace": row["trace_id"],
        "span": row["span_id"],
        "start": row["start_time_text"],
    }
    span = _rows(ctx.sql, who.project_id, queries.SPAN, span_params)
    start = _parse_iso(row["start_time_iso"])
    window = {
        "project": who.project_id,
        "model": row["model"],
        "from": (start - timedelta(hours=window_hours)).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "to": row["start_time_text"],
    }
    averages = _rows(ctx.sql, who.project_id, queries.AVERAGES, window)[0]
    window_from = (start - timedelta(hours=window_hours)).isoformat().replace("+00:00", "Z")
    score_params = {
        "project": who.project_id,
        "trace": row["trace_id"],
        "span": row["span_id"],
        "response": row["response_id"],
        "session": row["session_id"],
    }
    scores = _rows(ctx.sql, who.project_id, queries.DETAIL_SCORES, score_params)
    return detail_from_rows(
        row, span[0] if span else None, averages, window_from, row["start_time_iso"], scores
    )


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
