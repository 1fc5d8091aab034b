"""The users page (top users by cost and by calls over a range) and one user's page (their
totals and sessions). Both read the analytics API's breakdown with the session's `Caller`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from inferline.api import analytics
from inferline.api.analytics import AnalyticsQuery, BreakdownQuery, Group
from inferline.api.deps import Caller
from inferline.ui import links, parallel
from inferline.ui.auth import SessionDep, StateDep
from inferline.ui.listing import DEFAULT_RANGE, RANGES
from inferline.ui.state import UiState

router = APIRouter()
TOP_USERS = 25  # rows of each ranking
USER_SESSIONS = 200  # sessions listed on a user's page, costliest first
RANGE_LABELS = {
    "1h": "Last hour",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "all": "All time",
}
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    """A group of the breakdown with the pages it links to ('' where it has no key)."""

    group: Group
    inferences_link: str
    page_link: str


def _start(range_name: str) -> datetime:
    span = RANGES[range_name]
    return datetime.now(UTC) - span if span else _BEGINNING


def range_links(base: str, **extra: str) -> list[tuple[str, str, str]]:
    """The range picker's (range, label, address) for a page at `base` with these parameters."""
    return [(r, label, f"{base}?{urlencode({'range': r, **extra})}") for r, label in RANGE_LABELS.items()]


def _range(name: str) -> str:
    return name if name in RANGES else DEFAULT_RANGE


# What the users' and the sessions' tables show: calls, cost, tokens, mean latency, success.
_SHOWN = ("cost_usd", "tokens_total", "latency_sum_ms", "successes")


def _breakdown(state: UiState, who: Caller, range_name: str, **fields: Any) -> list[Group]:
    """The breakdown's groups with the figures the tables show (no percentiles, no feedback)."""
    body = BreakdownQuery.model_validate({"from_date": _start(range_name), **fields})
    return analytics.grouped(body, who, state.ctx, columns=_SHOWN, feedback=False).groups


@router.get("/users")
def users_page(
    request: Request,
    state: StateDep,
    session: SessionDep,
    range: Annotated[str, Query(max_length=8)] = DEFAULT_RANGE,
) -> Response:
    range_name = _range(range)
    who = session.caller

    def rows(groups: list[Group]) -> list[Row]:
        return [
            Row(
                g,
                links.inferences(range_name, user=g.key) if g.key else "",
                links.user_page(g.key, range_name) if g.key else "",
            )
            for g in groups
        ]

    # The two rankings at once, each in a session of its own.
    by_cost, by_calls = (
        parallel.start(_breakdown, state, who, range_name, group_by="user", sort_by=s, limit=TOP_USERS)
        for s in ("cost", "requests")
    )
    context: dict[str, Any] = {
        "session": session,
        "range": range_name,
        "range_links": range_links("/ui/users"),
        "by_cost": rows(by_cost.result()),
        "by_calls": rows(by_calls.result()),
    }
    return state.templates.TemplateResponse(request, "users.html", context)


@router.get("/users/sessions")
def user_page(
    request: Request,
    state: StateDep,
    session: SessionDep,
    user: Annotated[str, Query(min_length=1, max_length=links.MAX_LINKED_TEXT)],
    range: Annotated[str, Query(max_length=8)] = "all",
) -> Response:
    range_name = _range(range)
    who = session.caller
    totals = analytics.overview(AnalyticsQuery(from_date=_start(range_name), user=user), who, state.ctx)
    groups = _breakdown(
        state, who, range_name, group_by="session", user=user, sort_by="cost", limit=USER_SESSIONS
    )
    sessions = [
        Row(
            g,
            links.inferences(range_name, user=user, session=g.key) if g.key else "",
            links.session_page(g.key) if g.key else "",
        )
        for g in groups
    ]
    context: dict[str, Any] = {
        "session": session,
        "user": user,
        "range": range_name,
        "range_links": range_links("/ui/users/sessions", user=user),
        "totals": totals,
        "sessions": sessions,
        "limit": USER_SESSIONS,
        "inferences_link": links.inferences(range_name, user=user),
    }
    return state.templates.TemplateResponse(request, "user.html", context)
