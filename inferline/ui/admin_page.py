"""Projects and API keys, for a session signed in with the admin key: list, create a project,
create a key (shown once, on the page the form redirects to), revoke a key. Every change goes
through the admin API's own functions, with their checks and audit lines."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from inferline.api import admin
from inferline.api.admin import KeyCreate, NewKey, ProjectCreate
from inferline.storage.keys import KEY_ID, PROJECT_ID
from inferline.ui.auth import AdminSessionDep, FormDep, StateDep
from inferline.ui.sessions import Session
from inferline.ui.state import UiState

router = APIRouter()


def _page(
    request: Request,
    state: UiState,
    session: Session,
    *,
    error: str = "",
    new_key: NewKey | None = None,
    status: int = 200,
) -> Response:
    who = session.caller
    projects = admin.list_projects(who, state.ctx).projects
    keys = {p.project_id: admin.list_keys(p.project_id, who, state.ctx).keys for p in projects}
    context: dict[str, Any] = {
        "session": session,
        "projects": projects,
        "keys": keys,
        "error": error,
        "new_key": new_key,
    }
    return state.templates.TemplateResponse(request, "admin.html", context, status_code=status)


@router.get("/admin")
def admin_page(request: Request, state: StateDep, session: AdminSessionDep) -> Response:
    flash = state.sessions.take_flash(session)
    return _page(request, state, session, new_key=flash if isinstance(flash, NewKey) else None)


@router.post("/admin/projects")
def create_project(request: Request, state: StateDep, session: AdminSessionDep, form: FormDep) -> Response:
    try:
        body = ProjectCreate(project_id=form.get("project_id", "").strip(), name=form.get("name", "").strip())
    except ValidationError:
        message = "A project id is 1–64 letters, digits, '_', '.' or '-', starting with a letter or digit."
        return _page(request, state, session, error=message, status=422)
    try:
        admin.create_project(body, session.caller, state.ctx)
    except HTTPException as e:
        return _page(request, state, session, error=str(e.detail), status=e.status_code)
    return RedirectResponse("/ui/admin", status_code=303)


@router.post("/admin/projects/{project_id}/keys")
def create_key(
    request: Request, state: StateDep, session: AdminSessionDep, form: FormDep, project_id: str
) -> Response:
    if not PROJECT_ID.match(project_id):
        raise HTTPException(404, "no such project")
    try:
        body = KeyCreate(name=form.get("name", "").strip())
    except ValidationError:
        return _page(request, state, session, error="A key's name is at most 256 characters.", status=422)
    new_key = admin.create_key(project_id, session.caller, state.ctx, body)
    # Post/Redirect/Get: the new key waits server-side for the next page (never in the URL); a
    # reload then re-requests the page instead of posting the form again, and no longer has it.
    state.sessions.leave_flash(session, new_key)
    return RedirectResponse("/ui/admin", status_code=303)


@router.post("/admin/keys/{key_id}/revoke")
def revoke_key(
    request: Request, state: StateDep, session: AdminSessionDep, form: FormDep, key_id: str
) -> Response:
    if not KEY_ID.match(key_id):
        raise HTTPException(404, "no such key")
    admin.revoke_key(key_id, session.caller, state.ctx)
    return RedirectResponse("/ui/admin", status_code=303)
