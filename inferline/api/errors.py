"""Error responses every route shares."""

from __future__ import annotations

import json
import re
from typing import Any

import structlog
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from inferline.api.sql_guard import SqlError

log = structlog.get_logger()


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 body, written as ASCII JSON: errors echo the input, and a JSON string may
    hold a lone surrogate escape (`"\\ud800"`), which has no UTF-8 form and would otherwise turn
    the 422 into a 500."""
    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


class ErrorBody(BaseModel):
    detail: str


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for routes that answer these codes with a plain `{"detail": "..."}`."""
    return {code: {"model": ErrorBody, "description": _MEANINGS[code]} for code in codes}


_MEANINGS = {
    401: "Missing, unknown or revoked API key",
    403: "The key may not do this (another project's project_id; not the admin key; admin API off)",
    404: "Not found in the caller's project",
    409: "Already exists",
    503: "Not available in this role",
    504: "The query took too long",
}


async def query_failed(request: Request, exc: Exception) -> Response:
    """An engine error in one of the API's own queries: a timeout is the caller's to narrow
    (504); anything else is ours (500). The log gets the error code only: engine messages can
    quote query parameters, which hold user text."""
    assert isinstance(exc, SqlError)
    message = str(exc)
    if "TIMEOUT_EXCEEDED" in message:
        return JSONResponse(
            {"detail": "the query took too long: narrow the date range or the filters"}, status_code=504
        )
    log.error("API query failed", route=request.url.path, error=error_code(message))
    return JSONResponse({"detail": "the query failed"}, status_code=500)


def error_code(message: str) -> str:
    """`Code: 386 … (NO_COMMON_TYPE)` → `386 NO_COMMON_TYPE`."""
    code = _CODE.search(message)
    name = _NAME.search(message)
    return f"{code.group(1) if code else '?'} {name.group(1) if name else ''}".strip()


_CODE = re.compile(r"Code: (\d+)")
_NAME = re.compile(r"\(([A-Z_]+)\)(?:\s*\(version [^)]*\))?\s*$")
