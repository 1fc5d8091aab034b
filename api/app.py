"""The API port (default 8080): the product API (/api/v1, OpenAPI at /openapi.json), health,
readiness, Prometheus metrics and read-only SQL (ClickHouse's HTTP interface at /)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api import admin, analytics, feedback, inferences
from api.deps import ApiContext, KeySource
from api.errors import validation_error
from api.sql import ReadOnlySql
from api.sql_guard import SqlError
from ingest.auth import key_from_headers

# Of ClickHouse's HTTP interface parameters this endpoint reads `query`, `default_format` and
# `param_*`; settings are ignored (the session is read-only and could not take them anyway).


def _sql_key(request: Request) -> str | None:
    """The API key, as any ClickHouse client would send a password."""
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            return base64.b64decode(auth[6:]).decode().partition(":")[2] or None
        except ValueError:
            return None
    return (
        key_from_headers(request.headers)
        or request.headers.get("x-clickhouse-key")
        or request.query_params.get("password")
    )


def health_routes(ready: Callable[[], bool]) -> list[Route]:
    """/healthz (the process answers), /readyz (its durable point takes data), /metrics."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if ready():
            return PlainTextResponse("ready")
        return PlainTextResponse("not ready: storage or Kafka is failing", status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


def health_app(ready: Callable[[], bool]) -> Starlette:
    """The API port of a role that serves no SQL."""
    return Starlette(routes=health_routes(ready))


def api_app(
    keys: KeySource, sql: ReadOnlySql, ready: Callable[[], bool], context: ApiContext | None = None
) -> FastAPI:
    """`context` carries what the product API needs beyond keys and SQL (admin key, feedback
    writer, key management); without it those routes answer that they are off."""

    async def ping(request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def query(request: Request) -> Response:
        project_id = keys.project_for(_sql_key(request))
        if project_id is None:
            return PlainTextResponse(
                "Code: 516. Authentication failed: missing or unknown API key "
                "(send it as the password, 'Authorization: Bearer <key>' or 'X-ClickHouse-Key').\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="inferline"'},
            )
        text = request.query_params.get("query", "")
        if request.method == "POST":
            body = (await request.body()).decode("utf-8", errors="replace")
            # As in ClickHouse: the URL part, then the body.
            text = f"{text}\n{body}" if text else body
        params = {k[6:]: v for k, v in request.query_params.items() if k.startswith("param_")}
        try:
            body, fmt = await asyncio.to_thread(
                sql.run, project_id, text, request.query_params.get("default_format"), params
            )
        except SqlError as e:
            return PlainTextResponse(
                str(e) + "\n", status_code=e.status, headers={"X-ClickHouse-Exception-Code": "0"}
            )
        return Response(
            body,
            media_type="text/plain; charset=UTF-8",
            headers={
                "X-ClickHouse-Format": fmt,
                "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Summary": orjson.dumps({"read_rows": "0", "written_rows": "0"}).decode(),
            },
        )

    app = FastAPI(
        title="inferline API",
        version="1",
        summary="LLM inferences per project: list, detail, feedback, analytics, export.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.ctx = context or ApiContext(keys=keys, sql=sql)
    app.add_exception_handler(RequestValidationError, validation_error)
    for module in (inferences, feedback, analytics, admin):
        app.include_router(module.router)
    # Plain Starlette routes, outside the OpenAPI spec: ClickHouse's protocol and health probes.
    app.router.routes.extend(
        [*health_routes(ready), Route("/ping", ping), Route("/", query, methods=["GET", "POST"])]
    )
    return app
