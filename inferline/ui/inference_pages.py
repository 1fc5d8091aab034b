"""The Inferences page (filtered, sorted, paged table with totals and export) and one inference's
detail with its tabs. Every read is a call of the product API's own route function with the
session's `Caller`: the same project confinement, queries and audit lines as the API."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from inferline.api import analytics, feedback, inferences
from inferline.api.analytics import AnalyticsQuery
from inferline.api.feedback import FeedbackIn
from inferline.api.inference_models import InferenceDetail
from inferline.ui import links
from inferline.ui.auth import FormDep, SessionDep, StateDep
from inferline.ui.detail_view import chat, comparisons, timing
from inferline.ui.listing import PAGE_SIZES, RANGES, export_request, list_request, parse_view, unfiltered
from inferline.ui.sessions import Session
from inferline.ui.state import UiState

router = APIRouter()
TABS = ("overview", "messages", "performance", "raw", "feedback")
Tab = Literal["overview", "messages", "performance", "raw", "feedback"]


def _page(
    request: Request, state: UiState, session: Session, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    return state.templates.TemplateResponse(
        request, name, {"session": session, **context}, status_code=status
    )


@router.get("/")
def home(session: SessionDep) -> Response:
    return RedirectResponse("/ui/inferences", status_code=303)


@router.get("/inferences")
def inference_list(request: Request, state: StateDep, session: SessionDep) -> Response:
    view = parse_view(list(request.query_params.multi_items()))
    context: dict[str, Any] = {
        "view": view,
        "session_link": links.session_page(view.text["session"]) if view.text.get("session") else "",
        "user_link": links.user_page(view.text["user"], view.range) if view.text.get("user") else "",
        "ranges": list(RANGES),
        "page_sizes": PAGE_SIZES,
        "result": None,
        "totals": None,
        "latency": None,
        "errors": list(view.errors),
    }
    body = list_request(view, datetime.now(UTC))
    if isinstance(body, list):
        context["errors"] += body
        return _page(request, state, session, "inferences.html", context, 400)
    who = session.caller
    result = inferences.list_inferences(body, who, state.ctx)
    totals = analytics.overview(
        AnalyticsQuery.model_validate(body.model_dump(include=_FILTER_FIELDS)), who, state.ctx
    )
    baseline = totals
    if view.filtered:
        baseline = analytics.overview(AnalyticsQuery.model_validate(unfiltered(body)), who, state.ctx)
    pages = max(1, -(-result.total_count // view.size))
    context.update(
        result=result,
        totals=totals,
        latency=baseline.latency_ms,
        pages=pages,
        first_row=body.offset + 1 if result.items else 0,
        last_row=body.offset + len(result.items),
    )
    response = _page(request, state, session, "inferences.html", context)
    if request.headers.get("hx-request"):
        # The address bar gets the view's canonical query (no empty form fields, no defaults).
        query = view.query()
        response.headers["HX-Push-Url"] = "/ui/inferences" + (f"?{query}" if query else "")
    return response


_FILTER_FIELDS = set(AnalyticsQuery.model_fields) - {"source"}


@router.get("/inferences/export")
def export(
    request: Request,
    state: StateDep,
    session: SessionDep,
    format: Annotated[Literal["csv", "jsonl"], Query()] = "csv",
) -> Response:
    view = parse_view([(k, v) for k, v in request.query_params.multi_items() if k != "format"])
    body = export_request(view, datetime.now(UTC))
    if isinstance(body, list):
        raise HTTPException(400, "; ".join(body))
    return inferences.export_post(body, session.caller, state.ctx, format)


def _detail(state: UiState, session: Session, inference_id: uuid.UUID) -> InferenceDetail:
    # 404 for another project's inference, as for an id that never existed (the API's answer).
    return inferences.get_inference(inference_id, session.caller, state.ctx, 24)


@router.get("/inferences/{inference_id}/text")
def inference_text(
    request: Request,
    state: StateDep,
    session: SessionDep,
    inference_id: uuid.UUID,
    part: Annotated[Literal["prompt", "response"], Query()],
) -> Response:
    """One side's full messages, for a list row's preview expanded in place."""
    detail = _detail(state, session, inference_id)
    messages = [m for m in detail.messages if m.part == part]
    context = {"messages": chat(messages), "inference_id": detail.overview.inference_id}
    return _page(request, state, session, "text_fragment.html", context)


@router.get("/inferences/{inference_id}")
def inference_detail(
    request: Request,
    state: StateDep,
    session: SessionDep,
    inference_id: uuid.UUID,
    tab: Annotated[Tab, Query()] = "overview",
) -> Response:
    detail = _detail(state, session, inference_id)
    return _detail_page(request, state, session, detail, tab, feedback_error="", status=200)


def _detail_page(
    request: Request,
    state: UiState,
    session: Session,
    detail: InferenceDetail,
    tab: str,
    feedback_error: str,
    status: int,
    form: dict[str, str] | None = None,
) -> Response:
    context: dict[str, Any] = {
        "detail": detail,
        "tab": tab,
        "tabs": TABS,
        "feedback": None,
        "feedback_error": feedback_error,
        "form": form or {},
        "new_feedback_id": str(uuid.uuid4()),
        "links": _links(detail),
        "messages": chat(detail.messages),
        "timing": timing(detail),
        "comparisons": comparisons(detail),
    }
    if tab == "feedback":
        context["feedback"] = feedback.list_feedback(
            uuid.UUID(detail.overview.inference_id), session.caller, state.ctx
        )
    return _page(request, state, session, "detail.html", context, status)


def _links(detail: InferenceDetail) -> dict[str, str]:
    """The pages of this inference's session and user ("" when it has none: the template reads
    both, and an undefined key is an error there)."""
    out = {"session": "", "user": ""}
    if detail.overview.session_id:
        out["session"] = links.session_page(detail.overview.session_id)
    if detail.overview.user_id:
        out["user"] = links.user_page(detail.overview.user_id)
    return out


@router.post("/inferences/{inference_id}/feedback")
async def add_feedback(
    request: Request, state: StateDep, session: SessionDep, form: FormDep, inference_id: uuid.UUID
) -> Response:
    fields: dict[str, Any] = {}
    if form.get("thumbs") in ("up", "down"):
        fields["thumbs_up"] = form["thumbs"] == "up"
    if form.get("rating", "").isdigit():
        fields["rating"] = int(form["rating"])
    for name in ("comment", "demonstration"):
        if form.get(name, "").strip():
            fields[name] = form[name]
    # The form's own id: a form posted twice (a double click, a resend) stores one entry.
    with contextlib.suppress(ValueError):
        fields["feedback_id"] = uuid.UUID(form.get("feedback_id", ""))
    try:
        body = FeedbackIn.model_validate(fields)
    except ValidationError as e:
        message = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())

        def page() -> Response:
            detail = _detail(state, session, inference_id)
            return _detail_page(request, state, session, detail, "feedback", message, 422, form)

        return await asyncio.to_thread(page)
    await feedback.create_feedback(inference_id, body, session.caller, state.ctx, Response(), None)
    # Post/redirect/get: a reload shows the feedback instead of posting it again.
    return RedirectResponse(f"/ui/inferences/{inference_id}?tab=feedback", status_code=303)
