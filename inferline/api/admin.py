"""Projects and API keys, and the erasure and export of an end user's or a session's data (GDPR),
for the admin key only (INFERLINE_ADMIN_KEY). Beyond a subject's export, the admin key reads no
project's data; a project key cannot use these routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, overload

import structlog
from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from inferline.api.deps import AdminDep, ApiContext, Caller, ContextDep, audit, key_id
from inferline.api.erasure import MAX_ID_CHARS, Kind, count_query, export_lines, subject_digest
from inferline.api.errors import documented, error_code
from inferline.storage.keys import KEY_ID, PROJECT_ID, KeyInfo, ProjectExists, ProjectInfo

log = structlog.get_logger()

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


# Right to erasure and portability (GDPR): an end user's or a session's rows, for the admin key.
# `:path` in the routes: a sender's id may hold a slash (`org/alice`), which arrives decoded.
SubjectId = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_CHARS, description="The id as stored (`user_id` / `session_id`)."),
]


class Erased(BaseModel):
    project_id: str
    subject: Literal["user", "session"]
    subject_digest: str = Field(
        description="First 16 hex digits of the id's SHA-256: names it in the audit log."
    )
    removed: dict[str, int] = Field(
        description="Rows removed per table (0 everywhere when nothing was held: erasure is idempotent)."
    )
    rows_removed: int


def _erase(ctx: ApiContext, who: Caller, project_id: str, kind: Kind, subject: str) -> Erased:
    if ctx.key_admin is not None:
        _known_project(ctx.key_admin, project_id)
    if ctx.eraser is None:
        raise HTTPException(503, "erasure is not available here: use the role that owns the store (writer)")
    try:
        removed = ctx.eraser.erase(project_id, kind, subject)
    except Exception as e:
        log.error("erasure failed", project_id=project_id, subject=kind, error=error_code(str(e)))
        raise HTTPException(503, "the store could not apply the erasure; retry (it is idempotent)") from None
    digest = subject_digest(subject)
    total = sum(removed.values())
    audit(
        who,
        f"admin.{kind}s.erase",
        rows=total,
        target_project=project_id,
        subject_digest=digest,
        removed=removed,
    )
    return Erased(
        project_id=project_id, subject=kind, subject_digest=digest, removed=removed, rows_removed=total
    )


def _export(ctx: ApiContext, who: Caller, project_id: str, kind: Kind, subject: str) -> StreamingResponse:
    if ctx.key_admin is not None:
        _known_project(ctx.key_admin, project_id)
    # Counted first: the audit line says how many rows leave, and a failing query is an HTTP
    # error here rather than a response cut short.
    counts = ctx.sql.rows(project_id, count_query(kind), {"project": project_id, "subject": subject})[0]
    audit(
        who,
        f"admin.{kind}s.export",
        rows=sum(int(v) for v in counts.values()),
        target_project=project_id,
        subject_digest=subject_digest(subject),
    )
    return StreamingResponse(
        export_lines(ctx.sql, project_id, kind, subject),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{kind}-{project_id}.jsonl"'},
    )


_SUBJECT_EXPORT: dict[int | str, dict[str, Any]] = {
    **documented(404),
    200: {
        "description": "One JSON object per stored row, with a `table` field naming its table",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    },
}
_ERASE_DOC = (
    "Removes every row held about the {what} from llm_inferences, feedback, otel_traces and otel_logs{usage} "
    "(docs/operations.md: what is removed, what stays). Answers once ClickHouse applied the deletes; "
    "a second call removes nothing. Audited with a digest of the id."
)


@router.delete(
    "/projects/{project_id}/users/{user_id:path}",
    response_model=Erased,
    summary="Erase an end user's data",
    description=_ERASE_DOC.format(what="end user", usage=" and the usage rollup's rows of the user"),
    responses=documented(404),
)
def erase_user(project_id: ProjectId, user_id: SubjectId, who: AdminDep, ctx: ContextDep) -> Erased:
    return _erase(ctx, who, project_id, "user", user_id)


@router.delete(
    "/projects/{project_id}/sessions/{session_id:path}",
    response_model=Erased,
    summary="Erase a session's data",
    description=_ERASE_DOC.format(what="session", usage=""),
    responses=documented(404),
)
def erase_session(project_id: ProjectId, session_id: SubjectId, who: AdminDep, ctx: ContextDep) -> Erased:
    return _erase(ctx, who, project_id, "session", session_id)


@router.get(
    "/projects/{project_id}/users/{user_id:path}/export",
    summary="Export an end user's data (JSONL)",
    description="Everything held about the end user, one JSON object per row with its `table`.",
    response_class=StreamingResponse,
    responses=_SUBJECT_EXPORT,
)
def export_user(
    project_id: ProjectId, user_id: SubjectId, who: AdminDep, ctx: ContextDep
) -> StreamingResponse:
    return _export(ctx, who, project_id, "user", user_id)


@router.get(
    "/projects/{project_id}/sessions/{session_id:path}/export",
    summary="Export a session's data (JSONL)",
    description="Everything held about the session, one JSON object per row with its `table`.",
    response_class=StreamingResponse,
    responses=_SUBJECT_EXPORT,
)
def export_session(
    project_id: ProjectId, session_id: SubjectId, who: AdminDep, ctx: ContextDep
) -> StreamingResponse:
    return _export(ctx, who, project_id, "session", session_id)
