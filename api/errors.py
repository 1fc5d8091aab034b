"""Error responses every route shares."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.responses import Response


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
