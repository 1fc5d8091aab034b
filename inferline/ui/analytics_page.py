"""The Analytics page: cost over time by model (stacked), requests and success rate, latency and
time-to-first-token percentiles, tokens per second, cost and calls by provider, user, tenant and
feature, and a model comparison table, over a chosen range, optionally refreshed every 30 or 60 s.
Figures come from the analytics API's functions and query planner (rollups where they answer
exactly), run in the session's project's read-only session like every API read."""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from inferline.api import analytics
from inferline.api.analytics import AnalyticsQuery, Breakdown, BreakdownQuery, Group, TimeSeriesQuery
from inferline.api.analytics_plan import Dimension, Interval, Question, stats_query
from inferline.api.deps import Caller, audit
from inferline.storage.rollups import FEATURE_TAG, named
from inferline.ui import links, parallel
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
# Auto-refresh choices (seconds; "off" none): htmx re-requests the page's main part on a timer.
REFRESH_CHOICES = ("off", "30", "60")
Refresh = Literal["off", "30", "60"]
BREAKDOWN_ROWS = 10  # groups of each cost-and-calls table


@dataclass(frozen=True)
class Share:
    """A group of a cost-and-calls table, with its share of the range's cost and its filtered list."""

    group: Group
    cost_share: float  # of the range's whole cost, 0 … 1
    link: str  # the Inferences page narrowed to it; '' for calls without the value


# The breakdowns shown as cost-and-calls tables: title, breakdown dimension, Inferences page filter.
BREAKDOWNS: tuple[tuple[str, Dimension, str], ...] = (
    ("Provider", "provider", "provider"),
    ("User", "user", "user"),
    ("Tenant", "tenant", "tenant"),
    ("Feature", "feature", "tag"),
)


def shares(breakdowns: dict[str, Breakdown], range_name: str, total: float) -> dict[str, list[Share]]:
    """Cost and calls by provider, user, tenant and feature tag (`breakdowns`, by title): the
    costliest groups of each, with their share of `total`, the range's whole cost."""
    out: dict[str, list[Share]] = {}
    for title, _, url_name in BREAKDOWNS:
        rows = []
        for g in breakdowns[title].groups:
            value = f"{FEATURE_TAG}={g.key}" if url_name == "tag" else g.key
            link = links.inferences(range_name, **{url_name: value}) if g.key else ""
            rows.append(Share(g, g.cost.total_usd / total if total else 0.0, link))
        out[title] = rows
    return out


@dataclass(frozen=True)
class CostSeries:
    labels: list[str]  # bucket starts, ISO UTC
    models: dict[str, list[float]]  # model → cost per bucket, largest total first


def cost_rows(
    state: UiState, who: Caller, filters: AnalyticsQuery, interval: Interval
) -> list[dict[str, Any]]:
    """Cost per bucket and model in one query: the planner's own query grouped by model and by
    bucket (the API's timeseries and breakdown routes each have one of the two)."""
    question = Question(filters, group_by="model", interval=interval)
    query, params, sources = stats_query(question, who.project_id, aggregates=named(["cost_usd"]))
    rows = state.ctx.sql.rows(who.project_id, query, params)
    audit(who, "analytics.cost_by_model", rows=len(rows), sources=sources)
    return rows


def cost_by_model(rows: list[dict[str, Any]], stamps: list[int]) -> CostSeries:
    """`cost_rows` as the stacked chart's series: the costliest models, the rest as "other"."""
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
    refresh: Annotated[Refresh, Query()] = "off",
) -> Response:
    span, interval = RANGES[range]
    now = datetime.now(UTC)
    who, ctx = session.caller, state.ctx
    filters = AnalyticsQuery(from_date=now - span, to_date=now)

    def breakdown(dimension: Dimension, sort_by: str, limit: int) -> Future[Breakdown]:
        body = BreakdownQuery(
            from_date=filters.from_date, to_date=now, group_by=dimension, sort_by=sort_by, limit=limit
        )
        if dimension == "model":  # the model table: every figure, the rating too
            return parallel.start(analytics.grouped, body, who, ctx)
        # The cost-and-calls tables: cost (and calls) only.
        return parallel.start(analytics.grouped, body, who, ctx, columns=["cost_usd"], feedback=False)

    # Every figure is independent of the others: asked for at once, in sessions of their own.
    series_body = TimeSeriesQuery(from_date=filters.from_date, to_date=now, interval=interval)
    series_f = parallel.start(analytics.timeseries, series_body, who, ctx)
    cost_f = parallel.start(cost_rows, state, who, filters, interval)
    overview_f = parallel.start(analytics.overview, filters, who, ctx)
    breakdowns_f = {title: breakdown(dimension, "cost", BREAKDOWN_ROWS) for title, dimension, _ in BREAKDOWNS}
    models_f = breakdown("model", "requests", 50)
    series, overview = series_f.result(), overview_f.result()
    stamps = [int(p.timestamp.timestamp()) for p in series.points]
    cost = cost_by_model(cost_f.result(), stamps)
    by_dimension = shares({t: f.result() for t, f in breakdowns_f.items()}, range, overview.cost.total_usd)
    models = models_f.result()
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
        "ttft": {
            "kind": "line",
            "labels": cost.labels,
            "unit": "ms",
            "series": {name: [getattr(p.ttft_ms, name) for p in series.points] for name in ("p50", "p95")},
        },
        "throughput": {
            "kind": "line",
            "labels": cost.labels,
            "series": {"tokens/s": [p.tokens_per_second for p in series.points]},
        },
    }
    context: dict[str, Any] = {
        "session": session,
        "range": range,
        "ranges": list(RANGES),
        "interval": interval,
        "overview": overview,
        "models": models.groups,
        "shares": by_dimension,
        "now": now.isoformat().replace("+00:00", "Z"),
        "refresh": refresh,
        "refresh_choices": REFRESH_CHOICES,
        "charts": {name: orjson.dumps(chart).decode() for name, chart in charts.items()},
    }
    return state.templates.TemplateResponse(request, "analytics.html", context)
