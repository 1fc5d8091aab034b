"""The Analytics page: cost over time by model (stacked), requests and success rate, latency
percentiles, and a model comparison table, over a chosen range. Figures come from the analytics
API's functions and query planner (rollups where they answer exactly), run in the session's
project's read-only session like every API read."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from inferline.api import analytics
from inferline.api.analytics import AnalyticsQuery, BreakdownQuery, TimeSeriesQuery
from inferline.api.analytics_plan import Interval, Question, stats_query
from inferline.api.deps import Caller, audit
from inferline.ui.auth import SessionDep, StateDep
from inferline.ui.state import UiState

router = APIRouter()
RangeName = Literal["1h", "24h", "7d", "30d", "90d"]
# Each range's bucket width: between 24 and 180 points a chart.
RANGES: dict[str, tuple[timedelta, Interval]] = {
    "1h": (timedelta(hours=1), "minute"),
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "hour"),
    "30d": (timedelta(days=30), "day"),
    "90d": (timedelta(days=90), "day"),
}
STACKED_MODELS = 6  # models drawn on their own in the cost chart; the rest are summed as "other"


@dataclass(frozen=True)
class CostSeries:
    labels: list[str]  # bucket starts, ISO UTC
    models: dict[str, list[float]]  # model → cost per bucket, largest total first


def cost_by_model(
    state: UiState, who: Caller, filters: AnalyticsQuery, interval: Interval, stamps: list[int]
) -> CostSeries:
    """Cost per bucket and model in one query: the planner's own query grouped by model and by
    bucket (the API's timeseries and breakdown routes each have one of the two)."""
    question = Question(filters, group_by="model", interval=interval)
    query, params, sources = stats_query(question, who.project_id)
    rows = state.ctx.sql.rows(who.project_id, query, params)
    audit(who, "analytics.cost_by_model", rows=len(rows), sources=sources)
    per_model: dict[str, dict[int, float]] = defaultdict(dict)
    for row in rows:
        per_model[str(row["dim"]) or "(unknown)"][int(row["bucket_ts"])] = float(row["cost_usd"])
    ranked = sorted(per_model, key=lambda m: -sum(per_model[m].values()))
    models: dict[str, list[float]] = {}
    for model in ranked[:STACKED_MODELS]:
        models[model] = [per_model[model].get(t, 0.0) for t in stamps]
    if len(ranked) > STACKED_MODELS:
        models["other"] = [sum(per_model[m].get(t, 0.0) for m in ranked[STACKED_MODELS:]) for t in stamps]
    labels = [datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z") for t in stamps]
    return CostSeries(labels, models)


@router.get("/analytics")
def analytics_page(
    request: Request,
    state: StateDep,
    session: SessionDep,
    range: Annotated[RangeName, Query()] = "24h",
) -> Response:
    span, interval = RANGES[range]
    now = datetime.now(UTC)
    who = session.caller
    filters = AnalyticsQuery(from_date=now - span, to_date=now)
    series = analytics.timeseries(
        TimeSeriesQuery(from_date=filters.from_date, to_date=now, interval=interval), who, state.ctx
    )
    stamps = [int(p.timestamp.timestamp()) for p in series.points]
    cost = cost_by_model(state, who, filters, interval, stamps)
    overview = analytics.overview(filters, who, state.ctx)
    models = analytics.breakdown(
        BreakdownQuery(
            from_date=filters.from_date, to_date=now, group_by="model", sort_by="requests", limit=50
        ),
        who,
        state.ctx,
    )
    charts = {
        "cost": {"kind": "stacked-bar", "labels": cost.labels, "series": cost.models, "unit": "usd"},
        "requests": {
            "kind": "bar-line",
            "labels": cost.labels,
            "series": {
                "requests": [p.requests for p in series.points],
                "success rate %": [
                    None if p.success_rate is None else round(p.success_rate * 100, 2) for p in series.points
                ],
            },
        },
        "latency": {
            "kind": "line",
            "labels": cost.labels,
            "unit": "ms",
            "series": {
                name: [getattr(p.latency_ms, name) for p in series.points] for name in ("p50", "p95", "p99")
            },
        },
    }
    context: dict[str, Any] = {
        "session": session,
        "range": range,
        "ranges": list(RANGES),
        "interval": interval,
        "overview": overview,
        "models": models.groups,
        "charts": {name: orjson.dumps(chart).decode() for name, chart in charts.items()},
    }
    return state.templates.TemplateResponse(request, "analytics.html", context)
