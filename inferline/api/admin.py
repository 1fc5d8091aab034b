"""Projects and API keys, for the admin key only (INFERLINE_ADMIN_KEY). The admin key manages
projects and keys and reads no project's data; a project key cannot use these routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, overload

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from inferline.api.deps import AdminDep, ApiContext, ContextDep, audit, key_id
from inferline.api.errors import documented
from inferline.storage.keys import KEY_ID, PROJECT_ID, KeyInfo, ProjectExists, ProjectInfo

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=documented(401, 403, 503))

ProjectId = Annotated[str, Path(pattern=PROJECT_ID.pattern, description="Project id.")]
KeyId = Annotated[str, Path(pattern=KEY_ID.pattern, description="Key id (from the key list).")]


class ProjectCreate(BaseModel):
    project_id: str = Field(
        pattern=PROJECT_ID.pattern,
        description="1-64 letters, digits, `_`, `.`, `-`; starts with a letter or digit.",
    )
    name: str = Field("", max_length=256, description="Display name.")


class Project(BaseModel):
    project_id: str
    name: str
    created_at: datetime


class ProjectList(BaseModel):
    projects: list[Project]


class KeyCreate(BaseModel):
    name: str = Field("", max_length=256, description="What the key is for (`ci`, `checkout-bot`).")


class Key(BaseModel):
    key_id: str = Field(description="Public id: names the key in lists, revocation and the audit log.")
    project_id: str
    name: str
    created_at: datetime
    revoked: bool
    revoked_at: datetime | None


class NewKey(Key):
    key: str = Field(description="The key itself. Shown only in this response: store it now.")


class KeyList(BaseModel):
    keys: list[Key]


def _registry(ctx: ApiContext) -> Any:
    if ctx.key_admin is None:
        raise HTTPException(503, "key management is not available here: keys come from static configuration")
    return ctx.key_admin


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
def _utc(value: datetime | None) -> datetime | None:
    # The store gives naive UTC datetimes.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _project(p: ProjectInfo) -> Project:
    return Project(project_id=p.project_id, name=p.name, created_at=_utc(p.created_at))


def _key(k: KeyInfo) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "project_id": k.project_id,
        "name": k.name,
        "created_at": _utc(k.created_at),
        "revoked": k.revoked,
        "revoked_at": _utc(k.revoked_at),
    }


def _known_project(registry: Any, project_id: str) -> None:
    if registry.project(project_id) is None:
        raise HTTPException(404, f"no project {project_id}: create it with POST /api/v1/admin/projects")


@router.post(
    "/projects",
    status_code=201,
    response_model=Project,
    summary="Create a project",
    responses=documented(409),
)
def create_project(body: ProjectCreate, who: AdminDep, ctx: ContextDep) -> Project:
    registry = _registry(ctx)
    try:
        created = registry.create_project(body.project_id, body.name)
    except ProjectExists:
        raise HTTPException(409, f"project {body.project_id} already exists") from None
    audit(who, "admin.projects.create", target_project=body.project_id)
    return _project(created)


@router.get("/projects", response_model=ProjectList, summary="List projects")
def list_projects(who: AdminDep, ctx: ContextDep) -> ProjectList:
    projects = _registry(ctx).projects()
    audit(who, "admin.projects.list", rows=len(projects))
    return ProjectList(projects=[_project(p) for p in projects])


@router.post(
    "/projects/{project_id}/keys",
    status_code=201,
    response_model=NewKey,
    summary="Create an API key",
    responses=documented(404),
)
def create_key(
    project_id: ProjectId, who: AdminDep, ctx: ContextDep, body: KeyCreate | None = None
) -> NewKey:
    """A new key for the project. The key is in this response only; the store keeps its digest."""
    registry = _registry(ctx)
    _known_project(registry, project_id)
    key = registry.create(project_id, body.name if body else "")
    created = next(k for k in registry.keys(project_id) if k.key_id == key_id(key))
    audit(who, "admin.keys.create", target_project=project_id, target_key_id=created.key_id)
    return NewKey(**_key(created), key=key)


@router.get(
    "/projects/{project_id}/keys",
    response_model=KeyList,
    summary="List a project's keys",
    responses=documented(404),
)
def list_keys(project_id: ProjectId, who: AdminDep, ctx: ContextDep) -> KeyList:
    """Ids, names, creation and revocation: never the keys."""
    registry = _registry(ctx)
    _known_project(registry, project_id)
    keys = registry.keys(project_id)
    audit(who, "admin.keys.list", rows=len(keys), target_project=project_id)
    return KeyList(keys=[Key(**_key(k)) for k in keys])


@router.delete("/keys/{key_id}", response_model=Key, summary="Revoke an API key", responses=documented(404))
def revoke_key(key_id: KeyId, who: AdminDep, ctx: ContextDep) -> Key:
    """The key stops working at once in this process (API and receivers), and in other
    processes sharing the store at their next key refresh (30 s)."""
    try:
        revoked = _registry(ctx).revoke_id(key_id)
    except KeyError:
        raise HTTPException(404, "no key with this id") from None
    audit(who, "admin.keys.revoke", target_project=revoked.project_id, target_key_id=key_id)
    return Key(**_key(revoked))
