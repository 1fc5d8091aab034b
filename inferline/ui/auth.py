"""Signing in with an API key (exchanged for a session cookie), signing out, and what every other
page depends on: the signed-in session, and a valid CSRF token on what it posts."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from inferline.api.deps import audit
from inferline.ui.security import same_origin, tokens_match
from inferline.ui.sessions import COOKIE, LIFETIME_S, Session, SessionStore
from inferline.ui.state import UiState, ui_state

router = APIRouter()
# The sign-in form's own CSRF token (double submit: a cookie and the same value in the form),
# so another site cannot sign a browser in with the attacker's key.
SIGNIN_COOKIE = "inferline_signin"
MAX_FORM_BYTES = 64 * 1024


class SignInRequired(Exception):
    """Raised by `signed_in`; answered with a redirect to the sign-in page."""


async def sign_in_redirect(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request"):
        # htmx would follow a redirect inside the page; this makes it load the sign-in page.
        return Response(status_code=200, headers={"HX-Redirect": "/ui/signin"})
    return RedirectResponse("/ui/signin", status_code=303)


class AdminOnly(Exception):
    """Raised by `signed_in` for the admin's session: it reads no project's data."""


async def admin_home(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": "/ui/admin"})
    return RedirectResponse("/ui/admin", status_code=303)


def any_session(request: Request, state: Annotated[UiState, Depends(ui_state)]) -> Session:
    session = state.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired
    return session


AnySessionDep = Annotated[Session, Depends(any_session)]


def signed_in(session: AnySessionDep) -> Session:
    """A project's session: the data pages' dependency."""
    if session.admin:
        raise AdminOnly
    return session


def admin_signed_in(session: AnySessionDep) -> Session:
    if not session.admin:
        raise HTTPException(403, "Only the admin key manages projects and keys.")
    return session


SessionDep = Annotated[Session, Depends(signed_in)]
AdminSessionDep = Annotated[Session, Depends(admin_signed_in)]
StateDep = Annotated[UiState, Depends(ui_state)]


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the dashboard's forms post nothing else)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(415, "expected a form")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES * 4:
        raise HTTPException(413, "form too large")
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


async def checked_form(request: Request, session: AnySessionDep) -> dict[str, str]:
    """The posted form of a signed-in session, once it passed the CSRF checks."""
    fields = await form_fields(request)
    if not same_origin(request) or not tokens_match(fields.get("csrf"), session.csrf_token):
        raise HTTPException(403, "the form expired or came from another site: reload the page and retry")
    return fields


FormDep = Annotated[dict[str, str], Depends(checked_form)]


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.session_id,
        max_age=LIFETIME_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.get("/signin")
def signin_page(request: Request, state: StateDep) -> Response:
    if state.sessions.get(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse("/ui/inferences", status_code=303)
    return _signin_form(request, state, error="", status=200)


def _signin_form(request: Request, state: UiState, error: str, status: int) -> Response:
    token = secrets.token_urlsafe(32)
    response = state.templates.TemplateResponse(
        request, "signin.html", {"csrf": token, "error": error, "session": None}, status_code=status
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=3600,
        path="/ui/signin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/signin")
async def signin(request: Request, state: StateDep) -> Response:
    fields = await form_fields(request)
    if not same_origin(request) or not tokens_match(
        fields.get("csrf"), request.cookies.get(SIGNIN_COOKIE, "")
    ):
        return _signin_form(request, state, "The form expired: please sign in again.", 403)
    key = fields.get("key", "").strip()
    session = state.sessions.sign_in(key) if key else None
    if session is None:
        return _signin_form(request, state, "That API key is not valid (unknown or revoked).", 401)
    audit(session.caller, "ui.signin", admin=session.admin)
    response = RedirectResponse("/ui/admin" if session.admin else "/ui/inferences", status_code=303)
    set_session_cookie(response, request, session)
    response.delete_cookie(SIGNIN_COOKIE, path="/ui/signin")
    return response


@router.post("/signout")
async def signout(request: Request, state: StateDep, session: AnySessionDep, form: FormDep) -> Response:
    state.sessions.sign_out(session.session_id)
    audit(session.caller, "ui.signout")
    response = RedirectResponse("/ui/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


__all__ = ["AdminSessionDep", "FormDep", "SessionDep", "SessionStore", "StateDep", "router"]
