"""Analytics over a time range of the caller's project: overview, time series, breakdowns and
the most expensive or slowest inferences. Every route takes a JSON body with the list's filters
(inferline.api.filters) and answers from the rollups where they can (inferline.api.analytics_plan)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, StringConstraints, model_validator

from inferline.api.analytics_feedback import feedback_by_group
from inferline.api.analytics_plan import INTERVAL_SECONDS, Dimension, Interval, Question, stats_query
from inferline.api.deps import ApiContext, Caller, CallerDep, ContextDep, audit
from inferline.api.feedback import FeedbackSummary, summary_of
from inferline.api.filters import MAX_FILTER_TEXT, InferenceFilters, check_project, where_clause
from inferline.storage.rollups import AGGREGATES, QUANTILES, named

router = APIRouter(prefix="/api/v1/metrics/analytics", tags=["analytics"])
MAX_POINTS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # no row is older: OTLP times are unsigned
_P = {f"p{round(q * 100)}": i for i, q in enumerate(QUANTILES)}  # p50 → index in the digest's array


class AnalyticsQuery(InferenceFilters):
    source: Literal["auto", "raw"] = Field(
        "auto",
        description="auto: rollups where they answer the question exactly, the raw table elsewhere; "
        "raw: only `llm_inferences FINAL` (slower; for checking).",
    )


class TimeSeriesQuery(AnalyticsQuery):
    interval: Interval = Field("hour", description="Bucket width (UTC).")


class BreakdownQuery(AnalyticsQuery):
    group_by: Dimension = Field(
        description="model, provider, user, tenant, feature (tag `feature`), tag or session."
    )
    tag_key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILTER_TEXT)] | None = Field(
        None, description="The tag key to group by; required with group_by = tag."
    )
    sort_by: Literal["cost", "requests", "tokens", "latency"] = "cost"
    limit: int = Field(100, ge=1, le=1000, description="Groups returned, largest first.")

    @model_validator(mode="after")
    def _tag_key(self) -> BreakdownQuery:
        if (self.group_by == "tag") != (self.tag_key is not None):
            raise ValueError("tag_key: give it with group_by = tag, and only then")
        return self


class TopQuery(InferenceFilters):
    by: Literal["cost", "latency"] = "cost"
    limit: int = Field(10, ge=1, le=100)


class Cost(BaseModel):
    total_usd: float
    input_usd: float
    output_usd: float
    unpriced_requests: int = Field(description="Calls whose cost is unknown (unknown model); they add 0.")


class Tokens(BaseModel):
    total: int
    input: int
    output: int


class Latency(BaseModel):
    avg: float | None
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


class Ttft(BaseModel):
    requests: int = Field(description="Calls that reported a time to first token.")
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


class Stats(BaseModel):
    requests: int
    successes: int
    failures: int
    success_rate: float | None
    cost: Cost
    tokens: Tokens
    latency_ms: Latency
    ttft_ms: Ttft
    tokens_per_second: float | None = Field(description="Mean of output tokens / latency over the calls.")


class Overview(Stats):
    sources: list[str] = Field(description="Tables that answered: rollups and/or llm_inferences.")


class Point(Stats):
    timestamp: datetime


class TimeSeries(BaseModel):
    interval: Interval
    sources: list[str]
    points: list[Point] = Field(description="Every bucket of the range, oldest first; empty ones are zeros.")


class Group(Stats):
    key: str
    feedback: FeedbackSummary | None = Field(
        None,
        description="Feedback on the group's calls in the range, as one inference's summary "
        "(`average_rating`: the mean of their 1-5 ratings).",
    )


class Breakdown(BaseModel):
    group_by: Dimension
    tag_key: str | None
    sources: list[str]
    groups: list[Group]


class TopInference(BaseModel):
    inference_id: str
    timestamp: datetime
    model: str
    provider: str
    user_id: str
    tenant_id: str
    success: bool
    latency_ms: float
    ttft_ms: float | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float | None


class Top(BaseModel):
    by: Literal["cost", "latency"]
    items: list[TopInference]


@router.post("/overview", response_model=Overview)
def overview(body: AnalyticsQuery, who: CallerDep, ctx: ContextDep) -> Overview:
    check_project(body, who.project_id)
    question = Question(body, source=body.source)
    query, params, sources = stats_query(question, who.project_id)
    row = ctx.sql.rows(who.project_id, query, params)[0]
    audit(who, "analytics.overview", rows=1, filters=body.names(), sources=sources)
    return Overview(**_stats(row), sources=sources)


@router.post("/timeseries", response_model=TimeSeries)
def timeseries(body: TimeSeriesQuery, who: CallerDep, ctx: ContextDep) -> TimeSeries:
    check_project(body, who.project_id)
    step = INTERVAL_SECONDS[body.interval]
    first = _floor(max(body.from_date, _EPOCH), step)
    last = max(first, _floor(body.to_date or datetime.now(UTC), step))
    count = int((last - first).total_seconds()) // step + 1
    if count > MAX_POINTS:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "interval"),
                    "msg": f"{count} {body.interval}s in the range, over {MAX_POINTS}; use a coarser one",
                    "input": body.interval,
                }
            ]
        )
    question = Question(body, interval=body.interval, source=body.source)
    query, params, sources = stats_query(question, who.project_id, order_by="bucket")
    rows = {int(r["bucket_ts"]): r for r in ctx.sql.rows(who.project_id, query, params)}
    stamps = [int((first + timedelta(seconds=step * i)).timestamp()) for i in range(count)]
    stamps += sorted(t for t in rows if t > stamps[-1])  # rows after the range's end when it has none
    points = [Point(**_stats(rows.get(t, {})), timestamp=datetime.fromtimestamp(t, UTC)) for t in stamps]
    audit(who, "analytics.timeseries", rows=len(points), filters=body.names(), sources=sources)
    return TimeSeries(interval=body.interval, sources=sources, points=points)


_GROUP_ORDER = {
    "cost": "cost_usd DESC",
    "requests": "requests DESC",
    "tokens": "tokens_total DESC",
    "latency": "latency_sum_ms / requests DESC",
}


# Rollups keep these groups by the thousand (a user per row): a digest merge for each would be
# wasted on all but `limit` of them, so they are ranked on the order's own sums first.
_RANKED_FIRST = frozenset({"user"})


@router.post("/breakdown", response_model=Breakdown)
def breakdown(body: BreakdownQuery, who: CallerDep, ctx: ContextDep) -> Breakdown:
    return grouped(body, who, ctx)


def grouped(
    body: BreakdownQuery,
    who: Caller,
    ctx: ApiContext,
    *,
    columns: Iterable[str] | None = None,
    feedback: bool = True,
) -> Breakdown:
    """The breakdown route's answer. `columns`: only these aggregates (inferline.storage.rollups
    names; `requests` and the order's always) for a table that shows only some figures: the
    others come back 0, or None where the field allows. `feedback=False`: no feedback (None),
    which costs a query of its own."""
    check_project(body, who.project_id)
    question = Question(body, group_by=body.group_by, tag_key=body.tag_key, source=body.source)
    order = f"{_GROUP_ORDER[body.sort_by]}, dim"
    by_order = order.replace("/", " ").split()
    only: list[str] | None = None
    if columns is None and body.group_by in _RANKED_FIRST:
        query, params, _ = stats_query(
            question, who.project_id, order, body.limit, aggregates=named(by_order)
        )
        only = [str(r["dim"]) for r in ctx.sql.rows(who.project_id, query, params)]
    query, params, sources = stats_query(
        question,
        who.project_id,
        order_by=order,
        limit=body.limit,
        aggregates=AGGREGATES if columns is None else named([*columns, *by_order]),
        only_groups=only or None,
    )
    rows = ctx.sql.rows(who.project_id, query, params) if only != [] else []
    keys = [str(r["dim"]) for r in rows]
    rated = feedback_by_group(body, body.group_by, body.tag_key, keys, who, ctx) if feedback else {}
    groups = [
        Group(**_stats(r), key=key, feedback=rated.get(key, summary_of({})) if feedback else None)
        for r, key in zip(rows, keys, strict=True)
    ]
    audit(who, "analytics.breakdown", rows=len(groups), filters=body.names(), group_by=body.group_by)
    return Breakdown(group_by=body.group_by, tag_key=body.tag_key, sources=sources, groups=groups)


_TOP_ORDER = {"cost": "total_cost_usd DESC NULLS LAST", "latency": "latency_ms DESC"}


@router.post("/top", response_model=Top)
def top(body: TopQuery, who: CallerDep, ctx: ContextDep) -> Top:
    check_project(body, who.project_id)
    where, params = where_clause(body, who.project_id)
    rows = ctx.sql.rows(
        who.project_id,
        "SELECT inference_id, toUnixTimestamp64Nano(start_time) AS start_ns, model, provider, user_id, "
        "tenant_id, success, latency_ms, ttft_ms, input_tokens, output_tokens, total_tokens, "
        f"total_cost_usd FROM llm_inferences FINAL WHERE {where} "
        f"ORDER BY {_TOP_ORDER[body.by]}, inference_id LIMIT {body.limit}",
        params,
    )
    items = [
        TopInference(
            **{k: v for k, v in r.items() if k not in ("start_ns", "total_cost_usd")},
            timestamp=datetime.fromtimestamp(int(r["start_ns"]) / 1e9, UTC),
            cost_usd=r["total_cost_usd"],
        )
        for r in rows
    ]
    audit(who, "analytics.top", rows=len(items), filters=body.names(), by=body.by)
    return Top(by=body.by, items=items)


def _stats(row: dict[str, Any]) -> dict[str, Any]:
    """The merged aggregates of one row (an absent row: no calls) as the API's figures."""
    requests = int(row.get("requests", 0))
    successes = int(row.get("successes", 0))
    ttft_requests = int(row.get("ttft_requests", 0))
    rated = int(row.get("rated_requests", 0))
    latency = row.get("latency_digest") if requests else None
    ttft = row.get("ttft_digest") if ttft_requests else None
    return {
        "requests": requests,
        "successes": successes,
        "failures": requests - successes,
        "success_rate": successes / requests if requests else None,
        "cost": Cost(
            total_usd=float(row.get("cost_usd", 0)),
            input_usd=float(row.get("cost_in_usd", 0)),
            output_usd=float(row.get("cost_out_usd", 0)),
            unpriced_requests=int(row.get("unpriced", 0)),
        ),
        "tokens": Tokens(
            total=int(row.get("tokens_total", 0)),
            input=int(row.get("tokens_in", 0)),
            output=int(row.get("tokens_out", 0)),
        ),
        "latency_ms": Latency(
            avg=row["latency_sum_ms"] / requests if requests and "latency_sum_ms" in row else None,
            min=row.get("latency_min_ms") if requests else None,
            max=row.get("latency_max_ms") if requests else None,
            **{p: latency[i] if latency else None for p, i in _P.items()},
        ),
        "ttft_ms": Ttft(requests=ttft_requests, **{p: ttft[i] if ttft else None for p, i in _P.items()}),
        "tokens_per_second": row.get("rate_sum", 0) / rated if rated else None,
    }


def _floor(t: datetime, seconds: int) -> datetime:
    return datetime.fromtimestamp(int(t.timestamp()) // seconds * seconds, UTC)
