"""The API port (default 8080): the product API (/api/v1, OpenAPI at /openapi.json), health,
readiness, Prometheus metrics and read-only SQL (ClickHouse's HTTP interface at /)."""

from __future__ import annotations

import asyncio
import base64
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferline.api import (
    admin,
    alerts,
    analytics,
    feedback,
    inferences,
    insights,
    ledger,
    score_analytics,
    traces,
    webhooks,
)
from inferline.api.deps import ApiContext, Caller, KeySource, audit, key_id
from inferline.api.errors import query_failed, validation_error
from inferline.api.metrics_access import MetricsAccess
from inferline.api.response_headers import ResponseHeaders
from inferline.api.sql import ReadOnlySql
from inferline.api.sql_guard import SqlError
from inferline.storage.keys import key_from_headers

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


# API bodies are filters, feedback and SQL text: 1 MiB is far beyond any of them, and the limit
# holds before FastAPI parses JSON (which it does before the key is checked).
MAX_BODY_BYTES = 1 << 20
SQL_THREADS = 8


class BodyLimit:
    """413 for a request body over `max_bytes`, declared or streamed, before anything reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        seen = 0
        refused = False  # the 413 is sent: the app is told the client left, and nothing it sends goes out

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answered here, not by raising: a route that parses its body (FastAPI) turns
                    # any error while reading it into a 400 "error parsing the body".
                    refused = True
                    await _too_large(self.max_bytes)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited, unless_refused)
        except Exception:
            if not refused:
                raise


# Every API answer may quote stored content (prompts are hostile text): no browser may read one
# as another type, frame it or keep it. The dashboard (`/ui/`) sets its own, its static files
# stay cacheable; a response that chose a header (`/docs`' policy) keeps it.
API_RESPONSE_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def with_api_headers(app: ASGIApp) -> ResponseHeaders:
    """The API port's finished app with API_RESPONSE_HEADERS on every answer outside the dashboard
    (wrapped outside Starlette's error middleware, which answers a 500 without them)."""
    return ResponseHeaders(app, API_RESPONSE_HEADERS, skip_prefix="/ui/", keep_own=True)


def _too_large(limit: int) -> Response:
    return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)


def health_routes(ready: Callable[[], bool], metrics_access: MetricsAccess) -> list[Route]:
    """/healthz (the process answers), /readyz (its durable point takes data): open, for probes;
    /metrics: for the holders of `metrics_access`'s tokens."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if ready():
            return PlainTextResponse("ready")
        return PlainTextResponse("not ready: storage or Kafka is failing", status_code=503)

    async def metrics(request: Request) -> Response:
        if not metrics_access.allows(request.headers):
            return metrics_access.refusal()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


def health_app(ready: Callable[[], bool], metrics_access: MetricsAccess) -> Starlette:
    """The API port of a role that serves no SQL."""
    return Starlette(routes=health_routes(ready, metrics_access))


# Swagger UI from the dashboard's static files (ui/vendor-files.txt pins the copy), started by a
# script file: a script from another origin (FastAPI's default, a CDN) would run with the
# dashboard's cookies on this origin, and no inline script is allowed.
_API_DOCS = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inferline API</title>
<link rel="stylesheet" href="/ui/static/vendor/swagger-ui.css">
<link rel="icon" href="/ui/static/favicon.svg"></head>
<body><div id="swagger-ui"></div>
<script src="/ui/static/vendor/swagger-ui-bundle.js"></script>
<script src="/ui/static/api-docs.js"></script>
</body></html>"""
API_DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


async def api_docs(_: Request) -> Response:
    return Response(
        _API_DOCS,
        media_type="text/html; charset=utf-8",
        headers={
            "content-security-policy": API_DOCS_CSP,
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
        },
    )


def api_app(
    keys: KeySource,
    sql: ReadOnlySql,
    ready: Callable[[], bool],
    metrics_access: MetricsAccess,
    context: ApiContext | None = None,
) -> FastAPI:
    """`context` carries what the product API needs beyond keys and SQL (admin key, feedback
    writer, key management); without it those routes answer that they are off."""

    async def ping(request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    # Queries wait for their project's turn here, in the event loop, not in a thread: one
    # project's slow queries can only hold its own turn, never every project's threads.
    project_turns: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
    sql_threads = ThreadPoolExecutor(SQL_THREADS, thread_name_prefix="sql")

    async def query(request: Request) -> Response:
        key = _sql_key(request)
        project_id = keys.project_for(key)
        if project_id is None or key is None:
            return PlainTextResponse(
                "Code: 516. Authentication failed: missing or unknown API key "
                "(send it as the password, 'Authorization: Bearer <key>' or 'X-ClickHouse-Key').\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="inferline"'},
            )
        text = request.query_params.get("query", "")
        if request.method == "POST":
            posted = (await request.body()).decode("utf-8", errors="replace")
            # As in ClickHouse: the URL part, then the body.
            text = f"{text}\n{posted}" if text else posted
        params = {k[6:]: v for k, v in request.query_params.items() if k.startswith("param_")}
        who = Caller(project_id, key_id(key))
        try:
            async with project_turns[project_id]:
                body, fmt = await asyncio.get_running_loop().run_in_executor(
                    sql_threads, sql.run, project_id, text, request.query_params.get("default_format"), params
                )
        except SqlError as e:
            audit(who, "sql", refused=e.status)
            return PlainTextResponse(
                str(e) + "\n", status_code=e.status, headers={"X-ClickHouse-Exception-Code": "0"}
            )
        audit(who, "sql", result_bytes=len(body))  # never the query text: it may quote content
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
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: `api_docs` serves our copy
        redoc_url=None,
    )
    app.state.ctx = context or ApiContext(keys=keys, sql=sql)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(SqlError, query_failed)
    for module in (
        inferences,
        feedback,
        analytics,
        score_analytics,
        insights,
        traces,
        admin,
        ledger,
        alerts,
        webhooks,
    ):
        app.include_router(module.router)
    # Plain Starlette routes, outside the OpenAPI spec: ClickHouse's protocol and health probes.
    app.router.routes.extend(
        [
            *health_routes(ready, metrics_access),
            Route("/ping", ping),
            Route("/", query, methods=["GET", "POST"]),
            Route("/docs", api_docs),
        ]
    )
    return app
