"""One session (a conversation): its calls oldest first with their previews, tokens, latency and
cost, and the session's totals and duration. Read through the inferences list and the analytics
API's functions with the session's `Caller`, so another project's session is simply not found."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response

from inferline.api import analytics, inferences
from inferline.api.analytics import AnalyticsQuery, BreakdownQuery
from inferline.api.inference_models import InferenceItem, ListRequest
from inferline.ui import links
from inferline.ui.auth import SessionDep, StateDep

router = APIRouter()
CALLS_PER_PAGE = 100
MAX_ID = links.MAX_LINKED_TEXT  # longer ids are never linked (shown as text)
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Call:
    """A call of the session, with its place in it."""

    number: int  # 1 for the first call
    item: InferenceItem
    after_ms: float  # since the session's first call started


def _started(item: InferenceItem) -> datetime:
    return datetime.fromisoformat(item.timestamp.replace("Z", "+00:00"))


def duration_ms(first: InferenceItem, last: InferenceItem) -> float:
    """From the first call's start to the end of the last call to start."""
    return (_started(last) - _started(first)).total_seconds() * 1000 + last.response_time_ms


@router.get("/sessions")
def session_page_by_query(
    request: Request,
    state: StateDep,
    session: SessionDep,
    session_id: Annotated[str, Query(alias="id", min_length=1)],
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """The same page for an id that cannot be a path segment (".", "..", one with a line feed:
    `links.session_page`)."""
    return session_page(request, state, session, session_id, page)


@router.get("/sessions/{session_id:path}")
def session_page(
    request: Request,
    state: StateDep,
    session: SessionDep,
    session_id: Annotated[str, Path(min_length=1)],
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    if len(session_id) > MAX_ID:
        raise HTTPException(404, "no such session")
    who = session.caller

    def calls(order: str, limit: int, offset: int = 0) -> Any:
        body = ListRequest(
            from_date=_BEGINNING,
            session=session_id,
            sort_by="timestamp",
            sort_order=order,
            limit=limit,
            offset=offset,
        )
        return inferences.list_inferences(body, who, state.ctx)

    shown = calls("asc", CALLS_PER_PAGE, (page - 1) * CALLS_PER_PAGE)
    if shown.total_count == 0:
        raise HTTPException(404, "no such session in this project")  # another project's: the same
    first = shown.items[0] if page == 1 and shown.items else calls("asc", 1).items[0]
    last = calls("desc", 1).items[0]
    filters = AnalyticsQuery(from_date=_BEGINNING, session=session_id)
    totals = analytics.overview(filters, who, state.ctx)
    users = analytics.grouped(  # only their ids are shown
        BreakdownQuery(
            from_date=_BEGINNING, session=session_id, group_by="user", sort_by="requests", limit=10
        ),
        who,
        state.ctx,
        columns=(),
        feedback=False,
    ).groups
    start = _started(first)
    offset = (page - 1) * CALLS_PER_PAGE
    context: dict[str, Any] = {
        "session": session,
        "session_id": session_id,
        "calls": [
            Call(offset + i + 1, item, (_started(item) - start).total_seconds() * 1000)
            for i, item in enumerate(shown.items)
        ],
        "totals": totals,
        "first": first,
        "last": last,
        "duration_ms": duration_ms(first, last),
        "users": [(g.key, links.user_page(g.key) if g.key else "") for g in users],
        "list_link": links.inferences(session=session_id),
        "page": page,
        "pages": max(1, -(-shown.total_count // CALLS_PER_PAGE)),
        "has_more": shown.has_more,
        "earlier_link": links.session_page(session_id, page - 1) if page > 1 else "",
        "later_link": links.session_page(session_id, page + 1) if shown.has_more else "",
    }
    return state.templates.TemplateResponse(request, "session.html", context)
