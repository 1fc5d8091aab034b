"""What every API route depends on: the caller (from the API key), the service's parts, and the
audit log.

The project a route works on is always the caller's key's project; no route takes a project from
a parameter, a header or a body. Data is read through `ReadOnlySql`'s per-project session, whose
`additional_table_filters` confine every table to that project on the server as well.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from inferline.api.sql import ReadOnlySql
from inferline.storage.keys import key_from_headers

audit_log = structlog.get_logger("audit")


class KeySource(Protocol):
    def project_for(self, key: str | None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Caller:
    project_id: str
    key_id: str  # a short digest of the key: names it in the audit log without revealing it


@dataclass
class ApiContext:
    """The service's parts the routes use (kept on `app.state.ctx`)."""

    keys: KeySource
    sql: ReadOnlySql
    database: str = "default"
    admin_key_sha256: str = ""  # empty: the admin routes are off
    # Hands feedback rows to the pipeline's writer; returns once they are durable. None where
    # this role has no writer (the routes answer 503 there).
    write_feedback: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None
    # Creates and revokes keys (ApiKeys); None where keys come from static configuration.
    key_admin: Any = None
    # Deletes an end user's or a session's rows (inferline.api.erasure.Eraser, with a writable
    # client of its own); None where this role owns no store (the erasure routes answer 503).
    eraser: Any = None
    # Alert rules and webhooks (inferline.alerts.component.Alerting); None where this role owns
    # no store (the routes answer 503).
    alerts: Any = None


def admin_digest(admin_key: str) -> str:
    return hashlib.sha256(admin_key.encode()).hexdigest() if admin_key else ""


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


# Declared so the OpenAPI spec names the scheme; checked by `caller` (auto_error off, so a
# missing key is a clear 401 of ours rather than FastAPI's 403).
bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")


def context(request: Request) -> ApiContext:
    return request.app.state.ctx


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="inferline"'})


def caller(
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    key = key_from_headers(request.headers)
    if not key:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    project_id = ctx.keys.project_for(key)
    if project_id is None:
        raise _unauthorized("unknown or revoked API key")
    return Caller(project_id, key_id(key))


def admin(
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The admin key (INFERLINE_ADMIN_KEY): manages projects and keys, reads no project's data."""
    key = key_from_headers(request.headers)
    if not key:
        raise _unauthorized("missing admin key: send 'Authorization: Bearer <admin key>'")
    if not ctx.admin_key_sha256:
        raise HTTPException(403, "the admin API is off: set INFERLINE_ADMIN_KEY to enable it")
    digest = hashlib.sha256(key.encode()).hexdigest()
    if not hmac.compare_digest(digest, ctx.admin_key_sha256):
        if ctx.keys.project_for(key) is None:  # no key at all: as on every other route
            raise _unauthorized("unknown or revoked key: send 'Authorization: Bearer <admin key>'")
        raise HTTPException(403, "this key is not the admin key")
    return Caller("", key_id(key))


CallerDep = Annotated[Caller, Depends(caller)]
AdminDep = Annotated[Caller, Depends(admin)]
ContextDep = Annotated[ApiContext, Depends(context)]


def audit(who: Caller, action: str, *, rows: int | None = None, **details: Any) -> None:
    """One structured line per data access: who (key id, project), what, how many rows; the
    timestamp comes from the log pipeline. `details` are ids and filter names, never content."""
    audit_log.info("audit", key_id=who.key_id, project_id=who.project_id, action=action, rows=rows, **details)
