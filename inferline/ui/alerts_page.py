"""The project's alert rules: each with its state, a form to create one, a button to delete one.
Every change goes through the API's own functions (inferline.api.alerts), with their checks and
audit lines; the forms carry the session's CSRF token like every form of the dashboard."""

from __future__ import annotations

import uuid
from typing import Any, get_args

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from inferline.alerts.rules import Comparison, Metric, RuleSpec
from inferline.api import alerts
from inferline.ui.auth import FormDep, SessionDep, StateDep
from inferline.ui.sessions import Session
from inferline.ui.state import UiState

router = APIRouter()
METRICS = get_args(Metric)
COMPARISONS = get_args(Comparison)


def _page(
    request: Request,
    state: UiState,
    session: Session,
    *,
    error: str = "",
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "session": session,
        "rules": alerts.rules_of(state.ctx, session.caller).rules,
        "metrics": METRICS,
        "comparisons": COMPARISONS,
        "error": error,
        "form": form or {},
    }
    return state.templates.TemplateResponse(request, "alerts.html", context, status_code=status)


@router.get("/alerts")
def alerts_page(request: Request, state: StateDep, session: SessionDep) -> Response:
    return _page(request, state, session)


def _spec(form: dict[str, str]) -> RuleSpec:
    """The form's fields as a rule; blank optional fields are left out."""
    value = {k: v.strip() for k, v in form.items() if k != "csrf" and v.strip()}
    filters = {k: value.pop(k) for k in ("model", "provider", "tenant") if k in value}
    return RuleSpec.model_validate({**value, "filter": filters})


@router.post("/alerts/rules")
def create_rule(request: Request, state: StateDep, session: SessionDep, form: FormDep) -> Response:
    try:
        spec = _spec(form)
    except ValidationError as e:
        message = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'rule'}: {err['msg']}" for err in e.errors()
        )
        return _page(request, state, session, error=message, form=form, status=422)
    try:
        alerts.add_rule(state.ctx, session.caller, spec)
    except HTTPException as e:
        return _page(request, state, session, error=str(e.detail), form=form, status=e.status_code)
    return RedirectResponse("/ui/alerts", status_code=303)


@router.post("/alerts/rules/{rule_id}/delete")
def delete_rule(state: StateDep, session: SessionDep, form: FormDep, rule_id: uuid.UUID) -> Response:
    alerts.remove_rule(state.ctx, session.caller, rule_id)
    return RedirectResponse("/ui/alerts", status_code=303)
