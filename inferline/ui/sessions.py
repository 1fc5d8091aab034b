"""Signed-in browsers: an opaque random session id (the cookie) → the key's project, kept in this
process's memory. A restart signs every browser out; so does the key's revocation (each request
checks the key again)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from inferline.api.deps import Caller, KeySource, key_id

COOKIE = "inferline_session"
LIFETIME_S = 12 * 3600  # a session ends this long after sign-in, whatever its use
IDLE_S = 2 * 3600  # or after this long unused
MAX_SESSIONS = 10_000  # the oldest are dropped beyond it: memory stays bounded
FLASH_S = 60  # a flash (what one page tells the next, e.g. a new key) is gone this long after


@dataclass(frozen=True)
class Flash:
    """A value one answer leaves for the next page of the same session (Post/Redirect/Get): kept
    server-side, never in a URL or a cookie, read once."""

    value: object = field(repr=False)
    expires_at: float


@dataclass
class Session:
    session_id: str = field(repr=False)
    key: str = field(repr=False)  # kept server-side only, to notice a revoked key
    project_id: str
    csrf_token: str = field(repr=False)  # the hidden field every state-changing form carries
    created_at: float
    last_used_at: float
    admin: bool = False  # signed in with the admin key: manages projects and keys, reads no data
    flash: Flash | None = field(default=None, repr=False)

    @property
    def caller(self) -> Caller:
        return Caller(self.project_id, key_id(self.key))


class SessionStore:
    def __init__(
        self,
        keys: KeySource,
        is_admin: Callable[[str], bool] = lambda key: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._is_admin = is_admin
        # Oldest first; an OrderedDict because taking from the front of a plain dict is O(n) once
        # entries were deleted there.
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self._now = clock

    def sign_in(self, key: str) -> Session | None:
        """A new session for a project's key or the admin key; None for any other."""
        project_id = self._keys.project_for(key)
        admin = project_id is None and self._is_admin(key)
        if project_id is None and not admin:
            return None
        now = self._now()
        session = Session(
            session_id=secrets.token_urlsafe(32),
            key=key,
            project_id=project_id or "",
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_used_at=now,
            admin=admin,
        )
        with self._lock:
            self._drop_expired(now)
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.popitem(last=False)
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, its use noted; None when absent, expired or its key
        no longer opens its project."""
        if not session_id:
            return None
        now = self._now()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now) or not self._still_valid(session):
                del self._sessions[session_id]
                return None
            session.last_used_at = now
            return session

    def leave_flash(self, session: Session, value: object) -> None:
        """Keeps `value` for the session's next page (replacing an unread one)."""
        with self._lock:
            session.flash = Flash(value, self._now() + FLASH_S)

    def take_flash(self, session: Session) -> object | None:
        """The value left for this page, once: None when there is none or it is too old."""
        with self._lock:
            flash, session.flash = session.flash, None
        if flash is None or self._now() > flash.expires_at:
            return None
        return flash.value

    def sign_out(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _still_valid(self, session: Session) -> bool:
        if session.admin:
            return self._is_admin(session.key)
        return self._keys.project_for(session.key) == session.project_id

    @staticmethod
    def _expired(session: Session, now: float) -> bool:
        return now - session.created_at > LIFETIME_S or now - session.last_used_at > IDLE_S

    def _drop_expired(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[sid]
