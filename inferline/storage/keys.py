"""API keys → projects. Keys are stored hashed (SHA-256) in the `api_keys` table so every
receiver of a deployment sees the same set; the project id is always taken from the key, never
from the payload."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from clickhouse_connect.driver.client import Client

from inferline.core.logging import error_summary

log = structlog.get_logger()

PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_PROJECT = "default"
DEFAULT_KEY_FILE = "default_api_key"


KEY_ID = re.compile(r"^[0-9a-f]{12}$")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(digest: str) -> str:
    """A key's public id: the start of its digest (the audit log names keys the same way)."""
    return digest[:12]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    project_id: str
    name: str
    created_at: datetime
    revoked: bool
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    project_id: str
    name: str
    created_at: datetime


class ProjectExists(Exception):
    pass


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """`Authorization: Bearer <key>` or `x-api-key: <key>` (header names lowercase)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


class ApiKeys:
    """Keys from the `api_keys` table, cached. The cache is refreshed in the background every
    `refresh_s` (so revocations reach every receiver), and at once, at most once a second, for an
    unknown key (one just made by another process). A failing store leaves the cache in use.
    Also the registry the admin API and CLI manage: projects, keys by id, revocation."""

    def __init__(self, client: Client, database: str = "default", refresh_s: float = 30.0) -> None:
        self._client = client
        self._database = database
        self._refresh_s = refresh_s
        self._projects: dict[str, str] = {}
        self._loaded_at = 0.0
        self._miss_reload_at = 0.0
        self._lock = threading.Lock()  # one query at a time on the client
        self._refreshing = False
        # Revoked here: a refresh whose query ran just before the revocation must not bring the
        # key back.
        self._revoked: set[str] = set()

    def load(self) -> None:
        with self._lock:
            rows = self._client.query(
                f"SELECT key_sha256, argMax(project_id, created_at), argMax(revoked, created_at) "
                f"FROM `{self._database}`.api_keys GROUP BY key_sha256"
            ).result_rows
        revoked_here = self._revoked
        self._projects = {
            digest: project for digest, project, revoked in rows if not revoked and digest not in revoked_here
        }
        self._loaded_at = time.monotonic()

    def _try_load(self) -> None:
        try:
            self.load()
        except Exception as e:
            log.warning("could not refresh API keys; using the cached set", error=error_summary(e))

    def _refresh_in_background(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True

        def refresh() -> None:
            try:
                self._try_load()
            finally:
                self._refreshing = False

        threading.Thread(target=refresh, name="api-keys-refresh", daemon=True).start()

    def project_for(self, key: str | None) -> str | None:
        if not key:
            return None
        now = time.monotonic()
        if not self._loaded_at:
            self._try_load()
        elif now - self._loaded_at > self._refresh_s:
            self._refresh_in_background()
        project = self._projects.get(_digest(key))
        if project is None and now > self._miss_reload_at:
            self._miss_reload_at = now + 1.0
            self._try_load()
            project = self._projects.get(_digest(key))
        return project

    def create(self, project_id: str, name: str = "") -> str:
        """A new key for the project (the project is recorded if new); returns the key, which is
        stored only as its digest."""
        if not PROJECT_ID.match(project_id):
            raise ValueError("project id: 1-64 characters of letters, digits, '_', '.', '-'")
        key = "il_" + secrets.token_urlsafe(32)
        with self._lock:
            if not self._project_row(project_id):
                self._insert_project(project_id, "")
            self._client.insert(
                f"`{self._database}`.api_keys",
                [[_digest(key), project_id, name, False, _now()]],
                column_names=["key_sha256", "project_id", "name", "revoked", "issued_at"],
            )
        self._projects[_digest(key)] = project_id
        return key

    def revoke(self, key: str) -> None:
        digest = _digest(key)
        if self.project_for(key) is None:
            raise KeyError("unknown key")
        self._revoke_digest(digest)

    def revoke_id(self, key_id: str) -> KeyInfo:
        """Revoke the key with this id; it stops working in this process at once, and in other
        processes at their next refresh. Raises KeyError for an unknown id."""
        if not KEY_ID.match(key_id):
            raise KeyError("unknown key id")
        found = self._key_rows("startsWith(key_sha256, {id:String})", {"id": key_id})
        if len(found) != 1:
            raise KeyError("unknown key id")
        digest, info = found[0]
        if not info.revoked:
            self._revoke_digest(digest)
        return self._key_rows("key_sha256 = {d:String}", {"d": digest})[0][1]

    def _revoke_digest(self, digest: str) -> None:
        self._revoked.add(digest)
        self._projects.pop(digest, None)
        current = self._key_rows("key_sha256 = {d:String}", {"d": digest})
        if not current:
            raise KeyError("unknown key")
        info = current[0][1]
        with self._lock:
            # A newer row replaces the key's: same project, name and issue time, revoked.
            self._client.insert(
                f"`{self._database}`.api_keys",
                [[digest, info.project_id, info.name, True, info.created_at]],
                column_names=["key_sha256", "project_id", "name", "revoked", "issued_at"],
            )
        self._projects.pop(digest, None)

    def keys(self, project_id: str) -> list[KeyInfo]:
        """The project's keys, oldest first, without the keys themselves."""
        return [info for _, info in self._key_rows("project_id = {p:String}", {"p": project_id})]

    def _key_rows(self, condition: str, params: dict[str, str]) -> list[tuple[str, KeyInfo]]:
        with self._lock:
            rows = self._client.query(
                f"SELECT key_sha256, argMax(project_id, created_at), argMax(name, created_at), "
                f"argMax(issued_at, created_at), argMax(revoked, created_at), max(created_at) "
                f"FROM `{self._database}`.api_keys WHERE {condition} GROUP BY key_sha256 "
                f"ORDER BY 4, 1",
                parameters=params,
            ).result_rows
        return [
            (digest, KeyInfo(key_id_of(digest), project, name, issued, revoked, last if revoked else None))
            for digest, project, name, issued, revoked, last in rows
        ]

    def create_project(self, project_id: str, name: str = "") -> ProjectInfo:
        if not PROJECT_ID.match(project_id):
            raise ValueError("project id: 1-64 characters of letters, digits, '_', '.', '-'")
        with self._lock:
            if self._project_row(project_id):
                raise ProjectExists(project_id)
            self._insert_project(project_id, name)
            return self._project_row(project_id)[0]

    def projects(self) -> list[ProjectInfo]:
        with self._lock:
            return self._project_row(None)

    def project(self, project_id: str) -> ProjectInfo | None:
        with self._lock:
            found = self._project_row(project_id)
        return found[0] if found else None

    def _project_row(self, project_id: str | None) -> list[ProjectInfo]:
        where = "" if project_id is None else "WHERE project_id = {p:String}"
        rows = self._client.query(
            f"SELECT project_id, argMax(name, created_at), min(created_at) "
            f"FROM `{self._database}`.projects {where} GROUP BY project_id ORDER BY project_id",
            parameters={"p": project_id} if project_id is not None else None,
        ).result_rows
        return [ProjectInfo(*row) for row in rows]

    def _insert_project(self, project_id: str, name: str) -> None:
        self._client.insert(
            f"`{self._database}`.projects", [[project_id, name]], column_names=["project_id", "name"]
        )

    def is_empty(self) -> bool:
        return not self._projects


def _now() -> datetime:
    return datetime.now().astimezone()


def ensure_default_key(keys: ApiKeys, data_dir: Path) -> str | None:
    """On the first start: create the default project's key, keep it in the data directory
    (readable by the owner only) and return it so the caller prints it once."""
    keys.load()
    if not keys.is_empty():
        return None
    key = keys.create(DEFAULT_PROJECT, "default key, created on first start")
    write_owner_only(data_dir / DEFAULT_KEY_FILE, key + "\n")
    return key


def write_owner_only(path: Path, text: str) -> None:
    """A secret kept in the data directory: created readable and writable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not through a symlink; and an existing file gets the mode too (O_CREAT's applies only to new ones).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class StaticKeys:
    """Keys given in configuration ("key=project,key2=project2" or a file with one `key=project`
    per line; blank lines and '#' comments allowed). Lets a distributed receiver authenticate
    without a connection to the writer's store. Same interface as `ApiKeys`."""

    def __init__(self, pairs: Mapping[str, str]) -> None:
        for project in pairs.values():
            if not PROJECT_ID.match(project):
                raise ValueError(f"invalid project id {project!r} in static API keys")
        self._projects = {_digest(k): p for k, p in pairs.items()}

    @classmethod
    def parse(cls, spec: str = "", path: Path | None = None) -> StaticKeys:
        items = spec.split(",")
        if path is not None:
            items += path.read_text(encoding="utf-8").splitlines()
        pairs: dict[str, str] = {}
        for item in items:
            item = item.strip()
            if not item or item.startswith("#"):
                continue
            key, sep, project = item.partition("=")
            if not sep or not key.strip():
                raise ValueError("static API keys: expected key=project")
            pairs[key.strip()] = project.strip()
        return cls(pairs)

    def project_for(self, key: str | None) -> str | None:
        return self._projects.get(_digest(key)) if key else None

    def is_empty(self) -> bool:
        return not self._projects


class AnyKeys:
    """The first key source that knows the key wins (static keys, then the api_keys table)."""

    def __init__(self, *sources: StaticKeys | ApiKeys) -> None:
        self._sources = sources

    def project_for(self, key: str | None) -> str | None:
        for source in self._sources:
            project = source.project_for(key)
            if project is not None:
                return project
        return None
