"""Error responses every route shares."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 body, written as ASCII JSON: errors echo the input, and a JSON string may
    hold a lone surrogate escape (`"\\ud800"`), which has no UTF-8 form and would otherwise turn
    the 422 into a 500."""
    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")
