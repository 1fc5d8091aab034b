"""What the dashboard's routes share: the API's context (keys, read-only SQL, feedback writer),
the session store and the templates."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.templating import Jinja2Templates

from inferline.api.deps import ApiContext
from inferline.ui.sessions import SessionStore


@dataclass
class UiState:
    ctx: ApiContext
    sessions: SessionStore
    templates: Jinja2Templates


def ui_state(request: Request) -> UiState:
    return request.app.state.ui
