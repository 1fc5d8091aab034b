"""The dashboard as an app mounted at /ui on the API port, and the browser's entrance at `/`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

from inferline.api.deps import ApiContext
from inferline.api.errors import error_code
from inferline.api.sql_guard import SqlError
from inferline.ui import (
    admin_page,
    alerts_page,
    analytics_page,
    auth,
    inference_pages,
    session_page,
    trace_page,
    users_page,
)
from inferline.ui.security import BrowserEntrance, with_security_headers
from inferline.ui.sessions import COOKIE, SessionStore
from inferline.ui.state import UiState
from inferline.ui.templating import STATIC_DIR, templates

MOUNT = "/ui"
log = structlog.get_logger()


def dashboard(ctx: ApiContext) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    ui = UiState(ctx=ctx, sessions=SessionStore(ctx.keys, is_admin=admin_check(ctx)), templates=templates())
    app.state.ui = ui

    async def error_page(request: Request, exc: Exception) -> Response:
        status, message = _status_and_message(exc)
        session = ui.sessions.get(request.cookies.get(COOKIE))
        return ui.templates.TemplateResponse(
            request,
            "error.html",
            {"session": session, "status": status, "message": message},
            status_code=status,
        )

    app.add_exception_handler(auth.SignInRequired, auth.sign_in_redirect)
    app.add_exception_handler(auth.AdminOnly, auth.admin_home)
    for exc_type in (HTTPException, RequestValidationError, SqlError):
        app.add_exception_handler(exc_type, error_page)

    async def failure_page(request: Request, exc: Exception) -> Response:
        # A bug: said plainly, with the error's type in the log (its message may quote user text).
        log.error("dashboard page failed", path=request.url.path, error=type(exc).__name__)
        return ui.templates.TemplateResponse(
            request,
            "error.html",
            {"session": None, "status": 500, "message": "Something went wrong on our side."},
            status_code=500,
        )

    app.add_exception_handler(Exception, failure_page)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(auth.router)
    app.include_router(inference_pages.router)
    app.include_router(analytics_page.router)
    app.include_router(trace_page.router)
    app.include_router(session_page.router)
    app.include_router(users_page.router)
    app.include_router(admin_page.router)
    app.include_router(alerts_page.router)
    return app


def admin_check(ctx: ApiContext) -> Callable[[str], bool]:
    """Whether a key is the admin key (INFERLINE_ADMIN_KEY; never, when it is unset)."""

    def is_admin(key: str) -> bool:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return bool(ctx.admin_key_sha256) and hmac.compare_digest(digest, ctx.admin_key_sha256)

    return is_admin


def _status_and_message(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return 404, "Not found in this project."
        return exc.status_code, str(exc.detail)
    if isinstance(exc, RequestValidationError):
        return 400, "The address has an invalid value: " + "; ".join(
            f"{err['loc'][-1]}: {err['msg']}" for err in exc.errors()
        )
    if "TIMEOUT_EXCEEDED" in str(exc):
        return 504, "The query took too long: narrow the date range or the filters."
    # The code only: engine messages can quote query parameters, which hold user text.
    log.error("dashboard query failed", error=error_code(str(exc)))
    return 500, "The query failed."


def add_dashboard(api: FastAPI) -> FastAPI:
    """Mounts the dashboard on the API app (which keeps its context on `app.state.ctx`) and sends
    browsers opening `/` to it."""
    # The headers wrap the whole dashboard, its error middleware too: a page that fails (a 500,
    # answered by Starlette outside the app's own middleware) carries them as every page does.
    api.mount(MOUNT, with_security_headers(dashboard(api.state.ctx)))
    api.add_middleware(BrowserEntrance, target=f"{MOUNT}/")
    return api
